"""CWEval (Peng et al., 2025): function and security of the same code, judged by exploit tests.

119 tasks (25 Python, 31 C of which 11 in upstream's ``lang/c`` folder, 21 C++, 19 Go, 23
JavaScript); each has a prompt file with a secure reference, a pytest file whose parameters
are marked ``functionality`` or ``security``, and an unsafe reference. Task ids are
``<lang>/<stem>`` (``py/cwe_078_0``, ``c/cwe_022_0``). Prompts, extraction and assembly:
:mod:`.tasks`; building and testing in the sandbox: :mod:`.runner`; numbers: :mod:`.scoring`;
scanners against the exploit tests: :mod:`.ground_truth`; the whole protocol and what differs
from upstream: ``docs/cweval.md``.

Data location: ``--data-dir`` or ``VUL2SAFE_DATA_DIR`` naming the CWEval folder (one holding
``benchmark/core``), its ``benchmark`` folder, or a folder with a ``cweval`` sub-folder.
There is no Hub copy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from vul2safe import hookimpl
from vul2safe.benchmark import (
    DATA_DIR_ENV,
    Benchmark,
    BenchmarkKind,
    DatasetUnavailable,
    Task,
)
from vul2safe.hookspecs import Register
from vul2safe.plugins.benchmark.cweval.tasks import (
    assemble,
    build_task,
    extract_answer,
    find_task_files,
)

__all__ = ["CWEval"]

CITATION = """\
@inproceedings{peng2025cweval,
  title     = {{CWEval}: Outcome-driven Evaluation on Functionality and Security of {LLM} Code
               Generation},
  author    = {Peng, Jinjun and Cui, Leyi and Huang, Kele and Yang, Junfeng and Ray, Baishakhi},
  booktitle = {LLM4Code 2025},
  year      = {2025},
  note      = {arXiv:2501.08200}
}"""


def _root(folder: Path) -> Path | None:
    """The ``benchmark`` folder inside (or at) ``folder``, if any."""
    for candidate in (folder, folder / "benchmark", folder / "cweval" / "benchmark"):
        if (candidate / "core").is_dir():
            return candidate
    return None


class CWEval(Benchmark):
    """CWEval: func@k and func-sec@k from each task's own functionality and security tests."""

    name: ClassVar[str] = "cweval"
    kind: ClassVar[BenchmarkKind] = BenchmarkKind.both
    description: ClassVar[str] = (
        "CWEval: 119 tasks in 5 languages; func@k and func-sec@k from exploit tests"
    )
    citation: ClassVar[str] = CITATION
    version: ClassVar[str] = "1"
    #: what ``vul2safe eval`` generates with when --max-tokens is not given: upstream's
    #: ``max_completion_tokens`` (cweval/generate.py)
    default_max_tokens: ClassVar[int] = 2048
    language: ClassVar[str] = "multi"
    data_files: ClassVar[tuple[str, ...]] = ("benchmark",)

    def locate(self, data_dir: Path | str | None = None) -> Path | None:
        origin = "--data-dir"
        if data_dir is None:
            data_dir, origin = os.environ.get(DATA_DIR_ENV, "").strip() or None, DATA_DIR_ENV
        if data_dir is None:
            raise DatasetUnavailable(
                "cweval has no Hub copy; pass --data-dir naming the CWEval folder "
                f"(github.com/Co1lin/CWEval, the one holding benchmark/core) or set {DATA_DIR_ENV}"
            )
        root = _root(Path(data_dir).expanduser())
        if root is None:
            raise DatasetUnavailable(
                f"{origin} {data_dir} holds no CWEval benchmark/core folder; pass --data-dir "
                "naming the CWEval folder (or its benchmark folder)"
            )
        return root

    def _load_records(self, data_dir: Path | str | None) -> list[dict[str, Any]]:
        """One record per task's files, core then lang, languages in upstream's order, files
        in name order; the shared :meth:`Benchmark.load` filters, limits and converts them."""
        root = self.locate(data_dir)
        assert root is not None  # locate raises instead
        return [{"files": files} for files in find_task_files(root)]

    def _to_task(self, record: dict[str, Any], where: str) -> Task:
        return build_task(record["files"])

    def resolve_task_id(self, value: object) -> str:
        """``py/cwe_078_0``; upstream's file stems (``cwe_022_0_c``) are accepted too."""
        text = str(value)
        if "/" not in text and "_" in text:
            tail = text.rsplit("_", 1)[-1]
            if tail in ("c", "cpp", "go", "js"):
                return f"{tail}/{text.rsplit('_', 1)[0]}"
            return f"py/{text}"
        return text

    def completion_prefix(self, task: Task) -> str:
        """Upstream's ``compl`` prompt: it ends inside an open code block."""
        return str(task.metadata["completion_prompt"])

    def program(self, task: Task, code: str, *, standalone: bool = False) -> str:
        """The file upstream builds from an answer: extraction, then assembly."""
        text = code if standalone else self.completion_prefix(task) + code
        return assemble(task, extract_answer(text)[0])

    def score_dynamic(
        self,
        tasks: Sequence[Task],
        samples: Sequence[Mapping[str, Any]],
        *,
        jobs: int = 2,
        timeout_s: float | None = None,
        allow_unsafe: bool = False,
        scanners: Sequence[str] | None = None,
        agreement: bool = True,
        cache: Any = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Run ``samples`` (dicts with ``task_id`` and ``completion`` or ``solution``) with
        CWEval's own tests; the result block holds ``dynamic``, ``scanner_agreement``,
        ``samples`` and ``execution`` (layout: ``docs/cweval.md``). ``timeout_s`` is the
        wall-clock limit per test (``--timeout``; default upstream's 3 s)."""
        from vul2safe.plugins.benchmark.cweval.ground_truth import scanner_agreement
        from vul2safe.plugins.benchmark.cweval.runner import RunSettings, unsupported_tasks
        from vul2safe.plugins.benchmark.cweval.scoring import (
            parse_samples,
            score_cweval,
            summarize,
        )
        from vul2safe.sandbox import sandbox_available

        parsed = parse_samples([(s.get("line"), s) for s in samples], self.resolve_task_id)
        # --timeout is the per-test limit (upstream: 3 s); a session gets 40 of them, >= 120 s
        per_test = timeout_s if timeout_s is not None else RunSettings.test_timeout_s
        settings = RunSettings(test_timeout_s=per_test, timeout_s=max(120.0, 40 * per_test),
                               allow_unsafe=allow_unsafe)  # fmt: skip
        wanted = {s["task_id"] for s in parsed}
        unsupported = unsupported_tasks([t for t in tasks if t.task_id in wanted])
        records = score_cweval(
            tasks, parsed, settings=settings, jobs=jobs, unsupported=unsupported, progress=progress
        )
        sandboxed, how = sandbox_available()
        block: dict[str, Any] = {
            "dynamic": summarize(records),
            "scanner_agreement": scanner_agreement(records, scanners, cache=cache)
            if agreement
            else None,
            "execution": {
                "sandbox": "bubblewrap" if sandboxed else "none (rlimits only)",
                "sandbox_detail": how,
                "jobs": jobs,
                "test_timeout_s": settings.test_timeout_s,
                "run_timeout_s": settings.timeout_s,
            },
            "samples": [r.to_dict() for r in records],
        }
        return block

    def evaluate_samples_file(
        self,
        samples: Path,
        *,
        data_dir: Path | None = None,
        jobs: int = 2,
        timeout_s: float | None = None,
        allow_unsafe: bool = False,
        scanners: Sequence[str] | None = None,
        output: Path | None = None,
    ) -> Path:
        """``vul2safe eval --samples FILE --benchmark cweval``: score, write, print a summary;
        returns the result file's path."""
        from vul2safe.plugins.benchmark.cweval.report import evaluate_samples_file, print_summary

        result, target = evaluate_samples_file(
            self, samples, data_dir=data_dir, jobs=jobs, timeout_s=timeout_s,
            allow_unsafe=allow_unsafe, scanners=scanners, output=output,
        )  # fmt: skip
        print_summary(result)
        return target

    def score_entry(
        self,
        entry: dict[str, Any],
        tasks: Sequence[Task],
        samples: Sequence[Mapping[str, Any]],
        *,
        config: Any,
        cache: Any = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[tuple[str, int], bool]:
        """``vul2safe eval MODEL``: fill this benchmark's ``results.json`` block in place and
        return each sample's functional verdict (for the static func-sec beside it)."""
        from vul2safe.plugins.benchmark.cweval.evaluation import dynamic_entry

        return dynamic_entry(entry, self.score_dynamic, tasks, list(samples), config=config,
                             cache=cache, progress=progress)  # fmt: skip


@hookimpl
def register_benchmarks(register: Register) -> None:
    register(CWEval())
