"""Resumable generation: prompts × n samples → ``samples.jsonl``, one line per sample.

The unit of work is a (task, sample index) pair. Each finished sample is appended as one JSON
line and flushed at once, so an interrupted run (crash, Ctrl-C, a server that gave up) leaves
a valid file; the next run reads it, cuts off a torn last line, and asks the backend for the
missing pairs only. Because sample ``i`` is always seeded with ``params.seed + i``, the
resumed file holds the same samples a single uninterrupted run would have written.

With a :class:`~vul2safe.cache.Cache`, identical requests (same model identity, prompt,
sampling parameters and sample index) are answered from it: re-running an evaluation into a
fresh directory costs nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Generator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, TextIO

from vul2safe.cache import Cache, content_key
from vul2safe.errors import InputError, UsageError, Vul2SafeError
from vul2safe.generation.base import Completion, GenerationRequest, Prompt, SamplingParams, Session

CACHE_NAMESPACE = "generation"
RESERVED_FIELDS = frozenset(
    {
        "task_id",
        "sample_index",
        "completion",
        "finish_reason",
        "prompt_tokens",
        "completion_tokens",
        "cached",
    }
)


def read_samples(path: Path, *, repair: bool = True) -> list[dict[str, Any]]:
    """Read a samples file; a torn last line (a crash mid-write) is dropped — and cut off the
    file when ``repair`` — while a bad line anywhere else is an :class:`InputError`."""
    if not path.exists():
        return []
    data = path.read_bytes()
    records: list[dict[str, Any]] = []
    offset = 0
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        end = offset + len(raw)
        last = number == len(lines)
        if raw.strip():
            try:
                record = json.loads(raw)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
                if last and repair:  # complete JSON but no newline: finish the line
                    with path.open("ab") as handle:
                        handle.write(b"\n")
                records.append(record)
            except ValueError as exc:
                torn = last or all(not rest.strip() for rest in lines[number:])
                if not torn:
                    raise InputError(f"{path}:{number}: not a JSON sample line ({exc})") from None
                if repair:
                    with path.open("r+b") as handle:
                        handle.truncate(offset)
                break
        offset = end + 1
    return records


def _sample_key(record: dict[str, Any]) -> tuple[str, int]:
    try:
        return str(record["task_id"]), int(record["sample_index"])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"sample line without task_id/sample_index: {record!r:.200}") from None


def cache_key(
    session_info: dict[str, Any], prompt: Prompt, params: SamplingParams, index: int
) -> str:
    """Everything that determines a sample's text. Remote models whose revision is unknown
    are keyed by name (and base URL): pass no cache if the server's model can change."""
    identity = {
        "backend": session_info.get("backend"),
        "model": session_info.get("model"),
        "revision": session_info.get("revision"),
        "base_url": session_info.get("base_url"),
        "mode": session_info.get("mode"),
        "chat_template": session_info.get("chat_template"),
    }
    return content_key(
        json.dumps(identity, sort_keys=True),
        json.dumps(prompt.to_dict(), sort_keys=True),
        json.dumps(params.to_dict(), sort_keys=True),
        str(index),
    )


def _record(
    prompt: Prompt,
    index: int,
    completion: Completion,
    cached: bool,
    extra_fields: Callable[[Prompt], dict[str, Any]] | None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "task_id": prompt.key,
        "sample_index": index,
        "completion": completion.text,
        "finish_reason": completion.finish_reason,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "cached": cached,
    }
    if extra_fields is not None:
        extra = extra_fields(prompt)
        clash = RESERVED_FIELDS.intersection(extra)
        if clash:
            raise UsageError(f"extra_fields may not override {', '.join(sorted(clash))}")
        record.update(extra)
    return record


def _append(handle: TextIO, record: dict[str, Any]) -> None:
    """One write per line, flushed: a crash can tear at most the line being written."""
    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    handle.flush()


def generate_samples(
    session: Session,
    prompts: Sequence[Prompt],
    params: SamplingParams,
    n: int,
    out_path: Path,
    *,
    extra_fields: Callable[[Prompt], dict[str, Any]] | None = None,
    cache: Cache | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Make sure ``out_path`` holds ``n`` samples per prompt; return them in (prompt, index)
    order. ``progress(k)`` advances a progress bar of ``len(prompts) * n``: once with what a
    previous run left (when any), then with 1 per sample written."""
    if n < 1:
        raise UsageError(f"n must be at least 1 (got {n})")
    by_key: dict[str, Prompt] = {}
    for prompt in prompts:
        if prompt.key in by_key:
            raise UsageError(f"two prompts share the task id {prompt.key!r}")
        by_key[prompt.key] = prompt
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    have: dict[tuple[str, int], dict[str, Any]] = {}
    for record in read_samples(out_path):
        have.setdefault(_sample_key(record), record)
    missing = [
        GenerationRequest(prompt, index)
        for prompt in prompts
        for index in range(n)
        if (prompt.key, index) not in have
    ]
    if progress is not None and len(missing) < len(prompts) * n:
        progress(len(prompts) * n - len(missing))

    if missing:
        info = session.describe() if cache is not None else {}
        keys = [cache_key(info, r.prompt, params, r.sample_index) for r in missing]
        hits = cache.get_many(CACHE_NAMESPACE, keys) if cache is not None else {}
        with out_path.open("a", encoding="utf-8") as handle:
            todo: list[tuple[GenerationRequest, str]] = []
            for request, key in zip(missing, keys, strict=True):
                if key not in hits:
                    todo.append((request, key))
                    continue
                record = _record(
                    request.prompt,
                    request.sample_index,
                    Completion(**hits[key]),
                    True,
                    extra_fields,
                )
                _append(handle, record)
                have[(request.prompt.key, request.sample_index)] = record
                if progress is not None:
                    progress(1)
            with closing(_run(session, todo, params)) as results:
                for request, key, completion in results:
                    record = _record(
                        request.prompt, request.sample_index, completion, False, extra_fields
                    )
                    _append(handle, record)
                    if cache is not None:
                        cache.put(CACHE_NAMESPACE, key, _completion_dict(completion))
                    have[(request.prompt.key, request.sample_index)] = record
                    if progress is not None:
                        progress(1)
            os.fsync(handle.fileno())
    lost = [(p.key, i) for p in prompts for i in range(n) if (p.key, i) not in have]
    if lost:
        raise Vul2SafeError(
            f"the backend finished without {len(lost)} sample(s), e.g. task {lost[0][0]!r} "
            f"sample {lost[0][1]}; rerun to retry them"
        )
    return [have[(prompt.key, index)] for prompt in prompts for index in range(n)]


def _run(
    session: Session, todo: list[tuple[GenerationRequest, str]], params: SamplingParams
) -> Generator[tuple[GenerationRequest, str, Completion], None, None]:
    """Drive the backend; closing this generator (on an error) closes the backend's too."""
    if not todo:
        return
    stream = session.generate([request for request, _ in todo], params)
    try:
        for index, completion in stream:
            request, key = todo[index]
            yield request, key, completion
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _completion_dict(completion: Completion) -> dict[str, Any]:
    return {
        "text": completion.text,
        "finish_reason": completion.finish_reason,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
    }
