"""The leaderboard: loading finished runs, the table, and its Markdown/JSON/HTML renderings.

The HTML page is opened in real headless Chromium: the sort runs as JavaScript, so only a
browser can show the rows actually moved.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from vul2safe.errors import InputError, UsageError, Vul2SafeError
from vul2safe.leaderboard import build_table, load_runs, pct, to_html, to_json, to_markdown

QWEN = "Qwen/Qwen2.5-Coder-1.5B-Instruct"
DEEPSEEK = "deepseek-ai/deepseek-coder-1.3b-instruct"
EVIL = 'evil/<script>alert("pwned")</script>'
GENERATED = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def _interval(flagged: int, total: int, low: float, high: float) -> dict[str, Any]:
    return {"rate": flagged / total, "low": low, "high": high, "n": total}


def _bench(
    name: str,
    *,
    n_tasks: int,
    n: int,
    flagged: int,
    ci: tuple[float, float],
    invalid: int,
    passed: tuple[float, float, float] | None = None,
    func_sec: float | None = None,
) -> dict[str, Any]:
    """One benchmark section as docs/results.md lays it out."""
    total = n_tasks * n
    medium = _interval(flagged, total, *ci)
    high = _interval(flagged // 2, total, 0.0, ci[1] / 2)
    return {
        "kind": "both" if passed else "security",
        "dataset": {
            "name": name,
            "version": "1",
            "hash": "sha256:" + "ab" * 32,
            "n_tasks": n_tasks,
            "source": f"/data/{name}",
        },
        "n_samples": total,
        "invalid": {
            "no_code": invalid,
            "unparsable": 0,
            "truncated": 0,
            "refusal": 0,
            "total": invalid,
            "rate": invalid / total,
        },
        "security": {
            "n_samples": total,
            "n_scanned": total - invalid,
            "vulnerability_rate": {"medium": medium, "high": high},
            "per_cwe": {"CWE-78": {"n_flagged": flagged, "rate": flagged / total}},
            "per_language": {"python": {"n_samples": total, "medium": medium, "high": high}},
            "scanners": ["bandit", "semgrep"],
        },
        "functional": None
        if passed is None
        else {
            "pass_at_k": {"pass@1": passed[0], f"pass@{n}": min(1.0, passed[0] * 1.5)},
            "pass_at_1_ci": {"low": passed[1], "high": passed[2], "confidence": 0.95},
            "n_tasks_scored": n_tasks,
        },
        "func_sec": None if func_sec is None else {"func-sec@1": func_sec},
    }


def _results(
    model: str, backend: str, n: int, temperature: float, created: str, *benches: dict[str, Any]
) -> dict[str, Any]:
    return {
        "format": "vul2safe-results/1",
        "completed": True,
        "vul2safe_version": "0.1.0",
        "git_hash": "8cb3222f00d1",
        "created_at": created,
        "model": {
            "id": model,
            "revision": None,
            "backend": backend,
            "mode": "chat",
            "chat_template": None,
        },
        "sampling": {
            "n": n,
            "temperature": temperature,
            "top_p": 0.95,
            "max_tokens": 512,
            "seed": 0,
            "stop": [],
        },
        "severity_threshold": "medium",
        "scanners": {"bandit": {"version": "1.9.4", "rules_hash": ""}},
        "benchmarks": {b["dataset"]["name"]: b for b in benches},
    }


def qwen_results() -> dict[str, Any]:
    """humaneval-pro (security + tests) and cyberseceval-instruct (security only)."""
    return _results(
        QWEN,
        "transformers",
        2,
        0.8,
        "2026-11-22T02:30:00+00:00",
        _bench(
            "humaneval-pro",
            n_tasks=5,
            n=2,
            flagged=2,
            ci=(0.0, 0.5),
            invalid=1,
            passed=(0.5, 0.3, 0.7),
            func_sec=0.4,
        ),
        _bench("cyberseceval-instruct", n_tasks=8, n=2, flagged=4, ci=(0.0625, 0.5), invalid=2),
    )


def deepseek_results() -> dict[str, Any]:
    """Only cyberseceval-instruct, greedy, one sample per task."""
    return _results(
        DEEPSEEK,
        "vllm",
        1,
        0.0,
        "2026-11-21T23:10:00-05:00",
        _bench("cyberseceval-instruct", n_tasks=8, n=1, flagged=3, ci=(0.125, 0.75), invalid=0),
    )


def evil_results() -> dict[str, Any]:
    """A model id that would run as script if the page did not escape it."""
    return _results(
        EVIL,
        "openai",
        4,
        0.2,
        "2026-11-20T08:00:00+00:00",
        _bench("cyberseceval-instruct", n_tasks=8, n=4, flagged=2, ci=(0.0, 0.15625), invalid=5),
        _bench(
            "humaneval-pro",
            n_tasks=5,
            n=4,
            flagged=5,
            ci=(0.1, 0.45),
            invalid=1,
            passed=(0.35, 0.1, 0.6),
            func_sec=0.2,
        ),
    )


def write_run(root: Path, name: str, results: dict[str, Any]) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(results, indent=2))
    (run / "samples.jsonl").write_text("")
    return run


@pytest.fixture
def run_dirs(tmp_path: Path) -> list[Path]:
    return [
        write_run(tmp_path, "qwen-t0.8", qwen_results()),
        write_run(tmp_path, "deepseek-greedy", deepseek_results()),
        write_run(tmp_path, "evil", evil_results()),
    ]


def test_markdown_cells(run_dirs: list[Path]) -> None:
    text = to_markdown(build_table(load_runs(run_dirs), generated_at=GENERATED))
    he, cs = "humaneval-pro", "cyberseceval-instruct"
    metrics = ["vuln ≥ medium % [95% CI]", "pass@1 %", "func-sec@1 (static) %", "invalid %"]
    header = ["Model", "Backend", "n", "T"]
    header += [f"{b} {m}" for b in (he, cs) for m in metrics]
    header += ["Created (UTC)", "vul2safe"]
    assert text.splitlines() == [
        "| " + " | ".join(header) + " |",
        "| --- | --- | ---: | ---: | " + "---: | " * 8 + "--- | --- |",
        f"| {QWEN} | transformers | 2 | 0.8 | 20.0 [0.0, 50.0] | 50.0 | 40.0 | 10.0 "
        "| 25.0 [6.2, 50.0] | — | — | 12.5 | 2026-11-22 02:30 | 0.1.0 |",
        f"| {DEEPSEEK} | vllm | 1 | 0 | — | — | — | — "
        "| 37.5 [12.5, 75.0] | — | — | 0.0 | 2026-11-22 04:10 | 0.1.0 |",
        '| evil/\\<script\\>alert("pwned")\\</script\\> | openai | 4 | 0.2 | 25.0 [10.0, 45.0] '
        "| 35.0 | 20.0 | 5.0 | 6.2 [0.0, 15.6] | — | — | 15.6 | 2026-11-20 08:00 | 0.1.0 |",
    ]


def test_json_is_numbers(run_dirs: list[Path]) -> None:
    data = to_json(build_table(load_runs(run_dirs), generated_at=GENERATED))
    assert json.loads(json.dumps(data)) == data
    assert data["format"] == "vul2safe-leaderboard/1"
    assert data["generated_at"] == "2026-11-23T09:00:00+00:00"
    assert data["benchmarks"] == ["humaneval-pro", "cyberseceval-instruct"]
    qwen, deepseek, evil = data["runs"]
    assert [r["model_id"] for r in data["runs"]] == [QWEN, DEEPSEEK, EVIL]
    assert qwen["sampling"] == {"n": 2, "temperature": 0.8}
    assert qwen["backend"] == "transformers"
    assert qwen["benchmarks"]["humaneval-pro"] == {
        "vulnerability_rate_medium": {"rate": 0.2, "low": 0.0, "high": 0.5, "n": 10},
        "pass@1": 0.5,
        "pass@1_ci": {"low": 0.3, "high": 0.7},
        "func-sec@1": 0.4,
        "invalid_rate": 0.1,
        "icd_insecure_code_rate": None,  # not a CyberSecEval run
        "func-sec@1_exploit_tests": None,  # no exploit tests
    }
    assert qwen["benchmarks"]["cyberseceval-instruct"]["pass@1"] is None
    assert qwen["benchmarks"]["cyberseceval-instruct"]["func-sec@1"] is None
    assert deepseek["benchmarks"]["humaneval-pro"] is None
    assert deepseek["benchmarks"]["cyberseceval-instruct"]["invalid_rate"] == 0.0
    assert (
        evil["benchmarks"]["cyberseceval-instruct"]["vulnerability_rate_medium"]["rate"] == 0.0625
    )
    assert evil["source"].endswith("evil/results.json")
    keys = [c["key"] for c in data["columns"]]
    assert keys[:6] == [
        "model",
        "backend",
        "n",
        "temperature",
        "humaneval-pro.vuln",
        "humaneval-pro.pass1",
    ]


def test_same_model_twice_is_labelled_by_run_dir(tmp_path: Path) -> None:
    first = write_run(tmp_path, "seed0", qwen_results())
    second = write_run(tmp_path, "seed1", qwen_results())
    other = write_run(tmp_path, "other", deepseek_results())
    table = build_table(load_runs([first, second / "results.json", other]))
    assert [row.label for row in table.rows] == [f"{QWEN} (seed0)", f"{QWEN} (seed1)", DEEPSEEK]


def test_same_run_twice_is_refused(run_dirs: list[Path]) -> None:
    with pytest.raises(UsageError, match="given twice"):
        load_runs([run_dirs[0], run_dirs[0] / "results.json"])


def _edit(run: Path, change: Any) -> Path:
    path = run / "results.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return run


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda d: d.update(completed=False), InputError, "did not complete"),
        (lambda d: d.pop("completed"), InputError, "did not complete"),
        (lambda d: d.update(format="vul2safe-results/9"), InputError, "unknown results format"),
        (lambda d: d.pop("format"), InputError, "unknown results format"),
        (lambda d: d["model"].pop("id"), InputError, "model.id must be a non-empty string"),
        (
            lambda d: d["benchmarks"]["humaneval-pro"]["functional"]["pass_at_k"].update(
                {"pass@1": "0.5"}
            ),
            InputError,
            'benchmarks.humaneval-pro.functional.pass_at_k["pass@1"] must be a rate in [0, 1]',
        ),
        (
            lambda d: d["benchmarks"]["humaneval-pro"]["security"]["vulnerability_rate"].pop(
                "medium"
            ),
            InputError,
            "vulnerability_rate.medium must be an object",
        ),
        (
            lambda d: d["benchmarks"]["cyberseceval-instruct"].update(
                headline={"metric": "icd_insecure_code_rate", "rate": 1.5}
            ),
            InputError,
            "benchmarks.cyberseceval-instruct.headline.rate must be a rate in [0, 1]",
        ),
        (
            lambda d: d["benchmarks"]["humaneval-pro"].update(
                func_sec={"func-sec@1": 0.5, "source": "exploit tests"}, func_sec_static=[0.4]
            ),
            InputError,
            "benchmarks.humaneval-pro.func_sec_static must be an object",
        ),
    ],
)
def test_bad_results_are_refused_in_one_line(
    tmp_path: Path, change: Any, error: type[Vul2SafeError], message: str
) -> None:
    run = _edit(write_run(tmp_path, "run", qwen_results()), change)
    with pytest.raises(error) as caught:
        load_runs([run])
    text = str(caught.value)
    assert message in text
    assert text.startswith(str(run / "results.json") + ": ")
    assert "\n" not in text


def test_missing_and_malformed_runs(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file or directory; pass a run directory"):
        load_runs([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: no results.json here"):
        load_runs([tmp_path / "empty"])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text('{"format": "vul2safe-results/1",\n "completed": tru')
    with pytest.raises(InputError, match=r"not valid JSON \(.* at line 2, column 15\)") as caught:
        load_runs([broken])
    assert "\n" not in str(caught.value)
    with pytest.raises(UsageError, match="no runs given"):
        load_runs([])


def test_benchmarks_are_a_union_in_first_seen_order(run_dirs: list[Path]) -> None:
    runs = load_runs([run_dirs[1], run_dirs[0]])
    table = build_table(runs)
    assert table.benchmarks == ("cyberseceval-instruct", "humaneval-pro")
    assert [r.label for r in table.rows] == [DEEPSEEK, QWEN]


def test_html_escapes_strings_from_results(run_dirs: list[Path]) -> None:
    page = to_html(build_table(load_runs(run_dirs), generated_at=GENERATED))
    assert "<script>alert" not in page
    assert page.count("<script") == 1  # ours
    assert "evil/&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in page
    for external in ("http://", "https://", "//cdn", "<link", "@import", "src="):
        assert external not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "2026-11-23 09:00:00 UTC" in page
    # the chart's text alternative carries the numbers, CI included
    assert f"{QWEN}: vulnerability rate ≥ medium 25.0% (95% CI 6.2–50.0%)" in page
    assert f"{QWEN}: vulnerability rate ≥ medium 20.0% (95% CI 0.0–50.0%), pass@1 50.0%" in page
    assert "invalid outputs" in page and "stay in the denominator" in page


# --- the page in a real browser -------------------------------------------------------------


def find_chromium() -> str:
    """Called in the test body, so a missing browser is a FAILED test, not a setup error."""
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            "chromium not found: the leaderboard page is tested in headless Chromium; "
            "install it with `apt-get install -y chromium`"
        )
    return found


def _browse(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [
            find_chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=2000",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


class _Dom(HTMLParser):
    """What the tests look at in the DOM Chromium dumped after the page's script ran."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: list[str | None] = []
        self.rows: list[str] = []
        self.charts: list[str] = []
        self.scripts = 0
        self.sorted: dict[str, str] = {}
        self._in_body = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "table":
            self.tables.append(attr.get("id"))
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append(attr["data-run"] or "")
        elif tag == "svg":
            self.charts.append(attr["data-benchmark"] or "")
        elif tag == "script":
            self.scripts += 1
        elif tag == "th" and attr.get("aria-sort") not in (None, "none"):
            self.sorted[attr["data-key"] or ""] = attr["aria-sort"] or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False


@pytest.fixture
def page(run_dirs: list[Path], tmp_path: Path) -> Path:
    path = tmp_path / "site" / "leaderboard.html"
    path.parent.mkdir()
    path.write_text(to_html(build_table(load_runs(run_dirs))), encoding="utf-8")
    return path


def test_page_renders_table_and_one_chart_per_benchmark(page: Path, tmp_path: Path) -> None:
    dom = _Dom(_browse(page.as_uri(), tmp_path / "profile", "--dump-dom").stdout)
    assert dom.tables == ["leaderboard"]
    assert dom.rows == [QWEN, DEEPSEEK, EVIL]
    assert dom.charts == ["humaneval-pro", "cyberseceval-instruct"]
    assert dom.scripts == 1  # the model id stayed text
    assert dom.sorted == {}


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("cyberseceval-instruct.vuln:desc", [DEEPSEEK, QWEN, EVIL]),  # 37.5, 25.0, 6.2
        ("cyberseceval-instruct.vuln:asc", [EVIL, QWEN, DEEPSEEK]),
        ("humaneval-pro.pass1:asc", [EVIL, QWEN, DEEPSEEK]),  # "—" last either way
        ("humaneval-pro.pass1:desc", [QWEN, EVIL, DEEPSEEK]),
        ("model:desc", [QWEN, EVIL, DEEPSEEK]),
        ("n:desc", [EVIL, QWEN, DEEPSEEK]),
    ],
)
def test_hash_sorts_on_load(page: Path, tmp_path: Path, sort: str, order: list[str]) -> None:
    url = f"{page.as_uri()}#sort={sort}"
    dom = _Dom(_browse(url, tmp_path / "profile", "--dump-dom").stdout)
    assert dom.rows == order
    key, direction = sort.split(":")
    assert dom.sorted == {key: "descending" if direction == "desc" else "ascending"}


def test_screenshot(page: Path, tmp_path: Path) -> None:
    png = tmp_path / "leaderboard.png"
    _browse(
        page.as_uri(),
        tmp_path / "profile",
        f"--screenshot={png}",
        "--window-size=1280,900",
        "--hide-scrollbars",
    )
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 900)
    assert len(data) > 30_000, "the screenshot is nearly blank"


# --- runs scored by the real code: CyberSecEval's ICD headline, CWEval's exploit tests ----------

CSE, CWE = "cyberseceval-instruct", "cweval"
MIXED, SECURE = "mixed/answers", "secure/answers"
#: CWEval tasks whose secure reference passes every test and whose unsafe one fails security
CWEVAL_TASKS = ("py/cwe_078_0", "py/cwe_022_0")
HARMLESS_RUST = "```rust\nfn main() {}\n```"


def _score(name: str, tasks: list[Any], answers: list[tuple[Any, str]], scanner: str) -> Any:
    """One benchmark's ``results.json`` block and scanner versions, from the scoring code
    ``vul2safe eval MODEL`` runs (:func:`vul2safe.evaluate.score_benchmark`)."""
    from vul2safe import plugins
    from vul2safe.evaluate import EvalConfig, EvalProgress, LoadedBenchmark, score_benchmark

    counts: dict[str, int] = {}
    rows = []
    for task, answer in answers:
        index = counts[task.task_id] = counts.get(task.task_id, -1) + 1
        rows.append({"task": task.task_id, "sample_index": index, "completion": answer,
                     "field": "solution"})  # fmt: skip
    config = EvalConfig(model="m", benchmarks=[name], output=Path("unused"), scanners=[scanner])
    bench = plugins.benchmarks.get(name)
    loaded = LoadedBenchmark(bench, tasks, "shared data")
    entry, _, meta = score_benchmark(config, loaded, rows, None, EvalProgress())
    return entry, meta


def _scored_results(model: str, shared_data: Path, *, secure: bool) -> dict[str, Any]:
    """CyberSecEval: ICD-flagged original code (unless ``secure``) and a harmless answer per
    task; CWEval: the secure reference and the unsafe one (or the secure one twice)."""
    from vul2safe import plugins

    cse = plugins.benchmarks.get(CSE)
    rust = [
        t
        for t in cse.load(shared_data / "cyberseceval", languages=["rust"])
        if "```" not in t.metadata["origin_code"]  # CyberSecEval's extraction cuts there
    ][:2]
    insecure = [f"```rust\n{t.metadata['origin_code']}\n```" for t in rust]
    cse_answers = [
        (t, HARMLESS_RUST if secure else bad) for t, bad in zip(rust, insecure, strict=True)
    ] + [(t, HARMLESS_RUST) for t in rust]
    cyber, cyber_meta = _score(CSE, rust, cse_answers, "icd")
    cweval_tasks = [t for t in plugins.benchmarks.get(CWE).load(shared_data / "cweval")
                    if t.task_id in CWEVAL_TASKS]  # fmt: skip
    cwe_answers = [(t, t.reference) for t in cweval_tasks] + [
        (t, t.reference if secure else t.metadata["unsafe_reference"]) for t in cweval_tasks
    ]
    cweval, cweval_meta = _score(CWE, cweval_tasks, cwe_answers, "bandit")
    results = _results(model, "openai", 2, 0.8, "2026-11-25T10:00:00+00:00")
    results["scanners"] = {**cyber_meta, **cweval_meta}
    results["benchmarks"] = {CSE: cyber, CWE: cweval}
    return results


@pytest.fixture(scope="module")
def scored(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from vul2safe.sandbox import sandbox_available

    ok, reason = sandbox_available()
    if not ok:
        pytest.fail(f"no working bubblewrap: {reason}; apt-get install bubblewrap")
    root = tmp_path_factory.mktemp("scored")
    return {
        model: write_run(root, model.replace("/", "-"), _scored_results(model, shared_data,
                                                                        secure=secure))
        for model, secure in ((MIXED, False), (SECURE, True))
    }  # fmt: skip


def _entry(run: Path, name: str) -> dict[str, Any]:
    return json.loads((run / "results.json").read_text())["benchmarks"][name]


@pytest.mark.integration
def test_real_results_hold_what_the_columns_show(scored: dict[str, Path]) -> None:
    """The blocks the columns read, as the scoring code wrote them."""
    cyber, cweval = _entry(scored[MIXED], CSE), _entry(scored[MIXED], CWE)
    assert cyber["headline"]["metric"] == "icd_insecure_code_rate"
    assert (cyber["headline"]["n_flagged"], cyber["headline"]["n_samples"]) == (2, 4)
    assert cweval["func_sec"]["source"] == "exploit tests"
    assert cweval["func_sec"]["func-sec@1"] == 0.5  # each unsafe reference fails security
    # the scanners miss the path traversal (py/cwe_022_0): the static number differs
    assert cweval["func_sec_static"]["func-sec@1"] != 0.5
    assert _entry(scored[SECURE], CSE)["headline"]["n_flagged"] == 0
    assert _entry(scored[SECURE], CWE)["func_sec"]["func-sec@1"] == 1.0


@pytest.mark.integration
def test_markdown_labels_icd_and_exploit_test_columns(scored: dict[str, Path]) -> None:
    runs = load_runs([scored[MIXED], scored[SECURE]])
    lines = to_markdown(build_table(runs, generated_at=GENERATED)).splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    cse = [h.removeprefix(f"{CSE} ") for h in header if h.startswith(CSE)]
    cwe = [h.removeprefix(f"{CWE} ") for h in header if h.startswith(CWE)]
    # each optional column only where the benchmark has it
    assert cse == ["vuln ≥ medium % [95% CI]", "ICD insecure-code % [95% CI]", "pass@1 %",
                   "func-sec@1 (static) %", "invalid %"]  # fmt: skip
    assert cwe == ["vuln ≥ medium % [95% CI]", "pass@1 %", "func-sec@1 (static) %",
                   "func-sec@1 (exploit tests) % [95% CI]", "invalid %"]  # fmt: skip
    mixed = dict(zip(header, (c.strip() for c in lines[2].strip("|").split("|")), strict=True))
    headline, cweval = _entry(scored[MIXED], CSE)["headline"], _entry(scored[MIXED], CWE)
    assert mixed[f"{CSE} ICD insecure-code % [95% CI]"] == (
        f"50.0 [{pct(headline['low'])}, {pct(headline['high'])}]"
    )
    ci = cweval["func_sec"]["func-sec@1_ci"]
    assert mixed[f"{CWE} func-sec@1 (exploit tests) % [95% CI]"] == (
        f"50.0 [{pct(ci['low'])}, {pct(ci['high'])}]"
    )
    assert mixed[f"{CWE} func-sec@1 (static) %"] == pct(cweval["func_sec_static"]["func-sec@1"])
    secure = dict(zip(header, (c.strip() for c in lines[3].strip("|").split("|")), strict=True))
    assert secure[f"{CSE} ICD insecure-code % [95% CI]"].startswith("0.0 ")
    assert secure[f"{CWE} func-sec@1 (exploit tests) % [95% CI]"].startswith("100.0 ")
    legend = "\n".join(lines[4:])
    assert "Where the numbers come from:" in legend
    assert "- **ICD insecure-code % [95% CI]**: CyberSecEval's published metric" in legend
    assert "**func-sec@1 (exploit tests) % [95% CI]**: dynamic" in legend
    assert "**func-sec@1 (static) %**: static: samples that pass their tests and have no " in (
        legend
    )


@pytest.mark.integration
def test_json_carries_both_numbers_and_their_sources(scored: dict[str, Path]) -> None:
    data = to_json(build_table(load_runs([scored[MIXED], scored[SECURE]])))
    mixed = data["runs"][0]["benchmarks"]
    headline, cweval = _entry(scored[MIXED], CSE)["headline"], _entry(scored[MIXED], CWE)
    assert mixed[CSE]["icd_insecure_code_rate"] == {
        "rate": 0.5, "low": headline["low"], "high": headline["high"], "n": 4,
        "detector": headline["detector"],
    }  # fmt: skip
    assert (
        mixed[CSE]["vulnerability_rate_medium"]["rate"]
        == (_entry(scored[MIXED], CSE)["security"]["vulnerability_rate"]["medium"]["rate"])
    )
    assert mixed[CWE]["func-sec@1_exploit_tests"] == {
        "rate": 0.5, **cweval["func_sec"]["func-sec@1_ci"],
    }  # fmt: skip
    assert mixed[CWE]["func-sec@1"] == cweval["func_sec_static"]["func-sec@1"]
    assert mixed[CWE]["icd_insecure_code_rate"] is None
    assert mixed[CSE]["func-sec@1_exploit_tests"] is None
    notes = {c["key"]: c.get("note", "") for c in data["columns"]}
    assert notes[f"{CSE}.icd"].startswith("CyberSecEval's published metric")
    assert 'source "exploit tests"' in notes[f"{CWE}.funcsec_exploit"]
    assert notes[f"{CWE}.funcsec"].startswith("static:")
    assert f"{CWE}.icd" not in notes and f"{CSE}.funcsec_exploit" not in notes


@pytest.mark.integration
def test_page_shows_and_sorts_the_new_columns(scored: dict[str, Path], tmp_path: Path) -> None:
    page = tmp_path / "lb.html"
    page.write_text(to_html(build_table(load_runs([scored[MIXED], scored[SECURE]]))))
    text = page.read_text()
    assert 'aria-label="cyberseceval-instruct: ICD insecure-code % [95% CI]"' in text
    assert 'aria-label="cweval: func-sec@1 (exploit tests) % [95% CI]"' in text
    assert "<dt>ICD insecure-code % [95% CI]</dt><dd>CyberSecEval&#x27;s published metric" in text
    assert "<dt>func-sec@1 (exploit tests) % [95% CI]</dt><dd>dynamic:" in text
    # the charts plot the new numbers, CI included, in their text alternative
    assert f"{MIXED}: vulnerability rate ≥ medium" in text
    assert "ICD insecure-code rate 50.0% (95% CI" in text
    assert "func-sec@1 (exploit tests) 50.0% (95% CI" in text
    for sort, order in (
        (f"{CSE}.icd:desc", [MIXED, SECURE]),
        (f"{CWE}.funcsec_exploit:desc", [SECURE, MIXED]),
        (f"{CWE}.funcsec_exploit:asc", [MIXED, SECURE]),
    ):
        dom = _Dom(_browse(f"{page.as_uri()}#sort={sort}", tmp_path / "p", "--dump-dom").stdout)
        assert dom.rows == order, sort
        assert dom.charts == [CSE, CWE]


@pytest.mark.integration
def test_eval_summary_shows_the_same_labelled_numbers(
    scored: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from vul2safe.cli.eval_run import print_summary

    results = json.loads((scored[MIXED] / "results.json").read_text())
    print_summary(results)
    out = capsys.readouterr().out
    flat = " ".join(out.split())
    for label in ("ICD insecure-code", "func-sec@1 (exploit tests)", "func-sec@1 (static)"):
        assert label in flat, label
    headline, cweval = results["benchmarks"][CSE]["headline"], results["benchmarks"][CWE]
    assert f"50.0 [{pct(headline['low'])}, {pct(headline['high'])}]" in out
    ci = cweval["func_sec"]["func-sec@1_ci"]
    assert f"50.0 [{pct(ci['low'])}, {pct(ci['high'])}]" in out
    assert "ICD insecure-code: CyberSecEval's published metric" in flat
    assert "func-sec@1 (exploit tests): dynamic:" in flat
