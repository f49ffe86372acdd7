"""A self-contained HTML heat map of per-token rewards (``srcode reward --format html``).

Red tokens are charged, green ones paid, the stronger the colour the larger the amount
(scaled per sample by its largest per-token amount, the last token's sequence terms left
out of the scale so they do not wash the rest out). Hovering a token shows its reward. No
scripts, no external assets: the page opens offline and can be attached to an issue.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["render_html"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
section{border:1px solid #ccc;border-radius:6px;padding:1em;margin-bottom:1.5em}
pre{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:14px;line-height:1.5}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 10px;text-align:right}
th{text-align:left}.neg{color:#b00}.pos{color:#070}.legend span{padding:2px 8px}
"""


def _colour(value: float, scale: float) -> str:
    if value == 0 or scale <= 0:
        return "transparent"
    alpha = min(1.0, abs(value) / scale) * 0.85 + 0.1
    rgb = "220,40,40" if value < 0 else "30,160,60"
    return f"rgba({rgb},{alpha:.2f})"


def _sample(record: dict[str, Any]) -> str:
    tokens = record["tokens"]
    inner = [abs(r) for _, r in tokens[:-1] if r] or [abs(r) for _, r in tokens if r]
    scale = max(inner, default=1.0)
    spans = "".join(
        f'<span style="background:{_colour(r, scale)}" title="{r:+.4f}">{html.escape(t)}</span>'
        for t, r in tokens
    )
    terms = "".join(
        f'<tr><th>{html.escape(k)}</th><td class="{"neg" if v < 0 else "pos"}">{v:+.3f}</td></tr>'
        for k, v in record["terms"].items()
    )
    findings = "".join(
        f"<li>{html.escape(f['scanner'])} {html.escape(f['rule'])} ({html.escape(f['severity'])},"
        f" line {f['line']}) {html.escape(', '.join(f['cwe']))}</li>"
        for f in record.get("findings", [])
    )
    functional = html.escape(record.get("functional_detail", ""))
    total = record["reward"]
    return (
        f"<section><h2>{html.escape(str(record['id']))}: "
        f'<span class="{"neg" if total < 0 else "pos"}">{total:+.3f}</span></h2>'
        f"<p>status {html.escape(record.get('status', ''))}; functional: {functional}; "
        f"{len(record.get('blocks', []))} code block(s) scanned</p>"
        f"<table>{terms}</table>"
        + (f"<ul>{findings}</ul>" if findings else "")
        + f"<pre>{spans}</pre></section>"
    )


def render_html(records: list[dict[str, Any]], title: str = "srcode reward") -> str:
    """One page: a legend, then each sample's total, terms, findings and token heat map."""
    legend = (
        '<p class="legend"><span style="background:rgba(220,40,40,.8)">charged</span> '
        '<span style="background:rgba(30,160,60,.8)">paid</span> '
        "(hover a token for its reward; the last token carries the sequence terms)</p>"
    )
    body = "".join(_sample(r) for r in records)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"{legend}{body}</body></html>\n"
    )
