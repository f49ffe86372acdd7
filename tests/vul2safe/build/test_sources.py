"""Repair-pair sources on real data: counts, ids, hashes, the unpaired join, clear errors."""

from __future__ import annotations

import json
import logging
import random
import re
from pathlib import Path

import pytest

from vul2safe import plugins
from vul2safe.build.records import RepairPair
from vul2safe.build.source import (
    PairIds,
    commit_parts,
    load_sources,
    parse_changes,
    parse_source_spec,
)
from vul2safe.errors import InputError, UnknownPluginError, UsageError
from vul2safe.plugins.source.primevul import function_name

PAIRED = "primevul-format/sven_c_train_paired.jsonl"
SAFECODER = "safecoder/sec-new-desc-train.jsonl"
CWE = re.compile(r"^CWE-[1-9]\d*$")
SHA = re.compile(r"^[0-9a-f]{40}$")


def _load(spec: str, limit: int | None = None) -> list[RepairPair]:
    return load_sources([spec], limit)


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------- registry and specs


def test_sources_are_registered_as_plugins() -> None:
    assert {"primevul", "sven", "safecoder"} <= set(plugins.sources.names())
    assert plugins.sources.owner("sven") == "vul2safe.plugins.source.sven"
    for name in ("primevul", "sven", "safecoder"):
        source = plugins.sources.get(name)
        card = source.describe()
        assert card["licence"] == "MIT"
        assert card["homepage"].startswith("https://github.com/")
        assert "@inproceedings" in card["citation"]
        assert card["description"]


def test_parse_source_spec() -> None:
    assert parse_source_spec("sven:/data/sven") == ("sven", "/data/sven")
    assert parse_source_spec(" PrimeVul:colin/PrimeVul ") == ("primevul", "colin/PrimeVul")
    assert parse_source_spec("sven") == ("sven", None)
    assert parse_source_spec("sven:") == ("sven", None)
    with pytest.raises(UsageError, match="SOURCE:LOCATION"):
        parse_source_spec("/data/sven/train")
    with pytest.raises(UsageError):
        parse_source_spec(":/data")


def test_unknown_source_name_suggests_the_close_one(shared_data: Path) -> None:
    with pytest.raises(UnknownPluginError) as info:
        _load(f"svne:{shared_data / 'sven'}")
    message = str(info.value)
    assert "Unknown source 'svne'" in message
    assert "Did you mean: sven?" in message
    assert "primevul" in message and "safecoder" in message


def test_missing_path_is_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "sven"
    with pytest.raises(InputError) as info:
        _load(f"sven:{missing}")
    message = str(info.value)
    assert "\n" not in message
    assert str(missing) in message and "no such file or directory" in message
    with pytest.raises(InputError, match="no such file"):
        _load(f"primevul:{tmp_path / 'primevul_train_paired.jsonl'}")


def test_location_is_required_without_a_default_hub_copy() -> None:
    with pytest.raises(UsageError, match="sven:PATH"):
        _load("sven")


def test_hub_id_offline_fails_with_advice() -> None:
    # conftest sets HF_HUB_OFFLINE=1: the Hub is never contacted, the message says what to do
    with pytest.raises(InputError) as info:
        _load("primevul:colin/PrimeVul")
    assert "primevul:PATH" in str(info.value)


def test_limit_must_be_positive(shared_data: Path) -> None:
    with pytest.raises(UsageError, match="--limit"):
        _load(f"sven:{shared_data / 'sven'}", limit=0)


# ---------------------------------------------------------------- SVEN


def test_sven_counts_fields_and_ids(shared_data: Path) -> None:
    pairs = _load(f"sven:{shared_data / 'sven'}")
    assert len(pairs) == 720
    assert _load(f"sven:{shared_data / 'sven' / 'train'}")[5].pair_id == pairs[5].pair_id
    assert len(_load(f"sven:{shared_data / 'sven' / 'train' / 'cwe-022.jsonl'}")) == 51
    ids = [pair.pair_id for pair in pairs]
    assert len(set(ids)) == 720
    assert ids == [pair.pair_id for pair in _load(f"sven:{shared_data / 'sven'}")]  # stable
    assert {pair.language for pair in pairs} == {"c", "cpp", "python"}
    assert {cwe for pair in pairs for cwe in pair.cwe} == {
        "CWE-22",
        "CWE-78",
        "CWE-79",
        "CWE-89",
        "CWE-125",
        "CWE-190",
        "CWE-416",
        "CWE-476",
        "CWE-787",
    }
    first = pairs[0]
    assert first.source == "sven"
    assert first.pair_id == (
        "sven:239c4f7d1f47265526b39ad70106767d00805277:src/lib/dump_dir.c:dd_get_item_size:0"
    )
    assert first.project == "abrt/libreport"
    assert first.commit_url == (
        "https://github.com/abrt/libreport/commit/239c4f7d1f47265526b39ad70106767d00805277"
    )
    assert first.metadata["split"] == "train"
    assert first.metadata["source_file"] == "train/cwe-022.jsonl"
    for pair in pairs:
        assert SHA.match(pair.commit or ""), pair.commit_url
        assert pair.project and pair.project.count("/") == 1
        changes = pair.metadata["line_changes"]
        assert set(changes) == {"deleted", "added"}
        assert pair.metadata["char_changes"] is not None


def test_sven_limit_stops_early(shared_data: Path) -> None:
    assert len(_load(f"sven:{shared_data / 'sven'}", limit=7)) == 7


def test_sven_missing_code_field_names_the_line(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "cwe-079.jsonl",
        [
            {"func_src_before": "a", "func_src_after": "b", "file_name": "x.py"},
            {"func_src_before": "a", "file_name": "x.py"},
        ],
    )
    with pytest.raises(InputError, match=r"line 2: missing or non-text field\(s\) func_src_after"):
        _load(f"sven:{path}")


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="holds no"):
        _load(f"sven:{tmp_path}")


# ---------------------------------------------------------------- SafeCoder


def test_safecoder_counts_and_extra_fields(shared_data: Path) -> None:
    pairs = _load(f"safecoder:{shared_data / SAFECODER}")
    assert len(pairs) == 421
    assert len({pair.pair_id for pair in pairs}) == 421
    assert {pair.language for pair in pairs} == {
        "python",
        "javascript",
        "ruby",
        "c",
        "go",
        "java",
        "cpp",
    }
    assert len({cwe for pair in pairs for cwe in pair.cwe}) == 23
    assert all(CWE.match(cwe) for pair in pairs for cwe in pair.cwe)
    assert all(pair.metadata["description"] for pair in pairs)
    assert sum(pair.metadata["line_changes"] is None for pair in pairs) == 9
    first = pairs[0]
    assert first.pair_id.startswith("safecoder:e9499b517a0caa34fdbbc6abcc948eeaa4c35d2c:aw.js:")
    assert first.commit_message and "crypto" in first.commit_message
    assert first.metadata["parent_commit"] == "2bfd4ec40a01ed8739e3d9b9f4545d6d2215218d"
    assert first.project == "Musare/Musare"


def test_safecoder_changes_stored_as_python_repr_are_parsed(
    shared_data: Path, tmp_path: Path
) -> None:
    lines = (shared_data / SAFECODER).read_text(encoding="utf-8").splitlines()[:3]
    records = [json.loads(line) for line in lines]
    originals = [(r["line_changes"], r["char_changes"]) for r in records]
    for record in records:  # what some copies of the data hold: str(dict), not JSON
        record["line_changes"] = repr(record["line_changes"])
        record["char_changes"] = str(record["char_changes"])
    path = _write_jsonl(tmp_path / "sec.jsonl", records)
    pairs = _load(f"safecoder:{path}")
    assert [(p.metadata["line_changes"], p.metadata["char_changes"]) for p in pairs] == originals


def test_parse_changes() -> None:
    value = {"deleted": [{"line_no": 1, "line": "x\n"}], "added": []}
    assert parse_changes(value, "w") is value
    assert parse_changes(repr(value), "w") == value
    assert parse_changes(json.dumps(value), "w") == value
    assert parse_changes(None, "w") is None
    with pytest.raises(InputError, match="here"):
        parse_changes("{not a dict", "here")


# ---------------------------------------------------------------- PrimeVul, paired


def test_primevul_paired_counts(shared_data: Path) -> None:
    pairs = _load(f"primevul:{shared_data / PAIRED}")
    assert len(pairs) == 378
    assert len({pair.pair_id for pair in pairs}) == 378
    assert len(_load(f"primevul:{shared_data / 'primevul-format'}")) == 378  # a folder
    assert {pair.language for pair in pairs} == {"c", "cpp"}
    first = pairs[0]
    assert first.pair_id == (
        "primevul:239c4f7d1f47265526b39ad70106767d00805277:dump_dir.c:dd_get_item_size:0"
    )
    assert first.cwe == ["CWE-22"]
    assert first.project == "abrt/libreport"
    assert first.metadata["primevul_project"] == "libreport"
    assert first.metadata["layout"] == "paired"
    assert first.cve is None  # empty in this file
    for pair in pairs:
        assert SHA.match(pair.commit or ""), pair.metadata["commit_id"]


def test_primevul_128_bit_hashes_are_exact(shared_data: Path) -> None:
    """Compare with the raw text of the file, digit for digit (no float ever involved)."""
    path = shared_data / PAIRED
    raw = [
        re.search(r'"func_hash": (\d+)', line).group(1)  # type: ignore[union-attr]
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    pairs = _load(f"primevul:{path}")
    stored = [
        h
        for p in pairs
        for h in (p.metadata["vulnerable_func_hash"], p.metadata["fixed_func_hash"])
    ]
    assert stored == raw
    assert all(isinstance(h, str) for h in stored)
    big = [h for h in stored if int(h) >= 2**64]
    assert len(big) > 300  # really 128-bit values
    assert any(str(int(float(h))) != h for h in big)  # a float would have corrupted them
    idx = [(p.metadata["vulnerable_idx"], p.metadata["fixed_idx"]) for p in pairs]
    assert idx[:2] == [(0, 1), (2, 3)]


def test_primevul_repeated_idx_and_float_hashes(tmp_path: Path, shared_data: Path) -> None:
    rows = [json.loads(line) for line in (shared_data / PAIRED).read_text().splitlines()[:4]]
    for row in rows:
        row["idx"] = 7  # PrimeVul's paired test split repeats idx values
    path = _write_jsonl(tmp_path / "primevul_test_paired.jsonl", rows)
    pairs = _load(f"primevul:{path}")
    assert len(pairs) == 2 and pairs[0].pair_id != pairs[1].pair_id
    assert pairs[0].metadata["split"] == "test"
    rows[0]["func_hash"] = float(rows[0]["func_hash"])
    _write_jsonl(path, rows)
    with pytest.raises(InputError, match=r"line 1: hash .* not an integer"):
        _load(f"primevul:{path}")


def test_primevul_malformed_line_names_its_number(tmp_path: Path, shared_data: Path) -> None:
    lines = (shared_data / PAIRED).read_text(encoding="utf-8").splitlines()[:6]
    lines[4] = lines[4][:-20]  # truncated JSON on line 5
    path = tmp_path / "primevul_valid_paired.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        _load(f"primevul:{path}")
    assert "line 5 is not valid JSON" in str(info.value)
    assert str(path) in str(info.value)


def test_primevul_missing_field_and_bad_target(tmp_path: Path, shared_data: Path) -> None:
    rows = [json.loads(line) for line in (shared_data / PAIRED).read_text().splitlines()[:2]]
    del rows[1]["func"]
    path = _write_jsonl(tmp_path / "primevul_train_paired.jsonl", rows)
    with pytest.raises(InputError, match="line 2 lacks field"):
        _load(f"primevul:{path}")
    rows[1]["func"], rows[1]["target"] = "int f(void) {}", 2
    _write_jsonl(path, rows)
    with pytest.raises(InputError, match="line 2: target must be 0 or 1"):
        _load(f"primevul:{path}")


def test_primevul_broken_pairing_in_a_paired_file(tmp_path: Path, shared_data: Path) -> None:
    rows = [json.loads(line) for line in (shared_data / PAIRED).read_text().splitlines()[:6]]
    rows[3]["target"] = 1  # line 4 should be the fixed version of line 3
    path = _write_jsonl(tmp_path / "primevul_train_paired.jsonl", rows)
    with pytest.raises(InputError, match=r"line 4: expected the fixed version \(target 0\)"):
        _load(f"primevul:{path}")
    path = _write_jsonl(tmp_path / "primevul_train_paired.jsonl", rows[:1])
    with pytest.raises(InputError, match="line 1: vulnerable function without its fixed"):
        _load(f"primevul:{path}")


# ---------------------------------------------------------------- PrimeVul, unpaired


def _unpaired_copy(shared_data: Path, folder: Path) -> tuple[list[RepairPair], Path]:
    """The paired file split into single functions, shuffled, plus benign functions of the
    same commits (as the unpaired splits hold them)."""
    paired_path = shared_data / PAIRED
    rows = [json.loads(line) for line in paired_path.read_text(encoding="utf-8").splitlines()]
    benign = []
    for row in rows[1:80:2]:  # unchanged functions of the same commits and files
        extra = dict(row)
        extra["func"] = f"static int helper_{len(benign)}(int x)\n{{\n    return x;\n}}"
        extra["func_hash"] = 10**37 + len(benign)
        benign.append(extra)
    shuffled = rows + benign
    random.Random(1234).shuffle(shuffled)
    folder.mkdir(parents=True, exist_ok=True)
    return _load(f"primevul:{paired_path}"), _write_jsonl(folder / "primevul_train.jsonl", shuffled)


def test_primevul_unpaired_join_recovers_every_pair(shared_data: Path, tmp_path: Path) -> None:
    paired, path = _unpaired_copy(shared_data, tmp_path / "pv")
    joined = _load(f"primevul:{path.parent}")  # a folder holding the unpaired split
    assert len(joined) == 378
    assert {p.metadata["layout"] for p in joined} == {"joined"}
    assert {p.metadata["split"] for p in joined} == {"train"}

    def key(pair: RepairPair) -> tuple[str, str, str]:
        return (pair.vulnerable, pair.fixed, pair.metadata["vulnerable_func_hash"])

    assert sorted(map(key, joined)) == sorted(map(key, paired))
    assert len({p.pair_id for p in joined}) == 378
    by_hash = {p.metadata["vulnerable_func_hash"]: p for p in paired}
    for pair in joined:  # the hashes travel with the right function
        twin = by_hash[pair.metadata["vulnerable_func_hash"]]
        assert pair.metadata["fixed_func_hash"] == twin.metadata["fixed_func_hash"]


def test_primevul_unmatched_vulnerable_functions_are_skipped_and_logged(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [json.loads(line) for line in (shared_data / PAIRED).read_text().splitlines()[:10]]
    del rows[3]  # the fixed version of pair 2
    path = _write_jsonl(tmp_path / "primevul_valid.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="vul2safe.plugins.source.primevul"):
        pairs = _load(f"primevul:{path}")
    assert len(pairs) == 4
    assert "1 vulnerable function(s)" in caplog.text


def test_function_name_from_signatures() -> None:
    assert function_name("long dd_get_item_size(struct dump_dir *dd)\n{") == "dd_get_item_size"
    assert function_name("bool WddxPacket::recursiveAddVar(const String& n) {") == (
        "WddxPacket::recursiveAddVar"
    )
    assert function_name("PHPAPI PHP_FUNCTION(fread)\n{") == "PHP_FUNCTION(fread"
    assert function_name("AP_DECLARE(const char *) ap_limit(cmd_parms *cmd) {") == "ap_limit"
    assert function_name("int __attribute__((cold)) f(void) { return 0; }") == "f"
    assert function_name("def handler(request):\n    return 1") == "handler"


# ---------------------------------------------------------------- helpers and several sources


def test_commit_parts() -> None:
    assert commit_parts("github.com/abrt/libreport/commit/239C4F7d?w=1") == (
        "abrt/libreport",
        "239c4f7d",
        "https://github.com/abrt/libreport/commit/239C4F7d?w=1",
    )
    assert commit_parts("https://gitlab.com/a/b/-/commit/abcdef1234")[:2] == ("a/b", "abcdef1234")
    assert (
        commit_parts("https://git.kernel.org/cgit/linux.git/commit/?id=abcdef12")[1] == "abcdef12"
    )
    assert commit_parts(None) == (None, None, None)


def test_pair_ids_count_repeats() -> None:
    ids = PairIds("sven")
    assert ids.next("abc", "a.c", "f") == "sven:abc:a.c:f:0"
    assert ids.next("abc", "a.c", "f") == "sven:abc:a.c:f:1"
    assert ids.next(None, None, None) == "sven:-:-:-:0"


def test_load_several_sources_and_the_same_one_twice(shared_data: Path) -> None:
    sven = f"sven:{shared_data / 'sven'}"
    pairs = load_sources([sven, f"safecoder:{shared_data / SAFECODER}", sven], limit=50)
    assert len(pairs) == 100  # the repeated spec adds nothing
    assert [p.source for p in pairs] == ["sven"] * 50 + ["safecoder"] * 50
    with pytest.raises(UsageError, match="no source"):
        load_sources([])
