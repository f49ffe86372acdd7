"""Typed errors whose message tells the user how to fix the problem.

The CLI catches :class:`Vul2SafeError` at one boundary and prints its message as one line;
anything else is a bug and keeps its traceback (or shows it with ``VUL2SAFE_DEBUG=1``).
"""

from __future__ import annotations


class Vul2SafeError(Exception):
    """Base class: the message is shown to the user as is, so it must say what to do."""

    exit_code: int = 2


class UsageError(Vul2SafeError):
    """Bad command-line input or configuration."""


class UnknownPluginError(Vul2SafeError):
    """A scanner/benchmark/backend/source name that nothing registered."""


class DuplicatePluginError(Vul2SafeError):
    """Two plugins registered the same name: names become metric keys, so this is fatal."""


class ScannerNotAvailable(Vul2SafeError):
    """The external tool behind a scanner is missing or broken."""


class ScannerFailed(Vul2SafeError):
    """The tool ran but crashed or produced output we could not parse."""


class ScannerTimeout(ScannerFailed):
    """The tool did not finish within its time budget."""


class InputError(Vul2SafeError):
    """Malformed input data (JSONL line, missing field, unreadable file)."""


class SandboxUnavailable(Vul2SafeError):
    """No isolation available for running untrusted code."""
