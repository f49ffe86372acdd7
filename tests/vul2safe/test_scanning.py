"""The scan engine: batching, isolation of a crashing/hanging file, cache, path mapping.

The scanner here is a throwaway plugin registered for the test (a registry unit test, as
DESIGN.md allows): it runs a real tool process — a tiny Python program that flags lines
containing ``DANGER``, crashes on a file containing ``CRASH`` and hangs on ``HANG`` — so the
engine's timeout, kill and bisection paths run for real.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from vul2safe import hookimpl, plugins
from vul2safe.cache import Cache
from vul2safe.scanning import (
    Availability,
    BatchResult,
    Scanner,
    ScanOptions,
    ScanTarget,
    path_as_printed,
    path_lookup,
    run_tool,
    scan_samples,
)
from vul2safe.schema import Finding, Sample, SampleResult, Severity

TOOL = textwrap.dedent(
    """
    import json, sys, time
    out = {}
    for path in sys.argv[1:]:
        text = open(path).read()
        if "CRASH" in text:
            sys.exit(3)
        if "HANG" in text:
            time.sleep(3600)
        out[path] = [i + 1 for i, line in enumerate(text.splitlines()) if "DANGER" in line]
    print(json.dumps(out))
    """
)


class ToyScanner(Scanner):
    name = "toy"
    languages = frozenset({"python"})
    calls: list[int]

    def __init__(self, tool: Path) -> None:
        self.tool = tool
        self.calls = []

    def version(self) -> str:
        return "1.0"

    def available(self) -> Availability:
        return Availability(True)

    def scan_batch(
        self, targets: Sequence[ScanTarget], options: ScanOptions, timeout_s: float
    ) -> BatchResult:
        import json

        from vul2safe.errors import ScannerFailed

        self.calls.append(len(targets))
        # Only a batch holding the HANG file gets the engine's budget: it sleeps far past any
        # budget, so it times out however loaded the machine is, while a batch that merely
        # starts slowly on busy cores is never cut short (no verdict depends on the clock).
        hangs = any("HANG" in t.path.read_text() for t in targets)
        proc = run_tool(
            [sys.executable, str(self.tool), *(str(t.path) for t in targets)],
            timeout_s=timeout_s if hangs else max(timeout_s, 300.0),
            tool="toy",
        )
        if proc.returncode != 0:
            raise ScannerFailed(f"toy crashed with exit {proc.returncode}")
        result = BatchResult()
        for target in targets:
            if "UNPARSABLE" in target.path.read_text():
                result.errors[str(target.path)] = "toy cannot parse this"
        for path, lines in json.loads(proc.stdout).items():
            result.findings[path] = [
                Finding(
                    "toy", "danger", Severity.HIGH, "HIGH", "danger", path, n, n, 1, 7, ["CWE-1"]
                )
                for n in lines
            ]
        return result


@pytest.fixture
def toy(tmp_path: Path):
    tool = tmp_path / "toy_tool.py"
    tool.write_text(TOOL)
    scanner = ToyScanner(tool)

    class Plugin:
        @hookimpl
        def register_scanners(self, register):  # type: ignore[no-untyped-def]
            register(scanner)

    plugins.load_plugins()
    plugins.pm.register(Plugin(), "toy-plugin")
    plugins.reset_registries()
    yield scanner
    plugins.pm.unregister(name="toy-plugin")
    plugins.reset_registries()


def _samples(codes: dict[str, str]) -> list[SampleResult]:
    return [SampleResult(Sample(k, v, "python", path=f"src/{k}.py")) for k, v in codes.items()]


def test_one_process_per_batch_and_findings_mapped_back(toy: ToyScanner) -> None:
    samples = _samples({f"f{i}": "ok\n" + ("DANGER\n" if i % 2 else "") for i in range(10)})
    run = scan_samples(samples, ["toy"], ScanOptions(use_cache=False))
    assert toy.calls == [10]
    flagged = {r.sample.id: [f.start_line for f in r.findings] for r in run.results}
    assert flagged == {f"f{i}": ([2] if i % 2 else []) for i in range(10)}
    assert run.results[1].findings[0].path == "src/f1.py"
    assert run.scanners["toy"] == {"version": "1.0", "rules_hash": ""}


def test_crash_and_hang_are_isolated_and_the_rest_is_scanned(toy: ToyScanner) -> None:
    codes = {f"f{i}": f"x = {i}\nDANGER\n" for i in range(8)}
    codes["f2"] = "CRASH\n"
    codes["f5"] = "HANG\n"
    options = ScanOptions(use_cache=False, batch_timeout_s=3, file_timeout_s=1)
    run = scan_samples(_samples(codes), ["toy"], options)
    by_id = {r.sample.id: r for r in run.results}
    assert by_id["f2"].errors == ["toy: toy crashed with exit 3"]
    assert by_id["f5"].errors == ["toy: toy did not finish within 1 s"]
    for key in set(codes) - {"f2", "f5"}:
        assert by_id[key].errors == [] and len(by_id[key].findings) == 1, key


def test_cache_serves_unchanged_code_and_misses_changed_code(toy: ToyScanner, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cache = Cache(tmp_path / "c.sqlite3")
    codes = {f"f{i}": f"v{i}\nDANGER\n" for i in range(5)}
    scan_samples(_samples(codes), ["toy"], ScanOptions(), cache=cache)
    codes["f0"] = "changed\n"
    run = scan_samples(_samples(codes), ["toy"], ScanOptions(), cache=cache)
    assert toy.calls == [5, 1]  # only the changed sample is scanned again
    cached = {r.sample.id: r.reports[0].cached for r in run.results}
    assert cached == {"f0": False, "f1": True, "f2": True, "f3": True, "f4": True}
    assert [f.path for f in run.results[1].findings] == ["src/f1.py"]
    run = scan_samples(_samples(codes), ["toy"], ScanOptions(use_cache=False), cache=cache)
    assert toy.calls == [5, 1, 5]


def test_input_errors_pass_through_untouched(toy: ToyScanner) -> None:
    samples = _samples({"good": "DANGER\n"})
    samples.append(SampleResult(Sample("bad", "", "python", "bad.py"), error="empty file"))
    run = scan_samples(samples, ["toy"], ScanOptions(use_cache=False))
    assert [r.errors for r in run.results] == [[], ["empty file"]]
    assert toy.calls == [1]


def test_tool_verdicts_are_cached_but_crashes_are_not(toy: ToyScanner, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c.sqlite3")
    codes = {"ok": "DANGER\n", "bad": "UNPARSABLE\n", "crash": "CRASH\n"}
    first = scan_samples(_samples(codes), ["toy"], ScanOptions(), cache=cache)
    assert [r.errors for r in first.results] == [
        [],
        ["toy: toy cannot parse this"],
        ["toy: toy crashed with exit 3"],
    ]
    toy.calls.clear()
    second = scan_samples(_samples(codes), ["toy"], ScanOptions(), cache=cache)
    assert toy.calls == [1]  # only the crashed file is tried again
    assert [r.errors for r in second.results] == [r.errors for r in first.results]
    assert [r.reports[0].cached for r in second.results] == [True, True, False]


def test_path_lookup_maps_every_printed_form_to_the_target_key(tmp_path: Path) -> None:
    """Relative to the tool's cwd, absolute, or through a symlinked directory: each printed
    form maps to the exact ``str(target.path)``; a file that is not a target maps to None."""
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    code = real / "sub" / "s000001.c"
    code.write_text("int main(void) { return 0; }\n")
    (real / "other.c").write_text("\n")
    key = tmp_path / "link" / "sub" / "s000001.c"
    target = ScanTarget("a", "c", key)

    path_for = path_lookup([target], cwd=str(real))
    assert path_for("sub/s000001.c") == str(key)
    assert path_for(str(code)) == str(key)
    assert path_for(str(key)) == str(key)
    assert path_for("other.c") is None
    assert path_lookup([target])(str(code)) == str(key)
    assert path_as_printed("sub/s000001.c") == "sub/s000001.c"
