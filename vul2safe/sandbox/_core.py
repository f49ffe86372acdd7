"""Shared pieces of the sandbox: result types, limits, the bwrap command line, the clean
environment, classifying how a run ended and killing it. One implementation serves the
per-program path, the warm fork server and :func:`vul2safe.sandbox.run_command`.

Why no user namespace when we are root: it would map the sandbox uid to kernel uid 0, and the
kernel never enforces ``RLIMIT_NPROC`` for uid 0, so a fork bomb would not be stopped. As root
we keep the namespaces bwrap makes without one and drop to a private uid, unique per
concurrent run so runs do not share process counts. As a normal user bwrap's
``--unshare-all`` already does the job.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import itertools
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TAIL_BYTES = 4096  # how much of each stream an ExecResult keeps
EXIT_ASSERT, EXIT_MEMORY, EXIT_ERROR = 97, 98, 99  # set by the in-sandbox runner (_runner.py)
PROG_DIR = "/prog"  # where the program file (or the fork server) appears inside the sandbox
WORK_DIR = "/sandbox"  # fresh tmpfs: cwd of a program
_ROOT_NAMESPACES = ("--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                    "--unshare-cgroup-try")  # fmt: skip
UID_BASE = 1_100_000 + (os.getpid() % 1024) * 4096  # private uids when dropping from root
UID_SPAN = 4096
_uid_counter = itertools.count()
# Always visible read-only inside the sandbox (what the system's programs need).
_SYSTEM_TOPS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_runner.py")
COMMAND = os.path.join(os.path.dirname(RUNNER), "_command.py")  # run_command's supervisor


class ExecStatus(str, enum.Enum):
    """How one run ended."""

    PASSED = "passed"
    FAILED = "failed"  # AssertionError: the program's own test failed
    ERROR = "error"  # any other exception or non-zero exit
    TIMEOUT = "timeout"  # wall-clock or CPU limit
    MEMORY = "memory"  # MemoryError / address-space limit
    KILLED = "killed"  # killed by a signal, or output limit exceeded


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one run; ``detail`` is the last traceback line or why it was stopped."""

    status: ExecStatus
    exit_code: int | None
    duration_s: float
    stdout_tail: str
    stderr_tail: str
    detail: str = ""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource caps per run; ``None`` leaves that rlimit untouched.

    ``memory_mb=None`` is what AddressSanitizer binaries need: they reserve terabytes of
    address space, which any ``RLIMIT_AS`` breaks. ``max_processes`` is ``RLIMIT_NPROC``,
    which counts every thread of the sandbox's uid, not only processes: a Go build (one
    thread per core and per blocked syscall, in several processes) needs about 256.
    ``disk_mb`` and ``max_files`` cap a :func:`~vul2safe.sandbox.run_command` work folder as
    a whole (bytes; files, directories and links): it is a tmpfs, in RAM, and what comes
    back to the caller's folder is at most ``disk_mb`` of file data.
    """

    timeout_s: float = 10.0
    cpu_s: int | None = None  # default: int(timeout_s) + 2
    memory_mb: int | None = 1024
    max_processes: int | None = 64  # RLIMIT_NPROC: threads count too
    max_file_mb: int | None = 64  # one file; also caps each sandbox tmpfs
    max_output_bytes: int = 1 << 20  # per stream; beyond it the run is killed
    disk_mb: int = 256  # run_command: the whole work folder
    max_files: int = 10_000  # run_command: inodes in the work folder

    def rlimit_args(self) -> list[str]:
        """cpu seconds, address-space bytes, processes, file bytes (-1: untouched)."""
        cpu = self.cpu_s if self.cpu_s is not None else int(self.timeout_s) + 2
        mb = 1 << 20

        def num(v: int | None, scale: int = 1) -> str:
            return str(v * scale) if v is not None else "-1"

        return [str(cpu), num(self.memory_mb, mb), num(self.max_processes),
                num(self.max_file_mb, mb)]  # fmt: skip


def find_bwrap() -> str | None:
    """Path of bwrap, or None."""
    return shutil.which("bwrap")


@functools.cache
def find_setpriv() -> str | None:
    """util-linux setpriv under /usr (visible in the sandbox), used to drop root."""
    path = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
    return path if path and os.path.realpath(path).startswith("/usr/") else None


@functools.cache
def python_paths() -> tuple[str, list[str], list[str]]:
    """Real interpreter path, host dirs to bind read-only, and site dirs to put on sys.path."""
    exe = os.path.realpath(sys.executable)
    roots = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, os.path.dirname(exe))}
    binds = sorted(p for p in roots if not p.startswith("/usr/") and p != "/usr")
    binds = [p for p in binds if not any(p.startswith(q + "/") for q in binds)]
    paths = sysconfig.get_paths()
    site = [p for p in dict.fromkeys((paths["purelib"], paths["platlib"])) if os.path.isdir(p)]
    return exe, binds, site


def next_uid() -> int:
    """A private uid for one run (or one fork-server child) when dropping from root."""
    return UID_BASE + next(_uid_counter) % UID_SPAN


def clean_env(home: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment a run sees: nothing from the host leaks through."""
    venv_bin = os.path.dirname(os.path.abspath(sys.executable))
    bins = dict.fromkeys((venv_bin, os.path.dirname(python_paths()[0]), "/usr/local/bin",
                          "/usr/bin", "/bin"))  # fmt: skip
    env = dict(PATH=":".join(bins), HOME=home, LANG="C.UTF-8", PYTHONDONTWRITEBYTECODE="1",
               PYTHONHASHSEED="0", TMPDIR="/tmp")  # fmt: skip
    env.update(extra or {})
    return env


def _visible(path: str, binds: Sequence[str]) -> bool:
    """Whether ``path`` is already inside one of the read-only trees."""
    return any(path == top or path.startswith(top + "/") for top in (*_SYSTEM_TOPS, *binds))


def _bind_argv(flag: str, path: str) -> list[str]:
    """Bind ``path`` at the same place, creating its parents traversable (bwrap makes 0700)."""
    parts = path.strip("/").split("/")[:-1]
    argv = []
    for i in range(len(parts)):
        argv += ["--perms", "0755", "--dir", "/" + "/".join(parts[: i + 1])]
    return [*argv, flag, path, path]


def bwrap_argv(
    limits: SandboxLimits,
    info_fd: int,
    env: Mapping[str, str],
    *,
    prog_files: Sequence[tuple[str, str]] = (),
    workdir: str | None = None,
    ro_binds: Sequence[str] = (),
    caps: Sequence[str] = (),
) -> list[str]:
    """bwrap arguments for one sandbox; the command to exec inside follows them.

    Each ``(host_file, name)`` of ``prog_files`` appears read-only at ``/prog/name`` and the
    cwd is a fresh tmpfs ``/sandbox``; ``workdir`` is instead bound read-only at its own
    path and becomes the cwd (``_command`` mounts the capped tmpfs over it).
    """
    argv = [find_bwrap() or "bwrap", "--die-with-parent", "--new-session",
            "--info-fd", str(info_fd)]  # fmt: skip
    if os.geteuid() == 0:  # see module docstring: a userns would map us to uid 0 (no NPROC)
        argv += [*_ROOT_NAMESPACES, "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-all"]
    for cap in caps:
        argv += ["--cap-add", cap]
    argv += f"--ro-bind /usr /usr --perms 0755 --dir /etc --perms 0755 --dir {PROG_DIR}".split()
    for top in _SYSTEM_TOPS[1:]:
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    for etc in ("ld.so.cache", "localtime", "passwd", "group", "nsswitch.conf"):
        argv += ["--ro-bind-try", f"/etc/{etc}", f"/etc/{etc}"]
    py_binds = python_paths()[1]
    for path in py_binds:
        argv += _bind_argv("--ro-bind", path)
    size = str((limits.max_file_mb or 64) << 20)  # tmpfs lives in host RAM: cap it
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += f"--size {size} --perms 1777 --tmpfs /tmp".split()
    argv += f"--size {size} --perms 1777 --tmpfs /dev/shm".split()  # multiprocessing locks
    seen = list(py_binds)
    for path in (os.path.realpath(p) for p in ro_binds):
        if not _visible(path, seen):
            argv += _bind_argv("--ro-bind", path)
            seen.append(path)
    for host_file, name in prog_files:
        argv += ["--ro-bind", host_file, f"{PROG_DIR}/{name}"]
    if workdir is not None:
        argv += [*_bind_argv("--ro-bind", workdir), "--remount-ro", "/", "--chdir", workdir]
    else:
        argv += f"--size {size} --perms 1777 --tmpfs {WORK_DIR}".split()
        argv += ["--remount-ro", "/", "--chdir", WORK_DIR]
    argv += ["--clearenv"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return [*argv, "--"]


def drop_root_argv(uid: int) -> list[str]:
    """setpriv prefix that drops from root to ``uid`` inside the sandbox (see docstring)."""
    return [find_setpriv() or "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--"]  # fmt: skip


def last_line(text: str) -> str:
    """The last exception line of a traceback (interleaved output from children allowed)."""
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    skip = ("Traceback (", "During handling", "The above exception", "File ", "^", "~")
    for line in reversed(lines):
        if not line[0].isspace() and not line.startswith(skip):
            return line
    return lines[-1].strip() if lines else ""


def classify(
    mode: str, rc: int, out: str, err: str, *, bwrap_rc: bool = False, token: str = ""
) -> tuple[ExecStatus, str]:
    """How a run ended, from its exit status and output.

    ``rc`` is an exit code, or ``-N`` for signal N (``bwrap_rc``: bwrap's ``128+N`` too).
    ``mode`` is ``main`` (runner exit codes 97/98/99 name the exception), ``exec`` (passed
    only with the run's ``token`` at the end of stdout; the report line before it says why
    not) or ``cmd`` (a command: any non-zero exit is an error).
    """
    sig = -rc if rc < 0 else rc - 128 if bwrap_rc and 128 < rc < 128 + 65 else 0
    if sig:
        name = signal.Signals(sig).name if sig in signal.valid_signals() else f"signal {sig}"
        if sig == signal.SIGXCPU:
            return ExecStatus.TIMEOUT, "CPU time limit exceeded (SIGXCPU)"
        return ExecStatus.KILLED, f"killed by {name}"
    codes = {EXIT_ASSERT: ExecStatus.FAILED, EXIT_MEMORY: ExecStatus.MEMORY,
             EXIT_ERROR: ExecStatus.ERROR}  # fmt: skip
    if mode == "exec":
        if rc == 0 and token and out.endswith(token):
            return ExecStatus.PASSED, ""
        if rc in codes:
            return codes[rc], last_line(out)
        if rc == 0:
            return ExecStatus.ERROR, "ended before its tests finished (exit status 0)"
        return ExecStatus.ERROR, f"exit status {rc}"
    if rc == 0:
        return ExecStatus.PASSED, ""
    if mode == "main" and rc in codes:
        return codes[rc], last_line(err)
    return ExecStatus.ERROR, (last_line(err) if mode == "main" else "") or f"exit status {rc}"


def result_of(
    mode: str,
    rc: int | None,
    stopped: str,
    out: str,
    err: str,
    duration: float,
    limits: SandboxLimits,
    *,
    bwrap_rc: bool = False,
    token: str = "",
) -> ExecResult:
    """The ExecResult of a finished or stopped run (one place for both execution paths)."""
    if stopped == "timeout":
        status, detail = ExecStatus.TIMEOUT, f"wall-clock timeout after {limits.timeout_s:g}s"
    elif stopped == "output":
        status, detail = ExecStatus.KILLED, f"output over {limits.max_output_bytes} bytes"
    elif rc is None:
        status, detail = ExecStatus.ERROR, last_line(err) or "the sandbox lost the run"
    else:
        status, detail = classify(mode, rc, out, err, bwrap_rc=bwrap_rc, token=token)
    if mode == "exec":
        out = ""  # printed output is discarded; what is there is the runner's report
    return ExecResult(status, rc, round(duration, 4), out, err, detail)


def kill(proc: subprocess.Popen[bytes], info_r: int | None) -> None:
    """Kill a run and everything it started before returning.

    Killing bwrap's in-namespace init (its pid comes from ``--info-fd``) makes the kernel
    reap the whole pid namespace before bwrap itself exits, so nothing outlives the wait.
    The process-group kill is the fallback (and all there is without the sandbox).
    """
    if info_r is not None:
        with contextlib.suppress(OSError, ValueError, LookupError, subprocess.TimeoutExpired):
            info = json.loads(os.read(info_r, 1 << 16) or b"{}")
            os.kill(int(info["child-pid"]), signal.SIGKILL)
            proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def execute(
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    limits: SandboxLimits,
    info_r: int | None,
    info_w: int | None,
    *,
    mode: str = "main",
    token: str = "",
    tail_bytes: int = TAIL_BYTES,
    pass_fds: Sequence[int] = (),
) -> ExecResult:
    """Start one run and read its output with a byte cap and a wall-clock deadline.

    ``exec`` mode hands the runner its token on stdin (argv and environment are readable
    by the program); ``pass_fds`` stay open in the child (beside ``info_w``)."""
    start = time.monotonic()
    pipe = subprocess.PIPE  # umask: bwrap's mount points must be traversable
    stdin = subprocess.PIPE if token else subprocess.DEVNULL
    kept = (*pass_fds, *(() if info_w is None else (info_w,)))
    proc = subprocess.Popen(argv, stdin=stdin, stdout=pipe, stderr=pipe, env=env,
                            cwd=cwd, start_new_session=True, umask=0o022,
                            pass_fds=kept)  # fmt: skip
    if info_w is not None:
        os.close(info_w)
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.write(token.encode())
        proc.stdin.close()
    assert proc.stdout is not None and proc.stderr is not None
    bufs = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    counts = dict.fromkeys(bufs, 0)
    stopped = ""
    with selectors.DefaultSelector() as sel:
        for fd in bufs:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        deadline = start + limits.timeout_s
        while sel.get_map() and not stopped:
            left = deadline - time.monotonic()
            if left <= 0:
                stopped = "timeout"
                break
            events = sel.select(min(left, 0.5))
            if not events and proc.poll() is not None:
                break  # exited, but a descendant still holds the pipes open
            for key, _ in events:
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                buf = bufs[key.fd]
                buf += chunk
                counts[key.fd] += len(chunk)
                if counts[key.fd] > limits.max_output_bytes:
                    stopped = "output"
                if len(buf) > 2 * max(tail_bytes, 1 << 16):
                    del buf[: len(buf) - tail_bytes]  # only the tail is kept
    if not stopped:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()) + 0.05)
        except subprocess.TimeoutExpired:
            stopped = "timeout"
    if stopped:
        kill(proc, info_r)
    rc = proc.wait()  # prompt: it has exited or was just sent SIGKILL
    kill(proc, None)  # stragglers that kept our group but closed their pipes
    proc.stdout.close()
    proc.stderr.close()
    out, err = (bytes(b[-tail_bytes:]).decode(errors="replace") for b in bufs.values())
    return result_of(mode, rc, stopped, out, err, time.monotonic() - start, limits,
                     bwrap_rc=info_r is not None, token=token)  # fmt: skip
