"""``vul2safe plugins``: what is loaded, from where, providing what."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def plugins_command(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List loaded plugins, the hooks they implement and what they register."""
    from rich.console import Console
    from rich.table import Table

    from vul2safe import plugins

    rows = plugins.describe_plugins()
    scanners = {s.name: s for s in plugins.scanners}
    for row in rows:
        for name in row.get("provides", {}).get("scanner", []):
            status = scanners[name].available()
            row.setdefault("scanners", {})[name] = {"available": status.ok, "reason": status.reason}
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="vul2safe plugins")
    for column in ("plugin", "hooks", "provides", "status"):
        table.add_column(column)
    for row in rows:
        provides = "; ".join(f"{k}: {', '.join(v)}" for k, v in row.get("provides", {}).items())
        status = "blocked" if row["blocked"] else "loaded"
        missing = [n for n, s in row.get("scanners", {}).items() if not s["available"]]
        if missing:
            status += " (" + "; ".join(row["scanners"][n]["reason"] for n in missing) + ")"
        table.add_row(row["name"], ", ".join(row["hooks"]), provides, status)
    Console().print(table)
