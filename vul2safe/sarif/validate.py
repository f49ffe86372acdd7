"""Validation against the vendored official SARIF 2.1.0 schema (offline)."""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from collections.abc import Mapping
from typing import Any

from vul2safe.sarif.common import _SCHEME_RE, SCHEMA_RESOURCE


@functools.cache
def load_sarif_schema() -> dict[str, Any]:
    """The vendored official SARIF 2.1.0 schema (see the module docstring for its origin)."""
    resource = importlib.resources.files("vul2safe").joinpath(SCHEMA_RESOURCE)
    loaded: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return loaded


def validate_sarif(doc: Mapping[str, Any]) -> list[str]:
    """Schema violations as ``"runs/0/results/3/level: 'fatal' is not one of ..."`` lines.

    Empty means valid. Besides the schema's structure this checks the ``uri`` and
    ``uri-reference`` formats (RFC 3986 characters and percent-escapes), which jsonschema
    skips without optional extra packages: an unencoded ``#`` or space in a path is a bug.
    """
    import jsonschema

    validator_class = jsonschema.validators.validator_for(load_sarif_schema())
    validator = validator_class(load_sarif_schema(), format_checker=_format_checker())
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in errors
    ]


_URI_CHARS_RE = re.compile(r"^(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$")


def _is_uri_reference(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return bool(_URI_CHARS_RE.match(value)) and value.count("#") <= 1


def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return _is_uri_reference(value) and _SCHEME_RE.match(value) is not None


@functools.cache
def _format_checker() -> Any:
    import jsonschema

    checker = jsonschema.FormatChecker()
    checker.checks("uri")(_is_uri)
    checker.checks("uri-reference")(_is_uri_reference)
    return checker
