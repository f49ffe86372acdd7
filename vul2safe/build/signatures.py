"""Function signatures, and the prompts derived from them alone (source ``"template"``).

The prompts stage needs a function's declaration (the ``docstring`` and ``context`` styles
show it) and, as a fallback that never leaks, a prompt built only from the fixed function's
name, parameter names, signature and file name (:func:`template_prompt`).
"""

from __future__ import annotations

import re
import textwrap

from vul2safe.build.records import RepairPair
from vul2safe.build.teacher import language_name

__all__ = ["function_signature", "name_words", "parameter_names", "template_prompt"]


def function_signature(code: str, language: str) -> str:
    """The declaration of a function, dedented: Python ``def`` line(s) up to the ``:``;
    other languages the text before the first ``{`` (or the first line)."""
    lines = code.splitlines()
    if language == "python":
        for start, line in enumerate(lines):
            if re.match(r"\s*(async\s+)?def\s", line):
                depth = 0
                for end in range(start, len(lines)):
                    body = lines[end].split("#", 1)[0]
                    depth += body.count("(") + body.count("[") - body.count(")") - body.count("]")
                    if depth <= 0 and body.rstrip().endswith(":"):
                        return textwrap.dedent("\n".join(lines[start : end + 1])).strip()
                return textwrap.dedent(lines[start]).strip()
        return lines[0].strip() if lines else ""
    brace = code.find("{")
    head = code[:brace] if brace != -1 else (lines[0] if lines else "")
    return textwrap.dedent(head.strip("\n")).strip()


def name_words(name: str) -> list[str]:
    """``"parseHTTPHeader_v2"`` → ``["parse", "http", "header", "v2"]``."""
    last = re.findall(r"[A-Za-z_]\w*", name)
    base = last[-1] if last else name
    spaced = re.sub(r"([a-z0-9])([A-Z])|([A-Z]+)([A-Z][a-z])", r"\1\3 \2\4", base)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


def parameter_names(signature: str) -> list[str]:
    """Parameter names from a signature: the last identifier of each comma-separated part."""
    if "(" not in signature:
        return []
    inside = signature[signature.find("(") + 1 : signature.rfind(")")]
    names: list[str] = []
    depth, part, parts = 0, "", []
    for char in inside:
        depth += char in "([<{"
        depth -= char in ")]>}"
        if char == "," and depth == 0:
            parts.append(part)
            part = ""
        else:
            part += char
    parts.append(part)
    for piece in parts:
        piece = re.split(r"=|(?<!:):(?!:)", piece)[0]  # defaults, annotations; not C++ ``::``
        found = re.findall(r"[A-Za-z_]\w*", piece)
        if found and found[-1] not in ("self", "cls", "void"):
            names.append(found[-1])
    return names


def template_prompt(pair: RepairPair, style: str, signature: str) -> str:
    """The signature-derived prompt of one style (source ``"template"``).

    task: "Write a <Language> function `<name>` that takes `a`, `b`. Its name says what it
    does: <name words>. It belongs in `<file>`. Return the complete function."
    docstring: the signature plus a docstring (Python) or a ``/** */`` comment plus the
    signature and ``{`` (others) holding "<Name words>." and the parameter names.
    context: a comment naming the file, the signature, and a first body comment "<Name words>."
    """
    name = (pair.func_name or "").strip() or "the function"
    words = name_words(name)
    sentence = " ".join(words).capitalize() if words else "Implement this function"
    params = parameter_names(signature)
    language = language_name(pair.language)
    python = pair.language == "python"
    if style == "task":
        takes = f" that takes {', '.join(f'`{p}`' for p in params)}" if params else ""
        where = f" It belongs in `{pair.file_name}`." if pair.file_name else ""
        return (
            f"Write a {language} function `{name}`{takes}. Its name says what it does: "
            f"{' '.join(words) or name}.{where} Return the complete function."
        )
    if style == "docstring":
        listed = f"Parameters: {', '.join(params)}." if params else ""
        if python:
            body = f"\n\n    {listed}" if listed else ""
            return f'{signature}\n    """{sentence}.{body}\n    """\n'
        extra = f"\n *\n * {listed}" if listed else ""
        return f"/**\n * {sentence}.{extra}\n */\n{signature}\n{{\n"
    where = pair.file_name or "this file"
    if python:
        return f"# {where}\n\n{signature}\n    # {sentence}.\n"
    return f"/* {where} */\n\n{signature}\n{{\n    /* {sentence}. */\n"
