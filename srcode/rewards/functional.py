"""The functional term, measured: does the answer implement the task?

With tests (a Python task's ``tests``: assertions appended to the answer, the way
HumanEval-style harnesses assemble a program) the program runs in vul2safe's sandbox
(:func:`vul2safe.sandbox.run_programs`, bubblewrap): implemented = it exits cleanly after
running every test (a marker printed after them must appear). Nothing is read from a
dataset field. Without tests the check is static, and deliberately modest: the code parses,
defines every name the prompt asks for (``def name(`` in the prompt, a backticked
``name(...)``, "function/method named/called name") where a caller reaches it (module level;
a class's method only when the prompt speaks of methods or classes; never nested in another
function), and those definitions -- or, when the prompt names nothing, the code as a whole
-- are not a stub: ``pass``, ``...``, a docstring, ``return`` of a constant, of a parameter
or of a literal of those, any ``raise``, ``print`` of such values (C: ``return 0;``,
``return -1;``, ``abort();``, ``printf(...)``, ``(void)x;``). Hand-written because
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


_NO_OP_CALLS = frozenset({"print", "input", "exit", "quit", "breakpoint"})


def _trivial_value(node: ast.expr | None) -> bool:
    """A value that computes nothing: a constant, a bare name, a literal of those."""
    if node is None or isinstance(node, ast.Constant | ast.Name):
        return True
    if isinstance(node, ast.UnaryOp):
        return _trivial_value(node.operand)
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return all(_trivial_value(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(_trivial_value(v) for v in (*node.keys, *node.values))
    return False


def _trivial_python(body: Sequence[ast.stmt]) -> bool:
    """A body that does not attempt the task: ``pass``, ``...``, docstrings, ``return`` of
    a constant, a bare name (a parameter back) or a literal of those, any ``raise``, and
    calls such as ``print(...)``. What it returns or prints does not depend on computing
    anything, so it is a stub whatever the prompt asked (the C check's ``return 0;``)."""
    for stmt in body:
        if isinstance(stmt, ast.Pass | ast.Raise):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # docstring or ...
        if isinstance(stmt, ast.Return) and _trivial_value(stmt.value):
            continue
        if (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name)
            and stmt.value.func.id in _NO_OP_CALLS
            and all(_trivial_value(a) for a in stmt.value.args)
        ):
            continue
        return False
    return True


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_METHOD_WORDS = re.compile(r"\b(?:method|class)\b", re.IGNORECASE)


def _definitions(tree: ast.Module, methods: bool) -> dict[str, ast.AST]:
    """Names defined where a caller can reach them: at module level (under ``if``/``try``
    too) and, when the prompt speaks of methods or classes, in a module-level class. A
    function nested in another function is not the function the prompt asked for."""
    found: dict[str, ast.AST] = {}
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, _DEFS):
            found.setdefault(node.name, node)
            if methods and isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, _DEFS):
                        found.setdefault(item.name, item)
        elif isinstance(node, ast.If | ast.Try | ast.With):
            pending.extend(
                child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)
            )
            for handler in getattr(node, "handlers", []):
                pending.extend(handler.body)
        elif isinstance(node, ast.Assign | ast.AnnAssign):  # name = lambda ...: ...
            value = node.value
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and value is not None:
                    found.setdefault(target.id, value)
    return found


def _python(code: str, names: Sequence[str], prompt: str = "") -> tuple[bool, str]:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError) as exc:
        return False, f"does not parse: {exc}"
    defined = _definitions(tree, bool(_METHOD_WORDS.search(prompt)))
    for name in names:
        node = defined.get(name)
        if node is None:
            return False, f"does not define {name!r}, which the prompt asks for"
        if isinstance(node, ast.Lambda) and _trivial_value(node.body):
            return False, f"{name!r} has a trivial body"
        if not isinstance(node, (*_DEFS, ast.Lambda)):
            return False, f"{name!r} is not a function or class"
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _trivial_python(node.body):
            return False, f"{name!r} has a trivial body"
    if names:
        return True, "defines " + ", ".join(names)
    statements = [s for s in tree.body if not isinstance(s, ast.Import | ast.ImportFrom)]
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if _trivial_python(statements) or (
        functions and all(_trivial_python(f.body) for f in functions)
    ):
        return False, "only trivial bodies"
    return True, "parses, non-trivial"


_C_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_C_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'')
#: statements of a stub: ``return`` of a literal or a bare name, a ``(void)`` cast, a call
#: that only reports or stops (``printf``, ``abort``, ``exit``), nothing
_C_TRIVIAL_STATEMENT = re.compile(
    r"|return(?:\(?[-+]?(?:\w+|\"\"|'')\)?)?|\(void\)\w+"
    r"|(?:printf|puts|fprintf|perror|abort|exit|_Exit|assert|fputs)\([^;]*\)"
)


def _trivial_c(body: str) -> bool:
    """A stub body (see :data:`_C_TRIVIAL_STATEMENT`); any brace (a loop, a branch) is not."""
    body = _C_STRING.sub('""', body)
    if "{" in body or "}" in body:
        return False
    statements = re.sub(r"\s+", "", body).split(";")
    return all(_C_TRIVIAL_STATEMENT.fullmatch(st) for st in statements)


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
    if all(_trivial_c(body) for body in bodies):
        return False, "only trivial bodies"
    return True, "defines " + ", ".join(names) if names else "non-trivial"


def implements_statically(code: str, language: str, prompt: str) -> tuple[bool, str]:
    """Whether ``code`` plausibly implements ``prompt`` (no tests): ``(verdict, why)``."""
    names = requested_names(prompt)
    if language == "python":
        return _python(code, names, prompt)
    return _braced(code, names)


def run_tests(
    programs: Sequence[tuple[str, str, str]], *, timeout_s: float = 10.0
) -> list[tuple[bool, str]]:
    """Run each ``(code, tests, language)`` in the sandbox: ``(passed, why)`` per program.

    Python only (the sandbox runs Python programs); the tests are appended to the code, then
    a line printing a random marker, fresh per run. Passed = exit status 0 AND the marker on
    stdout: the answer runs first, so a ``sys.exit(0)`` / ``os._exit(0)`` in it (at module
    level or in the function the tests call) would otherwise end the program "cleanly"
    before any assertion ran. Raises :class:`vul2safe.sandbox.SandboxUnavailable` (with the
    install command) when bubblewrap cannot be used: an unsandboxed run of policy samples is
    never silent.
    """
    for _, _, language in programs:
        if language != "python":
            raise UsageError(
                f"tests are run for Python tasks only, got a {language} task with tests; "
                "drop its 'tests' to use the static check"
            )
    if not programs:
        return []
    import secrets

    from vul2safe.sandbox import ExecStatus, SandboxLimits, run_programs

    marker = f"srcode-tests-done-{secrets.token_hex(16)}"
    results = run_programs(
        [f"{code}\n\n{tests}\n\nprint({marker!r}, flush=True)\n" for code, tests, _ in programs],
        limits=SandboxLimits(timeout_s=timeout_s),
    )
    verdicts = []
    for r in results:
        if r.status is ExecStatus.PASSED and marker not in r.stdout_tail:
            verdicts.append((False, "tests did not run to the end (the program exited early)"))
            continue
        detail = f"tests {r.status.value}" + (f": {r.detail}" if r.detail else "")
        verdicts.append((r.status is ExecStatus.PASSED, detail))
    return verdicts
