"""Heuristics behind :mod:`vul2safe.extract`: refusal phrases, prose-vs-code lines, and the
syntax checks (``ast.parse`` for Python, bracket balance for other languages).

Split from ``extract.py`` along its seam: these answer "what is this text?", the other module
decides which text to take. Hand-written because no library classifies mixed prose/code
model output; every rule is documented in ``vul2safe.extract``'s module docstring.
"""

from __future__ import annotations

import ast
import keyword
import re
import warnings

# --------------------------------------------------------------------------------------
# refusals and prose

_REFUSAL_RE = re.compile(
    r"\bI(?:'m| am) sorry,? but (?:I|we)(?:'m| am)? "
    r"(?:can(?:'t| ?not)|won't|will not|unable|not able)"
    r"|\b(?:I|we)(?: can(?:'t| ?not)| won't| will not|(?:'m| am| are) (?:unable|not able) to"
    r"| (?:must|have to) decline to) (?:help|assist|provide|comply|fulfil|write|create"
    r"|generate|complete|produce|support|do th)"
    r"|\bI must (?:respectfully )?decline\b"
    r"|\bAs an AI(?: language model)?,? I (?:can(?:'t| ?not)|won't|(?:'m|am) not able)",
    re.IGNORECASE,
)


def _is_refusal(text: str) -> bool:
    return _REFUSAL_RE.search(text.replace("\u2019", "'")) is not None


#: words a code line may start with (Python's, plus C, C++, Java, C#, JS/TS, Go, Rust, PHP,
#: Ruby, shell); compared case-sensitively, so "For example, ..." is still prose
_OTHER_KEYWORDS = """
auto break case char const continue default do double else enum extern float for goto if
inline int long register return short signed sizeof static struct switch typedef union
unsigned void volatile while bool class namespace template typename using public private
protected virtual new delete try catch throw import package function var let export async
await interface extends implements final abstract synchronized fn impl pub mod use func go
defer type include define size_t string echo print println puts require module def end
unless elif fi then done local declare
"""
_KEYWORDS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | set(_OTHER_KEYWORDS.split())
_HASH_COMMENT_LANGS = frozenset({"python", "shell", "ruby", "php"})

_MD_HEADING = re.compile(r"#{1,6}\s+\S")
_MD_BULLET = re.compile(r"(?:[-*+]|\d+[.)])\s+[A-Za-z`*\"']")
_MD_BOLD = re.compile(r"(?:\*\*|__)[^*_]+(?:\*\*|__)")
_FIRST_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_']*")
_CODE_START = re.compile(r"[A-Za-z_]\w*(?:\(|\.\w|\[)")
_SHORT_SENTENCE = re.compile(r"[A-Z][\w' ,-]*[.!?:]")
_CODE_CHARS = re.compile(r"[=;{}\[\]<>|&^%$\\#]|::|->|\+\+")
_WORD = re.compile(r"\(?[A-Za-z][A-Za-z'-]*(?:\.[A-Za-z]+)*\)?[.,:;!?]*\)?")
_INLINE_CODE = re.compile(r"`[^`]*`")


def _is_prose_line(line: str, language: str) -> bool:
    """Heuristic: does this line read as English rather than code?

    Deliberately conservative: a line counted as prose is dropped, so when unsure we say
    "code" and let the syntax check fail loudly instead of silently losing a line.
    """
    s = line.strip()
    if not s:
        return False
    if _MD_HEADING.match(s):
        return language not in _HASH_COMMENT_LANGS  # '# ...' is a comment there
    plain = _INLINE_CODE.sub("code", s)
    if _CODE_CHARS.search(plain):
        return False
    if _MD_BULLET.match(s) or _MD_BOLD.match(s):
        return True
    first = _FIRST_WORD.match(s)
    if first is None or first.group() in _KEYWORDS or _CODE_START.match(s):
        return False
    if _SHORT_SENTENCE.fullmatch(plain):  # "Sure!", "Explanation:", "Here you go."
        return True
    words = plain.split()
    if len(words) < 3:
        return False
    return sum(1 for w in words if _WORD.fullmatch(w)) >= 0.75 * len(words)


# --------------------------------------------------------------------------------------
# checks

_LINE_COMMENTS: dict[str, tuple[str, ...]] = {"ruby": ("#",), "php": ("//", "#")}
_NO_BLOCK_COMMENTS = frozenset({"ruby"})
_QUOTES: dict[str, str] = {
    "rust": '"',  # 'a is a lifetime, not a char literal
    "javascript": "\"'`",
    "typescript": "\"'`",
    "go": "\"'`",
}
_NO_BRACKET_CHECK = frozenset({"shell"})  # `case x in a)` is legal and unbalanced
_PAIRS = {")": "(", "]": "[", "}": "{"}
#: Rust literals the generic scan misreads: char/byte literals (``'{'``, ``b'['``, ``'\''``;
#: a lifetime ``'a`` has no closing quote), raw strings (``r#"..."#``), and strings, which
#: may span lines. Checked against rustc's own delimiter errors in tests/vul2safe/test_extract.py
_RUST_CHAR = re.compile(r"b?'(?:[^'\\\n]|\\(?:u\{[0-9a-fA-F_]{1,8}\}|x[0-9a-fA-F]{2}|.))'")
_RUST_RAW = re.compile(r'(?<![\w])(?:b|c)?r(#*)"')
_RUST_STRING = re.compile(r'(?<![\w])(?:b|c)?"(?:[^"\\]|\\.)*"', re.DOTALL)
#: C++11 raw strings ``R"delim( ... )delim"`` (also ``u8R``, ``LR``...): anything goes inside
_CPP_RAW = re.compile(r'(?<![\w])(?:u8|u|U|L)?R"([^()\\\s]{0,16})\(')


def _literal_end(source: str, i: int, language: str) -> int | None:
    """End of a language-specific literal starting at ``i`` (see :data:`_RUST_CHAR`), or None."""
    if language == "rust":
        if (char := _RUST_CHAR.match(source, i)) is not None:
            return char.end()
        if (raw := _RUST_RAW.match(source, i)) is not None:
            end = source.find('"' + raw.group(1), raw.end())
            return None if end < 0 else end + 1 + len(raw.group(1))
        if (string := _RUST_STRING.match(source, i)) is not None:
            return string.end()
    elif language == "cpp" and (raw := _CPP_RAW.match(source, i)) is not None:
        end = source.find(")" + raw.group(1) + '"', raw.end())
        return None if end < 0 else end + 2 + len(raw.group(1))
    return None


def _block_comment_end(source: str, i: int, nested: bool) -> int:
    """Index just past the ``*/`` closing the comment opened at ``i`` (-1: never closed).
    Rust block comments nest; C-family ones end at the first ``*/``."""
    if not nested:
        end = source.find("*/", i + 2)
        return -1 if end < 0 else end + 2
    depth, j = 0, i
    while j < len(source):
        if source.startswith("/*", j):
            depth, j = depth + 1, j + 2
        elif source.startswith("*/", j):
            depth, j = depth - 1, j + 2
            if depth == 0:
                return j
        else:
            j += 1
    return -1


def _bracket_error(source: str, language: str) -> str | None:
    """First bracket problem outside comments and string literals, or None.

    A string literal that does not close on its line is treated as a stray quote (C++ digit
    separators, apostrophes in ``#error`` text) rather than swallowing the rest of the file.
    Rust's literals and nested comments and C++ raw strings are read by their own rules
    (:func:`_literal_end`), so valid code with ``'{'`` or ``r#"{"#`` is not "unbalanced".
    """
    line_comments = _LINE_COMMENTS.get(language, ("//",))
    block = language not in _NO_BLOCK_COMMENTS
    quotes = _QUOTES.get(language, "\"'")
    stack: list[tuple[str, int]] = []
    line = 1
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch == "\n":
            line += 1
            i += 1
        elif block and source.startswith("/*", i):
            end = _block_comment_end(source, i, nested=language == "rust")
            if end < 0:
                return f"unterminated block comment starting at line {line}"
            line += source.count("\n", i, end)
            i = end
        elif ch in "'\"bcrRuUL" and (end := _literal_end(source, i, language)) is not None:
            line += source.count("\n", i, end)
            i = end
        elif any(source.startswith(tok, i) for tok in line_comments):
            end = source.find("\n", i)
            i = n if end < 0 else end
        elif ch in quotes:
            j = i + 1
            while j < n and source[j] != ch and (ch == "`" or source[j] != "\n"):
                j += 2 if source[j] == "\\" else 1
            if j < n and source[j] == ch:
                line += source.count("\n", i, j)
                i = j + 1
            else:
                i += 1
        elif ch in "([{":
            stack.append((ch, line))
            i += 1
        elif ch in _PAIRS:
            if not stack:
                return f"unexpected '{ch}' at line {line}"
            opener, opened_at = stack.pop()
            if opener != _PAIRS[ch]:
                return f"'{ch}' at line {line} does not close '{opener}' from line {opened_at}"
            i += 1
        else:
            i += 1
    if stack:
        opener, opened_at = stack[-1]
        return f"unclosed '{opener}' from line {opened_at}"
    return None


def _parse_python(source: str) -> ast.Module | str:
    """The module, or the error text ("SyntaxError: ... (line N)")."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences etc. are not our concern
            return ast.parse(source)
    except SyntaxError as exc:
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    except (ValueError, RecursionError) as exc:  # null bytes; absurd nesting
        return f"{type(exc).__name__}: {exc}"


def _check(source: str, language: str) -> str | None:
    if language == "python":
        result = _parse_python(source)
        return result if isinstance(result, str) else None
    if language in _NO_BRACKET_CHECK:
        return None
    return _bracket_error(source, language)


def _has_substance(code: str, language: str) -> bool:
    """Whether unfenced, syntactically valid text is plausibly code and not a stray word."""
    if language == "python":
        tree = _parse_python(code)
        if isinstance(tree, str):
            return True
        trivial = (ast.Name, ast.Constant, ast.Attribute)
        return any(
            not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, trivial))
            for stmt in tree.body
        )
    return re.search(r"[;{}()]", code) is not None
