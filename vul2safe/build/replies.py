"""The JSON schemas of teacher replies, as pydantic models: one per question the build asks.

========================  ==========================  ======================================
step (template)           model                       used by
========================  ==========================  ======================================
``analyse`` (turn 1)      :class:`AnalysisReply`      reflect
``judge`` (turn 2)        :class:`JudgementReply`     reflect
``reflect`` (turn 3)      :class:`ReflectionReply`    reflect
``prompts``               :class:`PromptsReply`       prompts
========================  ==========================  ======================================

The models do two jobs. They *validate* a parsed reply (:func:`validate_reply`): teachers
are lenient writers, so ``"yes"``/``"true"`` strings count as booleans, digit strings as line
numbers, out-of-range line numbers are dropped rather than failing the vote, and a CWE is
normalised ("cwe-0787: ..." → "CWE-787"); anything else that is off raises
:class:`~vul2safe.build.teacher.ReplyError` naming the field, and the question is asked again.
And they *describe* the expected reply as JSON Schema (:func:`json_schema`,
:func:`response_format`) for servers that constrain decoding to a schema: OpenAI's
``response_format={"type": "json_schema", ...}``, vLLM's ``guided_json`` (``extra_body``).
The templates ask for the same shape in words, so a teacher without guided decoding needs
nothing else.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from vul2safe.build.teacher import ReplyError
from vul2safe.schema import normalize_cwe

__all__ = [
    "REPLY_MODELS",
    "AnalysisReply",
    "JudgementReply",
    "PromptsReply",
    "ReflectionReply",
    "guided_json",
    "json_schema",
    "response_format",
    "validate_reply",
]

_TRUE, _FALSE = ("true", "yes"), ("false", "no")


def _flag(value: Any) -> bool:
    """A boolean, or the strings true/yes/false/no; anything else (1, None, "maybe") fails."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("not a boolean")


def _line_list(value: Any) -> list[int]:
    """Line numbers as integers (digit strings accepted); ``null`` means none."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("is not a list")
    lines: list[int] = []
    for item in value:
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, int):
            raise ValueError("holds a non-integer")
        lines.append(item)
    return lines


def _cwe(value: Any) -> str | None:
    if value is None or isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return normalize_cwe(value)


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _text(value: Any) -> str:
    """Free text: stripped; a missing or non-string value is the empty string."""
    return value.strip() if isinstance(value, str) else ""


Flag = Annotated[bool, BeforeValidator(_flag)]
#: optional flag: absent is ``None``, but a given ``null`` is still not a boolean
MaybeFlag = Annotated[bool | None, BeforeValidator(_flag)]
Lines = Annotated[list[int], BeforeValidator(_line_list)]
#: optional lines: absent is ``None`` (unchanged), a given ``null`` is ``[]``
MaybeLines = Annotated[list[int] | None, BeforeValidator(_line_list)]
Cwe = Annotated[str | None, BeforeValidator(_cwe)]
Text = Annotated[str, BeforeValidator(_text)]


class _Reply(BaseModel):
    """Extra keys are ignored (teachers add commentary); strings are not coerced to numbers."""

    model_config = ConfigDict(extra="ignore")

    @field_validator("vulnerable_lines", mode="after", check_fields=False)
    @classmethod
    def _in_range(cls, lines: list[int], info: ValidationInfo) -> list[int]:
        """Sorted, unique, within ``1..n_lines`` (``context={"n_lines": n}``)."""
        n_lines = (info.context or {}).get("n_lines")
        return sorted({n for n in lines if n_lines is None or 1 <= n <= n_lines})


class AnalysisReply(_Reply):
    """Turn 1 (``analyse.j2``): what is wrong with the vulnerable function."""

    is_vulnerable: Flag
    root_cause: Annotated[StrictStr, BeforeValidator(_stripped)]
    vulnerable_lines: Lines = Field(description="1-based line numbers; required, may be []")
    cwe: Cwe = None


class JudgementReply(_Reply):
    """Turn 2 (``judge.j2``): is the fix correct; only ``fix_is_correct`` is required."""

    fix_is_correct: Flag
    removes_weakness: MaybeFlag = None
    preserves_behaviour: MaybeFlag = None
    explanation: Text = ""


class ReflectionReply(_Reply):
    """Turn 3 (``reflect.j2``): confirm or revise; lines and CWE omitted = unchanged."""

    confirmed: Flag
    fix_is_correct: Flag
    vulnerable_lines: MaybeLines = None
    cwe: Cwe = None
    revision: Text = ""


def _prompt_texts(value: Any) -> list[str]:
    """Strings, or objects with a ``text`` field; blank ones are left out."""
    if not isinstance(value, list):
        raise ValueError("missing or not a list")
    texts = []
    for item in value:
        if isinstance(item, dict):
            item = item.get("text")
        if isinstance(item, str) and item.strip():
            texts.append(item.strip("\n"))
    if not texts:
        raise ValueError("holds no non-empty string")
    return texts


class PromptsReply(_Reply):
    """The prompts question (``prompts.j2``): ``{"prompts": [string, ...]}``."""

    prompts: Annotated[list[str], BeforeValidator(_prompt_texts)] = Field(min_length=1)


REPLY_MODELS: dict[str, type[_Reply]] = {
    "analyse": AnalysisReply,
    "judge": JudgementReply,
    "reflect": ReflectionReply,
    "prompts": PromptsReply,
}
#: fields whose absence means "unchanged": left out of the validated dict when not given
_OPTIONAL: dict[str, tuple[str, ...]] = {
    "judge": ("removes_weakness", "preserves_behaviour"),
    "reflect": ("vulnerable_lines", "cwe"),
}


_PROBLEMS = {"missing": "missing", "string_type": "not a string", "list_type": "not a list"}


def validate_reply(step: str, obj: dict[str, Any], **context: Any) -> dict[str, Any]:
    """``obj`` checked against the step's model, as a plain dict; :class:`ReplyError` says
    which field is wrong (``"schema: 'fix_is_correct' not a boolean"``)."""
    model = REPLY_MODELS[step]
    try:
        reply = model.model_validate(obj, context=context)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "reply"
        problem = _PROBLEMS.get(first["type"]) or first["msg"].removeprefix("Value error, ")
        raise ReplyError(f"schema: {field!r} {problem}") from None
    data = reply.model_dump()
    for name in _OPTIONAL.get(step, ()):
        if name not in reply.model_fields_set:
            data.pop(name)
    return data


def json_schema(step: str) -> dict[str, Any]:
    """The JSON Schema of the reply to ``step`` (what a guided decoder should produce)."""
    return REPLY_MODELS[step].model_json_schema()


def response_format(step: str) -> dict[str, Any]:
    """OpenAI's ``response_format`` for ``step`` (structured outputs, non-strict)."""
    return {
        "type": "json_schema",
        "json_schema": {"name": f"vul2safe_{step}", "schema": json_schema(step), "strict": False},
    }


def guided_json(step: str) -> dict[str, Any]:
    """vLLM's ``extra_body`` for ``step``: ``{"guided_json": <schema>}``."""
    return {"guided_json": json_schema(step)}
