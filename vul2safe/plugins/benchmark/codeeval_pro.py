"""Shared loader for the CodeEval-Pro benchmarks (HumanEval Pro, MBPP Pro).

Not a plugin itself (no ``register_benchmarks`` hook): ``humaneval_pro`` and ``mbpp_pro``
subclass :class:`CodeEvalProBenchmark` and register one instance each.

The task is *self-invoking code generation* (Yu et al., 2024): a base problem and a harder
problem whose solution must call the base solution. Each record has ``id``, ``raw_problem``
(base signature + docstring, or a ``#`` comment + signature), ``raw_solution`` (its body),
``new_problem`` (the self-invoking function's comment + signature), ``new_solution`` (its
body), ``test_code`` (asserts on the self-invoking function).

Prompt and program, exactly as the official harness (github.com/CodeEval-Pro/CodeEval-Pro,
``eval/utils.py``, ``eval/inference.py``, ``eval/harness.py``) builds them:

* ``Task.prompt`` (the instruction, the user turn)::

      Write a solution of python file to the following problems, the solution of the second
      problem requires single or multiple calls to the first solution.
      ```python
      {raw_problem.strip()}
      {new_problem.strip()}
      ```

  (one line before the fence in the real text; wrapped here).
* ``metadata["response_prefix"]`` = ``"```python\\n" + raw_problem.strip() + "\\n"``: the
  start of the assistant turn. The model *continues* it: it writes the base body
  (``raw_solution``), then the self-invoking function again (``new_problem`` +
  ``new_solution``), and the text is cut at the first ```` ``` ````.
* The continuation is a **completion** (samples field ``completion``); the program is
  ``raw_problem + completion + "\\n" + test_code`` (:meth:`program`).
  ``metadata["code_prefix"]`` = ``raw_problem`` (what :meth:`completion_prefix` returns).
* A whole answer (samples field ``solution``, e.g. a chat model answering without the
  prefix) is **standalone**: the program is ``solution + "\\n" + test_code``.
* ``Task.reference`` = ``raw_solution + new_problem + new_solution``: the ideal completion,
  so ``program(task, task.reference)`` is the official ground-truth program.

How outputs are cut, run and counted is the scoring protocol's business
(:mod:`vul2safe.protocols`): by default the official one (cut rules, ``code_eval``
execution, raw and sanitized pass@k); ``docs/functional.md`` lists every rule with the
official file and line. The official ``code_eval`` path runs the code as written (the tab
replacement in ``eval/harness.py`` is only on its ``--run_code`` log path).
:meth:`generation_prompt` builds the official prompts for ``vul2safe eval MODEL``.

Task ids are ``{id_prefix}/{id}`` (``HumanEvalPro/0``); samples files may also use the
bare integer ``id`` of the official files (``0`` or ``"0"``).
"""

from __future__ import annotations

import ast
import re
import warnings
from typing import Any, ClassVar

from vul2safe.benchmark import Benchmark, BenchmarkKind, Task
from vul2safe.errors import InputError
from vul2safe.generation.base import Prompt

INSTRUCTION = (
    "Write a solution of python file to the following problems, the solution of the second "
    "problem requires single or multiple calls to the first solution.\n"
    "```python\n{raw}\n{new}\n```"
)
RESPONSE_PREFIX = "```python\n{raw}\n"
#: eval/prompt_template.py PROMPT_WRAPPER: local models continue this text (eval/inference.py)
SYSTEM = (
    "You are an exceptionally intelligent coding assistant that consistently delivers "
    "accurate and reliable responses to user instructions."
)
PROMPT_WRAPPER = SYSTEM + "\n@@ Instruction\n{instruction}\n\n@@ Response\n{response}"
#: eval/prompt_template.py PROMPT_WRAPPER_API: the user turn of the API path (eval/run_api.py)
PROMPT_WRAPPER_API = "\n@@ Instruction\n{instruction}\n@@ Response\n"

FIELDS = ("id", "raw_problem", "raw_solution", "new_problem", "new_solution", "test_code")

CITATION = """\
@inproceedings{yu2025humanevalpro,
  title     = {{HumanEval Pro} and {MBPP Pro}: Evaluating Large Language Models on
               Self-invoking Code Generation},
  author    = {Yu, Zhaojian and Zhao, Yilun and Cohan, Arman and Zhang, Xiao-Ping},
  booktitle = {Findings of the Association for Computational Linguistics: ACL 2025},
  year      = {2025},
  note      = {arXiv:2412.21199}
}"""

_NUMERIC_ID = re.compile(r"\d+")


def _entry_point(record: dict[str, Any]) -> str | None:
    """Name of the self-invoking function: a top-level def of the new part that the tests
    call (a few records put the signature in ``new_solution``, so no regex on new_problem)."""
    head = record["raw_problem"] + record["raw_solution"]
    try:
        with warnings.catch_warnings():  # e.g. "invalid escape sequence" in the data's strings
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            tree = ast.parse(head + record["new_problem"] + record["new_solution"])
    except SyntaxError:
        return None
    first_new_line = head.count("\n") + 1
    names = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.lineno >= first_new_line
    ]
    called = [n for n in names if re.search(rf"\b{re.escape(n)}\s*\(", record["test_code"])]
    found = called or names
    return found[0] if found else None


class CodeEvalProBenchmark(Benchmark):
    """HumanEval Pro / MBPP Pro: the self-invoking problem, scored by running its tests."""

    kind: ClassVar[BenchmarkKind] = BenchmarkKind.functional
    citation: ClassVar[str] = CITATION
    version: ClassVar[str] = "1"
    language: ClassVar[str] = "python"
    data_subdirs: ClassVar[tuple[str, ...]] = ("codeeval-pro",)
    #: ``HumanEvalPro`` / ``MbppPro``
    id_prefix: ClassVar[str] = ""
    #: what ``vul2safe eval`` generates with when --max-tokens is not given: the official
    #: README's ``--max_new_tokens 4096`` (README.md:93, eval/inference.py:140)
    default_max_tokens: ClassVar[int] = 4096

    def _to_task(self, record: dict[str, Any], where: str) -> Task:
        missing = [f for f in FIELDS if f not in record]
        if missing:
            raise InputError(f"{where}: missing field(s) {', '.join(missing)}")
        bad = [f for f in FIELDS[1:] if not isinstance(record[f], str)]
        if bad:
            raise InputError(f"{where}: field(s) {', '.join(bad)} must be strings")
        raw, new = record["raw_problem"], record["new_problem"]
        return Task(
            task_id=self.resolve_task_id(record["id"]),
            prompt=INSTRUCTION.format(raw=raw.strip(), new=new.strip()),
            language=self.language,
            metadata={
                "id": record["id"],
                "response_prefix": RESPONSE_PREFIX.format(raw=raw.strip()),
                "code_prefix": raw,
                "raw_problem": raw,
                "new_problem": new,
                "entry_point": _entry_point(record),
            },
            tests=record["test_code"],
            reference=record["raw_solution"] + new + record["new_solution"],
        )

    def resolve_task_id(self, value: object) -> str:
        """``7``, ``"7"`` and ``"HumanEvalPro/7"`` all name the same task."""
        if isinstance(value, bool):
            return str(value)
        if isinstance(value, int) or (isinstance(value, str) and _NUMERIC_ID.fullmatch(value)):
            return f"{self.id_prefix}/{int(value)}"
        return str(value)

    def generation_prompt(self, task: Task, key: str, *, chat: bool, backend: str) -> Prompt:
        """The official prompts: a chat model over the OpenAI protocol gets the API path's
        system message + instruction (no assistant prefill; its answer is a ``solution``);
        every local model, chat or base, continues the plain-text wrapper as the official
        vLLM path does (its continuation is a ``completion``)."""
        if chat and backend == "openai":
            user = PROMPT_WRAPPER_API.format(instruction=task.prompt)
            messages = ({"role": "system", "content": SYSTEM}, {"role": "user", "content": user})
            return Prompt(key=key, mode="chat", messages=messages)
        text = PROMPT_WRAPPER.format(
            instruction=task.prompt, response=task.metadata["response_prefix"]
        )
        return Prompt(key=key, mode="completion", text=text)

    def completion_prefix(self, task: Task) -> str:
        return str(task.metadata["code_prefix"])

    def program(self, task: Task, code: str, *, standalone: bool = False) -> str:
        """``raw_problem + code + "\\n" + test_code`` (or without raw_problem if standalone)."""
        head = code if standalone else self.completion_prefix(task) + code
        return head + "\n" + (task.tests or "")
