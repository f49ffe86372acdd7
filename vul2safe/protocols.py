"""Scoring protocols for the functional benchmarks (HumanEval Pro, MBPP Pro).

``official`` (the default) reproduces the CodeEval-Pro pipeline verdict for verdict, so our
numbers stand beside published ones; ``strict`` is vul2safe's own, stricter reading (one
fixed extraction that tells invalid outputs apart, programs run as ``__main__``). Every rule
here and every difference between the two is in ``docs/functional.md``, with the file and
line of the official code it follows.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from vul2safe.errors import UsageError

__all__ = [
    "OFFICIAL",
    "PROTOCOLS",
    "STRICT",
    "Protocol",
    "get_protocol",
    "label_field",
    "official_cut",
    "sanitize",
]

Field = Literal["completion", "solution"]


@dataclass(frozen=True)
class Protocol:
    """How samples are cut, run and counted."""

    name: str
    summary: str
    timeout_s: float  # default wall-clock limit per program
    run_mode: Literal["main", "exec"]  # see vul2safe.sandbox.run_programs
    sanitized: bool  # also score the santize.py copy (pass@k of both, labelled)

    def describe(self) -> dict[str, Any]:
        return asdict(self)


OFFICIAL = Protocol(
    name="official",
    summary="CodeEval-Pro + HF code_eval: completion cut at the first ```, solution after "
    "the first ```python up to the next ```; program = code + '\\n' + test_code run like "
    "exec(program, {}) for 3.0 s; pass@k of the raw cut and of the sanitized copy",
    timeout_s=3.0,
    run_mode="exec",
    sanitized=True,
)
STRICT = Protocol(
    name="strict",
    summary="vul2safe's extraction (vul2safe.extract: invalid outputs classified and never "
    "run), programs run as __main__ (exit code counts) for 10 s; no sanitized copy",
    timeout_s=10.0,
    run_mode="main",
    sanitized=False,
)
PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (OFFICIAL, STRICT)}


def get_protocol(name: str | Protocol | None) -> Protocol:
    """The protocol called ``name`` (default: official); an unknown name is a usage error."""
    if isinstance(name, Protocol):
        return name
    if name is None:
        return OFFICIAL
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise UsageError(
            f"unknown protocol {name!r}; choose one of: {', '.join(PROTOCOLS)} "
            "(--protocol, default official)"
        ) from None


def official_cut(text: str, field: Field | str) -> str:
    """The code the official pipeline keeps from one output.

    ``completion`` (a continuation of the response prefix, ``eval/inference.py``): up to the
    first three backticks anywhere. ``solution`` (a whole chat answer, ``eval/run_api.py``):
    the text after the first "```python" (the whole text when there is none), up to the
    next three backticks.
    """
    if field == "solution":
        text = text.split("```python", 1)[-1]
    end = text.find("```")
    return text if end == -1 else text[:end]


def sanitize(code: str) -> str:
    """CodeEval-Pro's ``post_process_humaneval`` (``eval/santize.py``), quirks included:
    the ``# Example`` test splits on ``"# Example "`` (with the space)."""
    if "if __name__" in code:
        return code.split("if __name__", 1)[0]
    if "# Test" in code:
        return code.split("# Test", 1)[0]
    if "# Example" in code:
        return code.split("# Example ", 1)[0]
    return code


_OPENING_FENCE = re.compile(r"```[ \t]*[A-Za-z][\w+#.-]*[ \t]*(?:\n|$)")


def label_field(text: str, requested: Field | str) -> str:
    """What a generated output is: a ``completion`` of the prefix we asked it to continue,
    or a whole ``solution``.

    A server that ignores the assistant prefill answers from scratch; scored as a
    continuation that answer would fail. A continuation of ``"```python\\n..."`` never
    *opens* a fence before closing its own, so an output whose first three backticks open
    a tagged fence (or start it, at the very beginning) is a whole answer.
    """
    if requested != "completion":
        return requested
    start = text.find("```")
    if start == -1:
        return "completion"
    if _OPENING_FENCE.match(text, start) or not text[:start].strip():
        return "solution"
    return "completion"
