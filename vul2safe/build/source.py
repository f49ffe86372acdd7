"""The repair-pair ``Source`` contract, and how ``vul2safe build`` resolves ``NAME:LOCATION``.

A source plugin turns one published dataset of vulnerability fixes (PrimeVul, SVEN,
SafeCoder, ...) into :class:`~vul2safe.build.records.RepairPair` records. It registers an
instance through ``register_sources(register)``; the pipeline looks it up by ``name``.

``LOCATION`` is a local file or folder (what tests and offline machines use) or a Hugging
Face Hub dataset id (fetched lazily, only when no such local path exists). Explicit beats
implicit: a location that looks like a path but does not exist is an error, never a silent
trip to the network.

The helpers below are shared by the in-tree sources: JSONL reading with line-numbered
errors, project/commit parsing of commit URLs, stable pair ids, language from file suffix.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from vul2safe.build.records import RepairPair
from vul2safe.errors import InputError, UsageError
from vul2safe.languages import detect_language

# owner/name, as the Hub spells dataset ids (no leading dot or slash, exactly one slash)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# host/owner/repo/commit(s)/sha, with or without scheme (SVEN writes "github.com/o/r/commit/x")
_COMMIT_URL = re.compile(
    r"^(?:[a-z]+://)?(?:www\.)?(?P<host>[^/\s]+)/(?P<owner>[^/\s]+)/(?P<repo>[^/\s]+?)"
    r"(?:\.git)?(?:/-)?/commits?/(?P<sha>[0-9a-fA-F]{7,64})\b"
)
_SHA_PARAM = re.compile(r"[?;&](?:id|h)=([0-9a-fA-F]{7,64})\b")


class Source:
    """Base class of repair-pair sources; subclasses set the attributes and :meth:`load`.

    The attributes end up in the PrimeVul+ dataset card (provenance, licence, citation), so
    they describe the *upstream* dataset, not our loader.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    licence: ClassVar[str] = ""
    homepage: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    #: used when ``load`` gets no location; ``None`` means a location is required
    hub_id: ClassVar[str | None] = None
    #: what a local location should hold, for error messages
    layout_hint: ClassVar[str] = "a JSONL file or a folder of them"

    def load(self, location: str | None, *, limit: int | None = None) -> list[RepairPair]:
        """Every pair at ``location`` (a local file/folder or a Hub id), the first ``limit``."""
        raise NotImplementedError

    # ---------------------------------------------------------------- shared helpers

    def resolve(self, location: str | None) -> Path | str:
        """A local ``Path`` when it exists, else a Hub id; a missing path is one clear error."""
        if location is None or not location.strip():
            if self.hub_id is None:
                raise UsageError(
                    f"source {self.name!r} needs a location: {self.name}:PATH "
                    f"({self.layout_hint}) or {self.name}:HUB_ID"
                )
            return self.hub_id
        path = Path(location).expanduser()
        if path.exists():
            return path
        if _HUB_ID.match(location) and not Path(location).suffix:
            return location
        raise InputError(
            f"{self.name}: no such file or directory: {location} "
            f"(pass {self.name}:PATH to {self.layout_hint}, or a Hub dataset id)"
        )

    def describe(self) -> dict[str, Any]:
        """Provenance fields for the dataset card."""
        return {
            "name": self.name,
            "description": self.description,
            "licence": self.licence,
            "homepage": self.homepage,
            "citation": self.citation,
        }


def check_limit(limit: int | None) -> None:
    """``--limit 0`` is almost always a typo; refuse it rather than return nothing."""
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` for each non-blank line; a bad line names file and line.

    Python's ``json`` parses integers exactly, which PrimeVul's 128-bit hashes need.
    """
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"{path}: line {number} is not valid JSON ({exc.msg} at column {exc.colno})"
                ) from None
            if not isinstance(record, dict):
                raise InputError(f"{path}: line {number} is not a JSON object")
            yield number, record


def hub_rows(source: str, hub_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(split, row)`` for every split of a Hub dataset, via ``datasets`` (imported lazily)."""
    message = f"{source}: {hub_id!r} is no local path, and loading it from the Hub failed"
    hint = f"; download it and pass {source}:PATH instead"
    try:
        import datasets  # heavy: only when the Hub is really needed
    except ImportError:
        raise InputError(f"{message} (the `datasets` package is not installed){hint}") from None
    try:
        loaded = datasets.load_dataset(hub_id)
    except Exception as exc:  # offline, missing, auth: the same advice for all of them
        raise InputError(f"{message} ({type(exc).__name__}: {exc}){hint}") from exc
    for split, rows in loaded.items():
        for row in rows:
            yield str(split), dict(row)


def commit_parts(url: str | None) -> tuple[str | None, str | None, str | None]:
    """``(project "owner/repo", commit sha, https URL)`` from a GitHub/GitLab-style commit
    link; the sha alone from a cgit/gitweb link (``?id=``); Nones when nothing parses."""
    if not url:
        return None, None, None
    text = url.strip()
    full = text if "://" in text else f"https://{text}"
    match = _COMMIT_URL.match(text)
    if match:
        project = f"{match['owner']}/{match['repo']}"
        return project, match["sha"].lower(), full
    param = _SHA_PARAM.search(text)
    return None, (param.group(1).lower() if param else None), full


def language_of(file_name: str | None, default: str = "unknown") -> str:
    """The ``vul2safe.languages`` name for a file, ``default`` for unknown suffixes."""
    if not file_name:
        return default
    return detect_language(file_name) or default


def parse_changes(value: Any, where: str) -> dict[str, Any] | None:
    """SVEN/SafeCoder ``line_changes``/``char_changes``: a dict, or its Python repr as a string
    (as some copies store it); ``None`` when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(value)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(parsed, dict):
                return parsed
    raise InputError(f"{where}: cannot read the change list {str(value)[:60]!r}")


class PairIds:
    """Stable, unique ids ``<source>:<commit>:<file>:<func>:<n>``.

    ``n`` counts earlier pairs with the same prefix in the same load, so re-reading the same
    files yields the same ids and two edits of one function in one commit stay distinct.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._seen: Counter[str] = Counter()

    def next(self, commit: str | None, file_name: str | None, func_name: str | None) -> str:
        prefix = ":".join([self.source, commit or "-", file_name or "-", func_name or "-"])
        n = self._seen[prefix]
        self._seen[prefix] += 1
        return f"{prefix}:{n}"


# ---------------------------------------------------------------- NAME:LOCATION specs


def parse_source_spec(spec: str) -> tuple[str, str | None]:
    """``"sven:/data/sven"`` → ``("sven", "/data/sven")``; ``"sven"`` → ``("sven", None)``."""
    text = spec.strip()
    name, sep, location = text.partition(":")
    name = name.strip().lower()
    if not name or (not sep and ("/" in name or "\\" in name)):
        raise UsageError(
            f"source spec {spec!r} names no source; write SOURCE:LOCATION, "
            f"e.g. sven:/data/sven/train or primevul:/data/primevul"
        )
    location = location.strip()
    return name, (location or None)


def get_source(name: str) -> Source:
    """The registered source called ``name`` (unknown names get "did you mean")."""
    from vul2safe import plugins

    return plugins.sources.get(name)  # type: ignore[no-any-return]


def load_sources(specs: Sequence[str], limit: int | None = None) -> list[RepairPair]:
    """Load each ``NAME:LOCATION`` spec in order (``limit`` applies per source).

    The same record named twice (e.g. one folder passed twice) is kept once; two different
    records with one id would corrupt every later stage, so that is an error.
    """
    check_limit(limit)
    if not specs:
        raise UsageError("no source given; pass e.g. --source sven:/data/sven/train")
    resolved = [(parse_source_spec(spec), spec) for spec in specs]
    sources = [(get_source(name), location, spec) for (name, location), spec in resolved]
    pairs: list[RepairPair] = []
    seen: dict[str, RepairPair] = {}
    for source, location, spec in sources:
        for pair in source.load(location, limit=limit):
            earlier = seen.get(pair.pair_id)
            if earlier is None:
                seen[pair.pair_id] = pair
                pairs.append(pair)
            elif (earlier.vulnerable, earlier.fixed) != (pair.vulnerable, pair.fixed):
                raise InputError(
                    f"{spec}: pair id {pair.pair_id!r} names two different pairs; "
                    "load the two inputs in separate builds"
                )
    return pairs


__all__ = [
    "PairIds",
    "Source",
    "check_limit",
    "commit_parts",
    "get_source",
    "hub_rows",
    "language_of",
    "load_sources",
    "parse_changes",
    "parse_source_spec",
    "read_jsonl",
]
