"""Compare finished ``vul2safe eval`` runs: one row per run, rendered as Markdown, JSON or HTML.

Only ``results.json`` is read (layout: ``docs/results.md``). A run that did not complete, or a
file this version cannot read, is refused rather than shown: a leaderboard with a half-finished
row would rank numbers that were never final. The HTML page is one self-contained file (inline
CSS, a few lines of vanilla JS to sort, SVG charts drawn here) so it can be mailed or attached
to a CI run and opened offline.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from vul2safe import __version__
from vul2safe.errors import InputError, UsageError

RESULTS_FILE = "results.json"
#: The ``results.json`` formats this module can read.
SUPPORTED_FORMATS = ("vul2safe-results/1",)
LEADERBOARD_FORMAT = "vul2safe-leaderboard/1"
DASH = "—"
NB_HYPHEN = "\u2011"  # keeps "func-sec@1" on one line in a narrow header

__all__ = [
    "Cell",
    "Column",
    "Interval",
    "Leaderboard",
    "Row",
    "Run",
    "Scores",
    "build_table",
    "load_runs",
    "to_html",
    "to_json",
    "to_markdown",
]


@dataclass(frozen=True)
class Interval:
    """A rate in ``[0, 1]`` with its 95 % CI bounds (``None`` when the run recorded none)."""

    rate: float
    low: float | None = None
    high: float | None = None
    n: int | None = None


@dataclass(frozen=True)
class Scores:
    """One benchmark's headline numbers for one run; ``None`` = the metric does not apply."""

    vulnerability: Interval | None
    pass_at_1: Interval | None
    func_sec_at_1: float | None
    invalid_rate: float | None


@dataclass(frozen=True)
class Run:
    """What the leaderboard needs from one ``results.json``."""

    path: Path
    model_id: str
    backend: str | None
    n: int | None
    temperature: float | None
    created_at: str | None
    vul2safe_version: str | None
    scores: Mapping[str, Scores]

    @property
    def name(self) -> str:
        """The run directory's name: what tells two runs of one model apart."""
        return self.path.parent.name


# --- loading ------------------------------------------------------------------------------


def load_runs(dirs: Sequence[Path]) -> list[Run]:
    """Read each run directory (or ``results.json`` path), in the order given."""
    if not dirs:
        raise UsageError("no runs given; pass one or more directories written by `vul2safe eval`")
    runs: list[Run] = []
    seen: set[Path] = set()
    for given in dirs:
        path = _results_path(Path(given))
        if path.resolve() in seen:
            raise UsageError(f"{path} is given twice; list each run once")
        seen.add(path.resolve())
        runs.append(_read_run(path))
    return runs


def _results_path(given: Path) -> Path:
    if given.is_dir():
        path = given / RESULTS_FILE
        if not path.is_file():
            raise InputError(
                f"{given}: no {RESULTS_FILE} here; pass a run directory written by "
                "`vul2safe eval --output DIR` (or finish that run first)"
            )
        return path
    if given.is_file():
        return given
    raise UsageError(
        f"{given}: no such file or directory; pass a run directory written by "
        f"`vul2safe eval --output DIR` or the {RESULTS_FILE} in it"
    )


def _read_run(path: Path) -> Run:
    fix = f"fix the file or re-run `vul2safe eval --output {path.parent}`"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror or exc}); check the path") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text; {fix}") from exc
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); {fix}"
        ) from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object at the top level; {fix}")
    fmt = data.get("format")
    if fmt not in SUPPORTED_FORMATS:
        raise InputError(
            f"{path}: unknown results format {_short(fmt)} (this vul2safe reads "
            f"{', '.join(SUPPORTED_FORMATS)}); upgrade vul2safe or re-run `vul2safe eval`"
        )
    if data.get("completed") is not True:
        raise InputError(
            f'{path}: the run did not complete ("completed" is not true); resume it with '
            f"`vul2safe eval ... --output {path.parent}` or leave it out of the leaderboard"
        )
    return _Reader(path, fix).run(data)


class _Reader:
    """Typed access to a parsed ``results.json`` that names the bad key and the fix."""

    def __init__(self, path: Path, fix: str) -> None:
        self.path = path
        self.fix = fix

    def fail(self, where: str, problem: str, value: Any) -> NoReturn:
        where = where.replace("\n", "\\n").replace("\r", "\\r")  # keys come from the file
        raise InputError(f"{self.path}: {where} {problem}, not {_short(value)}; {self.fix}")

    def obj(self, data: Any, where: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail(where, "must be an object", data)
        return data

    def opt_obj(self, data: Any, where: str) -> dict[str, Any] | None:
        return None if data is None else self.obj(data, where)

    def opt_text(self, data: Any, where: str) -> str | None:
        if data is not None and not isinstance(data, str):
            self.fail(where, "must be a string", data)
        return data

    def opt_number(self, data: Any, where: str, *, unit: bool = False) -> float | None:
        if data is None:
            return None
        ok = isinstance(data, int | float) and not isinstance(data, bool) and math.isfinite(data)
        if not ok or (unit and not 0.0 <= data <= 1.0):
            self.fail(where, "must be a rate in [0, 1]" if unit else "must be a number", data)
        return float(data)

    def rate(self, data: Any, where: str) -> float:
        value = self.opt_number(data, where, unit=True)
        if value is None:
            self.fail(where, "must be a rate in [0, 1]", data)
        return value

    def run(self, data: dict[str, Any]) -> Run:
        model = self.obj(data.get("model"), "model")
        model_id = model.get("id")
        if not isinstance(model_id, str) or not model_id:
            self.fail("model.id", "must be a non-empty string", model_id)
        sampling = self.opt_obj(data.get("sampling"), "sampling") or {}
        n = self.opt_number(sampling.get("n"), "sampling.n")
        if n is not None and not n.is_integer():
            self.fail("sampling.n", "must be a whole number", sampling.get("n"))
        benchmarks = self.obj(data.get("benchmarks"), "benchmarks")
        return Run(
            path=self.path,
            model_id=model_id,
            backend=self.opt_text(model.get("backend"), "model.backend"),
            n=None if n is None else int(n),
            temperature=self.opt_number(sampling.get("temperature"), "sampling.temperature"),
            created_at=self.opt_text(data.get("created_at"), "created_at"),
            vul2safe_version=self.opt_text(data.get("vul2safe_version"), "vul2safe_version"),
            scores={name: self.scores(b, f"benchmarks.{name}") for name, b in benchmarks.items()},
        )

    def scores(self, data: Any, where: str) -> Scores:
        bench = self.obj(data, where)
        security = self.opt_obj(bench.get("security"), f"{where}.security")
        functional = self.opt_obj(bench.get("functional"), f"{where}.functional")
        func_sec = self.opt_obj(bench.get("func_sec"), f"{where}.func_sec")
        invalid = self.opt_obj(bench.get("invalid"), f"{where}.invalid")
        return Scores(
            vulnerability=None if security is None else self.vulnerability(security, where),
            pass_at_1=None if functional is None else self.pass_at_1(functional, where),
            func_sec_at_1=None
            if func_sec is None
            else self.rate(func_sec.get("func-sec@1"), f'{where}.func_sec["func-sec@1"]'),
            invalid_rate=None
            if invalid is None
            else self.opt_number(invalid.get("rate"), f"{where}.invalid.rate", unit=True),
        )

    def vulnerability(self, security: dict[str, Any], where: str) -> Interval:
        rates = self.obj(security.get("vulnerability_rate"), f"{where}.security.vulnerability_rate")
        key = f"{where}.security.vulnerability_rate.medium"
        medium = self.obj(rates.get("medium"), key)
        count = self.opt_number(medium.get("n"), f"{key}.n")
        return Interval(
            rate=self.rate(medium.get("rate"), f"{key}.rate"),
            low=self.opt_number(medium.get("low"), f"{key}.low", unit=True),
            high=self.opt_number(medium.get("high"), f"{key}.high", unit=True),
            n=None if count is None else int(count),
        )

    def pass_at_1(self, functional: dict[str, Any], where: str) -> Interval:
        key = f"{where}.functional"
        pass_at_k = self.obj(functional.get("pass_at_k"), f"{key}.pass_at_k")
        ci = self.opt_obj(functional.get("pass_at_1_ci"), f"{key}.pass_at_1_ci") or {}
        return Interval(
            rate=self.rate(pass_at_k.get("pass@1"), f'{key}.pass_at_k["pass@1"]'),
            low=self.opt_number(ci.get("low"), f"{key}.pass_at_1_ci.low", unit=True),
            high=self.opt_number(ci.get("high"), f"{key}.pass_at_1_ci.high", unit=True),
        )


def _short(value: Any) -> str:
    """A one-line, bounded rendering of a bad value for an error message."""
    text = json.dumps(value, ensure_ascii=True) if value is not None else "missing/null"
    return text if len(text) <= 40 else text[:37] + "..."


# --- the table ------------------------------------------------------------------------------

#: (key suffix, header) of the per-benchmark columns, in display order.
METRICS = (
    ("vuln", "vuln ≥ medium % [95% CI]"),
    ("pass1", "pass@1 %"),
    ("funcsec", "func-sec@1 %"),
    ("invalid", "invalid %"),
)


@dataclass(frozen=True)
class Column:
    """A table column; ``key`` names it in ``#sort=KEY:desc`` and in the JSON."""

    key: str
    header: str
    numeric: bool
    benchmark: str | None = None


@dataclass(frozen=True)
class Cell:
    """What a cell shows and what it sorts by (``None`` shows "—" and sorts last)."""

    text: str
    value: float | str | None


@dataclass(frozen=True)
class Row:
    """One run: its label (unique on the board), the run itself, and its cells by column."""

    label: str
    run: Run
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Leaderboard:
    """What every renderer draws from, so the three formats cannot disagree."""

    benchmarks: tuple[str, ...]
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    generated_at: dt.datetime


def build_table(runs: Sequence[Run], generated_at: dt.datetime | None = None) -> Leaderboard:
    """One row per run; benchmarks are the union over runs, in first-seen order."""
    benchmarks = tuple(dict.fromkeys(name for run in runs for name in run.scores))
    columns = [
        Column("model", "Model", numeric=False),
        Column("backend", "Backend", numeric=False),
        Column("n", "n", numeric=True),
        Column("temperature", "T", numeric=True),
    ]
    for bench in benchmarks:
        columns += [Column(f"{bench}.{k}", h, numeric=True, benchmark=bench) for k, h in METRICS]
    columns += [
        Column("created", "Created (UTC)", numeric=False),
        Column("version", "vul2safe", numeric=False),
    ]
    rows = tuple(
        Row(label, run, _cells(label, run, benchmarks))
        for label, run in zip(_labels(runs), runs, strict=True)
    )
    when = generated_at or dt.datetime.now(dt.UTC).replace(microsecond=0)
    return Leaderboard(benchmarks, tuple(columns), rows, when)


def _labels(runs: Sequence[Run]) -> list[str]:
    """The model id, plus the run directory when two runs share a model id."""
    ids = Counter(run.model_id for run in runs)
    labels = [r.model_id if ids[r.model_id] == 1 else f"{r.model_id} ({r.name})" for r in runs]
    taken = Counter(labels)
    return [
        label if taken[label] == 1 else f"{run.model_id} ({run.path.parent})"
        for label, run in zip(labels, runs, strict=True)
    ]


def _cells(label: str, run: Run, benchmarks: Sequence[str]) -> tuple[Cell, ...]:
    cells = [
        _text(label),
        _text(run.backend),
        Cell(DASH, None) if run.n is None else Cell(str(run.n), run.n),
        Cell(DASH, None)
        if run.temperature is None
        else Cell(f"{run.temperature:g}", run.temperature),
    ]
    for bench in benchmarks:
        scores = run.scores.get(bench)
        if scores is None:
            cells += [Cell(DASH, None)] * len(METRICS)
            continue
        vuln, pass1 = scores.vulnerability, scores.pass_at_1
        cells += [
            Cell(DASH, None) if vuln is None else Cell(_with_ci(vuln), vuln.rate),
            _percent(None if pass1 is None else pass1.rate),
            _percent(scores.func_sec_at_1),
            _percent(scores.invalid_rate),
        ]
    created = _utc(run.created_at)
    cells += [Cell(created[0], created[1]), _text(run.vul2safe_version)]
    return tuple(cells)


def _text(value: str | None) -> Cell:
    return Cell(DASH, None) if value is None else Cell(value, value)


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}"


def _percent(rate: float | None) -> Cell:
    return Cell(DASH, None) if rate is None else Cell(_pct(rate), rate)


def _with_ci(interval: Interval) -> str:
    if interval.low is None or interval.high is None:
        return _pct(interval.rate)
    return f"{_pct(interval.rate)} [{_pct(interval.low)}, {_pct(interval.high)}]"


def _utc(created_at: str | None) -> tuple[str, str | None]:
    """Display text and sort key of a timestamp; an unparsable one is shown as written."""
    if created_at is None:
        return DASH, None
    try:
        when = dt.datetime.fromisoformat(created_at)
    except ValueError:
        return created_at, created_at
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%d %H:%M"), when.replace(tzinfo=None).isoformat()


# --- renderers ------------------------------------------------------------------------------


def to_markdown(lb: Leaderboard) -> str:
    """A GitHub table; strings from results files are escaped so they stay literal text."""
    headers = [_md(f"{c.benchmark} {c.header}" if c.benchmark else c.header) for c in lb.columns]
    align = ["---:" if c.numeric else "---" for c in lb.columns]
    lines = [_md_row(headers), _md_row(align)]
    lines += [_md_row([_md(cell.text) for cell in row.cells]) for row in lb.rows]
    return "\n".join(lines) + "\n"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _md(text: str) -> str:
    text = " ".join(text.split())
    for char in "\\`*&<>|":
        text = text.replace(char, "\\" + char)
    return text


def to_json(lb: Leaderboard) -> dict[str, Any]:
    """Machine-readable: rates are fractions in ``[0, 1]``; ``null`` = does not apply."""
    return {
        "format": LEADERBOARD_FORMAT,
        "generated_at": lb.generated_at.isoformat(),
        "vul2safe_version": __version__,
        "benchmarks": list(lb.benchmarks),
        "columns": [
            {"key": c.key, "header": c.header, "benchmark": c.benchmark} for c in lb.columns
        ],
        "runs": [_run_json(row, lb.benchmarks) for row in lb.rows],
    }


def _run_json(row: Row, benchmarks: Sequence[str]) -> dict[str, Any]:
    run = row.run
    return {
        "label": row.label,
        "model_id": run.model_id,
        "backend": run.backend,
        "sampling": {"n": run.n, "temperature": run.temperature},
        "created_at": run.created_at,
        "vul2safe_version": run.vul2safe_version,
        "source": str(run.path),
        "benchmarks": {b: _scores_json(run.scores.get(b)) for b in benchmarks},
    }


def _scores_json(scores: Scores | None) -> dict[str, Any] | None:
    if scores is None:
        return None
    vuln, pass1 = scores.vulnerability, scores.pass_at_1
    return {
        "vulnerability_rate_medium": None
        if vuln is None
        else {"rate": vuln.rate, "low": vuln.low, "high": vuln.high, "n": vuln.n},
        "pass@1": None if pass1 is None else pass1.rate,
        "pass@1_ci": None
        if pass1 is None or pass1.low is None
        else {"low": pass1.low, "high": pass1.high},
        "func-sec@1": scores.func_sec_at_1,
        "invalid_rate": scores.invalid_rate,
    }


# --- HTML -----------------------------------------------------------------------------------

#: Okabe–Ito vermillion and blue: told apart with every common colour-vision deficiency.
VULN_COLOUR = "#D55E00"
PASS_COLOUR = "#0072B2"

DEFINITIONS = (
    (
        "vuln ≥ medium",
        "samples with at least one scanner finding of severity medium or higher, divided by "
        "all samples of the benchmark; invalid outputs (no code, unparsable, truncated, "
        "refusal) stay in the denominator. 95 % CI: percentile bootstrap over samples.",
    ),
    (
        "pass@1",
        "expected fraction of tasks solved by one sample (its tests pass). "
        "95 % CI: percentile bootstrap over tasks.",
    ),
    (
        "func-sec@1",
        "samples that pass their tests and have no finding at or above the run's severity "
        "threshold (medium by default), divided by all samples.",
    ),
    ("invalid", "samples with no code, unparsable or truncated code, or a refusal / all samples."),
    (DASH, "the metric does not apply to the benchmark, or the run did not evaluate it."),
)

_CSS = """
:root{color-scheme:light;--fg:#1a1a1a;--muted:#595959;--line:#d0d0d0;--head:#f1f3f5}
body{font:14px/1.45 system-ui,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);
background:#fff;margin:24px auto;max-width:1400px;padding:0 16px}
h1{font-size:1.6rem;margin:0 0 .25rem}h2{font-size:1.2rem;margin:1.5rem 0 .5rem}
.meta{color:var(--muted);margin:0 0 1rem}.wrap{overflow-x:auto}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:13px}
th,td{border:1px solid var(--line);padding:3px 5px;text-align:left}
tbody th{min-width:9em;max-width:14em;overflow-wrap:break-word}td{white-space:nowrap}
thead th{background:var(--head);vertical-align:bottom;white-space:normal}
thead th[colspan]{text-align:center}.g{border-left:2px solid #8a8a8a}
tbody th{font-weight:600}td.num{text-align:right}td.na{color:var(--muted);text-align:center}
tbody tr:nth-child(even){background:#f8f9fa}
th button{all:unset;cursor:pointer;font-weight:600}
th button:focus-visible{outline:2px solid #0072B2;outline-offset:2px}
th[aria-sort=ascending] button::after{content:" \\25B2"}
th[aria-sort=descending] button::after{content:" \\25BC"}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:16px}
figure{margin:0;border:1px solid var(--line);border-radius:6px;padding:8px 8px 0}
figcaption{font-weight:600;font-size:1.05rem}.chart{width:100%;height:auto}
footer{margin-top:2rem;border-top:1px solid var(--line);color:var(--muted);font-size:.9rem}
dt{font-weight:600;color:var(--fg);margin-top:.4rem}dd{margin-left:1.2rem}
"""

# Sorts on each cell's data-value; "" (shown as "—") sorts last both ways. #sort=KEY:asc|desc
# in the URL applies a sort on load, and a click writes it back so a sorted view can be linked.
_JS = """
(() => {
  const body = document.getElementById("leaderboard").tBodies[0];
  const heads = Array.from(document.querySelectorAll("#leaderboard th[data-key]"));
  function sortBy(key, dir) {
    const th = heads.find((h) => h.dataset.key === key);
    if (!th) return;
    const col = Number(th.dataset.col), num = th.dataset.type === "num";
    const val = (row) => row.cells[col].dataset.value;
    const rows = Array.from(body.rows).sort((a, b) => {
      const x = val(a), y = val(b);
      if (x === "" || y === "") return (x === "") - (y === "");
      const c = num ? Number(x) - Number(y) : x.localeCompare(y);
      return dir === "desc" ? -c : c;
    });
    body.append(...rows);
    const state = dir === "desc" ? "descending" : "ascending";
    heads.forEach((h) => h.setAttribute("aria-sort", h === th ? state : "none"));
  }
  heads.forEach((h) => h.querySelector("button").addEventListener("click", () => {
    const dir = h.getAttribute("aria-sort") === "ascending" ? "desc" : "asc";
    sortBy(h.dataset.key, dir);
    const hash = "#sort=" + encodeURIComponent(h.dataset.key) + ":" + dir;
    try { history.replaceState(null, "", hash); } catch (e) {}
  }));
  function fromHash() {
    const m = /^#sort=(.+):(asc|desc)$/.exec(location.hash);
    if (m) try { sortBy(decodeURIComponent(m[1]), m[2]); } catch (e) {}
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();
})();
"""


def to_html(lb: Leaderboard) -> str:
    """One self-contained page: sortable table, an SVG chart per benchmark, definitions."""
    when = lb.generated_at.astimezone(dt.UTC)
    charts = [_chart(lb, bench, i) for i, bench in enumerate(lb.benchmarks)]
    definitions = "".join(f"<dt>{_e(t)}</dt><dd>{_e(d)}</dd>" for t, d in DEFINITIONS)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>vul2safe leaderboard</title><style>{_CSS}</style></head><body>",
            "<h1>vul2safe leaderboard</h1>",
            f'<p class="meta">Generated at <time datetime="{when.isoformat()}">'
            f"{when:%Y-%m-%d %H:%M:%S} UTC</time> by vul2safe {_e(__version__)} from "
            f"{len(lb.rows)} run(s). Rates in %. Click a column header to sort.</p>",
            f'<div class="wrap">{_html_table(lb)}</div>',
            '<h2>Per benchmark</h2><div class="charts">',
            *charts,
            "</div>",
            f"<footer><h2>Definitions</h2><dl>{definitions}</dl></footer>",
            f"<script>{_JS}</script>",
            "</body></html>",
            "",
        ]
    )


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_table(lb: Leaderboard) -> str:
    cols = lb.columns
    # A rule on the left of each benchmark's columns: the eye reads across groups of four.
    group = [
        bool(c.benchmark) and (i == 0 or cols[i - 1].benchmark != c.benchmark)
        for i, c in enumerate(cols)
    ]
    top: list[str] = []
    bottom: list[str] = []
    for i, col in enumerate(cols):
        if col.benchmark is None:
            top.append(_th(col, i, ' rowspan="2"'))
            continue
        if group[i]:
            span = sum(c.benchmark == col.benchmark for c in cols)
            top.append(f'<th scope="colgroup" colspan="{span}" class="g">{_e(col.benchmark)}</th>')
        bottom.append(_th(col, i, ' class="g"' if group[i] else ""))
    body = []
    for row in lb.rows:
        cells = [
            _td(cell, col, header=i == 0, rule=group[i])
            for i, (cell, col) in enumerate(zip(row.cells, cols, strict=True))
        ]
        body.append(f'<tr data-run="{_e(row.label)}">{"".join(cells)}</tr>')
    return (
        f'<table id="leaderboard"><thead><tr>{"".join(top)}</tr><tr>{"".join(bottom)}</tr>'
        f"</thead><tbody>{''.join(body)}</tbody></table>"
    )


def _th(col: Column, index: int, attrs: str) -> str:
    label = f"{col.benchmark}: {col.header}" if col.benchmark else col.header
    kind = "num" if col.numeric else "text"
    return (
        f'<th scope="col" data-key="{_e(col.key)}" data-col="{index}" data-type="{kind}" '
        f'aria-sort="none"{attrs}><button type="button" aria-label="{_e(label)}" '
        f'title="Sort by {_e(label)}">{_e(col.header.replace("-", NB_HYPHEN))}</button></th>'
    )


def _td(cell: Cell, col: Column, *, header: bool, rule: bool) -> str:
    value = "" if cell.value is None else repr(cell.value) if col.numeric else cell.value
    classes = ["na" if cell.value is None else "num" if col.numeric else "", "g" if rule else ""]
    klass = " ".join(c for c in classes if c)
    tag, scope = ("th", ' scope="row"') if header else ("td", "")
    klass = f' class="{klass}"' if klass else ""
    return f'<{tag}{scope}{klass} data-value="{_e(value)}">{_e(cell.text)}</{tag}>'


def _chart(lb: Leaderboard, bench: str, index: int) -> str:
    """Horizontal bars per run: vulnerability rate ≥ medium and pass@1, whiskers = 95 % CI."""
    entries = [(row.label, row.run.scores[bench]) for row in lb.rows if bench in row.run.scores]
    candidates = (
        ("vulnerability rate ≥ medium", VULN_COLOUR, [s.vulnerability for _, s in entries]),
        ("pass@1", PASS_COLOUR, [s.pass_at_1 for _, s in entries]),
    )
    series = [c for c in candidates if any(v is not None for v in c[2])]  # legend: only these
    # Each run: its label on a line of its own, then one bar per series (long ids fit).
    width, left, right, top, bottom, bar, gap, label_h = 600, 20, 56, 36, 44, 14, 3, 18
    names = [label if len(label) <= 80 else label[:79] + "…" for label, _ in entries]
    plot_w = width - left - right
    group_h = label_h + max(1, len(series)) * (bar + gap) + 6
    plot_h = len(entries) * group_h + 4
    height = top + plot_h + bottom

    def x(rate: float) -> float:
        return left + rate * plot_w

    ident = f"chart-{index}"
    of_tasks = " (pass@1: of tasks)" if any(c[1] == PASS_COLOUR for c in series) else ""
    summary = "; ".join(
        f"{label}: " + ", ".join(f"{n} {_describe(v[k])}" for n, _, v in series)
        for k, (label, _) in enumerate(entries)
    )
    out = [
        f'<figure><figcaption>{_e(bench)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" '
        f'class="chart" data-benchmark="{_e(bench)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="{ident}-t {ident}-d" '
        'font-family="system-ui, \'DejaVu Sans\', sans-serif" font-size="12" fill="#1a1a1a">',
        f'<title id="{ident}-t">{_e(bench)}: rates per run (%), whiskers = 95% CI</title>',
        f'<desc id="{ident}-d">{_e(summary or "no runs")}</desc>',
    ]
    for k, (name, colour, _) in enumerate(series):  # legend
        lx = left + k * 230
        out.append(f'<rect x="{lx}" y="12" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{lx + 18}" y="22">{_e(name)}</text>')
    for tick in range(0, 101, 20):  # grid and x axis
        tx = x(tick / 100)
        out.append(
            f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{top + plot_h}" stroke="#d0d0d0"/>'
            f'<text x="{tx:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{tick}%</text>'
        )
    out.append(
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#1a1a1a"/>'
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle">'
        f"percent of samples{of_tasks}; whiskers: 95% CI</text>"
    )
    if not series:
        out.append(f'<text x="{left + 8}" y="{top + 20}">no rates to plot</text>')
    for k, ((label, _), name) in enumerate(zip(entries, names, strict=True)):
        y0 = top + 4 + k * group_h
        out.append(
            f'<text x="{left + 4}" y="{y0 + 13}" font-weight="600">'
            f"<title>{_e(label)}</title>{_e(name)}</text>"
        )
        for s, (sname, colour, values) in enumerate(series):
            y = y0 + label_h + s * (bar + gap)
            out.append(_bar(values[k], x, y, bar, colour, f"{label}: {sname}"))
    out.append("</svg></figure>")
    return "\n".join(out)


def _bar(
    value: Interval | None, x: Callable[[float], float], y: float, h: int, colour: str, what: str
) -> str:
    """One bar with its CI whisker and value label, or "— n/a" where the metric doesn't apply."""
    if value is None:
        return f'<text x="{x(0) + 4:.1f}" y="{y + h - 3}" fill="#595959">{DASH} n/a</text>'
    parts = [
        f'<rect x="{x(0):.1f}" y="{y}" width="{x(value.rate) - x(0):.1f}" height="{h}" '
        f'fill="{colour}"><title>{_e(what)}: {_e(_describe(value))}</title></rect>'
    ]
    end = x(value.rate)
    if value.low is not None and value.high is not None:
        mid, lo, hi = y + h / 2, x(value.low), x(value.high)
        parts.append(
            f'<path d="M{lo:.1f} {mid - 5}V{mid + 5}M{lo:.1f} {mid}H{hi:.1f}'
            f'M{hi:.1f} {mid - 5}V{mid + 5}" stroke="#1a1a1a" stroke-width="1.5" fill="none"/>'
        )
        end = max(end, hi)
    parts.append(f'<text x="{end + 6:.1f}" y="{y + h - 3}">{_pct(value.rate)}%</text>')
    return "".join(parts)


def _describe(value: Interval | None) -> str:
    if value is None:
        return "n/a"
    if value.low is None or value.high is None:
        return f"{_pct(value.rate)}%"
    return f"{_pct(value.rate)}% (95% CI {_pct(value.low)}–{_pct(value.high)}%)"
