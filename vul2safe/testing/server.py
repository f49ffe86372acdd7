"""A small OpenAI-compatible HTTP server for a transformers model (stdlib only).

``python -m vul2safe.testing.server MODEL --port 8000`` serves ``GET /v1/models``,
``POST /v1/chat/completions`` and ``POST /v1/completions`` (non-streaming) so that anything
speaking the OpenAI API — our ``openai`` backend, the build pipeline's teacher — can use a
local model without vLLM. Tests use it to exercise the real HTTP path.

- Sampling: ``temperature``, ``top_p``, ``max_tokens``, ``stop``, ``seed`` and ``n`` (choice
  ``k`` uses ``seed + k``). A final ``assistant`` message is a prefill: the reply continues it.
- Thread-safe: HTTP requests are handled on threads, but the model is driven by one worker
  thread. Requests that arrive together (within ``batch_window_s``) are generated in one
  batch of up to ``max_batch`` — dynamic batching, as real servers do. Thanks to per-row
  seeding (see :mod:`vul2safe.plugins.backend.transformers_backend`) batching does not change a
  seeded sample.
- ``latency_s`` adds a sleep per request outside the model lock: a stand-in for the network
  and queueing latency of a hosted endpoint (benchmarks use it; off by default).
- ``fault_plan`` (tests only, off by default): called with the request number, path and body
  of every generation request; it may return a :class:`Fault` — an HTTP status, a delay, or a
  dropped connection.

The HTTP plumbing (routes, errors, counters, faults) is the shared
:mod:`vul2safe.testing.openai_http` base; this module adds only the model and its batcher.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vul2safe.errors import Vul2SafeError
from vul2safe.generation.base import BackendOptions, Completion, Prompt, SamplingParams
from vul2safe.testing.openai_http import (
    CHAT,
    Answer,
    Choice,
    Fault,
    FaultPlan,
    OpenAIHTTPServer,
    RequestError,
    ServerStats,
)

log = logging.getLogger(__name__)

# Fault and ServerStats are re-exported: tests import them from here with the server.
__all__ = ["Fault", "FaultPlan", "OpenAICompatServer", "ServerStats", "main", "serve"]


@dataclass
class _Job:
    prompt: Prompt
    seed: int
    params: SamplingParams
    origin: int = 0  # the HTTP request's number: its n choices share it
    done: threading.Event = field(default_factory=threading.Event)
    result: Completion | None = None
    error: BaseException | None = None


class _Batcher:
    """One worker thread owns the model; it gathers concurrent jobs into batches."""

    def __init__(
        self,
        session: Any,
        max_batch: int,
        window_s: float,
        stats: ServerStats,
        threads: int | None = None,
    ):
        self.session = session
        self.threads = threads
        self.max_batch = max(1, max_batch)
        self.window_s = window_s
        self.stats = stats
        self.lock = threading.Lock()  # held around every generate() call
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.thread = threading.Thread(target=self._work, name="vul2safe-server-model", daemon=True)
        self.thread.start()

    def run(self, jobs: list[_Job]) -> list[Completion]:
        for job in jobs:
            self.jobs.put(job)
        for job in jobs:
            job.done.wait()
            if job.error is not None:
                raise job.error
        return [job.result for job in jobs if job.result is not None]

    def stop(self) -> None:
        self.jobs.put(None)
        self.thread.join(timeout=10)

    def _work(self) -> None:
        if self.threads:
            import torch

            # per OS thread (an OpenMP setting): the HTTP and client threads keep theirs
            torch.set_num_threads(self.threads)
        while True:
            first = self.jobs.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.window_s
            while len(batch) < self.max_batch:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    # wait only if other HTTP requests are being handled (they may enqueue
                    # soon): a lone client pays no batching delay
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self.stats.in_flight <= len({j.origin for j in batch}):
                        break
                    try:
                        job = self.jobs.get(timeout=remaining)
                    except queue.Empty:
                        break
                if job is None:
                    self.jobs.put(None)
                    break
                batch.append(job)
            groups: dict[SamplingParams, list[_Job]] = {}
            for job in batch:  # one generate() per sampling setting; seeds are per job
                groups.setdefault(dataclasses.replace(job.params, seed=0), []).append(job)
            for params, group in groups.items():
                self._generate(params, group)

    def _generate(self, params: SamplingParams, group: list[_Job]) -> None:
        try:
            with self.lock:
                self.stats.batches.append(len(group))
                items = [(job.prompt, job.seed) for job in group]
                for index, completion in self.session.generate_seeded(items, params):
                    group[index].result = completion
        except BaseException as exc:  # handed to the HTTP thread, which answers 500
            for job in group:
                job.error = exc
        finally:
            for job in group:
                job.done.set()


class OpenAICompatServer(OpenAIHTTPServer):
    """A local model behind the shared OpenAI-compatible plumbing; ``url`` is the base URL."""

    def __init__(
        self,
        address: tuple[str, int],
        session: Any,
        model_name: str,
        *,
        model_root: str = "",
        fault_plan: FaultPlan | None = None,
        latency_s: float = 0.0,
        max_batch: int = 8,
        batch_window_s: float = 0.005,
        threads: int | None = None,
    ) -> None:
        super().__init__(
            address, model_name, model_root=model_root, fault_plan=fault_plan, latency_s=latency_s
        )
        self.session = session
        self.batcher = _Batcher(session, max_batch, batch_window_s, self.stats, threads)

    def answer(self, path: str, body: dict[str, Any], number: int) -> Answer:
        chat = path == CHAT
        prompt = _chat_prompt(body) if chat else _completion_prompt(body)
        params, n = _params(body, 256 if chat else 16)
        jobs = [_Job(prompt, params.seed + k, params, number) for k in range(n)]
        completions = self.batcher.run(jobs)
        return Answer(
            [Choice(c.text, c.finish_reason, c.completion_tokens) for c in completions],
            prompt_tokens=(completions[0].prompt_tokens or 0) if completions else 0,
        )

    def close(self) -> None:
        """Stop serving, stop the model worker, release the model."""
        super().close()
        self.batcher.stop()
        self.session.close()


def _get(body: dict[str, Any], key: str, default: Any) -> Any:
    value = body.get(key)
    return default if value is None else value


def _params(body: dict[str, Any], default_max_tokens: int) -> tuple[SamplingParams, int]:
    stop = _get(body, "stop", ())
    if isinstance(stop, str):
        stop = (stop,)
    try:
        params = SamplingParams(
            temperature=float(_get(body, "temperature", 1.0)),
            top_p=float(_get(body, "top_p", 1.0)),
            max_tokens=int(_get(body, "max_tokens", default_max_tokens)),
            seed=int(_get(body, "seed", random.randrange(2**31))),
            stop=tuple(str(s) for s in stop),
        )
        n = int(_get(body, "n", 1))
    except (TypeError, ValueError) as exc:
        raise RequestError(400, f"bad sampling parameter: {exc}") from None
    if not 1 <= n <= 16:
        raise RequestError(400, "n must be between 1 and 16")
    if params.max_tokens < 1:
        raise RequestError(400, "max_tokens must be positive")
    if params.temperature < 0 or not 0 < params.top_p <= 1:
        raise RequestError(400, "temperature must be >= 0 and top_p in (0, 1]")
    return params, n


def _chat_prompt(body: dict[str, Any]) -> Prompt:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty list")
    clean: list[dict[str, str]] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str) or "role" not in message:
            raise RequestError(400, "each message needs a 'role' and text 'content'")
        clean.append({"role": str(message["role"]), "content": content})
    prefix = ""
    if clean[-1]["role"] == "assistant":  # prefill: continue this message
        prefix = clean.pop()["content"]
    return Prompt(key="http", mode="chat", messages=tuple(clean), response_prefix=prefix)


def _completion_prompt(body: dict[str, Any]) -> Prompt:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise RequestError(400, "'prompt' must be a string (one prompt per request)")
    return Prompt(key="http", mode="completion", text=prompt)


def serve(
    model_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    model_name: str | None = None,
    fault_plan: FaultPlan | None = None,
    latency_s: float = 0.0,
    max_batch: int = 8,
    batch_window_s: float = 0.005,
    device: str = "auto",
    dtype: str = "auto",
    use_chat_template: bool = True,
    threads: int | None = None,
) -> tuple[OpenAICompatServer, threading.Thread]:
    """Load ``model_path`` and serve it on a background thread; ``port=0`` picks a free port.

    The model is served under ``model_name`` (default: ``model_path`` as given, like vLLM).
    ``threads``: torch threads for the model worker only. With a client in the same process
    on few cores, 1 avoids OpenMP spin-waiting starving the HTTP threads. Stop it with
    ``server.close()``.
    """
    from vul2safe.plugins.backend.transformers_backend import TransformersBackend

    options = BackendOptions(
        model=str(model_path),
        device=device,
        dtype=dtype,
        batch_size=max_batch,
        use_chat_template=use_chat_template,
    )
    session = TransformersBackend().open(options)
    server = OpenAICompatServer(
        (host, port),
        session,
        model_name or str(model_path),
        model_root=str(model_path),
        fault_plan=fault_plan,
        latency_s=latency_s,
        max_batch=max_batch,
        batch_window_s=batch_window_s,
        threads=threads,
    )
    return server, server.start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vul2safe.testing.server",
        description="Serve a transformers model over an OpenAI-compatible HTTP API.",
    )
    parser.add_argument("model", help="local model directory or cached Hub id")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", default=None, help="name clients ask for")
    parser.add_argument("--max-batch", type=int, default=8, help="requests per generate()")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulated latency")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args(argv)
    try:
        server, thread = serve(
            args.model,
            args.host,
            args.port,
            model_name=args.served_model_name,
            latency_s=args.latency_ms / 1000,
            max_batch=args.max_batch,
            device=args.device,
            dtype=args.dtype,
            threads=args.threads,
        )
    except Vul2SafeError as exc:
        print(f"error: {exc}")
        return 2
    print(f"serving {server.model_name!r} at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        while thread.is_alive():
            thread.join(timeout=1.0)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
