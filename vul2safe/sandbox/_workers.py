"""Warm fork servers kept between :func:`vul2safe.sandbox.run_programs` calls.

Starting a server (bubblewrap, an interpreter, its preloads) costs ~50 ms; an evaluation calls
``run_programs`` once per benchmark, PPO once per step. A server is owned by a thread that
lives as long as the process, because bubblewrap's ``--die-with-parent`` is tied to the
*thread* that started it: a server started by a short-lived thread dies with that thread.
Each call leases idle workers of its settings (sandboxed, mode, limits), hands them one task,
and gives them back; nothing of a program outlives its run (each runs in its own namespaces),
so a server carries nothing from one call to the next. Only sandboxed servers are kept.

Hand-written: ``concurrent.futures`` pools neither let a caller pick which thread runs a task
nor keep per-thread state such as the server.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vul2safe.sandbox._core import SandboxLimits
    from vul2safe.sandbox._pool import ForkServer

#: what a call hands a worker: it runs with the worker's server, or the error that kept the
#: server from being made (the task raises it in its own error handling)
Task = Callable[["ForkServer | BaseException"], None]
Key = tuple[bool, str, "SandboxLimits"]
#: idle workers kept in all; a call that needs more starts them, extra ones stop on return
MAX_IDLE = 2 * (os.cpu_count() or 1)


class Worker(threading.Thread):
    """One thread owning one fork server; runs the tasks put in its inbox, ``None`` stops it."""

    def __init__(self, key: Key) -> None:
        super().__init__(name="vul2safe-sandbox-worker", daemon=True)
        self.key = key
        self.inbox: queue.SimpleQueue[tuple[Task, threading.Event] | None] = queue.SimpleQueue()

    def run(self) -> None:
        from vul2safe.sandbox._pool import ForkServer

        sandboxed, mode, limits = self.key
        server: ForkServer | BaseException
        try:
            server = ForkServer(limits, sandboxed, only_mode=mode)
        except BaseException as exc:  # e.g. no scratch folder: each task gets the error
            server = exc
        try:
            while (item := self.inbox.get()) is not None:
                task, done = item
                try:
                    task(server)  # the task records its own errors
                finally:
                    done.set()
        finally:
            if not isinstance(server, BaseException):
                server.__exit__(None, None, None)

    def submit(self, task: Task) -> threading.Event:
        done = threading.Event()
        self.inbox.put((task, done))
        return done

    def stop(self) -> None:
        self.inbox.put(None)


_idle: list[Worker] = []
_lock = threading.Lock()


def lease(key: Key, count: int) -> list[Worker]:
    """``count`` workers for these settings: idle ones first, then new ones."""
    with _lock:
        mine = [w for w in _idle if w.key == key and w.is_alive()][:count]
        for worker in mine:
            _idle.remove(worker)
    while len(mine) < count:
        worker = Worker(key)
        worker.start()
        mine.append(worker)
    return mine


def give_back(workers: list[Worker], keep: bool) -> None:
    """Return leased workers (``keep=False``: stop them, e.g. after a server failed)."""
    with _lock:
        for worker in workers:
            if keep and worker.key[0] and worker.is_alive():
                _idle.append(worker)
            else:
                worker.stop()
        while len(_idle) > MAX_IDLE:  # the least recently returned go first
            _idle.pop(0).stop()


def _forget_after_fork() -> None:
    """A forked child has none of these threads (and maybe a lock held by one): start over."""
    global _lock
    _lock = threading.Lock()
    _idle.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


@atexit.register
def stop_idle() -> None:
    """Stop every idle worker and wait for its server to close (at exit, and for tests)."""
    with _lock:
        workers, _idle[:] = list(_idle), []
    for worker in workers:
        worker.stop()
    for worker in workers:
        worker.join(timeout=5)
