"""SARIF constants, paths as URIs, and tolerant access to other tools' JSON."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

from vul2safe.schema import Severity

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
SCHEMA_RESOURCE = "data/sarif-schema-2.1.0.json"
SRCROOT = "%SRCROOT%"
#: the run-level property that marks a log as written by :func:`to_sarif`
EXPORT_MARKER = "exportedBy"

#: our severity → GitHub ``security-severity`` score (mid-band, see the module docstring)
SECURITY_SEVERITY_SCORE: dict[Severity, str] = {
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "2.0",
}
#: our severity → SARIF ``level``
LEVEL_FOR_SEVERITY: dict[Severity, str] = {
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
}

#: ``tool.driver.informationUri`` for the scanners we ship (a scanner's meta may override it
#: with an ``information_uri`` entry)
INFORMATION_URIS: dict[str, str] = {
    "bandit": "https://github.com/PyCQA/bandit",
    "semgrep": "https://semgrep.dev",
    "codeshield": "https://github.com/meta-llama/PurpleLlama",
    "icd": "https://github.com/meta-llama/PurpleLlama/tree/main/CodeShield",
    "flawfinder": "https://dwheeler.com/flawfinder/",
    "cppcheck": "https://cppcheck.sourceforge.io",
    "codeql": "https://codeql.github.com",
}

#: the pseudo-tool whose run carries input errors that belong to no scanner
INPUT_TOOL = "vul2safe"

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_SEVERITY_VALUES = {s.value for s in Severity}



# --------------------------------------------------------------------------- paths and URIs


def path_to_uri(path: str) -> str:
    """A sample path as a SARIF URI: ``file://`` for absolute paths, else a relative reference.

    Everything outside RFC 3986's unreserved set (and ``/``) is percent-encoded, so the
    ``#`` of ``data.jsonl#17`` is not mistaken for a fragment and ``:`` is not a scheme.
    """
    encoded = quote(path, safe="/")
    if path.startswith("/"):
        return "file://" + encoded
    return encoded


def uri_to_path(uri: str) -> str:
    """Invert :func:`path_to_uri`; also accepts other tools' ``file:`` and relative URIs.

    ``file:///a/b`` and ``file:/a/b`` → ``/a/b``; ``file://host/share/x`` → ``//host/share/x``;
    a relative reference is percent-decoded as a whole (an unencoded ``#`` stays part of the
    name); URIs of other schemes (``https:``) are returned unchanged.
    """
    match = _SCHEME_RE.match(uri)
    if match is None or len(match.group(1)) == 1:  # relative, or a Windows drive letter
        return unquote(uri)
    if match.group(1).lower() != "file":
        return uri
    rest = uri[match.end() :]
    if rest.startswith("//"):
        authority, _, path = rest[2:].partition("/")
        path = "/" + path
        if authority and authority.lower() != "localhost":
            return "//" + unquote(authority) + unquote(path)
        return unquote(path)
    return unquote(rest)


def resolve_artifact_uri(
    uri: str, base_id: str | None, base_ids: Mapping[str, Any], _depth: int = 0
) -> str | None:
    """The absolute local path an artifact URI denotes, or ``None`` when SARIF cannot say.

    A relative ``uri`` is resolved against ``originalUriBaseIds[base_id]`` (which may itself
    be relative to another base id). ``None`` for a relative URI without a known base: the
    caller decides what it is relative to (usually the current directory).
    """
    if _depth > 10:  # a cycle of base ids
        return None
    match = _SCHEME_RE.match(uri)
    if match is not None and len(match.group(1)) > 1:
        return uri_to_path(uri) if match.group(1).lower() == "file" else None
    path = uri_to_path(uri)
    if path.startswith("/"):
        return os.path.normpath(path)
    if not base_id:
        return None
    base = _obj(base_ids.get(base_id))
    base_uri = base.get("uri")
    if not isinstance(base_uri, str):
        return None
    parent = resolve_artifact_uri(base_uri, _str(base.get("uriBaseId")), base_ids, _depth + 1)
    if parent is None:
        return None
    return os.path.normpath(os.path.join(parent, path))


# --------------------------------------------------------------------------- tolerant access


def _obj(value: object) -> dict[str, Any]:
    """Other tools' logs are not always schema-valid: treat a wrong type as absent."""
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
