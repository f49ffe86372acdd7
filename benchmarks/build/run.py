"""Reflect-stage throughput: the teacher at concurrency 16 vs 1, and a warm-cache re-run.

200 real SVEN pairs go through ``vul2safe.build.reflect.run_stage`` against the scripted
teacher (tests/vul2safe/build/scripted_teacher.py: a real OpenAI-compatible HTTP server, run
as its own process, that sleeps ``--delay`` seconds per request, standing in for a hosted
model's latency) through the real ``openai`` backend. Each concurrency level starts from a
fresh cache; the verdicts of both runs must be identical. Scanner evidence is off
(``scanners=[]``): it is one batched scan, the same for both runs, and not what this
measures.

    python benchmarks/build/run.py                 # --pairs 200 --votes 3 --delay 0.1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "vul2safe" / "build"))

from scripted_teacher import MODEL, open_session, start_teacher, sven_pairs  # noqa: E402

from vul2safe.build import BuildContext  # noqa: E402
from vul2safe.build.reflect import ReflectConfig, run_stage  # noqa: E402
from vul2safe.cache import Cache  # noqa: E402


class TeacherProcess:
    """The scripted teacher in a process of its own, as a real teacher server would be (in
    this process its threads would compete with the client for the GIL)."""

    def __init__(self, delay_s: float) -> None:
        script = ROOT / "tests" / "vul2safe" / "build" / "scripted_teacher.py"
        self.proc = subprocess.Popen(
            [sys.executable, str(script), "--delay", str(delay_s)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.base_url = self.proc.stdout.readline().strip()
        self.model = MODEL

    def _stats(self) -> dict[str, int]:
        root = self.base_url.removesuffix("/v1")
        with urllib.request.urlopen(f"{root}/stats", timeout=10) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    @property
    def request_count(self) -> int:
        return self._stats()["requests"]

    @property
    def max_in_flight(self) -> int:
        return self._stats()["max_in_flight"]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def run_once(
    pairs: list[Any], server: Any, concurrency: int, config: ReflectConfig, cache: Cache
) -> dict[str, Any]:
    """One reflect run; returns wall time, requests sent and the verdicts."""
    session = open_session(server, concurrency=concurrency)
    try:
        ctx = BuildContext(output=Path(tempfile.mkdtemp()), config=None, teacher=session)
        before = server.request_count
        started = time.perf_counter()
        result = run_stage(_copy(pairs), ctx, config, cache=cache)
        wall = time.perf_counter() - started
    finally:
        session.close()
    return {
        "concurrency": concurrency,
        "wall_s": round(wall, 2),
        "requests": server.request_count - before,
        "kept": len(result.kept),
        "dropped": len(result.dropped),
        "verdicts": {p.pair_id: (p.reflection or {}).get("confidence") for p in result.kept},
        "max_in_flight": server.max_in_flight,
    }


def _copy(pairs: list[Any]) -> list[Any]:
    from vul2safe.build.records import RepairPair

    return [RepairPair.from_dict(p.to_dict()) for p in pairs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--votes", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--server",
        choices=("process", "thread"),
        default="process",
        help="run the scripted teacher in its own process (default) or in this one",
    )
    args = parser.parse_args()

    pairs = sven_pairs(limit=args.pairs)
    config = ReflectConfig(votes=args.votes, scanners=[])
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for concurrency in sorted(args.concurrency, reverse=True):
            server: Any = (
                TeacherProcess(args.delay)
                if args.server == "process"
                else start_teacher(delay_s=args.delay)
            )
            try:
                cache = Cache(Path(tmp) / f"cache-{concurrency}.sqlite3")  # fresh each
                runs.append(run_once(pairs, server, concurrency, config, cache))
                if concurrency == max(args.concurrency):
                    warm = run_once(pairs, server, concurrency, config, cache)
            finally:
                server.close()
            print(
                f"concurrency {concurrency:>3}: {runs[-1]['wall_s']:.2f} s, "
                f"{runs[-1]['requests']} requests",
                file=sys.stderr,
            )
    by = {r["concurrency"]: r for r in runs}
    low, high = by[min(by)], by[max(by)]
    same = all(r["verdicts"] == low["verdicts"] for r in runs)
    summary = {
        "pairs": len(pairs),
        "votes": args.votes,
        "delay_s": args.delay,
        "server": args.server,
        "runs": [{k: v for k, v in r.items() if k != "verdicts"} for r in runs],
        "speedup": round(low["wall_s"] / high["wall_s"], 2),
        "warm_rerun": {"wall_s": warm["wall_s"], "requests": warm["requests"]},
        "identical_verdicts": same,
        "ideal_serial_s": round(low["requests"] * args.delay, 1),
    }
    print(json.dumps(summary, indent=2))
    if not same:
        raise SystemExit("verdicts differ between concurrency levels")


if __name__ == "__main__":
    main()
