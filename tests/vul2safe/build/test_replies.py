"""Teacher reply schemas: the pydantic models validate replies and publish JSON Schemas.

The JSON Schemas are what a guided decoder would be given, so they are checked against the
example reply each template shows the teacher (with a real JSON Schema validator) and
against the scripted teacher's replies: a schema that rejected them would make guided
decoding produce something the stage then refuses.
"""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from scripted_teacher import respond, sven_pairs

from vul2safe.build.reflect import conversation_turns
from vul2safe.build.replies import (
    REPLY_MODELS,
    guided_json,
    json_schema,
    response_format,
    validate_reply,
)
from vul2safe.build.teacher import ReplyError, parse_json_reply, render

TEMPLATE_OF = {"analyse": "analyse", "judge": "judge", "reflect": "reflect", "prompts": "prompts"}


def _example(step: str) -> dict:
    """The JSON block a template shows as the expected answer."""
    variables = {
        "language": "C",
        "fence": "c",
        "func_name": "f",
        "file_name": "f.c",
        "code": "int f(void) { return 0; }",
        "diff": "",
        "signature": "int f(void)",
        "style": "task",
        "n": 2,
    }
    text = render(TEMPLATE_OF[step], **variables)
    blocks = re.findall(r"```json\n(.*?)```", text, re.DOTALL)
    assert blocks, f"{step}.j2 shows no JSON example"
    return json.loads(blocks[-1])


@pytest.mark.parametrize("step", sorted(REPLY_MODELS))
def test_template_examples_fit_the_schema(step: str) -> None:
    example = _example(step)
    jsonschema.Draft202012Validator.check_schema(json_schema(step))
    jsonschema.validate(example, json_schema(step))
    validate_reply(step, example, n_lines=50)  # and the model accepts it too


@pytest.mark.parametrize("step", sorted(REPLY_MODELS))
def test_schemas_reject_the_wrong_shape(step: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"answer": "looks fine", "score": 7}, json_schema(step))
    with pytest.raises(ReplyError, match=r"^schema: '\w+' missing"):
        validate_reply(step, {"answer": "looks fine", "score": 7})


def test_scripted_teacher_replies_fit_the_schemas() -> None:
    """A whole conversation from the scripted teacher, every reply checked by both."""
    pair = sven_pairs(limit=1, files=("cwe-787",))[0]
    users = conversation_turns(pair)
    messages: list[dict[str, str]] = [{"role": "system", "content": "x"}]
    n_lines = len(pair.vulnerable.splitlines())
    for step, user in zip(("analyse", "judge", "reflect"), users, strict=True):
        messages.append({"role": "user", "content": user})
        text, finish = respond({"messages": messages, "seed": 0}, {})
        reply = parse_json_reply(text, finish)
        jsonschema.validate(reply, json_schema(step))
        assert validate_reply(step, reply, n_lines=n_lines)
        messages.append({"role": "assistant", "content": text})


def test_lenient_where_teachers_are_sloppy_strict_elsewhere() -> None:
    judged = validate_reply("judge", {"fix_is_correct": "No", "explanation": 3, "extra": 1})
    assert judged == {"fix_is_correct": False, "explanation": ""}
    for bad in (1, None, "maybe", [True]):
        with pytest.raises(ReplyError, match="'fix_is_correct' not a boolean"):
            validate_reply("judge", {"fix_is_correct": bad})
    with pytest.raises(ReplyError, match="'removes_weakness' not a boolean"):
        validate_reply("judge", {"fix_is_correct": True, "removes_weakness": None})
    with pytest.raises(ReplyError, match="'root_cause' not a string"):
        validate_reply("analyse", {"is_vulnerable": True, "root_cause": 7, "vulnerable_lines": []})
    # reflection: absent lines/CWE mean "unchanged" (left out), a given null means "none"
    assert "cwe" not in validate_reply("reflect", {"confirmed": True, "fix_is_correct": True})
    given = validate_reply(
        "reflect",
        {"confirmed": "yes", "fix_is_correct": True, "vulnerable_lines": None, "cwe": None},
    )
    assert given["vulnerable_lines"] == [] and given["cwe"] is None
    prompts = validate_reply("prompts", {"prompts": ["\nWrite f.\n", {"text": "Do g."}, " ", 4]})
    assert prompts == {"prompts": ["Write f.", "Do g."]}
    with pytest.raises(ReplyError, match="'prompts' holds no non-empty string"):
        validate_reply("prompts", {"prompts": ["", "  "]})


def test_guided_decoding_payloads() -> None:
    fmt = response_format("judge")
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "vul2safe_judge"
    assert fmt["json_schema"]["schema"]["required"] == ["fix_is_correct"]
    assert guided_json("analyse")["guided_json"]["required"] == [
        "is_vulnerable",
        "root_cause",
        "vulnerable_lines",
    ]
    lines = json_schema("analyse")["properties"]["vulnerable_lines"]
    assert lines["type"] == "array" and lines["items"] == {"type": "integer"}
