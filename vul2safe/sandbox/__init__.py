"""Run untrusted code — model-written Python programs, or whole commands (a compiler, pytest,
node) — in bubblewrap with rlimits.

Every run gets fresh ipc/pid/net/uts namespaces, a read-only system, size-capped tmpfs
working dirs, a cleared environment and, as root, a private uid (see ``_core``). Programs go
through warm fork servers inside bubblewrap (host side ``_pool``, inside ``_runner``): each
forks one child per program, in its own pid and mount namespace, instead of starting bwrap
and an interpreter each time (where the server cannot start, each program gets its own
bwrap: same isolation, slower); servers stay warm between calls (``_workers``). Commands
(:func:`run_command`) get one bwrap each, and a copy of their work folder on a tmpfs capped in
bytes and files (``_command``): a hostile command fills its own RAM-backed folder, never the
host's disk.

Public API: :func:`run_program`, :func:`run_programs`, :func:`run_command`,
:func:`sandbox_available`, :class:`SandboxLimits`, :class:`ExecResult`, :class:`ExecStatus`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tarfile
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

from vul2safe.errors import SandboxUnavailable
from vul2safe.sandbox import _workers
from vul2safe.sandbox._command import HEADER
from vul2safe.sandbox._core import (
    COMMAND,
    PROG_DIR,
    RUNNER,
    TAIL_BYTES,
    UID_BASE,
    UID_SPAN,
    ExecResult,
    ExecStatus,
    SandboxLimits,
    bwrap_argv,
    clean_env,
    drop_root_argv,
    execute,
    find_bwrap,
    find_setpriv,
    next_uid,
    python_paths,
)

if TYPE_CHECKING:
    from vul2safe.sandbox._pool import ForkServer

__all__ = [
    "TAIL_BYTES",
    "ExecResult",
    "ExecStatus",
    "SandboxLimits",
    "run_command",
    "run_program",
    "run_programs",
    "sandbox_available",
]

log = logging.getLogger(__name__)

_PROBE_LIMITS = SandboxLimits(timeout_s=30)
_UID_BASE, _UID_SPAN = UID_BASE, UID_SPAN  # tests look for leftovers of these uids
_unsafe_warned = False


Mode = Literal["main", "exec"]


def _runner_argv(runner: str, mode: str, limits: SandboxLimits, *rest: str) -> list[str]:
    """The interpreter running ``_runner.py`` (``-I -S``: ~10 ms instead of ~35 ms)."""
    return [python_paths()[0], "-I", "-B", "-S", runner, mode, *limits.rlimit_args(), *rest]


def _run_one(code: str, limits: SandboxLimits, sandboxed: bool, mode: str = "main") -> ExecResult:
    """One program, one bwrap (the probe and the fallback): write it, run it, clean up."""
    tmp = tempfile.mkdtemp(prefix="vul2safe-run-")
    info_r, info_w = os.pipe() if sandboxed else (None, None)
    site = os.pathsep.join(python_paths()[2])
    token = os.urandom(16).hex() if mode == "exec" else ""
    try:
        prog = os.path.join(tmp, "main.py")
        with open(prog, "w", encoding="utf-8") as f:
            f.write(code)
        os.chmod(prog, 0o644)  # readable by the sandbox's unprivileged uid
        if info_r is not None and info_w is not None:
            os.set_blocking(info_r, False)
            files = [(prog, "main.py"), (RUNNER, "runner.py")]
            argv = bwrap_argv(limits, info_w, clean_env("/nonexistent"), prog_files=files)
            if os.geteuid() == 0:
                argv += drop_root_argv(next_uid())
            argv += _runner_argv(f"{PROG_DIR}/runner.py", mode, limits, site,
                                 f"{PROG_DIR}/main.py")  # fmt: skip
        else:
            argv = _runner_argv(RUNNER, mode, limits, site, prog)
        cwd = "/" if sandboxed else tmp
        return execute(argv, clean_env(tmp), cwd, limits, info_r, info_w, mode=mode,
                       token=token)  # fmt: skip
    finally:
        if info_r is not None:
            os.close(info_r)
        shutil.rmtree(tmp, ignore_errors=True)


@functools.cache
def _probe_bwrap() -> tuple[bool, str]:
    """Run one trivial program through the real pipeline (userns may be disabled); cached."""
    bwrap = find_bwrap()
    if bwrap is None:
        return False, "bwrap (bubblewrap) is not installed"
    if os.geteuid() == 0 and find_setpriv() is None:
        return False, "running as root needs setpriv (util-linux) to drop to a private uid"
    hidden = [p for p in python_paths()[1] if p.split("/")[1:2] in (["tmp"], ["dev"])]
    if hidden:  # the sandbox mounts a fresh tmpfs on /tmp and /dev/shm over whatever is there
        return False, (
            f"the Python environment {hidden[0]} lives under /tmp or /dev, which the sandbox "
            "replaces with a private tmpfs; create the virtualenv elsewhere "
            "(e.g. ~/.local/share/vul2safe/venv)"
        )
    try:
        result = _run_one("import os\nassert os.getcwd() == '/sandbox'\n", _PROBE_LIMITS, True)
    except OSError as exc:
        return False, f"bwrap did not run: {exc}"
    if result.status is not ExecStatus.PASSED:
        return False, f"bwrap failed ({result.status.value}): {result.detail}"
    return True, f"bubblewrap at {bwrap}"


def sandbox_available() -> tuple[bool, str]:
    """Whether code can run under bubblewrap here, and why (not)."""
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


_PROBE = "import os\nassert os.getcwd() == '/sandbox'\n"
_warm_ok: dict[bool, bool] = {}
_warm_lock = threading.Lock()


def _warm_available(sandboxed: bool) -> bool:
    """Whether the fork server works here (probed once per mode; else one bwrap per run)."""
    with _warm_lock:
        if sandboxed not in _warm_ok:
            from vul2safe.sandbox._pool import ForkServer, ServerError

            try:
                with ForkServer(_PROBE_LIMITS, sandboxed) as server:
                    ok = server.run(_PROBE, "main", _PROBE_LIMITS).status is ExecStatus.PASSED
            except (OSError, ServerError) as exc:
                log.info("warm sandbox unavailable (%s); one bwrap per program", exc)
                ok = False
            _warm_ok[sandboxed] = ok
        return _warm_ok[sandboxed]


def run_program(
    code: str,
    *,
    limits: SandboxLimits | None = None,
    allow_unsafe: bool = False,
    mode: Mode = "main",
) -> ExecResult:
    """Run one program; ``allow_unsafe`` permits rlimits-only without bwrap."""
    return run_programs([code], jobs=1, limits=limits, allow_unsafe=allow_unsafe, mode=mode)[0]


def run_programs(
    programs: Sequence[str],
    *,
    jobs: int | None = None,
    limits: SandboxLimits | None = None,
    allow_unsafe: bool = False,
    progress: Callable[[int], None] | None = None,
    mode: Mode = "main",
) -> list[ExecResult]:
    """Run many programs on ``jobs`` warm workers, results in order.

    ``mode="main"`` runs each as ``__main__`` (its exit code counts); ``mode="exec"`` runs it
    the way HF ``code_eval`` does (see ``_runner``). ``progress`` is called with 1 each time
    a program finishes (an increment, like tqdm).
    """
    if mode not in ("main", "exec"):
        raise ValueError(f"unknown run mode {mode!r}; use 'main' or 'exec'")
    sandboxed = _decide_sandbox(allow_unsafe)
    lim = limits or SandboxLimits()
    if not programs:
        return []
    workers = max(1, min(jobs or os.cpu_count() or 1, len(programs)))
    results: list[ExecResult | None] = [None] * len(programs)
    warm = _warm_available(sandboxed)
    next_index = iter(range(len(programs)))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def drain(server: ForkServer | BaseException) -> None:  # in the thread owning ``server``
        try:
            if isinstance(server, BaseException):
                raise server
            while not errors:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                if warm:
                    results[i] = server.run(programs[i], mode, lim)
                else:
                    results[i] = _run_one(programs[i], lim, sandboxed, mode)
                if progress is not None:
                    progress(1)
        except BaseException as exc:  # re-raised in the caller's thread below
            errors.append(exc)

    leased = _workers.lease((sandboxed, mode, lim), workers)
    try:
        for done in [worker.submit(drain) for worker in leased]:
            done.wait()
    finally:
        _workers.give_back(leased, keep=not errors)
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


_DATA_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
#: what ``_command`` needs (Q drops them all): mount, hand files to the uid, read them back,
#: kill what the command left (as root it runs as another uid)
_COMMAND_CAPS = ("CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_DAC_READ_SEARCH", "CAP_KILL")


def _copy_back(result: ExecResult, out: BinaryIO, work: Path, limits: SandboxLimits
               ) -> ExecResult:  # fmt: skip
    """Extract what ``_command`` sent back into ``work``; say when the folder was full.

    No report means the host stopped the run (timeout, output cap): nothing comes back. The
    names in the tar are the command's, so it is extracted with tarfile's ``data`` filter
    (no links out, no devices, no absolute paths, no set-uid bits) where Python has it
    (3.11.4+); ``_command`` already sends only plain files and folders, modes masked."""
    out.seek(0)
    head = out.read(HEADER).rstrip(b"\0")
    if not head:
        return result
    try:
        info = json.loads(head)
    except ValueError:
        return replace(result, status=ExecStatus.ERROR, detail="the sandbox's report is garbled")
    if info.get("setup_error"):
        return replace(result, status=ExecStatus.ERROR,
                       detail=f"sandbox setup failed: {info['setup_error']}")  # fmt: skip
    try:
        with tarfile.open(fileobj=out, mode="r|") as tar:
            tar.extractall(work, **_DATA_FILTER)
    except (tarfile.TarError, OSError) as exc:
        return replace(result, status=ExecStatus.ERROR,
                       detail=f"cannot copy the command's files back to {work}: {exc}")  # fmt: skip
    cap = f"{limits.disk_mb} MB / {limits.max_files} files"
    if info.get("left_out"):
        detail = f"{info['left_out']} file(s) not copied back (over the cap of {cap} or unreadable)"
        return replace(result, status=ExecStatus.ERROR, detail=detail)
    if info.get("full") and result.status is not ExecStatus.PASSED:
        return replace(result, detail=f"work folder full (cap {cap}): {result.detail}")
    return result


def run_command(
    argv: Sequence[str],
    *,
    workdir: Path,
    limits: SandboxLimits,
    ro_binds: Sequence[Path] = (),
    env: Mapping[str, str] | None = None,
    allow_unsafe: bool = False,
    tail_bytes: int = TAIL_BYTES,
) -> ExecResult:
    """Run a whole command (``gcc ...``, ``python -m pytest ...``, ``node x.js``) in the sandbox.

    ``workdir`` (files put there by the caller) is the working directory, at its own path;
    the command sees a copy of it on a tmpfs of ``limits.disk_mb`` and ``limits.max_files``
    (see ``_command``), and what it leaves there that is new or changed (files and folders;
    no links) is copied back into ``workdir`` when it ends, even when it fails; nothing is
    when the run is stopped (timeout, output cap). Deleting a file deletes only the copy.
    The system (``/usr``, ``/bin``, ``/lib*``), this Python and its virtualenv, and
    ``ro_binds`` are visible read-only; nothing else of the host is. No network, a clean
    environment (``PATH`` with the venv first, ``HOME=/tmp``, ``LANG``; ``env`` adds or
    overrides), the rlimits of ``limits`` (``memory_mb=None`` for AddressSanitizer
    binaries), a wall-clock timeout that kills every process the command started, and at
    most ``limits.max_output_bytes`` per stream (the last ``tail_bytes`` are returned).

    The status is ``PASSED`` for exit code 0, ``ERROR`` for any other ("exit status N"; 127
    when ``argv[0]`` cannot be run; the detail says when the work folder was full, and a
    result whose files could not all come back is an ``ERROR``), ``TIMEOUT``/``KILLED`` as
    for programs. As root the command runs as a private uid.
    """
    if not argv:
        raise ValueError("run_command needs a command (argv is empty)")
    work = Path(workdir).resolve()
    if not work.is_dir():
        raise FileNotFoundError(f"run_command: workdir {work} is not a directory")
    sandboxed = _decide_sandbox(allow_unsafe)
    run_env = clean_env("/tmp" if sandboxed else str(work), env)
    if not sandboxed:  # rlimits only, in the caller's folder (the UNSAFE warning said so)
        inner = _runner_argv(RUNNER, "cmd", limits, *argv)
        return execute(inner, run_env, str(work), limits, None, None, mode="cmd",
                       tail_bytes=tail_bytes)  # fmt: skip
    info_r, info_w = os.pipe()
    os.set_blocking(info_r, False)
    uid = next_uid() if os.geteuid() == 0 else -1
    with tempfile.TemporaryFile(prefix="vul2safe-out-") as out:
        try:
            prefix = bwrap_argv(limits, info_w, run_env, workdir=str(work),
                                ro_binds=[str(p) for p in ro_binds], caps=_COMMAND_CAPS,
                                prog_files=[(RUNNER, "runner.py"), (COMMAND, "command.py")])
            inner = [python_paths()[0], "-I", "-B", "-S", f"{PROG_DIR}/command.py",
                     *limits.rlimit_args(), str(limits.disk_mb << 20), str(limits.max_files),
                     str(uid), str(out.fileno()), str(work), *argv]  # fmt: skip
            result = execute(prefix + inner, run_env, "/", limits, info_r, info_w, mode="cmd",
                             tail_bytes=tail_bytes, pass_fds=(out.fileno(),))  # fmt: skip
        finally:
            os.close(info_r)
        return _copy_back(result, out, work, limits)
