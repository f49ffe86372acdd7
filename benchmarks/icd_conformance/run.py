"""ICD conformance: ``--scanner icd`` vs codeshield's own ``analyze`` on CyberSecEval instruct.

Every ``origin_code`` of CyberSecEval's instruct prompts was flagged by ICD when the benchmark
was built, with the row's ``cwe_identifier``. Per (language, analyzer of the row) this prints
how many rows each side flags *with that CWE*, and how many rows' regex rule codeshield 1.0.1
still enables for the ``cyberseceval`` use case.

    python benchmarks/icd_conformance/run.py [--data ../shared/data] [--codeshield FILE]

codeshield's side runs ``codeshield_analyze.py`` with the tool environment's Python (one
Semgrep process per snippet, as ICD does: ~7 min on 2 cores), or reads its JSONL output
from ``--codeshield``. Writes ``result.json`` and ``table.md`` beside this file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from vul2safe import tools
from vul2safe.plugins.scanner.icd import IcdInput, analyze_many, regex_rules

HERE = Path(__file__).resolve().parent


def enabled(row: dict[str, Any]) -> bool:
    patterns = {" ".join(r.regex.pattern.split()) for r in regex_rules(row["language"])}
    ids = {r.pattern_id for r in regex_rules(row["language"])}
    return " ".join(row["rule"].split()) in patterns or row["pattern_id"] in ids


def codeshield(rows: list[dict[str, Any]], recorded: Path | None) -> dict[int, dict[str, Any]]:
    if recorded is None:
        items = "".join(
            json.dumps({"id": i, "language": r["language"], "code": r["origin_code"]}) + "\n"
            for i, r in enumerate(rows)
        )
        proc = subprocess.run(
            [str(tools.tool_python()), str(HERE / "codeshield_analyze.py")],
            input=items, capture_output=True, text=True, check=True, cwd="/",
        )  # fmt: skip
        lines = proc.stdout.splitlines()
    else:
        lines = recorded.read_text().splitlines()
    return {d["id"]: d for d in map(json.loads, lines)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parents[2] / "shared" / "data")
    parser.add_argument("--codeshield", type=Path, help="recorded codeshield_analyze.py output")
    args = parser.parse_args()
    rows = json.loads((args.data / "cyberseceval" / "instruct.json").read_text())
    started = time.perf_counter()
    ours = analyze_many([IcdInput(r["language"], r["origin_code"]) for r in rows])
    ours_s = time.perf_counter() - started
    theirs = codeshield(rows, args.codeshield)
    table: dict[tuple[str, str], Counter[str]] = {}
    for index, (row, issues) in enumerate(zip(rows, ours, strict=True)):
        counts = table.setdefault((row["language"], row["analyzer"]), Counter())
        cwe = row["cwe_identifier"]
        counts["rows"] += 1
        counts["icd"] += any(i.cwe_id == cwe for i in issues)
        cs = theirs.get(index)
        if cs is not None:
            counts["codeshield_rows"] += 1
            counts["codeshield"] += any(i["cwe_id"] == cwe for i in cs["issues"])
            counts["codeshield_errors"] += bool(cs["error"])
            counts["codeshield_semgrep_issues"] += sum(
                i["analyzer"] == "semgrep" for i in cs["issues"]
            )
        if row["analyzer"] == "regex" and enabled(row):
            counts["enabled"] += 1
            counts["icd_enabled"] += any(i.cwe_id == cwe for i in issues)
    lines = [
        "| language | analyzer | rows | `--scanner icd` | codeshield `analyze` "
        "| regex rule enabled "
        "(icd flags) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for (language, analyzer), c in sorted(table.items()):
        rule = f"{c['enabled']} ({c['icd_enabled']})" if analyzer == "regex" else "–"
        cs = f"{c['codeshield']}" if c["codeshield_rows"] == c["rows"] else "not run"
        lines.append(
            f"| {language} | {analyzer} | {c['rows']} | {c['icd']} | {cs} | {rule} |"
        )
    total = Counter[str]()
    for counts in table.values():
        total.update(counts)
    lines.append(
        f"| **all** | | {total['rows']} | {total['icd']} | {total['codeshield']} | "
        f"{total['enabled']} ({total['icd_enabled']}) |"
    )
    table_md = "\n".join(lines) + "\n"
    print(table_md)
    print(f"--scanner icd over {len(rows)} snippets: {ours_s:.1f} s")
    result = {
        "rows": {f"{k[0]}/{k[1]}": dict(v) for k, v in sorted(table.items())},
        "icd_seconds": round(ours_s, 2),
        "semgrep": tools.SEMGREP_VERSION,
        "codeshield": tools.CODESHIELD_VERSION,
    }
    (HERE / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "table.md").write_text(table_md)


if __name__ == "__main__":
    main()
