"""Language names and file extensions, in one table.

Language names follow the CyberSecEval/CodeShield spelling (``c``, ``cpp``, ``python``,
``javascript``, ...) because those become dataset columns and metric keys.
"""

from __future__ import annotations

from pathlib import Path

EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".c++": "cpp",
    ".hh": "cpp",
    ".hpp": "cpp",
    ".hxx": "cpp",
    ".java": "java",
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".ts": "typescript",
    ".php": "php",
    ".cs": "csharp",
    ".go": "go",
    ".rb": "ruby",
    ".rs": "rust",
    ".kt": "kotlin",
    ".swift": "swift",
    ".m": "objective_c",
}

#: the suffix a sample of that language is written with (first match in EXTENSIONS)
SUFFIXES: dict[str, str] = {}
for _suffix, _language in EXTENSIONS.items():
    SUFFIXES.setdefault(_language, _suffix)

ALIASES: dict[str, str] = {
    "py": "python",
    "python3": "python",
    "c++": "cpp",
    "cxx": "cpp",
    "js": "javascript",
    "ts": "typescript",
    "c#": "csharp",
    "cs": "csharp",
    "objc": "objective_c",
    "objective-c": "objective_c",
}


def normalize_language(name: str) -> str:
    """``'Python'`` → ``'python'``, ``'C++'`` → ``'cpp'``."""
    key = name.strip().lower()
    return ALIASES.get(key, key)


def detect_language(path: str | Path) -> str | None:
    """Language from the file name, or ``None`` when we don't know the suffix."""
    return EXTENSIONS.get(Path(path).suffix.lower())


def extension_for(language: str) -> str:
    """The suffix tools expect for ``language`` (tools pick their parser by it)."""
    return SUFFIXES.get(language, ".txt")
