"""``vul2safe eval MODEL``: generate → extract → score (security and function) → results.

One run directory holds everything a run produced:

- ``run.json`` — what was asked (model, backend, sampling, benchmarks); a resumed run must
  ask for the same thing, or it is refused (mixing two models' samples would be silent
  corruption);
- ``samples.jsonl`` — one generated sample per line, appended as it arrives, so an
  interrupted run resumes with only the missing (task, sample) pairs;
- ``findings.sarif`` — every finding of every scanned sample;
- ``results.json`` — the numbers (layout: ``docs/results.md``), written last and atomically
  with ``"completed": true``; a stale one is removed when a run starts.

Everything that can fail on user input fails before generation starts: unknown benchmark,
missing data, a language no available scanner covers, a missing model, an unreachable
endpoint.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vul2safe import __version__
from vul2safe.benchmark import Benchmark, BenchmarkKind, Task, dataset_hash
from vul2safe.errors import UsageError
from vul2safe.generation.base import BackendOptions, Prompt, SamplingParams, Session
from vul2safe.schema import Severity

FORMAT = "vul2safe-results/1"
ProgressFactory = Callable[[str, int], Callable[[int], None] | None]


@dataclass
class EvalConfig:
    """Everything ``vul2safe eval MODEL`` was asked to do."""

    model: str
    benchmarks: list[str]
    output: Path
    backend: str = "transformers"
    n: int = 1
    sampling: SamplingParams = field(default_factory=SamplingParams)
    backend_options: BackendOptions | None = None
    limit: int | None = None
    languages: list[str] | None = None
    data_dir: Path | None = None
    scanners: list[str] | None = None
    threshold: Severity = Severity.MEDIUM
    jobs: int = 2
    timeout_s: float = 10.0
    allow_unsafe: bool = False

    def manifest(self) -> dict[str, Any]:
        """The part of the config that decides which samples are generated."""
        options = self.backend_options or BackendOptions(model=self.model)
        return {
            "model": self.model,
            "revision": options.revision,
            "backend": self.backend,
            "use_chat_template": options.use_chat_template,
            "n": self.n,
            "sampling": self.sampling.to_dict(),
        }


@dataclass
class LoadedBenchmark:
    benchmark: Benchmark
    tasks: list[Task]
    source: str


def git_hash() -> str | None:
    """The vul2safe checkout's commit, when running from one."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def load_benchmarks(config: EvalConfig) -> dict[str, LoadedBenchmark]:
    """Resolve names and load data first: typos and missing data fail before any model work."""
    from vul2safe import plugins

    if not config.benchmarks:
        names = ", ".join(sorted(plugins.benchmarks.names()))
        raise UsageError(f"pass --benchmarks a,b (available: {names})")
    loaded: dict[str, LoadedBenchmark] = {}
    for name in dict.fromkeys(config.benchmarks):
        bench = plugins.benchmarks.get(name)
        kwargs: dict[str, Any] = {"limit": config.limit}
        if config.languages and _accepts_languages(bench):
            kwargs["languages"] = config.languages
        tasks = bench.load(config.data_dir, **kwargs)
        if not tasks:
            raise UsageError(f"benchmark {name} has no tasks (check --languages / --limit)")
        loaded[name] = LoadedBenchmark(bench, tasks, bench.source(config.data_dir))
    return loaded


def _accepts_languages(bench: Benchmark) -> bool:
    import inspect

    return "languages" in inspect.signature(bench.load).parameters


def is_functional(bench: Benchmark) -> bool:
    return str(bench.kind) in (BenchmarkKind.functional.value, BenchmarkKind.both.value)


def check_manifest(output: Path, manifest: dict[str, Any], benchmarks: list[str]) -> None:
    """Refuse to resume into a directory that holds another model's or setting's samples."""
    path = output / "run.json"
    if path.exists():
        previous = json.loads(path.read_text())
        if previous.get("config") != manifest:
            changed = sorted(
                key for key in set(manifest) | set(previous.get("config", {}))
                if manifest.get(key) != previous.get("config", {}).get(key)
            )
            raise UsageError(
                f"{output} holds a run with a different {', '.join(changed)}; "
                "use another --output directory"
            )
        benchmarks = list(dict.fromkeys([*previous.get("benchmarks", []), *benchmarks]))
    output.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": manifest, "benchmarks": benchmarks}, indent=2) + "\n")


def build_prompt(bench: Benchmark, task: Task, chat: bool) -> Prompt:
    """Chat models get the task as a user turn (plus the benchmark's assistant prefix);
    completion models continue the code prefix (functional) or the instruction text."""
    key = f"{bench.name}:{task.task_id}"
    if chat:
        return Prompt(
            key=key,
            mode="chat",
            messages=({"role": "user", "content": task.prompt},),
            response_prefix=str(task.metadata.get("response_prefix", "")),
        )
    text = bench.completion_prefix(task) or task.prompt + "\n"
    return Prompt(key=key, mode="completion", text=text)


def open_session(config: EvalConfig) -> Session:
    from vul2safe import plugins

    backend = plugins.backends.get(config.backend)
    options = config.backend_options or BackendOptions(model=config.model)
    return backend.open(options)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _sample_field_for_scoring(prompt: Prompt) -> str:
    """Chat answers that continue a response prefix are completions of the code prefix."""
    return "completion" if prompt.mode == "completion" or prompt.response_prefix else "solution"


def split_by_benchmark(
    samples: Sequence[dict[str, Any]], names: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    by_name: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for sample in samples:
        if sample.get("benchmark") in by_name:
            by_name[sample["benchmark"]].append(sample)
    for rows in by_name.values():
        rows.sort(key=lambda s: (s["task_id"], s["sample_index"]))
    return by_name
