"""Host side of the warm fork server: one long-lived bubblewrap per worker, running
``_runner.py serve``, which forks one child per program (see ``_runner``). Starting bwrap and
an interpreter costs ~15-40 ms; a fork from the warm server costs ~1-2 ms.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time

from vul2safe.sandbox._core import (
    RUNNER,
    TAIL_BYTES,
    ExecResult,
    SandboxLimits,
    bwrap_argv,
    clean_env,
    kill,
    next_uid,
    python_paths,
    result_of,
)

_GRACE_S = 10.0  # the server answers within timeout + this, or it is replaced
#: CPU seconds used by closed fork servers and all they ran (bwrap's pid namespace hides
#: them from RUSAGE_CHILDREN)
closed_servers_cpu_s = 0.0
_cpu_lock = threading.Lock()
_live: set[ForkServer] = set()


def servers_cpu_s() -> float:
    """CPU seconds of every fork server of this process so far, open or closed, and all
    they ran (what ``benchmarks/functional_harness`` adds to the host's own)."""
    with _cpu_lock:
        return closed_servers_cpu_s + sum(server.cpu_s for server in _live)


class ServerError(RuntimeError):
    """The fork server could not start or stopped answering."""


class ForkServer:
    """One warm worker. Not thread-safe: a thread owns it and runs one program at a time.

    ``only_mode="exec"``: a server for ``exec`` programs only, which applies
    ``reliability_guard`` to itself once instead of once per program (see ``_runner.serve``).
    """

    def __init__(
        self, limits: SandboxLimits, sandboxed: bool, only_mode: str | None = None
    ) -> None:
        self.limits, self.sandboxed, self.only_mode = limits, sandboxed, only_mode
        self.root = sandboxed and os.geteuid() == 0
        # sandboxed servers need no host folder (and kept ones must not leave one behind)
        self.scratch = "" if sandboxed else tempfile.mkdtemp(prefix="vul2safe-srv-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.info_r: int | None = None
        self.cpu_s = 0.0  # what the running server reported last
        with _cpu_lock:
            _live.add(self)

    def _start(self) -> subprocess.Popen[bytes]:
        exe, _, site = python_paths()
        inner = [exe, "-I", "-B", "-S"]
        site_arg = os.pathsep.join(site)
        info_w = None
        if self.sandboxed:
            info_r, info_w = os.pipe()
            os.set_blocking(info_r, False)
            self.info_r = info_r
            caps = ["CAP_SYS_ADMIN"]  # for the per-program pid/mount namespaces
            argv = bwrap_argv(self.limits, info_w, clean_env("/nonexistent"),
                              prog_files=[(RUNNER, "runner.py")], caps=caps)  # fmt: skip
            argv += [*inner, "/prog/runner.py", "serve", "1", "/sandbox", site_arg]
        else:
            argv = [*inner, RUNNER, "serve", "0", self.scratch, site_arg]
        argv += ["exec"] if self.only_mode == "exec" else []
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=clean_env(self.scratch or "/nonexistent"), cwd=self.scratch or "/",
            start_new_session=True, umask=0o022,
            pass_fds=() if info_w is None else (info_w,),
        )  # fmt: skip
        if info_w is not None:
            os.close(info_w)
        return proc

    def _read(self, n: int, deadline: float) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        fd, data = self.proc.stdout.fileno(), b""
        while len(data) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise ServerError("the sandbox server did not answer in time")
            chunk = os.read(fd, n - len(data))
            if not chunk:
                raise ServerError("the sandbox server stopped")
            data += chunk
        return data

    def run(self, code: str, mode: str, limits: SandboxLimits) -> ExecResult:
        """Run one program in a fresh child; a failed server is replaced once."""
        token = os.urandom(16).hex() if mode == "exec" else ""
        request = {
            "code": code, "mode": mode, "token": token, "limits": limits.rlimit_args(),
            "timeout": limits.timeout_s, "max_output": limits.max_output_bytes,
            "tail": TAIL_BYTES, "tmpfs_bytes": (limits.max_file_mb or 64) << 20,
            "uid": next_uid() if self.root else None,
        }  # fmt: skip
        body = json.dumps(request).encode()
        for attempt in (1, 2):
            if self.proc is None:
                self.proc = self._start()
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(struct.pack("=I", len(body)) + body)
                self.proc.stdin.flush()
                deadline = time.monotonic() + limits.timeout_s + _GRACE_S
                size = struct.unpack("=I", self._read(4, deadline))[0]
                answer = json.loads(self._read(size, deadline))
                break
            except (OSError, ServerError, ValueError):
                self.close()
                if attempt == 2:
                    raise
        self.cpu_s = float(answer.get("cpu_s", self.cpu_s))
        if answer.get("server_error"):
            raise ServerError(answer.get("err", "sandbox server error"))
        status = answer["status"]
        rc = None
        if status is not None:
            rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        return result_of(mode, rc, answer["stopped"], answer["out"], answer["err"],
                         answer["duration"], limits, token=token)  # fmt: skip

    def close(self) -> None:
        """Stop the server and everything under it; remove its scratch space."""
        global closed_servers_cpu_s
        with _cpu_lock:
            closed_servers_cpu_s += self.cpu_s
        self.cpu_s = 0.0
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            try:
                proc.wait(timeout=2)  # EOF on stdin: the server returns, bwrap tears down
            except subprocess.TimeoutExpired:
                kill(proc, self.info_r)
                proc.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            if proc.stdout is not None:
                proc.stdout.close()
        if self.info_r is not None:
            os.close(self.info_r)
            self.info_r = None

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        with _cpu_lock:
            _live.discard(self)
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
