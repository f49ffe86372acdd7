"""The Semgrep plugin drives the ``osemgrep`` engine binary: same findings as the CLI.

Both come from the tool environment (``vul2safe tools install``): the plugin's engine call
and the ``semgrep`` CLI of the same wheel, on 400 real CyberSecEval snippets in every
language with the merged ``icd`` pack.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from vul2safe import tools
from vul2safe.languages import extension_for
from vul2safe.plugins.scanner import semgrep as semgrep_plugin
from vul2safe.plugins.scanner.semgrep import SemgrepScanner, pack_file
from vul2safe.scanning import ScanOptions, ScanTarget


@pytest.fixture(scope="module", autouse=True)
def _tool_env() -> None:
    status = SemgrepScanner().available()
    if not status.ok:
        pytest.fail(status.reason)


def _targets(shared_data: Path, root: Path, n: int) -> list[ScanTarget]:
    records = json.loads((shared_data / "cyberseceval" / "instruct.json").read_text())
    step = max(1, len(records) // n)
    targets = []
    for index, record in enumerate(records[::step][:n]):
        path = root / f"s{index:04d}{extension_for(record['language'])}"
        path.write_text(record["origin_code"])
        targets.append(ScanTarget(str(index), record["language"], path))
    return targets


@pytest.fixture(scope="module")
def snippets(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[ScanTarget]:
    root = tmp_path_factory.mktemp("code")
    return _targets(shared_data, root, 400)


@pytest.fixture(scope="module")
def cli_findings(snippets: list[ScanTarget]) -> set[tuple[str, str, int, int]]:
    """What the ``semgrep`` CLI of the same wheel finds in the snippets' folder."""
    cli = tools.venv_dir() / "bin" / "semgrep"
    proc = subprocess.run(
        [str(cli), "scan", "--json", "--quiet", "--metrics=off", "--disable-version-check",
         "--disable-nosem", "--no-git-ignore", "--jobs=2", f"--config={pack_file('icd')}",
         str(snippets[0].path.parent)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    return {
        (Path(r["path"]).name, r["check_id"].rsplit(".", 1)[-1], r["start"]["line"], line)
        for r in report["results"]
        for line in [r["end"]["line"]]
    }


@pytest.mark.integration
@pytest.mark.parametrize("processes", [1, 3])
def test_engine_and_cli_find_the_same(
    snippets: list[ScanTarget],
    cli_findings: set[tuple[str, str, int, int]],
    processes: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One engine process, and the batch split over three (what large batches get)."""
    if processes > 1:
        monkeypatch.setattr(semgrep_plugin, "SPLIT_BYTES", 1024)
    options = ScanOptions(jobs=2)
    assert len(semgrep_plugin.split_for_engines(snippets, options.jobs)) == processes
    engine = SemgrepScanner().scan_batch(snippets, options, timeout_s=600)
    ours = {
        (Path(path).name, f.rule_id, f.start_line, f.end_line)
        for path, found in engine.findings.items()
        for f in found
    }
    assert len(ours) > 100  # real findings, not two empty sets
    assert ours == cli_findings


def test_large_batches_are_split_by_cost_small_ones_are_not(tmp_path: Path) -> None:
    """Largest first to the lightest part, weighed superlinearly: one huge function ends up
    (nearly) alone; a 16-sample batch stays in one process."""
    sizes = [600_000, *[20_000] * 40]
    targets = []
    for index, size in enumerate(sizes):
        path = tmp_path / f"s{index}.c"
        path.write_text("x" * size)
        targets.append(ScanTarget(str(index), "c", path))
    parts = semgrep_plugin.split_for_engines(targets, jobs=2)
    assert sorted(len(part) for part in parts) == [1, 20, 20]
    assert [t.sample_id for t in min(parts, key=len)] == ["0"]
    assert sorted(t.sample_id for part in parts for t in part) == sorted(map(str, range(41)))
    assert len(semgrep_plugin.split_for_engines(targets[1:17], jobs=2)) == 1
    assert len(semgrep_plugin.split_for_engines(targets, jobs=1)) == 1


def test_version_is_the_engine_binarys() -> None:
    """The version recorded is what the binary that runs says, not a package's metadata."""
    out = subprocess.run(
        [str(tools.osemgrep()), "--experimental", "--version"], capture_output=True, text=True
    )
    assert SemgrepScanner().version() == out.stdout.strip() == tools.SEMGREP_VERSION


def test_missing_tool_environment_is_one_line_with_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setenv("VUL2SAFE_TOOLS_DIR", str(tmp_path / "nowhere"))
    (tmp_path / "a.py").write_text("import os\nos.system(input())\n")
    proc = subprocess.run(
        [sys.executable, "-m", "vul2safe", "scan", str(tmp_path / "a.py"), "--scanner", "semgrep"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "vul2safe tools install" in lines[0], proc.stderr


def test_nosemgrep_comments_do_not_hide_findings_from_vul2safe_scan(tmp_path: Path) -> None:
    """Model output is untrusted: ``# nosemgrep`` appended by a model must not make the line
    clean. The engine's default honours these comments, so the test can fail."""
    import os
    import sys

    root = tmp_path / "code"
    root.mkdir()
    (root / "gen.py").write_text(
        "import subprocess\n\n\ndef run(cmd):\n    subprocess.call(cmd, shell=True)  # nosemgrep\n"
    )
    (root / "gen.c").write_text(
        "#include <string.h>\nvoid copy(char *in) {\n"
        "    char buf[16];\n    strcpy(buf, in); // nosemgrep\n}\n"
    )
    default = subprocess.run(
        [str(tools.osemgrep()), "--experimental", "--json", "--quiet", "--metrics=off",
         "--no-git-ignore", f"--config={pack_file('icd')}", str(root)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert json.loads(default.stdout)["results"] == []  # the engine's default: hidden
    proc = subprocess.run(
        [sys.executable, "-m", "vul2safe", "scan", str(root), "--scanner=semgrep", "-f", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "VUL2SAFE_HOME": str(tmp_path / "home")},
    )
    assert proc.returncode == 1, proc.stderr
    found = {
        (Path(r["path"]).name, f["start_line"], c)
        for r in json.loads(proc.stdout)["results"]
        for f in r["findings"]
        for c in f["cwe"]
    }
    assert {("gen.py", 5, "CWE-78"), ("gen.c", 4, "CWE-120")} <= found


def test_the_nosem_option_is_part_of_the_cache_key() -> None:
    assert SemgrepScanner.options_id == "disable-nosem"
