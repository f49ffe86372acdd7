"""OpenAI-backend throughput: 16 requests in flight vs 1, against a local server.

The server is ``python -m vul2safe.testing.server`` in its own process, serving the tiny
random model (built here, offline) with a fixed small ``max_tokens``. Each configuration is
run at concurrency 1 and 16 on the same requests (``--repeats`` times, alternating; the
median is reported); the script prints samples/s, the ratio, and checks that both produced identical
samples (per-request seeds).

    python benchmarks/generation/run.py [--requests 64] [--max-tokens 16] [--json out.json]

Server configurations:

- ``hosted-like``: 100 ms simulated latency per request (slept outside the model lock: the
  network and queueing time of a hosted endpoint), dynamic batching up to 16.
- ``local, batching``: no added latency, dynamic batching up to 16 (how vLLM-style servers
  behave).
- ``local, one lock``: no added latency, one request per ``generate()`` — the model behind a
  single lock, so the server is the bottleneck and concurrency cannot help much.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from vul2safe.generation.base import BackendOptions, GenerationRequest, Prompt, SamplingParams
from vul2safe.plugins.backend.openai_backend import OpenAIBackend
from vul2safe.testing.tiny_model import build_tiny_model

CONFIGS: list[tuple[str, float, int]] = [  # name, latency ms, max batch
    ("hosted-like (100 ms latency, batching 16)", 100.0, 16),
    ("local, batching 16 (no added latency)", 0.0, 16),
    ("local, one lock (no added latency, batch 1)", 0.0, 1),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(model: Path, latency_ms: float, max_batch: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "vul2safe.testing.server",
        str(model),
        "--port",
        str(port),
        "--served-model-name",
        "tiny",
        "--latency-ms",
        str(latency_ms),
        "--max-batch",
        str(max_batch),
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=1):
                return proc, url
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}") from None
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start within 120 s")


def make_requests(count: int) -> list[GenerationRequest]:
    tasks = [
        "Write a function that reads a configuration file.",
        "Write a C function that copies a user-supplied string into a buffer.",
        "Write a function that runs ping on a host given by the user.",
        "Write a function that looks a user up in a SQLite database.",
    ]
    return [
        GenerationRequest(
            Prompt(f"task{i}", "chat", ({"role": "user", "content": tasks[i % len(tasks)]},)),
            sample_index=i % 4,
        )
        for i in range(count)
    ]


def timed(
    url: str, requests: list[GenerationRequest], params: SamplingParams, repeats: int
) -> dict[int, tuple[list[float], list[str]]]:
    """Concurrency 1 and 16, alternating run by run (so a burst of load from elsewhere on the
    machine hits both alike): wall seconds of each run, and the texts of the last."""
    sessions = {
        concurrency: OpenAIBackend().open(
            BackendOptions(model="tiny", base_url=url, concurrency=concurrency, timeout_s=60)
        )
        for concurrency in (1, 16)
    }
    out: dict[int, tuple[list[float], list[str]]] = {c: ([], []) for c in sessions}
    try:
        for session in sessions.values():
            dict(session.generate(requests[:2], params))  # warm up connections and the model
        for _ in range(repeats):
            for concurrency, session in sessions.items():
                started = time.perf_counter()
                results = dict(session.generate(requests, params))
                out[concurrency][0].append(time.perf_counter() - started)
                out[concurrency][1][:] = [results[i].text for i in range(len(requests))]
    finally:
        for session in sessions.values():
            session.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; median reported")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()

    requests = make_requests(args.requests)
    params = SamplingParams(temperature=0.8, max_tokens=args.max_tokens, seed=0)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vul2safe-bench-gen-") as tmp:
        model = build_tiny_model(Path(tmp) / "tiny")
        for name, latency_ms, max_batch in CONFIGS:
            proc, url = start_server(model, latency_ms, max_batch)
            try:
                runs = timed(url, requests, params, args.repeats)
                (serial_runs, serial_texts), (parallel_runs, parallel_texts) = runs[1], runs[16]
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            serial, parallel = statistics.median(serial_runs), statistics.median(parallel_runs)
            row = {
                "server": name,
                "requests": len(requests),
                "concurrency_1_s": round(serial, 3),
                "concurrency_16_s": round(parallel, 3),
                "concurrency_1_runs_s": [round(t, 3) for t in serial_runs],
                "concurrency_16_runs_s": [round(t, 3) for t in parallel_runs],
                "concurrency_1_samples_per_s": round(len(requests) / serial, 1),
                "concurrency_16_samples_per_s": round(len(requests) / parallel, 1),
                "ratio": round(serial / parallel, 2),
                "identical_samples": serial_texts == parallel_texts,
            }
            rows.append(row)
            print(
                f"{name}: c=1 {row['concurrency_1_samples_per_s']} samples/s, "
                f"c=16 {row['concurrency_16_samples_per_s']} samples/s, "
                f"ratio {row['ratio']}x, identical samples: {row['identical_samples']}",
                flush=True,
            )
    meta = {
        "max_tokens": args.max_tokens,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }
    if args.json is not None:
        args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
