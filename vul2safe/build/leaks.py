"""The prompts stage's leak filter: a prompt may not name, hint at or copy the weakness.

A training prompt that says "avoid the buffer overflow" or pastes the vulnerable line teaches
nothing about writing secure code unprompted, and a benchmark prompt that does so measures
nothing. :func:`leak_reasons` lists every rule a candidate breaks (CWE ids, weakness words
per family, copied code lines, length, the function name where the style needs it).
"""

from __future__ import annotations

import re

__all__ = ["CWE_RE", "LEAK_KEYWORDS", "SIGNATURE_STYLES", "leak_reasons", "reason_kind"]

#: styles whose prompts may contain the signature line(s) verbatim
SIGNATURE_STYLES: frozenset[str] = frozenset({"docstring", "context"})

#: Words and phrases a prompt must not contain, per weakness family (case-insensitive regular
#: expressions, matched as whole words; ``_`` counts as a separator, so identifiers such as
#: ``sanitize_path`` match too). Checked together with ``CWE_RE``.
LEAK_KEYWORDS: dict[str, tuple[str, ...]] = {
    "general": (
        r"vulnerab\w*",
        r"exploit\w*",
        r"(?:in)?secur(?:e|ely|ity|ities)",
        r"attack\w*",
        r"malicious\w*",
        r"weakness\w*",
        r"CVE-\d+(?:-\d+)?",
        r"saniti[sz]\w*",
        r"unsafe\w*",
        r"safely",
        r"untrusted",
        r"harden\w*",
        r"mitigat\w*",
        r"taint\w*",
    ),
    "injection (CWE-74, 77, 78, 89, 94, 95)": (
        r"(?<!dependency )injections?",
        r"shell metacharacters?",
        r"prepared statements?",
        r"parameteri[sz]ed (?:quer(?:y|ies)|statements?|sql)",
    ),
    "cross-site scripting (CWE-79, 80)": (r"xss", r"cross[- ]site", r"script injection"),
    "path traversal (CWE-22, 23, 35, 73)": (
        r"(?:path|directory) traversal",
        r"zip[- ]?slip",
        r"dot[- ]dot[- ]slash",
        r"\.\./",
    ),
    "memory safety (CWE-119, 120, 121, 122, 125, 787, 805)": (
        r"buffer (?:over|under)(?:flow|run|read)s?",
        r"(?:over|under)flow\w*",
        r"overruns?",
        r"over-?reads?",
        r"out[- ]of[- ]bounds?",
        r"bounds?[- ]check\w*",
        r"off[- ]by[- ]one",
        r"memory corruption",
    ),
    "integer handling (CWE-190, 191, 680)": (r"integer (?:over|under)flows?", r"wrap[- ]?arounds?"),
    "memory lifetime (CWE-401, 415, 416, 476)": (
        r"use[- ]after[- ]free",
        r"double[- ]free",
        r"dangling pointers?",
        r"null[- ]pointer dereferences?",
        r"null dereferences?",
        r"memory leaks?",
    ),
    "web and other (CWE-352, 362, 400, 502, 601, 611, 798, 918)": (
        r"csrf",
        r"request forgery",
        r"open redirects?",
        r"ssrf",
        r"xxe",
        r"external entit(?:y|ies)",
        r"race conditions?",
        r"toctou",
        r"denial[- ]of[- ]service",
        r"resource exhaustion",
        r"privilege escalation",
        r"hard[- ]?coded (?:passwords?|credentials?|keys?|secrets?)",
    ),
}
CWE_RE = re.compile(r"\bCWE[-_ ]?\d+", re.IGNORECASE)
_KEYWORD_RES: dict[str, re.Pattern[str]] = {
    family: re.compile(
        r"(?<![A-Za-z0-9])(?:" + "|".join(patterns) + r")(?![A-Za-z0-9])", re.IGNORECASE
    )
    for family, patterns in LEAK_KEYWORDS.items()
}


def _squash(text: str) -> str:
    return " ".join(text.split())


def leak_reasons(
    text: str,
    *,
    style: str,
    vulnerable: str,
    fixed: str,
    signature: str = "",
    func_name: str | None = None,
    copy_min_chars: int = 20,
    min_words: int = 4,
    max_chars: int = 4000,
) -> list[str]:
    """Why ``text`` may not be used as a prompt (empty list: it may). Pure.

    Rules, in order:

    1. at least ``min_words`` words and at most ``max_chars`` characters;
    2. no CWE id (``CWE_RE``);
    3. no weakness word or phrase (``LEAK_KEYWORDS``);
    4. no copied code: no line of the vulnerable or the fixed function with at least
       ``copy_min_chars`` non-space characters appears in the prompt, comparing with runs of
       whitespace collapsed to one space (so re-indenting a line does not hide it);
    5. ``docstring`` and ``context`` prompts must contain the function's name (the last
       identifier of ``func_name``, when it appears in ``signature``).

    For ``docstring`` and ``context`` the signature line(s) are exempt from rules 3 and 4
    (so is a code line that is a signature line plus an opening ``{``): those styles must
    show the signature, and a name such as ``sanitize_path`` is the task, not a hint.
    Everything else in such a prompt is checked. A ``task`` prompt may not copy the
    signature.
    """
    reasons: list[str] = []
    words = text.split()
    if len(words) < min_words:
        reasons.append(f"too short ({len(words)} words < {min_words})")
    if len(text) > max_chars:
        reasons.append(f"too long ({len(text)} characters > {max_chars})")
    exempt = (
        {_squash(line) for line in signature.splitlines() if line.strip()}
        if style in SIGNATURE_STYLES
        else set()
    )
    checked = "\n".join(line for line in text.splitlines() if _squash(line) not in exempt)
    cwe = CWE_RE.search(checked)
    if cwe:
        reasons.append(f"names a CWE id ({cwe.group(0)})")
    for family, pattern in _KEYWORD_RES.items():
        found = pattern.search(checked)
        if found:
            reasons.append(f"names a weakness: {found.group(0)!r} ({family})")
    squashed = _squash(text)
    for source in (vulnerable, fixed):
        for line in source.splitlines():
            key = _squash(line)
            if (
                len(key.replace(" ", "")) >= copy_min_chars
                and key not in exempt
                and key.removesuffix("{").rstrip() not in exempt
                and key in squashed
            ):
                reasons.append(f"copies code: {key[:60]!r}")
                break
        else:
            continue
        break
    if style in SIGNATURE_STYLES and func_name:
        names = re.findall(r"[A-Za-z_]\w*", func_name)
        if names and names[-1] in signature and names[-1] not in text:
            reasons.append(f"does not contain the function name {names[-1]!r}")
    return reasons


def reason_kind(reason: str) -> str:
    """``"copies code: 'x = y'"`` → ``"copies code"``: reasons folded for statistics."""
    return reason.split(":")[0].split(" (")[0]
