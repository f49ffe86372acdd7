"""The leaderboard as one self-contained HTML page: a sortable table, an SVG chart per
benchmark and the metric definitions.

Inline CSS, a few lines of vanilla JS to sort, SVG drawn here: the page can be mailed or
attached to a CI run and opened offline. It draws from the same :class:`Leaderboard` as the
Markdown and JSON renderers in :mod:`vul2safe.leaderboard.text`.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable

from vul2safe import __version__
from vul2safe.leaderboard.runs import Interval
from vul2safe.leaderboard.table import DASH, NOTES, Cell, Column, Leaderboard, pct

__all__ = ["to_html"]

NB_HYPHEN = "\u2011"  # keeps "func-sec@1" on one line in a narrow header
#: Okabe–Ito colours: told apart with every common colour-vision deficiency.
VULN_COLOUR = "#D55E00"  # vermillion
ICD_COLOUR = "#E69F00"  # orange
PASS_COLOUR = "#0072B2"  # blue
EXPLOIT_COLOUR = "#009E73"  # bluish green
#: chart series: (name, colour, metric key in NOTES, per task rather than per sample)
SERIES = (
    ("vulnerability rate ≥ medium", VULN_COLOUR, "vuln", False),
    ("ICD insecure-code rate", ICD_COLOUR, "icd", False),
    ("pass@1", PASS_COLOUR, "pass1", True),
    ("func-sec@1 (exploit tests)", EXPLOIT_COLOUR, "funcsec_exploit", True),
)
NOT_APPLICABLE = "the metric does not apply to the benchmark, or the run did not evaluate it."

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
    legend = [*lb.legend(), (DASH, NOT_APPLICABLE)]
    definitions = "".join(f"<dt>{_e(t)}</dt><dd>{_e(d)}</dd>" for t, d in legend)
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
            "<footer><h2>Definitions: where each number comes from</h2>"
            f"<dl>{definitions}</dl></footer>",
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
    title = f"Sort by {label}" + (f". {NOTES[col.metric]}" if col.metric else "")
    return (
        f'<th scope="col" data-key="{_e(col.key)}" data-col="{index}" data-type="{kind}" '
        f'aria-sort="none"{attrs}><button type="button" aria-label="{_e(label)}" '
        f'title="{_e(title)}">{_e(col.header.replace("-", NB_HYPHEN))}</button></th>'
    )


def _td(cell: Cell, col: Column, *, header: bool, rule: bool) -> str:
    value = "" if cell.value is None else repr(cell.value) if col.numeric else cell.value
    classes = ["na" if cell.value is None else "num" if col.numeric else "", "g" if rule else ""]
    klass = " ".join(c for c in classes if c)
    tag, scope = ("th", ' scope="row"') if header else ("td", "")
    klass = f' class="{klass}"' if klass else ""
    return f'<{tag}{scope}{klass} data-value="{_e(value)}">{_e(cell.text)}</{tag}>'


def _chart(lb: Leaderboard, bench: str, index: int) -> str:
    """Horizontal bars per run: the scanners' vulnerability rate, ICD's insecure-code rate,
    pass@1 and func-sec@1 from exploit tests, where the benchmark has them; whiskers = 95 % CI.
    """
    entries = [(row.label, row.run.scores[bench]) for row in lb.rows if bench in row.run.scores]
    values = {
        "vuln": [s.vulnerability for _, s in entries],
        "icd": [s.icd_insecure for _, s in entries],
        "pass1": [s.pass_at_1 for _, s in entries],
        "funcsec_exploit": [s.func_sec_exploit for _, s in entries],
    }
    series = [  # legend: only the series this benchmark has
        (name, colour, values[key])
        for name, colour, key, _ in SERIES
        if any(v is not None for v in values[key])
    ]
    per_task = [name for name, _, key, tasks in SERIES if tasks and any(values[key])]
    # Each run: its label on a line of its own, then one bar per series (long ids fit).
    width, left, right, bottom, bar, gap, label_h = 600, 20, 56, 44, 14, 3, 18
    top = 36 + 18 * ((max(1, len(series)) - 1) // 2)  # two legend entries per line
    names = [label if len(label) <= 80 else label[:79] + "…" for label, _ in entries]
    plot_w = width - left - right
    group_h = label_h + max(1, len(series)) * (bar + gap) + 6
    plot_h = len(entries) * group_h + 4
    height = top + plot_h + bottom

    def x(rate: float) -> float:
        return left + rate * plot_w

    ident = f"chart-{index}"
    of_tasks = f" ({', '.join(per_task)}: of tasks)" if per_task else ""
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
        lx, ly = left + (k % 2) * 260, 12 + (k // 2) * 18
        out.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{lx + 18}" y="{ly + 10}">{_e(name)}</text>')
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
    parts.append(f'<text x="{end + 6:.1f}" y="{y + h - 3}">{pct(value.rate)}%</text>')
    return "".join(parts)


def _describe(value: Interval | None) -> str:
    if value is None:
        return "n/a"
    if value.low is None or value.high is None:
        return f"{pct(value.rate)}%"
    return f"{pct(value.rate)}% (95% CI {pct(value.low)}–{pct(value.high)}%)"
