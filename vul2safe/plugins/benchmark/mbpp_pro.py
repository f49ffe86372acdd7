"""MBPP Pro (378 tasks): self-invoking versions of Google's MBPP problems.

Prompt and program assembly follow the official CodeEval-Pro harness; the exact rules are in
:mod:`vul2safe.plugins.benchmark.codeeval_pro` and ``docs/functional.md``. In short: the model
is shown both problems (``raw_problem`` and ``new_problem``, each a ``#`` comment and a
signature) and its answer continues ``"```python\\n" + raw_problem.strip() + "\\n"``; a
completion must supply the base body, the self-invoking function's signature and its body, and
the program
run is ``raw_problem + completion + "\\n" + test_code``.
"""

from __future__ import annotations

from typing import ClassVar

from vul2safe import hookimpl
from vul2safe.hookspecs import Register
from vul2safe.plugins.benchmark.codeeval_pro import CodeEvalProBenchmark


class MbppPro(CodeEvalProBenchmark):
    name: ClassVar[str] = "mbpp-pro"
    description: ClassVar[str] = (
        "MBPP Pro: 378 self-invoking Python problems built on MBPP (pass@k)"
    )
    hub_id: ClassVar[str | None] = "CodeEval-Pro/mbpp-pro"
    data_files: ClassVar[tuple[str, ...]] = (
        "mbpp_pro.json",
        "mbpp_pro.jsonl",
        "refined_mbpp_pro.json",
    )
    id_prefix: ClassVar[str] = "MbppPro"


@hookimpl
def register_benchmarks(register: Register) -> None:
    register(MbppPro())
