"""The resumable runner on the real transformers backend (tiny model): interruption and
resume, torn-line recovery, cache hits."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from vul2safe.cache import Cache
from vul2safe.errors import InputError, UsageError, Vul2SafeError
from vul2safe.generation.base import (
    BackendOptions,
    Completion,
    GenerationRequest,
    Prompt,
    SamplingParams,
    Session,
)
from vul2safe.generation.runner import generate_samples, read_samples
from vul2safe.plugins.backend.transformers_backend import TransformersBackend, TransformersSession

PARAMS = SamplingParams(temperature=0.8, max_tokens=6, seed=3)
PROMPTS = [
    Prompt("py/1", "chat", messages=({"role": "user", "content": "Write a file reader."},)),
    Prompt("py/2", "completion", text="def run_ping(host):\n"),
    Prompt("c/1", "chat", ({"role": "user", "content": "Copy a string in C."},), "```c\n"),
]
N = 3


class Recording(Session):
    """Wraps a real session: records what is asked, can be interrupted after k samples."""

    def __init__(self, inner: Session, interrupt_after: int | None = None) -> None:
        self.inner = inner
        self.interrupt_after = interrupt_after
        self.asked: list[tuple[str, int]] = []
        self.yielded = 0

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> Iterator[tuple[int, Completion]]:
        self.asked.extend((r.prompt.key, r.sample_index) for r in requests)
        for index, completion in self.inner.generate(requests, params):
            if self.interrupt_after is not None and self.yielded >= self.interrupt_after:
                raise KeyboardInterrupt
            self.yielded += 1
            yield index, completion


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> Iterator[TransformersSession]:
    session = TransformersBackend().open(BackendOptions(model=str(tiny_model_dir), batch_size=4))
    yield session
    session.close()


@pytest.fixture(scope="module")
def reference(tiny: TransformersSession, tmp_path_factory: pytest.TempPathFactory):
    """One uninterrupted run: what every resumed run must end up with."""
    out = tmp_path_factory.mktemp("reference") / "samples.jsonl"
    return generate_samples(tiny, PROMPTS, PARAMS, N, out)


def _pairs(samples: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(s["task_id"], s["sample_index"]) for s in samples]


def _texts(samples: list[dict[str, Any]]) -> list[str]:
    return [s["completion"] for s in samples]


ALL_PAIRS = [(p.key, i) for p in PROMPTS for i in range(N)]


def test_fresh_run_writes_one_line_per_sample(
    tiny: TransformersSession, reference: list[dict[str, Any]], tmp_path: Path
) -> None:
    out = tmp_path / "out" / "samples.jsonl"
    samples = generate_samples(
        tiny, PROMPTS, PARAMS, N, out, extra_fields=lambda p: {"language": p.key.split("/")[0]}
    )
    assert _pairs(samples) == ALL_PAIRS  # (task, index) order
    assert _texts(samples) == _texts(reference)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(_pairs(lines)) == sorted(ALL_PAIRS)
    first = samples[0]
    assert set(first) == {
        "task_id",
        "sample_index",
        "completion",
        "finish_reason",
        "prompt_tokens",
        "completion_tokens",
        "cached",
        "language",
    }
    assert first["cached"] is False and first["language"] == "py"
    assert first["completion_tokens"] <= 6 and first["prompt_tokens"] > 0


def test_interrupted_run_resumes_with_only_the_missing_pairs(
    tiny: TransformersSession, reference: list[dict[str, Any]], tmp_path: Path
) -> None:
    out = tmp_path / "samples.jsonl"
    first = Recording(tiny, interrupt_after=4)
    with pytest.raises(KeyboardInterrupt):
        generate_samples(first, PROMPTS, PARAMS, N, out)
    saved = read_samples(out)
    assert len(saved) == 4  # every sample handed over before the interrupt is on disk

    second = Recording(tiny)
    samples = generate_samples(second, PROMPTS, PARAMS, N, out)
    assert len(second.asked) == len(ALL_PAIRS) - 4
    assert set(second.asked).isdisjoint(_pairs(saved))
    assert _pairs(samples) == ALL_PAIRS
    assert _texts(samples) == _texts(reference)  # seed + i: resuming changes nothing
    assert len(out.read_text().splitlines()) == len(ALL_PAIRS)

    third = Recording(tiny)
    assert generate_samples(third, PROMPTS, PARAMS, N, out) == samples
    assert third.asked == []


def test_interrupt_from_progress_callback_and_progress_counts(
    tiny: TransformersSession, tmp_path: Path
) -> None:
    """``progress`` advances a bar (rich's ``advance``): what a previous run left, then 1s."""
    out = tmp_path / "samples.jsonl"
    steps: list[int] = []

    def progress(step: int) -> None:
        steps.append(step)
        if sum(steps) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_samples(tiny, PROMPTS, PARAMS, N, out, progress=progress)
    assert steps == [1, 1]
    assert len(read_samples(out)) == 2

    steps.clear()
    resumed = Recording(tiny)
    generate_samples(resumed, PROMPTS, PARAMS, N, out, progress=steps.append)
    assert steps == [2] + [1] * (len(ALL_PAIRS) - 2)
    assert len(resumed.asked) == len(ALL_PAIRS) - 2


def test_torn_last_line_is_cut_and_regenerated(
    tiny: TransformersSession, reference: list[dict[str, Any]], tmp_path: Path
) -> None:
    out = tmp_path / "samples.jsonl"
    complete = [json.dumps(s) for s in reference[:3]]
    torn = json.dumps(reference[3])[:25]
    out.write_text("\n".join(complete) + "\n" + torn)
    assert len(read_samples(out, repair=False)) == 3

    session = Recording(tiny)
    samples = generate_samples(session, PROMPTS, PARAMS, N, out)
    assert len(session.asked) == len(ALL_PAIRS) - 3
    assert _texts(samples) == _texts(reference)
    lines = out.read_text().splitlines()
    assert len(lines) == len(ALL_PAIRS)
    assert all(json.loads(line) for line in lines)  # the torn fragment is gone


def test_complete_last_line_without_newline_is_kept(
    tiny: TransformersSession, reference: list[dict[str, Any]], tmp_path: Path
) -> None:
    out = tmp_path / "samples.jsonl"
    out.write_text("\n".join(json.dumps(s) for s in reference[:2]))  # no final newline
    session = Recording(tiny)
    generate_samples(session, PROMPTS, PARAMS, N, out)
    assert len(session.asked) == len(ALL_PAIRS) - 2
    assert len([json.loads(line) for line in out.read_text().splitlines()]) == len(ALL_PAIRS)


def test_corrupt_line_in_the_middle_is_an_input_error(tmp_path: Path) -> None:
    out = tmp_path / "samples.jsonl"
    out.write_text(
        '{"task_id": "a", "sample_index": 0}\n{oops\n{"task_id": "b", "sample_index": 0}\n'
    )
    with pytest.raises(InputError, match=r"samples.jsonl:2"):
        read_samples(out)


def test_cache_serves_identical_requests(
    tiny: TransformersSession, reference: list[dict[str, Any]], tmp_path: Path
) -> None:
    cache = Cache(tmp_path / "cache.sqlite3")
    first = Recording(tiny)
    generate_samples(first, PROMPTS, PARAMS, N, tmp_path / "a.jsonl", cache=cache)
    assert len(first.asked) == len(ALL_PAIRS)

    second = Recording(tiny)
    samples = generate_samples(second, PROMPTS, PARAMS, N, tmp_path / "b.jsonl", cache=cache)
    assert second.asked == []
    assert all(s["cached"] for s in samples)
    assert _texts(samples) == _texts(reference)
    assert [s["finish_reason"] for s in samples] == [s["finish_reason"] for s in reference]

    # other sampling parameters or more samples: only the new requests reach the model
    third = Recording(tiny)
    other = SamplingParams(temperature=0.8, max_tokens=6, seed=4)
    generate_samples(third, PROMPTS, other, N, tmp_path / "c.jsonl", cache=cache)
    assert len(third.asked) == len(ALL_PAIRS)
    fourth = Recording(tiny)
    generate_samples(fourth, PROMPTS, PARAMS, N + 1, tmp_path / "d.jsonl", cache=cache)
    assert sorted(fourth.asked) == sorted((p.key, N) for p in PROMPTS)
    cache.close()


def test_bad_arguments_are_usage_errors(tiny: TransformersSession, tmp_path: Path) -> None:
    out = tmp_path / "samples.jsonl"
    with pytest.raises(UsageError, match="share the task id"):
        generate_samples(tiny, [PROMPTS[0], PROMPTS[0]], PARAMS, 1, out)
    with pytest.raises(UsageError, match="n must be"):
        generate_samples(tiny, PROMPTS, PARAMS, 0, out)
    with pytest.raises(UsageError, match="may not override"):
        generate_samples(tiny, PROMPTS, PARAMS, 1, out, extra_fields=lambda p: {"cached": 1})


class _Silent(Session):
    """A broken backend that ends without answering."""

    def describe(self) -> dict[str, Any]:
        return {"backend": "silent"}

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> Iterator[tuple[int, Completion]]:
        return iter(())


def test_backend_that_loses_requests_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Vul2SafeError, match=r"without 2 sample\(s\), e\.g\. task 'py/1' sample 0"):
        generate_samples(_Silent(), PROMPTS[:1], PARAMS, 2, tmp_path / "samples.jsonl")
