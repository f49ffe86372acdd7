"""``vul2safe cache info|clear``: see and free what the content-addressed cache holds.

The cache (``$VUL2SAFE_HOME/cache.sqlite3``) keeps scanner verdicts (``scan-*``), generations
(``generation``) and teacher replies (``teacher``) by content hash, so it only ever grows; a user
needs to see how big it is and to drop one kind (say, after changing a teacher prompt by hand)
without deleting the folder that also holds merged rule packs.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Annotated

import typer

from vul2safe.errors import UsageError

app = typer.Typer(
    name="cache",
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Show or clear the content-addressed cache (scans, generations, teacher replies).",
)


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return _dt.datetime.fromtimestamp(stamp, _dt.UTC).strftime("%Y-%m-%d %H:%M")


@app.command("info")
def info_command(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Where the cache is, its size on disk, and entries by kind."""
    from vul2safe.cache import Cache

    cache = Cache()
    try:
        kinds = cache.stats()
    finally:
        cache.close()
    on_disk = sum(
        p.stat().st_size for p in cache.path.parent.glob(cache.path.name + "*") if p.is_file()
    )
    if as_json:
        payload = {"path": str(cache.path), "bytes_on_disk": on_disk, "kinds": kinds}
        typer.echo(json.dumps(payload, indent=2))
        return
    typer.echo(f"cache: {cache.path} ({_human(on_disk)} on disk)")
    if not kinds:
        typer.echo("empty")
        return
    width = max(len(name) for name in kinds)
    typer.echo(f"{'kind':<{width}}  {'entries':>8}  {'values':>10}  newest")
    for name, row in kinds.items():
        typer.echo(
            f"{name:<{width}}  {int(row['entries']):>8}  {_human(row['bytes']):>10}  "
            f"{_when(row['newest'])}"
        )


@app.command("clear")
def clear_command(
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="Clear only this kind (see `vul2safe cache info`)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete cached entries (all, or one kind). Results already written are not touched."""
    from vul2safe.cache import Cache

    cache = Cache()
    try:
        kinds = cache.stats()
        if kind is not None and kind not in kinds:
            known = ", ".join(kinds) or "none: the cache is empty"
            raise UsageError(f"no cached entries of kind {kind!r}; kinds present: {known}")
        what = f"the {kind!r} entries" if kind else "every entry"
        if not yes and not typer.confirm(f"Delete {what} in {cache.path}?"):
            raise typer.Exit(1)
        deleted = cache.clear(kind)
    finally:
        cache.close()
    typer.echo(f"deleted {deleted} entries")
