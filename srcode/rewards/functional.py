"""The functional term, measured: does the answer implement the task?

With tests (a Python task's ``tests``: assertions appended to the answer, the way
HumanEval-style harnesses assemble a program) the program runs in vul2safe's sandbox
(:func:`vul2safe.sandbox.run_programs`, bubblewrap): implemented = it exits cleanly. Nothing
is read from a dataset field. Without tests the check is static, and deliberately modest:
the code parses, defines every name the prompt asks for (``def name(`` in the prompt, a
backticked ``name(...)``, "function/method named/called name"), and those definitions --
or, when the prompt names nothing, the code as a whole -- are not a trivial body (``pass``,
``...``, a docstring, a bare ``return``, ``raise NotImplementedError``). Hand-written because
no library answers "does this code define what the prompt asks for"; it is a floor, not a
proof of correctness, which only tests give.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence

from vul2safe.errors import UsageError

__all__ = ["implements_statically", "requested_names", "run_tests"]

_IDENT = r"[A-Za-z_]\w*"
_NAME_PATTERNS = (
    re.compile(rf"\bdef\s+({_IDENT})\s*\("),
    re.compile(rf"`(?:[\w:*&<> ]+\s)?\**({_IDENT})\s*\([^`]*\)`"),
    re.compile(rf"\b(?:function|method|class)\s+(?:named\s+|called\s+)?`({_IDENT})`"),
    re.compile(rf"\b(?:named|called)\s+`?({_IDENT})`?\s*\("),
    re.compile(rf"\b(?:function|method)\s+(?:named|called)\s+`?({_IDENT})`?"),
)
_NOT_NAMES = frozenset({"that", "which", "to", "the", "a", "an", "it", "this", "with", "in"})


_ASKS = re.compile(r"\b(?:function|method|implement|write|define|create|complete)", re.I)


def requested_names(prompt: str) -> list[str]:
    """Function/class names the prompt asks for, in order of appearance (may be empty).

    A backticked call counts only after a word such as "function", "implement" or "write"
    in the 60 characters before it, so "use `print(x)`" does not ask for a ``print``.
    """
    found: list[tuple[int, str]] = []
    for index, pattern in enumerate(_NAME_PATTERNS):
        for m in pattern.finditer(prompt):
            if index == 1 and not _ASKS.search(prompt, max(0, m.start() - 60), m.start()):
                continue
            found.append((m.start(1), m.group(1)))
    names: list[str] = []
    for _, name in sorted(found):
        if name not in names and name.lower() not in _NOT_NAMES:
            names.append(name)
    return names


def _trivial_python(body: Sequence[ast.stmt]) -> bool:
    """``pass``, ``...``, docstrings, a bare/None ``return``, ``raise NotImplementedError``."""
    for stmt in body:
        if isinstance(stmt, ast.Pass):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # docstring or ...
        if isinstance(stmt, ast.Return) and (
            stmt.value is None
            or (isinstance(stmt.value, ast.Constant) and stmt.value.value is None)
        ):
            continue
        if isinstance(stmt, ast.Raise) and "NotImplementedError" in ast.unparse(stmt):
            continue
        return False
    return True


def _python(code: str, names: Sequence[str]) -> tuple[bool, str]:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError) as exc:
        return False, f"does not parse: {exc}"
    defined = {
        node.name: node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    for name in names:
        node = defined.get(name)
        if node is None:
            return False, f"does not define {name!r}, which the prompt asks for"
        if not isinstance(node, ast.ClassDef) and _trivial_python(node.body):
            return False, f"{name!r} has a trivial body"
    if names:
        return True, "defines " + ", ".join(names)
    statements = [s for s in tree.body if not isinstance(s, ast.Import | ast.ImportFrom)]
    functions = [n for n in defined.values() if not isinstance(n, ast.ClassDef)]
    if _trivial_python(statements) or (
        functions and all(_trivial_python(f.body) for f in functions)
    ):
        return False, "only trivial bodies"
    return True, "parses, non-trivial"


_C_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_C_TRIVIAL = re.compile(r"(?:return\s*(?:0|NULL|nullptr)?\s*;|;)*")


def _c_body(code: str, start: int) -> str | None:
    """The text between the brace at ``start`` and its match (None when unbalanced)."""
    depth = 0
    for i in range(start, len(code)):
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
            if depth == 0:
                return code[start + 1 : i]
    return None


def _braced(code: str, names: Sequence[str]) -> tuple[bool, str]:
    """C-family check: each requested function is defined with a non-trivial body."""
    code = _C_COMMENT.sub(" ", code)
    targets = names or [_IDENT]
    bodies: list[str] = []
    for name in targets:
        match = re.search(rf"\b{name}\s*\([^;{{}}]*\)\s*(?:const\s*)?\{{", code)
        if match is None:
            if names:
                return False, f"does not define {name!r}, which the prompt asks for"
            return (";" in code, "statements, no function" if ";" in code else "no statements")
        body = _c_body(code, match.end() - 1)
        if body is None:
            return False, "unbalanced braces"
        bodies.append(body)
    if all(_C_TRIVIAL.fullmatch(re.sub(r"\s+", "", body)) for body in bodies):
        return False, "only trivial bodies"
    return True, "defines " + ", ".join(names) if names else "non-trivial"


def implements_statically(code: str, language: str, prompt: str) -> tuple[bool, str]:
    """Whether ``code`` plausibly implements ``prompt`` (no tests): ``(verdict, why)``."""
    names = requested_names(prompt)
    if language == "python":
        return _python(code, names)
    return _braced(code, names)


def run_tests(
    programs: Sequence[tuple[str, str, str]], *, timeout_s: float = 10.0
) -> list[tuple[bool, str]]:
    """Run each ``(code, tests, language)`` in the sandbox: ``(passed, why)`` per program.

    Python only (the sandbox runs Python programs); the tests are appended to the code.
    Raises :class:`vul2safe.sandbox.SandboxUnavailable` (with the install command) when
    bubblewrap cannot be used: an unsandboxed run of policy samples is never silent.
    """
    for _, _, language in programs:
        if language != "python":
            raise UsageError(
                f"tests are run for Python tasks only, got a {language} task with tests; "
                "drop its 'tests' to use the static check"
            )
    if not programs:
        return []
    from vul2safe.sandbox import ExecStatus, SandboxLimits, run_programs

    results = run_programs(
        [f"{code}\n\n{tests}\n" for code, tests, _ in programs],
        limits=SandboxLimits(timeout_s=timeout_s),
    )
    return [
        (
            r.status is ExecStatus.PASSED,
            f"tests {r.status.value}" + (f": {r.detail}" if r.detail else ""),
        )
        for r in results
    ]
