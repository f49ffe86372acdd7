"""Where things are: finding regions and extracted code as character spans of a response,
and character spans as token masks.

Units: a finding's lines and columns are 1-based and its end column is exclusive
(:class:`vul2safe.schema.Finding`); a column counts Python ``str`` characters (code points),
``0`` means "unknown". Character spans and token offsets are ``[start, end)`` indices into
the response string, as a fast tokenizer's ``offset_mapping`` gives them.

torch is imported inside the functions that build tensors, so importing the package (the
CLI does, for :class:`~srcode.rewards.config.RewardConfig`) stays fast.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from vul2safe.extract import _dedent  # extract_code's own: blocks dedent the same way
from vul2safe.schema import Finding

if TYPE_CHECKING:
    import torch

__all__ = [
    "Span",
    "char_spans_to_token_mask",
    "decode_with_offsets",
    "finding_char_span",
    "line_col_to_offset",
    "locate_code",
]

Span = tuple[int, int]


# Line terminators as scanners count them (Python's tokenizer, SARIF): \r\n, \r and \n.
# Not str.splitlines(), which also breaks at \v, \f, \x1c and \u2028.
_EOL = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class _Lines:
    """Where each line of a text starts and where its content ends (before the terminator)."""

    starts: list[int]
    ends: list[int]

    @classmethod
    def of(cls, text: str) -> _Lines:
        starts, ends = [0], []
        for match in _EOL.finditer(text):
            ends.append(match.start())
            starts.append(match.end())
        ends.append(len(text))
        return cls(starts, ends)

    def index_of(self, offset: int) -> int:
        """0-based index of the line holding character ``offset``."""
        return max(0, bisect.bisect_right(self.starts, offset) - 1)


def line_col_to_offset(text: str, line: int, col: int) -> int:
    """The ``str`` index of 1-based ``line``/``col`` in ``text``.

    ``col`` 0 (unknown) or less means the start of the line; a line or column out of range is
    clamped (to the first/last line, to the line's end before its terminator), so the result
    is always a valid index. CRLF and lone CR end lines like LF.
    """
    lines = _Lines.of(text)
    index = min(max(line, 1), len(lines.starts)) - 1
    if col <= 0:
        return lines.starts[index]
    return min(lines.starts[index] + col - 1, lines.ends[index])


def _line_bounds(lines: _Lines, code_offset: int, code_indent: int, code_line: int) -> Span | None:
    """``[start, end)`` in the response of 1-based line ``code_line`` of code that starts at
    ``code_offset`` (its first line) and whose later lines were dedented by ``code_indent``;
    None when that line is not in the response."""
    first = lines.index_of(code_offset)
    index = first + code_line - 1
    if code_line < 1 or index >= len(lines.starts):
        return None
    end = lines.ends[index]
    start = code_offset if code_line == 1 else lines.starts[index] + code_indent
    return min(start, end), end


def _strip_span(text: str, start: int, end: int) -> Span:
    """Drop leading/trailing blanks: a whole-line region is the code, not its indentation
    (with byte-level BPE the indentation usually belongs to the previous line's newline
    token, which did nothing wrong)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _mapped_bounds(lines: _Lines, starts: Sequence[int], code_line: int) -> Span | None:
    """Like :func:`_line_bounds` for code whose line ``k`` (1-based) starts at response
    index ``starts[k - 1]`` (code salvaged from quoted, diff or doctest lines)."""
    if code_line < 1 or code_line > len(starts):
        return None
    start = starts[code_line - 1]
    end = lines.ends[lines.index_of(start)]
    return min(start, end), end


def _located_span(
    text: str,
    lines: _Lines,
    finding: Finding,
    code_offset: int,
    code_indent: int,
    starts: Sequence[int] | None = None,
) -> Span | None:
    def bounds(code_line: int) -> Span | None:
        if starts:
            return _mapped_bounds(lines, starts, code_line)
        return _line_bounds(lines, code_offset, code_indent, code_line)

    first = bounds(finding.start_line)
    if first is None:
        return None
    available = len(starts) if starts else len(lines.starts) - lines.index_of(code_offset)
    end_line = min(max(finding.end_line, finding.start_line), available)
    last = bounds(end_line)
    assert last is not None  # end_line is clamped into the available lines
    whole_start, whole_end = _strip_span(text, first[0], last[1])

    def at(bounds: Span, col: int) -> int:
        return min(bounds[0] + col - 1, bounds[1])

    start = at(first, finding.start_column) if finding.start_column > 0 else whole_start
    end = at(last, finding.end_column) if finding.end_column > 0 else whole_end
    if end <= start:  # inverted or empty column range (a tool's missing end column): lines
        start, end = whole_start, whole_end
    return (start, end) if end > start else None


def finding_char_span(text: str, finding: Finding) -> Span | None:
    """The ``[start, end)`` character span of ``finding`` in ``text`` (the scanned code).

    Known columns give the exact region; an unknown column (0) extends the region to the
    first/last non-blank character of its line, so both unknown = the whole line(s) without
    their indentation. An end before the start (seen when a tool omits the end column) also
    falls back to whole lines. None when the finding's first line is not in ``text`` (line
    < 1 or past the end) or the region is blank; an end line past the end is clamped.
    """
    return _located_span(text, _Lines.of(text), finding, 0, 0)


def locate_code(response: str, code: str) -> tuple[int, int] | None:
    """Where :func:`vul2safe.extract.extract_code`'s ``code`` sits in ``response``:
    ``(offset of its first character, indent removed from its later lines)``, or None.

    Extraction normalises line endings, drops blank lines around a block and removes a
    fence's indentation (a fence inside a list item), so the code is not always a verbatim
    substring; it is always a run of the response's lines, each possibly dedented, which is
    what this matches. The first match wins (a model repeating its answer gets its first
    copy penalised).
    """
    code_lines = code.split("\n")
    if code_lines and code_lines[-1] == "":
        code_lines.pop()  # chat-mode code ends with one newline
    if not "".join(code_lines).strip():
        return None
    lines = _Lines.of(response)
    texts = [response[s:e] for s, e in zip(lines.starts, lines.ends, strict=True)]
    head = code_lines[0]
    for k in range(len(texts) - len(code_lines) + 1):
        if not texts[k].endswith(head):
            continue
        prefix = texts[k][: len(texts[k]) - len(head)]
        indents = [len(prefix), 0] if prefix and not prefix.strip() else [0]
        for indent in indents:
            if all(
                _dedent(texts[k + i], indent) == code_lines[i] for i in range(1, len(code_lines))
            ):
                return lines.starts[k] + len(prefix), indent
    return None


# ------------------------------------------------------------------------------- tokens


def _offsets_tensor(offsets: Sequence[Span] | torch.Tensor) -> torch.Tensor:
    import torch

    return torch.as_tensor(offsets, dtype=torch.long).reshape(-1, 2)


def _region_masks(offsets: torch.Tensor, spans: Sequence[Span]) -> torch.Tensor:
    """``(len(spans), T)`` booleans: token ``t`` overlaps span ``s`` by at least 1 char."""
    import torch

    spans_t = torch.as_tensor(list(spans), dtype=torch.long).reshape(-1, 2)
    overlap = torch.minimum(offsets[None, :, 1], spans_t[:, None, 1]) - torch.maximum(
        offsets[None, :, 0], spans_t[:, None, 0]
    )
    return overlap >= 1


def char_spans_to_token_mask(
    offsets: Sequence[Span] | torch.Tensor, spans: Sequence[Span]
) -> torch.Tensor:
    """``(T,)`` float mask: 1.0 for each token overlapping any span by at least one character.

    A token straddling a span's boundary counts as inside: it wrote part of the region, and
    BPE merges such as ``"(cmd"`` or ``" shell"`` routinely cross the scanner's column
    boundaries, so requiring full containment would miss the tokens that matter. Tokens with
    empty offsets (special tokens, ``(0, 0)``) are never inside.
    """
    offsets_t = _offsets_tensor(offsets)
    return _region_masks(offsets_t, spans).any(dim=0).float()


class _Tokenizer(Protocol):
    all_special_ids: list[int]

    def decode(self, token_ids: list[int], **kwargs: Any) -> str: ...


def decode_with_offsets(
    tokenizer: _Tokenizer, token_ids: Sequence[int], *, skip_special_tokens: bool = True
) -> tuple[str, list[Span]]:
    """Decode generated ``token_ids`` and give each token its ``[start, end)`` in the text.

    Why not re-tokenise the text: a policy may sample a non-canonical split, and the reward
    must line up with the tokens whose log-probabilities PPO updates. Decoding is
    incremental over a short window (the last emitted chunk, so word-initial spaces and byte
    pieces decode in context, as vLLM's detokenizer does): O(T). A token holding part of a
    multi-byte character spans that whole character, the way a fast tokenizer's offset
    mapping does; special tokens get an empty span at the current end. Use the returned
    text as the response: it is what the offsets index.
    """
    ids = [int(i) for i in token_ids]
    special = set(tokenizer.all_special_ids) if skip_special_tokens else set()

    def decode(window: list[int]) -> str:
        return tokenizer.decode(
            window, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False
        )

    text = ""
    offsets: list[Span] = [(0, 0)] * len(ids)
    prefix_offset = read_offset = 0
    prefix_text = ""  # decode(ids[prefix_offset:read_offset]): the tail of ``text``
    before = ""  # decode(ids[prefix_offset:i]): the window before token i
    for i, token in enumerate(ids):
        if token in special:
            offsets[i] = (len(text), len(text))
            continue
        base = len(text) - len(prefix_text)  # where the window starts in ``text``
        after = decode(ids[prefix_offset : i + 1])
        # A trailing U+FFFD is a character still being written: the token touches it.
        offsets[i] = (base + len(before.rstrip("\ufffd")), base + len(after))
        before = after
        if len(after) > len(prefix_text) and not after.endswith("\ufffd"):
            text += after[len(prefix_text) :]
            prefix_offset, read_offset = read_offset, i + 1
            prefix_text = before = decode(ids[prefix_offset:read_offset])
    rest = decode(ids[prefix_offset:])  # bytes that never formed a character
    if len(rest) > len(prefix_text):
        text += rest[len(prefix_text) :]
    n = len(text)
    return text, [(min(s, n), min(e, n)) for s, e in offsets]
