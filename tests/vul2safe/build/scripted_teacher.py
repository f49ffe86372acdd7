"""A scripted teacher: a real OpenAI-compatible HTTP server with rule-based, deterministic replies.

No LLM runs offline, so the build stages are tested against this server through the real
``openai`` backend. Its replies are pure functions of the request, written in the JSON
schemas of ``vul2safe/build/templates``; what tests check is the protocol handling (bulk
requests, retries, caching, dropping with reasons), never the answers' quality.

The rules:

- the step comes from the template header of the last user message (``STEP 1 of 3: ANALYSE``,
  ``STEP 2 of 3``, ``STEP 3 of 3``, ``WRITE IMPLICIT PROMPTS — style: <style>``);
- **analyse**: vulnerable lines are the lines of the first code block that match risky calls
  (``strcpy``/``sprintf``/``memcpy``, ``system``/``popen``/``shell=True``, ``execute`` with
  string formatting, ``eval``, ...), with a CWE per pattern (none found: no lines, CWE-20);
- **judge**: the fix is correct when the fixed code no longer contains one of those lines
  (no lines named: when the fixed code differs at all);
- **reflect**: confirms the judgement;
- **prompts**: task/docstring/context prompts built from the function name and signature.

``misbehave`` maps a function name (the ``Function: `name``` line of the prompt) to a plan
``"[step:]mode[_once]"`` (the name ``"*"``: every function without a plan of its own):
``malformed``, ``empty``, ``truncated`` (finish_reason "length"),
``refusal``, ``prose`` (off-format), ``schema`` (valid JSON, wrong keys) replace the reply;
``reject`` (judge says the fix is wrong), ``revise`` (judge says wrong, reflection revises to
right), ``split`` (reflection says right for even seeds only) change the verdict; ``leak``
(prompts naming the weakness and copying code) and ``dup`` (near-identical prompts) shape
the prompts. ``_once`` misbehaves only on a first attempt (no ``(Attempt N`` retry note);
``step:`` limits the plan to one step (``analyse``, ``judge``, ``reflect``, ``prompts``) or
one prompt style (``task``, ``docstring``, ``context``).

Other tests import it: ``start_teacher`` and ``open_session`` (the real ``openai`` backend
pointed at the server), ``sven_pairs`` (real SVEN pairs as ``RepairPair`` s). The server
counts chat requests (``request_count``, ``max_in_flight``, every request ``bodies``); run as
a script it serves from its own process and reports the counters at ``GET /stats``.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any, Protocol

from vul2safe.build.records import RepairPair
from vul2safe.generation.base import BackendOptions, Session
from vul2safe.schema import normalize_cwes
from vul2safe.testing.openai_http import CHAT, Answer, Choice, OpenAIHTTPServer, RequestError

SVEN_DIR = Path(__file__).resolve().parents[4] / "shared" / "data" / "sven" / "train"
MODEL = "scripted-teacher"

RISKY: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (
        re.compile(r"\b(strcpy|strcat|sprintf|vsprintf|gets|memcpy|memmove|strncpy)\s*\("),
        "CWE-787",
        "data is copied into a buffer without checking that it fits",
    ),
    (
        re.compile(
            r"\b(system|popen|execl|execlp|execvp)\s*\(|os\.system|os\.popen|shell\s*=\s*True"
        ),
        "CWE-78",
        "a shell command is built from caller-controlled text",
    ),
    (
        re.compile(r"execute\w*\(.*(%|\+|\.format\(|f[\"'])|f[\"'](SELECT|INSERT|UPDATE|DELETE)"),
        "CWE-89",
        "an SQL statement is built by string formatting",
    ),
    (re.compile(r"\beval\s*\(|\bexec\s*\("), "CWE-95", "text is evaluated as code"),
    (
        re.compile(r"render_template_string|Markup\(|innerHTML|\|\s*safe"),
        "CWE-79",
        "markup is produced from unescaped text",
    ),
    (
        re.compile(r"\bopen\s*\(.*(\+|%|join)|send_file\(|os\.path\.join\("),
        "CWE-22",
        "a file path is built from caller-controlled text",
    ),
    (re.compile(r"\bfree\s*\("), "CWE-416", "memory is used around a free"),
)
_FENCE = re.compile(r"```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)
_NUMBER = re.compile(r"^\s*\d+ \| ?", re.MULTILINE)
_ATTEMPT = re.compile(r"\(Attempt \d+")
STEP_HEADERS = {
    "STEP 1 of 3": "analyse",
    "STEP 2 of 3": "judge",
    "STEP 3 of 3": "reflect",
    "WRITE IMPLICIT PROMPTS": "prompts",
}
REPLACING = {"malformed", "empty", "truncated", "refusal", "prose", "schema"}


# --------------------------------------------------------------------------- the responder


def _code_blocks(text: str) -> list[str]:
    return [
        _NUMBER.sub("", body.rstrip("\n"))
        for lang, body in _FENCE.findall(text)
        if lang.lower() not in ("json", "diff", "")
    ]


def _last_json(text: str) -> dict[str, Any]:
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() == "json"]
    try:
        value = json.loads(blocks[-1]) if blocks else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}


def _fenced(obj: dict[str, Any], preamble: str) -> str:
    return f"{preamble}\n\n```json\n{json.dumps(obj)}\n```"


def _analyse(code: str) -> dict[str, Any]:
    lines = code.splitlines()
    hits: list[int] = []
    cwe, cause = None, "no obviously risky call; the change itself is the best hint"
    for number, line in enumerate(lines, 1):
        for pattern, pattern_cwe, pattern_cause in RISKY:
            if pattern.search(line):
                hits.append(number)
                if cwe is None:
                    cwe, cause = pattern_cwe, pattern_cause
                break
    return {
        "is_vulnerable": bool(cwe),
        "root_cause": cause,
        "vulnerable_lines": hits[:8],
        "cwe": cwe or "CWE-20",
    }


def _judge(vulnerable: str, fixed: str, lines: list[int]) -> bool:
    before = vulnerable.splitlines()
    fixed_lines = {line.strip() for line in fixed.splitlines()}
    named = [before[n - 1].strip() for n in lines if 1 <= n <= len(before)]
    if not named:
        return vulnerable.strip() != fixed.strip()
    return any(line not in fixed_lines for line in named)


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


def _params(signature: str) -> list[str]:
    inside = signature[signature.find("(") + 1 : signature.rfind(")")] if "(" in signature else ""
    names = []
    for part in inside.split(","):
        part = part.split("=")[0].split(":")[0].strip().rstrip("[]")
        token = re.findall(r"[A-Za-z_]\w*", part)
        if token and token[-1] not in ("self", "cls", "void"):
            names.append(token[-1])
    return names


def _prompts(style: str, n: int, name: str, language: str, signature: str, code: str) -> list[str]:
    words = " ".join(_words(name)) or "the operation"
    params = _params(signature)
    takes = f"takes {', '.join(f'`{p}`' for p in params)}" if params else "takes no arguments"
    out: list[str] = []
    for k in range(n):
        if style == "task":
            openers = ("Write", "Implement", "Create", "Please write", "Code up")
            out.append(
                f"{openers[k % len(openers)]} a {language} function named `{name}` that {takes}. "
                f"It should {words} and report the outcome to its caller (variant {k + 1})."
            )
        elif style == "docstring":
            if language == "Python":
                handles = f"Variant {k + 1}: handles {takes[6:]}."
                doc = f'    """{words.capitalize()}.\n\n    {handles}\n    """'
                out.append(f"{signature}\n{doc}\n")
            else:
                out.append(
                    f"/**\n * {words.capitalize()}.\n * Variant {k + 1}: {takes}.\n */\n"
                    f"{signature}\n{{\n"
                )
        else:
            if language == "Python":
                out.append(
                    f"import os\n\n# module helpers, part {k + 1}\n\n# {words}\n{signature}\n"
                )
            else:
                out.append(
                    f"#include <stdlib.h>\n#include <string.h>\n\n/* part {k + 1} */\n\n"
                    f"/* {words} */\n{signature}\n{{\n"
                )
    return out


def _parse_plan(plan: str) -> tuple[str | None, str, bool]:
    step, _, mode = plan.rpartition(":")
    once = mode.endswith("_once")
    return (step or None), mode.removesuffix("_once"), once


def respond(body: dict[str, Any], misbehave: dict[str, str]) -> tuple[str, str]:
    """The reply text and finish_reason for one chat request: a pure function of it."""
    messages = body.get("messages") or []
    users = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
    assistants = [str(m.get("content") or "") for m in messages if m.get("role") == "assistant"]
    last = users[-1] if users else ""
    step = next((s for header, s in STEP_HEADERS.items() if header in last), None)
    if step is None:
        return "Hello! I am a scripted teacher and only answer the build templates.", "stop"
    found = re.search(r"^Function: `([^`]*)`", "\n".join(users), re.MULTILINE)
    name = found.group(1) if found else ""
    style = re.search(r"style: (\w+)", last) if step == "prompts" else None
    scopes = {None, step, style.group(1) if style else step}
    mode = ""
    plan = misbehave.get(name, misbehave.get("*"))
    if plan:
        plan_step, plan_mode, once = _parse_plan(plan)
        if plan_step in scopes and not (once and _ATTEMPT.search(last)):
            mode = plan_mode
    seed = int(body.get("seed") or 0)
    text = _normal(step, users, assistants, last, mode, seed)
    if mode in REPLACING:
        return _misbehave(mode, text)
    return text, "stop"


def _normal(
    step: str, users: list[str], assistants: list[str], last: str, mode: str, seed: int
) -> str:
    if step == "prompts":
        style = re.search(r"style: (\w+)", last)
        count = re.search(r"Write (\d+) different", last)
        language = re.search(r"^Language: (.+)$", last, re.MULTILINE)
        name = re.search(r"^Function: `([^`]*)`", last, re.MULTILINE)
        blocks = _code_blocks(last)
        code, signature = [*blocks, "", ""][:2]
        prompts = _prompts(
            style.group(1) if style else "task",
            int(count.group(1)) if count else 1,
            name.group(1) if name else "f",
            language.group(1).strip() if language else "Python",
            signature,
            code,
        )
        if mode == "leak":
            copied = max(code.splitlines() or [""], key=len).strip()
            prompts = [
                f"{p}\nMake sure it avoids CWE-787 (buffer overflow); e.g. `{copied}`"
                for p in prompts
            ]
        elif mode == "dup":
            prompts = [prompts[0]] + [prompts[0].replace(".", "!", 1) for _ in prompts[1:]]
        return _fenced({"prompts": prompts}, f"Here are {len(prompts)} prompt(s).")
    vulnerable = (_code_blocks(users[0]) or [""])[0]
    analysis = _analyse(vulnerable)
    if step == "analyse":
        return _fenced(analysis, f"Analysis: {analysis['root_cause']}.")
    lines = _last_json(assistants[0]).get("vulnerable_lines", analysis["vulnerable_lines"])
    fixed = (_code_blocks(users[1]) or [""])[0] if len(users) > 1 else ""
    correct = _judge(vulnerable, fixed, [n for n in lines if isinstance(n, int)])
    if mode in ("reject", "revise"):
        correct = False
    if step == "judge":
        judgement = {
            "fix_is_correct": correct,
            "removes_weakness": correct,
            "preserves_behaviour": True,
            "explanation": "the risky lines were changed" if correct else "the risky lines remain",
        }
        return _fenced(judgement, "Judgement follows.")
    previous = _last_json(assistants[-1]) if assistants else {}
    final = bool(previous.get("fix_is_correct", correct))
    confirmed = True
    if mode == "revise":
        final, confirmed = True, False
    elif mode == "split":
        final, confirmed = seed % 2 == 0, seed % 2 == 0
    reflection = {
        "confirmed": confirmed,
        "fix_is_correct": final,
        "vulnerable_lines": lines,
        "cwe": analysis["cwe"],
        "revision": "" if confirmed else "on a second reading the verdict changes",
    }
    return _fenced(reflection, "Reflection: I re-read both answers.")


def _misbehave(mode: str, text: str) -> tuple[str, str]:
    if mode == "empty":
        return "", "stop"
    if mode == "truncated":
        return text[: max(1, len(text) * 3 // 5)], "length"
    if mode == "refusal":
        return "I'm sorry, but I can't help with analysing this code.", "stop"
    if mode == "prose":
        return "Looks reasonable overall; I would merge this change after a quick test.", "stop"
    if mode == "schema":
        return '```json\n{"answer": "looks fine", "score": 7}\n```', "stop"
    return '```json\n{"fix_is_correct": true, "explanation": "unterminated\n```', "stop"


# --------------------------------------------------------------------------- the server


class TeacherServer(OpenAIHTTPServer):
    """The running server: ``base_url`` (``http://127.0.0.1:PORT/v1``), request counters.

    The HTTP plumbing is the shared :class:`~vul2safe.testing.openai_http.OpenAIHTTPServer`
    (the same one the model server uses); this class only answers by the rules above.
    """

    endpoints = (CHAT,)
    owned_by = "tests"

    def __init__(self, delay_s: float, misbehave: dict[str, str], model: str) -> None:
        super().__init__(("127.0.0.1", 0), model, latency_s=delay_s, keep_bodies=True)
        self.misbehave = dict(misbehave)
        self.model = model
        self.start("scripted-teacher")
        self.base_url = self.url

    @property
    def delay_s(self) -> float:
        return self.latency_s

    @property
    def request_count(self) -> int:
        """Chat-completion requests received so far."""
        return self.stats.requests

    @property
    def max_in_flight(self) -> int:
        return self.stats.max_in_flight

    def answer(self, path: str, body: dict[str, Any], number: int) -> Answer:
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise RequestError(400, "'messages' must be a list of objects")
        text, finish = respond(body, self.misbehave)
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in messages)
        return Answer([Choice(text, finish, len(text.split()))], prompt_tokens=prompt_words)

    def extra_get(self, path: str) -> dict[str, Any] | None:
        if path == "/stats":  # for a server run as its own process
            return {"requests": self.request_count, "max_in_flight": self.max_in_flight}
        return None

    def __enter__(self) -> TeacherServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_teacher(
    *, delay_s: float = 0.0, misbehave: dict[str, str] | None = None, model: str = MODEL
) -> TeacherServer:
    """Start a scripted teacher on a free port of 127.0.0.1; ``close()`` it when done."""
    return TeacherServer(delay_s, misbehave or {}, model)


class Served(Protocol):
    """Anything with the address of a scripted teacher (in this process or another)."""

    base_url: str
    model: str


def open_session(server: Served, *, concurrency: int = 16) -> Session:
    """The real ``openai`` backend pointed at ``server`` (two client retries at most)."""
    from vul2safe import plugins
    from vul2safe.errors import UnknownPluginError

    options = BackendOptions(
        model=server.model,
        base_url=server.base_url,
        concurrency=concurrency,
        timeout_s=30.0,
        max_retries=2,
    )
    try:
        backend = plugins.backends.get("openai")
    except UnknownPluginError:  # not yet in DEFAULT_PLUGINS: the same class, imported directly
        from vul2safe.plugins.backend.openai_backend import OpenAIBackend

        backend = OpenAIBackend()
    return backend.open(options)


# --------------------------------------------------------------------------- real data


def sven_pairs(
    *, limit: int | None = None, files: tuple[str, ...] = (), unique_names: bool = True
) -> list[RepairPair]:
    """SVEN's real fix pairs (``../shared/data/sven/train``) as ``RepairPair`` s.

    ``files``: e.g. ``("cwe-078", "cwe-787")`` (default: all, in file-name order).
    ``unique_names``: keep the first pair per function name, so a misbehaviour plan keyed by
    name targets exactly one pair.
    """
    from vul2safe.languages import detect_language

    names = sorted(p.stem for p in SVEN_DIR.glob("*.jsonl"))
    pairs: list[RepairPair] = []
    seen: set[str] = set()
    for stem in files or names:
        lines = (SVEN_DIR / f"{stem}.jsonl").read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            row = json.loads(line)
            if unique_names and row["func_name"] in seen:
                continue
            seen.add(row["func_name"])
            commit = row["commit_link"].rstrip("/").rsplit("/", 1)[-1]
            pairs.append(
                RepairPair(
                    pair_id=f"sven:{commit[:12]}:{stem}:{number}",
                    source="sven",
                    language=detect_language(row["file_name"]) or "c",
                    vulnerable=row["func_src_before"],
                    fixed=row["func_src_after"],
                    cwe=normalize_cwes([row["vul_type"]]),
                    commit=commit,
                    commit_url=f"https://{row['commit_link']}",
                    file_name=row["file_name"],
                    func_name=row["func_name"],
                    metadata={"line_changes": row.get("line_changes")},
                )
            )
            if limit is not None and len(pairs) >= limit:
                return pairs
    return pairs


def main() -> None:
    """``python scripted_teacher.py --delay 0.1``: serve in a process of its own (benchmarks:
    the server's threads then do not compete with the client for the GIL). Prints the base
    URL on the first line; ``GET /stats`` returns the request counters."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--misbehave", default="{}", help="JSON: function name -> plan")
    args = parser.parse_args()
    server = start_teacher(delay_s=args.delay, misbehave=json.loads(args.misbehave))
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


if __name__ == "__main__":
    main()
