"""The assemble stage on real pairs: dedup, decontamination, group splits, the DatasetDicts."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from vul2safe.build import BuildContext
from vul2safe.build.assemble import (
    AssembleConfig,
    assign_splits,
    build_dataset,
    build_index,
    check_benchmarks,
    code_tokens,
    decontaminate,
    deduplicate,
    group_key,
    normalize_code,
    run_stage,
)
from vul2safe.build.records import RepairPair
from vul2safe.build.source import load_sources
from vul2safe.errors import UsageError

EVAL_COLUMNS = ["id", "prompt", "language", "cwe", "prompt_style", "project", "commit", "reference"]


@pytest.fixture(scope="module")
def shared_data_dir(shared_data: Path) -> Path:
    return shared_data


@pytest.fixture(scope="module")
def sven(shared_data_dir: Path) -> list[RepairPair]:
    """Real SVEN pairs through the real source plugin."""
    return load_sources([f"sven:{shared_data_dir / 'sven' / 'train'}"], limit=None)


def _with_prompts(pair: RepairPair, *texts: str) -> RepairPair:
    styles = ("task", "docstring", "context")
    prompts = [{"style": styles[i % 3], "text": t, "source": "test"} for i, t in enumerate(texts)]
    return replace(pair, prompts=prompts)


# ----------------------------------------------------------------------------- normalising


def test_normalize_code_strips_comments_and_layout_not_strings() -> None:
    a = 'int f(int x) {\n  // add one\n  char *s = "a // b";  /* tail */\n  return x + 1;\n}\n'
    b = 'int f(int x){ char *s = "a // b"; return x+1; }'
    assert normalize_code(a, "c") == normalize_code(b, "c")
    assert '"a // b"' in normalize_code(a, "c")
    py_a = "def f(x):\n    # note\n    return x + 1  # trailing\n"
    py_b = "def f(x):\n    return x+1\n"
    assert normalize_code(py_a, "python") == normalize_code(py_b, "python")
    assert "#" not in code_tokens("x = 1  # c\n", "python")
    assert "'#not'" in code_tokens("x = '#not'\n", "python")


# ----------------------------------------------------------------------------- dedup


def test_exact_duplicate_despite_comments_and_whitespace(sven: list[RepairPair]) -> None:
    original = next(p for p in sven if p.language == "c")
    reformatted = replace(
        original,
        pair_id="copy:1",
        vulnerable="/* copied */\n" + original.vulnerable.replace("\n", "\n\n"),
        fixed="// copied\n" + original.fixed,
    )
    kept, dropped = deduplicate([original, reformatted, *sven[-5:]])
    assert [p.pair_id for p in dropped] == ["copy:1"]
    assert dropped[0].drop_reason == "duplicate"
    assert dropped[0].metadata["duplicate_of"] == original.pair_id
    assert original in kept and len(kept) == 6


def test_near_duplicate_found_and_threshold_respected(sven: list[RepairPair]) -> None:
    long_pair = max((p for p in sven if p.language == "c"), key=lambda p: len(p.fixed))
    lines = long_pair.fixed.splitlines(keepends=True)
    tweaked = "".join(lines[:-2]) + "    cleanup_extra_state(ctx);\n" + "".join(lines[-2:])
    near = replace(long_pair, pair_id="near:1", fixed=tweaked)
    kept, dropped = deduplicate([long_pair, near])
    assert [p.drop_reason for p in dropped] == ["near-duplicate"]
    assert dropped[0].metadata["jaccard"] >= 0.9
    # the same two pairs survive when the threshold is above their similarity
    kept, dropped = deduplicate([long_pair, near], threshold=0.9999)
    assert len(kept) == 2 and not dropped


def test_lsh_finds_what_comparing_every_pair_finds(sven: list[RepairPair]) -> None:
    """MinHash + LSH only proposes candidates: on real pairs plus tweaked copies of some of
    them, deduplication drops exactly what an all-pairs exact Jaccard comparison drops."""
    from vul2safe.build.similarity import hashed_shingles, jaccard

    base = sven[:300]
    copies = []
    for k, pair in enumerate(base[:60:3]):
        lines = pair.fixed.splitlines(keepends=True)
        lines.insert(len(lines) // 2, f"    touch_{k}(state);\n")
        copies.append(replace(pair, pair_id=f"copy:{k}", fixed="".join(lines)))
    pairs = [*base, *copies]
    for threshold in (0.9, 0.75):
        _, dropped = deduplicate(pairs, threshold=threshold)
        expected: list[str] = []
        seen: list[set[int]] = []
        exact: set[tuple[str, str]] = set()
        for pair in pairs:
            before = code_tokens(pair.vulnerable, pair.language)
            after = code_tokens(pair.fixed, pair.language)
            key = (" ".join(before), " ".join(after))
            grams = hashed_shingles([*before, "\x00SEP\x00", *after], 5)
            if key in exact or any(jaccard(grams, other) >= threshold for other in seen):
                expected.append(pair.pair_id)
                continue
            exact.add(key)
            seen.append(grams)
        assert [p.pair_id for p in dropped] == expected
        assert sum(p.drop_reason == "near-duplicate" for p in dropped) >= len(copies) // 2


def test_distinct_real_pairs_are_not_duplicates(sven: list[RepairPair]) -> None:
    sample = sven[:200]
    kept, dropped = deduplicate(sample)
    # SVEN's own near-duplicates (the same function fixed twice) may go; most pairs stay
    assert len(kept) >= 0.8 * len(sample)
    for pair in dropped:
        assert pair.metadata["duplicate_of"] in {p.pair_id for p in kept}


# ----------------------------------------------------------------------------- decontamination


@pytest.fixture(scope="module")
def index(shared_data_dir: Path):  # type: ignore[no-untyped-def]
    return build_index(["humaneval-pro", "mbpp-pro"], 13, str(shared_data_dir))


def test_planted_humaneval_pro_prompt_is_dropped(
    sven: list[RepairPair], index, shared_data_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    from vul2safe import plugins

    task = plugins.benchmarks.get("humaneval-pro").load(str(shared_data_dir))[17]
    clean = [_with_prompts(p, f"Write a function named {p.func_name}.") for p in sven[:5]]
    planted = _with_prompts(sven[5], "Implement this helper.", "Please do this:\n" + task.prompt)
    kept, dropped = decontaminate([*clean, planted], index)
    assert [p.pair_id for p in dropped] == [planted.pair_id]
    info = dropped[0].metadata["decontamination"]
    assert dropped[0].drop_reason == "contaminated:humaneval-pro"
    assert info["benchmark"] == "humaneval-pro" and info["task_id"] == task.task_id
    assert info["field"].startswith("prompt:") and info["shared_ngrams"] > 10
    assert len(kept) == 5


def test_planted_reference_solution_in_code_is_dropped(
    sven: list[RepairPair], index, shared_data_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    from vul2safe import plugins

    task = plugins.benchmarks.get("mbpp-pro").load(str(shared_data_dir))[3]
    pair = replace(sven[0], fixed=sven[0].fixed + "\n" + str(task.reference))
    _, dropped = decontaminate([pair], index)
    assert dropped[0].metadata["decontamination"]["field"] == "fixed"
    assert dropped[0].metadata["decontamination"]["benchmark"] == "mbpp-pro"


def test_template_text_alone_does_not_count(sven: list[RepairPair], index) -> None:  # type: ignore[no-untyped-def]
    # HumanEval Pro's fixed instruction is in all 164 prompts: template, not content
    instruction = (
        "Write a solution of python file to the following problems, the solution of the "
        "second problem requires single or multiple calls to the first solution."
    )
    kept, dropped = decontaminate([_with_prompts(sven[0], instruction)], index)
    assert kept and not dropped
    assert index.benchmarks["humaneval-pro"]["template_ngrams"] > 0


def test_real_sources_are_clean_against_all_four_benchmarks(
    sven: list[RepairPair], shared_data_dir: Path
) -> None:
    full = build_index(
        ["humaneval-pro", "mbpp-pro", "cyberseceval-instruct", "cyberseceval-autocomplete"],
        13,
        str(shared_data_dir),
    )
    assert {n: i["tasks"] for n, i in full.benchmarks.items()} == {
        "humaneval-pro": 164,
        "mbpp-pro": 378,
        "cyberseceval-instruct": 1916,
        "cyberseceval-autocomplete": 1916,
    }
    kept, dropped = decontaminate(sven, full)
    assert len(kept) == len(sven) and not dropped


def test_unloadable_benchmark_is_an_error_unless_optional(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="humaneval-pro"):
        build_index(["humaneval-pro"], 13, str(tmp_path))
    with pytest.raises(UsageError, match="Unknown benchmark"):
        build_index(["humaneval-prro"], 13, str(tmp_path))
    index = build_index(["humaneval-pro"], 13, str(tmp_path), required=False)
    assert "skipped" in index.benchmarks["humaneval-pro"]


# ----------------------------------------------------------------------------- splits


def _split_commits(pairs: list[RepairPair], by: str = "commit") -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    for pair in pairs:
        seen[group_key(pair, by)].add(str(pair.split))
    return seen


def test_group_split_keeps_each_commit_in_one_split(sven: list[RepairPair]) -> None:
    config = AssembleConfig()
    assigned = assign_splits(sven, config)
    groups = _split_commits(assigned)
    assert all(len(splits) == 1 for splits in groups.values())
    assert len(groups) < len(sven)  # real commits with several pairs were grouped
    counts = {s: sum(p.split == s for p in assigned) for s in ("train", "validation", "test")}
    assert abs(counts["train"] / len(sven) - 0.8) < 0.03
    assert abs(counts["test"] / len(sven) - 0.1) < 0.03
    # deterministic, and independent of the input order
    again = {p.pair_id: p.split for p in assign_splits(list(reversed(sven)), config)}
    assert again == {p.pair_id: p.split for p in assigned}
    other = {p.pair_id: p.split for p in assign_splits(sven, replace(config, seed=1))}
    assert other != again


def test_group_by_project_and_eval_fraction(sven: list[RepairPair]) -> None:
    config = AssembleConfig(group_by="project", eval_fraction=0.1)
    assigned = assign_splits(sven, config)
    assert all(len(s) == 1 for s in _split_commits(assigned, "project").values())
    assert {p.split for p in assigned} == {"train", "validation", "test", "eval"}


def test_bad_split_settings_are_usage_errors(sven: list[RepairPair]) -> None:
    with pytest.raises(UsageError, match="unknown split"):
        assign_splits(sven[:3], AssembleConfig(split_ratios={"train": 0.9, "dev": 0.1}))
    with pytest.raises(UsageError, match="group_by"):
        assign_splits(sven[:3], AssembleConfig(group_by="file"))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- datasets


def _ready(pairs: list[RepairPair]) -> list[RepairPair]:
    out = []
    for pair in pairs:
        spans = {"vulnerable_spans": [[0, 10]], "secure_spans": [[2, 8], [9, 12]]}
        pair = replace(
            pair,
            reflection={"verdict": True, "confidence": 0.9, "reasons": ["3 of 3 votes"]},
            evidence={"scanner": {"before_flagged": True, "after_flagged": False}},
            spans=spans,
        )
        out.append(_with_prompts(pair, f"Write {pair.func_name}.", f"Complete {pair.func_name}."))
    return out


def test_build_dataset_configs_and_schema(sven: list[RepairPair]) -> None:
    pairs = assign_splits(_ready(sven[:60]), AssembleConfig())
    built = build_dataset(pairs)
    assert set(built) == {"pairs", "sft", "rl", "eval"}
    assert sum(d.num_rows for d in built["pairs"].values()) == 60
    assert sum(d.num_rows for d in built["sft"].values()) == 120  # one row per prompt
    assert list(built["eval"]) == ["test"]
    assert built["eval"]["test"].column_names == EVAL_COLUMNS
    test_pairs = [p for p in pairs if p.split == "test"]
    assert built["eval"]["test"].num_rows == 2 * len(test_pairs)
    row = built["rl"]["train"][0]
    assert row["vulnerable_spans"] == [[0, 10]] and row["secure_spans"] == [[2, 8], [9, 12]]
    first = built["pairs"]["train"][0]
    assert first["verdict"] is True and first["confidence"] == 0.9
    assert json.loads(first["evidence"])["scanner"]["before_flagged"] is True
    sft_ids = {r["id"] for d in built["sft"].values() for r in d}
    assert set(built["eval"]["test"]["id"]) <= sft_ids  # the same ids everywhere


def test_empty_splits_are_left_out(sven: list[RepairPair]) -> None:
    pairs = [replace(p, split="train") for p in _ready(sven[:4])]
    built = build_dataset(pairs)
    assert list(built["pairs"]) == ["train"]
    assert len(built["eval"]) == 0


def test_run_stage_drops_with_reasons(sven: list[RepairPair], shared_data_dir: Path) -> None:
    from vul2safe.build.config import load_config

    config = load_config(
        None, {"assemble": {"benchmark_data_dir": str(shared_data_dir)}, "seed": 3}
    )
    assert config.assemble.seed == 3  # the top-level seed reaches the stage
    pairs = _ready(sven[:30])
    dup = replace(pairs[0], pair_id="dup:0")
    result = run_stage([*pairs, dup], BuildContext(output=Path("."), config=config))
    assert [p.drop_reason for p in result.dropped] == ["duplicate"]
    assert result.stats["exact_duplicates"] == 1
    assert set(result.stats["benchmarks"]) == set(config.assemble.decontaminate_against)
    assert sum(result.stats["splits"].values()) == 30


def test_check_benchmarks_fails_fast(shared_data_dir: Path, tmp_path: Path) -> None:
    check_benchmarks(AssembleConfig(benchmark_data_dir=str(shared_data_dir)))
    with pytest.raises(UsageError, match="Hub is offline"):
        check_benchmarks(AssembleConfig())  # tests run with HF_HUB_OFFLINE=1
    with pytest.raises(UsageError, match="does not exist"):
        check_benchmarks(AssembleConfig(benchmark_data_dir=str(tmp_path / "missing")))
    check_benchmarks(AssembleConfig(require_decontamination=False))
