"""srcode's user errors: vul2safe's typed errors, so both CLIs print them as one line."""

from __future__ import annotations

from vul2safe.errors import UsageError


class ConfigError(UsageError):
    """A YAML config or ``--set`` override that does not fit the schema, or a missing input."""
