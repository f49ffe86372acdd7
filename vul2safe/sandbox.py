"""Run untrusted, model-written Python programs in bubblewrap with rlimits.

Each program is its own process: ``bwrap`` with fresh ipc/pid/net/uts namespaces, a read-only
system, size-capped tmpfs working dirs and a cleared environment. Inside, a tiny wrapper (the
same interpreter with ``-I -S``: ~10 ms instead of ~35 ms for a full ``site``) sets the rlimits
and reports how the program ended through its exit code.

Why no user namespace when we are root: it would map the sandbox uid to kernel uid 0, and the
kernel never enforces ``RLIMIT_NPROC`` for uid 0, so a fork bomb would not be stopped. As root
we keep the namespaces bwrap makes without one and ``setpriv`` drops to a private uid, unique
per concurrent run so runs do not share process counts (dropping before ``exec`` also keeps
``/proc/self`` readable). As a normal user bwrap's ``--unshare-all`` already does the job.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import itertools
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from vul2safe.errors import SandboxUnavailable

__all__ = [
    "ExecResult",
    "ExecStatus",
    "SandboxLimits",
    "run_program",
    "run_programs",
    "sandbox_available",
]

log = logging.getLogger(__name__)

TAIL_BYTES = 4096  # how much of each stream an ExecResult keeps
_EXIT_ASSERT, _EXIT_MEMORY, _EXIT_ERROR = 97, 98, 99  # set by the in-sandbox wrapper
_PROG_DIR = "/prog"  # where the program file appears inside the sandbox
_WORK_DIR = "/sandbox"  # fresh tmpfs: cwd of the program
_ROOT_NAMESPACES = ("--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                    "--unshare-cgroup-try")  # fmt: skip
_UID_BASE = 1_100_000 + (os.getpid() % 1024) * 4096  # private uids when dropping from root
_uid_counter = itertools.count()
_unsafe_warned = False

# Runs inside the sandbox: apply rlimits, run the program as __main__ and map its ending to
# an exit code. Kept stdlib-light: its startup cost is paid per program.
_WRAPPER = r"""
def _v2s_main():
    import builtins, os, resource, sys
    cpu, mem, nproc, fsize = (int(x) for x in sys.argv[1:5])
    extra, prog = sys.argv[5], sys.argv[6]
    for res, soft, hard in ((resource.RLIMIT_CPU, cpu, cpu + 1), (resource.RLIMIT_AS, mem, mem),
                            (resource.RLIMIT_NPROC, nproc, nproc),
                            (resource.RLIMIT_FSIZE, fsize, fsize), (resource.RLIMIT_CORE, 0, 0)):
        if soft >= 0:
            top = resource.getrlimit(res)[1]
            if top != resource.RLIM_INFINITY:
                soft, hard = min(soft, top), min(hard, top)
            resource.setrlimit(res, (soft, hard))
    sys.path[:] = [os.path.dirname(prog), *sys.path, *(p for p in extra.split(os.pathsep) if p)]
    sys.argv = [prog]
    with open(prog, "rb") as f:
        code = compile(f.read(), prog, "exec")
    g = sys.modules["__main__"].__dict__
    g.clear()
    g.update(__name__="__main__", __file__=prog, __builtins__=builtins, __doc__=None)
    try:
        exec(code, g)
    except SystemExit:
        raise
    except BaseException as e:
        rc = 97 if isinstance(e, AssertionError) else 98 if isinstance(e, MemoryError) else 99
        try:
            sys.stdout.flush()
        except BaseException:
            pass
        try:
            import traceback
            traceback.print_exception(e)
        except BaseException:
            sys.stderr.write(type(e).__name__ + "\n")
        try:
            sys.stderr.flush()
        finally:
            os._exit(rc)
_v2s_main()
"""


class ExecStatus(str, enum.Enum):
    """How one program run ended."""

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
    """Resource caps per program; ``None`` leaves that rlimit untouched."""

    timeout_s: float = 10.0
    cpu_s: int | None = None  # default: int(timeout_s) + 2
    memory_mb: int | None = 1024
    max_processes: int | None = 64  # threads count too
    max_file_mb: int | None = 64  # also caps each sandbox tmpfs
    max_output_bytes: int = 1 << 20  # per stream; beyond it the program is killed


_PROBE_LIMITS = SandboxLimits(timeout_s=30)


def _find_bwrap() -> str | None:
    """Path of bwrap, or None; separate so tests and callers can see what is used."""
    return shutil.which("bwrap")


@functools.cache
def _find_setpriv() -> str | None:
    """util-linux setpriv under /usr (visible in the sandbox), used to drop root."""
    path = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
    return path if path and os.path.realpath(path).startswith("/usr/") else None


@functools.cache
def _python_paths() -> tuple[str, list[str], list[str]]:
    """Real interpreter path, host dirs to bind read-only, and site dirs to put on sys.path."""
    exe = os.path.realpath(sys.executable)
    roots = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, os.path.dirname(exe))}
    binds = sorted(p for p in roots if not p.startswith("/usr/") and p != "/usr")
    binds = [p for p in binds if not any(p.startswith(q + "/") for q in binds)]
    paths = sysconfig.get_paths()
    site = [p for p in dict.fromkeys((paths["purelib"], paths["platlib"])) if os.path.isdir(p)]
    return exe, binds, site


def _bwrap_argv(bwrap: str, prog_host: str, limits: SandboxLimits, info_fd: int) -> list[str]:
    """bwrap arguments for one run; the command to exec inside follows them."""
    argv = [bwrap, "--die-with-parent", "--new-session", "--info-fd", str(info_fd)]
    if os.geteuid() == 0:  # see module docstring: a userns would map us to uid 0 (no NPROC)
        argv += [*_ROOT_NAMESPACES, "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-all"]
    # bwrap makes missing parent dirs 0700, which the unprivileged uid could not traverse
    argv += f"--ro-bind /usr /usr --perms 0755 --dir /etc --perms 0755 --dir {_PROG_DIR}".split()
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    for etc in ("ld.so.cache", "localtime", "passwd", "group", "nsswitch.conf"):
        argv += ["--ro-bind-try", f"/etc/{etc}", f"/etc/{etc}"]
    for path in _python_paths()[1]:
        parts = path.strip("/").split("/")[:-1]
        for i in range(len(parts)):
            argv += ["--perms", "0755", "--dir", "/" + "/".join(parts[: i + 1])]
        argv += ["--ro-bind", path, path]
    size = str((limits.max_file_mb or 64) << 20)  # tmpfs lives in host RAM: cap it
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += f"--size {size} --perms 1777 --tmpfs {_WORK_DIR}".split()
    argv += f"--size {size} --perms 1777 --tmpfs /tmp".split()
    argv += f"--size {size} --perms 1777 --tmpfs /dev/shm".split()  # multiprocessing locks
    argv += ["--ro-bind", prog_host, f"{_PROG_DIR}/main.py", "--remount-ro", "/"]
    argv += ["--chdir", _WORK_DIR, "--clearenv"]
    for key, value in _clean_env("/nonexistent").items():
        argv += ["--setenv", key, value]
    return [*argv, "--"]


def _clean_env(home: str) -> dict[str, str]:
    """The whole environment a program sees: nothing from the host leaks through."""
    path = f"{os.path.dirname(_python_paths()[0])}:/usr/local/bin:/usr/bin:/bin"
    return dict(PATH=path, HOME=home, LANG="C.UTF-8", PYTHONDONTWRITEBYTECODE="1",
                PYTHONHASHSEED="0", TMPDIR="/tmp")  # fmt: skip


@functools.cache
def _probe_bwrap() -> tuple[bool, str]:
    """Run one trivial program through the real pipeline (userns may be disabled); cached."""
    bwrap = _find_bwrap()
    if bwrap is None:
        return False, "bwrap (bubblewrap) is not installed"
    if os.geteuid() == 0 and _find_setpriv() is None:
        return False, "running as root needs setpriv (util-linux) to drop to a private uid"
    try:
        result = _run_one("import os\nassert os.getcwd() == '/sandbox'\n", _PROBE_LIMITS, True)
    except OSError as exc:
        return False, f"bwrap did not run: {exc}"
    if result.status is not ExecStatus.PASSED:
        return False, f"bwrap failed ({result.status.value}): {result.detail}"
    return True, f"bubblewrap at {bwrap}"


def sandbox_available() -> tuple[bool, str]:
    """Whether programs can run under bubblewrap here, and why (not)."""
    return _probe_bwrap()


def _unsafe_warning(reason: str) -> None:
    """Say loudly, once per process, that untrusted code runs without isolation."""
    global _unsafe_warned
    if _unsafe_warned:
        return
    _unsafe_warned = True
    msg = (
        f"UNSAFE: running untrusted programs WITHOUT a sandbox ({reason}); only rlimits "
        "apply (and as root not even the process limit). Install bubblewrap to fix this."
    )
    log.warning(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


def _command(prog_host: str, limits: SandboxLimits, info_fd: int | None) -> list[str]:
    """Full argv: optional bwrap prefix, then the interpreter running the wrapper."""
    exe, _, site = _python_paths()
    cpu = limits.cpu_s if limits.cpu_s is not None else int(limits.timeout_s) + 2
    mb = 1 << 20

    def num(v: int | None, scale: int = 1) -> str:
        return str(v * scale) if v is not None else "-1"

    if info_fd is not None:  # sandboxed
        bwrap = _find_bwrap() or "bwrap"
        prefix, prog = _bwrap_argv(bwrap, prog_host, limits, info_fd), f"{_PROG_DIR}/main.py"
        if os.geteuid() == 0:  # see module docstring
            uid = _UID_BASE + next(_uid_counter) % 4096
            prefix += [_find_setpriv() or "setpriv", f"--reuid={uid}", f"--regid={uid}"]
            prefix += ["--clear-groups", "--inh-caps=-all", "--"]
    else:
        prefix, prog = [], prog_host
    rlimits = [str(cpu), num(limits.memory_mb, mb), num(limits.max_processes)]
    rlimits += [num(limits.max_file_mb, mb)]
    return [*prefix, exe, "-I", "-B", "-S", "-c", _WRAPPER, *rlimits, os.pathsep.join(site), prog]


def _last_line(text: str) -> str:
    """The last exception line of a traceback (interleaved output from children allowed)."""
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    skip = ("Traceback (", "During handling", "The above exception", "File ", "^", "~")
    for line in reversed(lines):
        if not line[0].isspace() and not line.startswith(skip):
            return line
    return lines[-1].strip() if lines else ""


def _classify(rc: int, sandboxed: bool, stderr: str) -> tuple[ExecStatus, str]:
    """Map an exit status (wrapper codes, bwrap's 128+N or Popen's -N) to a status."""
    sig = -rc if rc < 0 else rc - 128 if sandboxed and 128 < rc < 128 + 65 else 0
    if rc == 0:
        return ExecStatus.PASSED, ""
    if rc in (_EXIT_ASSERT, _EXIT_MEMORY, _EXIT_ERROR):
        status = {_EXIT_ASSERT: ExecStatus.FAILED, _EXIT_MEMORY: ExecStatus.MEMORY}
        return status.get(rc, ExecStatus.ERROR), _last_line(stderr)
    if sig:
        name = signal.Signals(sig).name if sig in signal.valid_signals() else f"signal {sig}"
        if sig == signal.SIGXCPU:
            return ExecStatus.TIMEOUT, "CPU time limit exceeded (SIGXCPU)"
        return ExecStatus.KILLED, f"killed by {name}"
    return ExecStatus.ERROR, _last_line(stderr) or f"exit status {rc}"


def _kill(proc: subprocess.Popen[bytes], info_r: int | None) -> None:
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


def _execute(argv: list[str], env: dict[str, str], cwd: str, limits: SandboxLimits,
             info_r: int | None, info_w: int | None) -> ExecResult:  # fmt: skip
    """Start one run and read its output with a byte cap and a wall-clock deadline."""
    start = time.monotonic()
    pipe = subprocess.PIPE  # umask: bwrap's mount points must be traversable
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=pipe, stderr=pipe, env=env,
                            cwd=cwd, start_new_session=True, umask=0o022,
                            pass_fds=() if info_w is None else (info_w,))  # fmt: skip
    if info_w is not None:
        os.close(info_w)
    assert proc.stdout is not None and proc.stderr is not None
    bufs = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
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
                bufs[key.fd] += chunk
                if len(bufs[key.fd]) > limits.max_output_bytes:
                    stopped = "output"
    if not stopped:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()) + 0.05)
        except subprocess.TimeoutExpired:
            stopped = "timeout"
    if stopped:
        _kill(proc, info_r)
    rc = proc.wait()  # prompt: it has exited or was just sent SIGKILL
    _kill(proc, None)  # stragglers that kept our group but closed their pipes
    proc.stdout.close()
    proc.stderr.close()
    out, err = (bytes(b[-TAIL_BYTES:]).decode(errors="replace") for b in bufs.values())
    duration = time.monotonic() - start
    if stopped == "timeout":
        status, detail = ExecStatus.TIMEOUT, f"wall-clock timeout after {limits.timeout_s:g}s"
    elif stopped == "output":
        status, detail = ExecStatus.KILLED, f"output over {limits.max_output_bytes} bytes"
    else:
        status, detail = _classify(rc, info_r is not None, err)
    return ExecResult(status, rc, round(duration, 4), out, err, detail)


def _run_one(code: str, limits: SandboxLimits, sandboxed: bool) -> ExecResult:
    """Write the program to a private temp dir, run it, always clean up."""
    tmp = tempfile.mkdtemp(prefix="vul2safe-run-")
    info_r, info_w = os.pipe() if sandboxed else (None, None)
    try:
        prog = os.path.join(tmp, "main.py")
        with open(prog, "w", encoding="utf-8") as f:
            f.write(code)
        os.chmod(prog, 0o644)  # readable by the sandbox's unprivileged uid
        if info_r is not None:
            os.set_blocking(info_r, False)
        argv = _command(prog, limits, info_w)
        cwd = "/" if sandboxed else tmp
        return _execute(argv, _clean_env(tmp), cwd, limits, info_r, info_w)
    finally:
        if info_r is not None:
            os.close(info_r)
        shutil.rmtree(tmp, ignore_errors=True)


def _decide_sandbox(allow_unsafe: bool) -> bool:
    """True to use bwrap; refuse (or warn, with allow_unsafe) when it cannot work here."""
    ok, reason = sandbox_available()
    if ok:
        return True
    if not allow_unsafe:
        raise SandboxUnavailable(
            f"Cannot sandbox untrusted programs: {reason}. Install bubblewrap "
            "(`apt-get install bubblewrap`; user namespaces must be allowed when not root), "
            "or pass --unsafe-no-sandbox to run with rlimits only."
        )
    _unsafe_warning(reason)
    return False


def run_program(
    code: str, *, limits: SandboxLimits | None = None, allow_unsafe: bool = False
) -> ExecResult:
    """Run one program; ``allow_unsafe`` permits rlimits-only when bwrap cannot be used."""
    return _run_one(code, limits or SandboxLimits(), _decide_sandbox(allow_unsafe))


def run_programs(
    programs: Sequence[str],
    *,
    jobs: int | None = None,
    limits: SandboxLimits | None = None,
    allow_unsafe: bool = False,
    progress: Callable[[int], None] | None = None,
) -> list[ExecResult]:
    """Run many programs on ``jobs`` workers (threads: each run is a subprocess), in order.

    ``progress`` is called with 1 each time a program finishes (an increment, like tqdm).
    """
    sandboxed = _decide_sandbox(allow_unsafe)
    lim = limits or SandboxLimits()
    workers = max(1, min(jobs or os.cpu_count() or 1, len(programs) or 1))

    def one(code: str) -> ExecResult:
        result = _run_one(code, lim, sandboxed)
        if progress is not None:
            progress(1)
        return result

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vul2safe-sandbox") as pool:
        return list(pool.map(one, programs))
