"""Prompt rendering shared by every backend: one way from a :class:`Prompt` to model input.

The transformers and vLLM backends tokenize here (so both feed a model identical token ids);
the openai backend uses the plain-text rendering for ``/completions``; the test server uses it
to turn HTTP bodies into prompts the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vul2safe.errors import Vul2SafeError
from vul2safe.generation.base import Prompt


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer: Any, prompt: Prompt, use_chat_template: bool) -> tuple[str, bool]:
    """Prompt → (text to continue, whether the tokenizer should add its special tokens).

    Chat prompts go through the chat template when there is one and it is wanted (the
    template already holds BOS etc., so no special tokens are added); otherwise the messages'
    contents are joined by blank lines and continued as plain text. The response prefix is
    appended after the generation prompt either way.
    """
    if prompt.mode == "chat" and use_chat_template and has_chat_template(tokenizer):
        try:
            text = tokenizer.apply_chat_template(
                [dict(m) for m in prompt.messages], tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # jinja2 errors, raise_exception() calls in templates
            raise Vul2SafeError(
                f"the chat template rejected the messages of task {prompt.key!r}: {exc}; "
                "fix the prompt or pass --no-chat-template"
            ) from None
        return str(text) + prompt.response_prefix, False
    if prompt.mode == "chat":
        body = "\n\n".join(m.get("content", "") for m in prompt.messages)
        if prompt.messages and prompt.response_prefix:
            body += "\n\n"
        return body + prompt.response_prefix, True
    return prompt.text + prompt.response_prefix, True


def encode_prompt(tokenizer: Any, prompt: Prompt, use_chat_template: bool) -> list[int]:
    text, add_special = render_prompt(tokenizer, prompt, use_chat_template)
    return list(tokenizer(text, add_special_tokens=add_special)["input_ids"])


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut at the earliest stop string (the stop string itself is dropped, as OpenAI does)."""
    cut = min((pos for s in stop if s and (pos := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
