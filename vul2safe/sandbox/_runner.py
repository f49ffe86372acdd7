"""Runs inside the sandbox: the program wrapper and the warm fork server. Stdlib only, and
nothing of the user's is imported before a program's child is forked.

``python -I -S _runner.py serve NS SCRATCH SITE [exec]`` reads length-prefixed JSON requests on
stdin and answers each on stdout. Per program it ``clone``s (with ``NS=1``) an init P in a
new pid and mount namespace, which mounts fresh size-capped tmpfs ``/sandbox`` (the cwd),
``/tmp`` and ``/dev/shm``; the program gets its own session, a private uid (the request's
``uid``: as root, see ``_core``), no capabilities, the rlimits. In ``main`` mode P forks the
program and reaps; in ``exec`` mode P is the program. When P exits, the kernel kills
whatever the program left, so nothing outlives a run; at the deadline the server kills P.
Hand-written because no library forks inside an existing bubblewrap.

Two ways to run a program:

* ``main``: as ``__main__``; the exit code says how it ended (97 assert, 98 memory, 99 error).
* ``exec``: the way HF ``code_eval`` runs it (``exec(program, {})``: ``__name__`` is not
  ``"__main__"``, the destructive functions ``reliability_guard`` disables are disabled,
  printed output is discarded). It passed only when the program ran to its end: then a
  per-run token is written to the original stdout, which ``exit(0)`` cannot forge.
"""

import builtins
import contextlib
import io
import json
import os
import resource
import select
import signal
import struct
import sys
import time

EXIT_ASSERT, EXIT_MEMORY, EXIT_ERROR = 97, 98, 99
_CLONE_NEWNS, _CLONE_NEWPID = 0x00020000, 0x20000000
_MS_NOSUID, _MS_NODEV, _MS_REC, _MS_PRIVATE = 2, 4, 0x4000, 1 << 18
_PR_SET_CHILD_SUBREAPER, _PR_SET_DUMPABLE, _PR_SET_NO_NEW_PRIVS = 36, 4, 38
#: third-party modules loaded in HF code_eval's process (``evaluate`` imports them) before
#: it forks a worker, so a program can import them despite ``reliability_guard``
_PRELOADED_BY_CODE_EVAL = ("numpy", "pandas")
#: what HF ``code_eval``'s ``reliability_guard`` sets to None (os functions on this platform
#: or not: it assigns them all), and the modules it blocks
_GUARDED_OS = ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid",
               "fork", "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink",
               "fchmod", "fchown", "chmod", "chown", "chroot", "lchflags", "lchmod", "lchown",
               "getcwd", "chdir")  # fmt: skip
_BLOCKED_MODULES = ("ipdb", "joblib", "resource", "psutil", "tkinter")
_MISSING = object()
#: what the server and a program's setup call after a server applied ``_guard`` to itself
_chdir, _fork, _kill, _killpg = os.chdir, os.fork, os.kill, os.killpg


def set_limits(cpu, mem, nproc, fsize):
    """Apply rlimits (-1: leave as is), never above the inherited hard limit."""
    for res, soft, hard in ((resource.RLIMIT_CPU, cpu, cpu + 1), (resource.RLIMIT_AS, mem, mem),
                            (resource.RLIMIT_NPROC, nproc, nproc),
                            (resource.RLIMIT_FSIZE, fsize, fsize), (resource.RLIMIT_CORE, 0, 0)):
        if soft >= 0:
            top = resource.getrlimit(res)[1]
            if top != resource.RLIM_INFINITY:
                soft, hard = min(soft, top), min(hard, top)
            resource.setrlimit(res, (soft, hard))


def _exit_code(exc):
    return (EXIT_ASSERT if isinstance(exc, AssertionError)
            else EXIT_MEMORY if isinstance(exc, MemoryError) else EXIT_ERROR)


def run_main(path, site):
    """Run ``path`` as __main__; an uncaught exception becomes an exit code + traceback.

    The program gets a fresh ``__main__`` module (pickle finds its classes there); this
    script's globals stay intact."""
    _sys, _exit, code_of = sys, os._exit, _exit_code
    import traceback

    sys.path[:] = [os.path.dirname(path), *sys.path, *(p for p in site if p)]
    sys.argv = [path]
    import types

    module = types.ModuleType("__main__")
    module.__file__ = path
    module.__builtins__ = builtins
    sys.modules["__main__"] = module
    try:
        with open(path, "rb") as f:
            code = compile(f.read(), path, "exec")
        exec(code, module.__dict__)
    except SystemExit:
        raise
    except BaseException as e:
        try:  # noqa: SIM105 (stdlib only, as few imports as possible)
            _sys.stdout.flush()
        except BaseException:
            pass
        try:
            traceback.print_exception(e)
        except BaseException:
            try:  # noqa: SIM105 (stdlib only, as few imports as possible)
                _sys.stderr.write(type(e).__name__ + "\n")
            except BaseException:
                pass
        try:
            _sys.stderr.flush()
        finally:
            _exit(code_of(e))


class _Sink(io.TextIOBase):
    """Discards what a program prints; reading fails with an OSError (HF WriteOnlyStringIO)."""

    encoding, errors = "utf-8", "strict"

    def write(self, s):
        return len(s)


def _guard():
    """Disable what HF ``code_eval``'s ``reliability_guard`` disables (programs see None).
    Returns what it replaced, for ``_unguard``."""
    import faulthandler
    import shutil
    import subprocess

    groups = ((builtins, ("exit", "quit", "help")), (os, _GUARDED_OS), (subprocess, ("Popen",)),
              (shutil, ("rmtree", "move", "chown")), (sys.modules, _BLOCKED_MODULES))  # fmt: skip
    faulthandler.disable()
    os.environ["OMP_NUM_THREADS"] = "1"  # before os.putenv (which this calls) is gone
    return [(owner, name, _put(owner, name, None)) for owner, names in groups for name in names]


def _unguard(saved):
    """Undo ``_guard`` (a pre-guarded server's child importing numpy, see ``run_exec``)."""
    for owner, name, value in saved:
        _put(owner, name, value)


def _put(owner, name, value):
    """Set an attribute or a ``sys.modules`` entry (``_MISSING``: remove it); the old value."""
    is_dict = isinstance(owner, dict)
    old = owner.pop(name, _MISSING) if is_dict else getattr(owner, name, _MISSING)
    if is_dict and value is not _MISSING:
        owner[name] = value
    elif not is_dict:
        delattr(owner, name) if value is _MISSING else setattr(owner, name, value)
    return old


def run_exec(source, token, site, guarded=None):
    """Run ``source`` as ``exec(source, {})``; write ``token`` to stdout only if it ends.
    ``guarded``: what ``_guard`` returned in a server that guarded itself (``serve``)."""
    sys.path[:] = [*sys.path, *(p for p in site if p)]
    _write, _exit = os.write, os._exit
    report = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    sink = _Sink()
    sys.stdin = sys.stdout = sys.stderr = sink
    # imported in code_eval's workers (its dependencies); importing them after the guard fails
    preload = [name for name in _PRELOADED_BY_CODE_EVAL if name in source]
    if preload and guarded is not None:
        _unguard(guarded)
    for name in preload:
        with contextlib.suppress(BaseException):
            __import__(name)
    if preload or guarded is None:
        _guard()
    try:
        exec(source, {})
    except BaseException as e:
        try:
            line = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        except BaseException:
            line = type(e).__name__
        _write(report, ("\n" + line.replace("\n", " ")[:300]).encode(errors="replace"))
        _exit(_exit_code(e))
    _write(report, token.encode())
    _exit(0)


# ---------------------------------------------------------------- fork server (inside bwrap)

def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _raw_clone(libc):
    """``clone(flags, 0, 0, 0, 0)`` through ``syscall``: fork-like (no shared memory)."""
    import ctypes
    import platform

    # architectures whose clone takes (flags, newsp, ...): only flags is non-zero here
    numbers = {"x86_64": 56, "aarch64": 220, "arm64": 220, "riscv64": 220, "ppc64le": 120}
    number = numbers.get(platform.machine())
    if number is None:
        raise OSError(f"no clone syscall number for {platform.machine()}")
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    return lambda *args: syscall(number, *(ctypes.c_long(a) for a in args))


def _check(ret, what):
    if ret != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _spawn_init(cfg):
    """Fork the run's init P. With namespaces, one raw ``clone`` makes P pid 1 of a new pid
    and mount namespace (``unshare`` would need an extra fork per run: a new pid namespace
    only applies to the caller's children, and only once). P calls no libc function that
    relies on its thread id (glibc caches the parent's) before it forks the program."""
    if not cfg["ns"]:
        return os.fork()
    pid = cfg["clone"](_CLONE_NEWPID | _CLONE_NEWNS | signal.SIGCHLD, 0, 0, 0, 0)
    if pid < 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"clone: {os.strerror(err)}")
    return pid


def _init(req, out_w, err_w, st_w, cfg):
    """P: fresh tmpfs mounts (namespaces), then fork the program Q, reap everything, report
    Q's wait status. When P exits the kernel kills whatever is left in its pid namespace.

    ``exec`` mode saves that fork: P runs the program itself (the server reads its status
    from ``waitpid``). Being a namespace's init changes only what ``reliability_guard``
    takes away anyway: signals the program sends itself, and reaping its own orphans."""
    os.setsid()
    libc = cfg["libc"]
    if cfg["ns"]:
        _check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "mount private")
        opts = f"size={req['tmpfs_bytes']},mode=1777".encode()
        for target in (b"/sandbox", b"/tmp", b"/dev/shm"):
            _check(libc.mount(b"tmpfs", target, b"tmpfs", _MS_NOSUID | _MS_NODEV, opts), "mount")
    if req["mode"] == "exec":
        os.close(st_w)
        _program(req, out_w, err_w, cfg)  # never returns
    q = _fork()
    if q == 0:
        _program(req, out_w, err_w, cfg)
    os.close(out_w)
    os.close(err_w)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(1)
        except InterruptedError:
            continue
        if pid == q:
            os.write(st_w, struct.pack("=i", status))
            os._exit(0)


def _program(req, out_w, err_w, cfg):
    """Q: the program's own process (after ``run_main`` only locals are safe to use)."""
    _sys, _exit = sys, os._exit
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, 65536)
        _chdir(req["cwd"])
        uid = req.get("uid")
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)  # from root: this also clears every capability
            cfg["libc"].prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)  # keep /proc/self readable
        _drop_caps(cfg["libc"], cfg["caps"])  # in a user namespace the server's caps remain
        set_limits(*(int(x) for x in req["limits"]))  # (SIGPIPE: the server's default)
    except BaseException as e:
        os.write(2, f"sandbox setup failed: {e!r}\n".encode())
        os._exit(EXIT_ERROR)
    try:
        if req["mode"] == "exec":
            run_exec(req["code"], req["token"], cfg["site"], cfg["guarded"])
        path = os.path.join(req["cwd"], "main.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(req["code"])
        run_main(path, cfg["site"])
    except SystemExit as e:
        code = e.code
        if code is None:
            code = 0
        elif not isinstance(code, int):
            try:  # noqa: SIM105 (stdlib only, as few imports as possible)
                _sys.stderr.write(f"{code}\n")
            except BaseException:
                pass
            code = 1
        _flush(_sys)
        _exit(code & 0xFF)
    _flush(_sys)
    _exit(0)


def _flush(mod):
    try:
        mod.stdout.flush()
        mod.stderr.flush()
    except BaseException:
        pass


def _empty_caps():
    """``capset``'s arguments for "no capabilities" (built once by the server)."""
    import ctypes

    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this pid
    data = (ctypes.c_uint32 * 6)()  # two {effective, permitted, inheritable}, all zero
    return header, data


def _drop_caps(libc, caps):
    """Empty the effective, permitted and inheritable capability sets; no new privileges."""
    _check(libc.capset(*caps), "capset")
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl no_new_privs")


def _serve_one(req, cfg):
    """Run one request; answer rc (wait status), why it was stopped, output tails."""
    start = time.monotonic()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    st_r, st_w = os.pipe()
    cwd = req["cwd"] = "/sandbox" if cfg["ns"] else _scratch_dir(cfg)
    p = _spawn_init(cfg)
    if p == 0:
        try:
            for fd in (out_r, err_r, st_r, 0, 1):
                os.close(fd)
            _init(req, out_w, err_w, st_w, cfg)
        finally:
            os._exit(EXIT_ERROR)
    for fd in (out_w, err_w, st_w):
        os.close(fd)
    bufs = {out_r: bytearray(), err_r: bytearray(), st_r: bytearray()}
    counts = dict.fromkeys(bufs, 0)
    tail, cap = req["tail"], req["max_output"]
    open_fds = set(bufs)
    stopped = ""
    deadline = start + req["timeout"]
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            stopped = "timeout"
            break
        ready, _, _ = select.select(list(open_fds), [], [], left)
        for fd in ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                open_fds.discard(fd)
                continue
            buf = bufs[fd]
            buf += chunk
            counts[fd] += len(chunk)
            if fd != st_r and counts[fd] > cap:
                stopped = "output"
            if len(buf) > 2 * max(tail, 1 << 16):
                del buf[: len(buf) - tail]
        if stopped:
            break
        if st_r not in open_fds and not cfg["ns"] and req["mode"] != "exec":
            open_fds.clear()  # without namespaces stragglers may hold the pipes: stop here
    st = bytes(bufs[st_r])
    status = struct.unpack("=i", st[:4])[0] if len(st) >= 4 else None
    if stopped or status is None:
        with contextlib.suppress(ProcessLookupError):
            _kill(p, signal.SIGKILL)  # P, the namespace's init: the kernel kills the rest
    with contextlib.suppress(ProcessLookupError, PermissionError):
        _killpg(p, signal.SIGKILL)  # without namespaces: P's session (P called setsid)
    # reaping P means (with namespaces) that its whole pid namespace is gone
    with contextlib.suppress(ChildProcessError):
        own = os.waitpid(p, 0)[1]
        if req["mode"] == "exec" and not stopped:
            status = own  # P was the program
    _reap()
    for fd in (out_r, err_r, st_r):
        os.close(fd)
    if not cfg["ns"]:
        import shutil

        shutil.rmtree(cwd, ignore_errors=True)
    return {
        "status": status,
        "stopped": stopped,
        "out": bytes(bufs[out_r][-tail:]).decode(errors="replace"),
        "err": bytes(bufs[err_r][-tail:]).decode(errors="replace"),
        "duration": time.monotonic() - start,
    }


def _scratch_dir(cfg):
    import tempfile

    return tempfile.mkdtemp(prefix="run-", dir=cfg["scratch"])


def _reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _read_exact(fd, n):
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve(argv):
    """The request loop: ``serve NS SCRATCH SITE [exec]``. ``exec``: only ``exec`` requests,
    so (with namespaces) the server guards itself once and children inherit it, 0.5 ms less
    per program (the copy-on-write faults of the guard's writes); it calls ``_kill``..."""
    # preloaded once here, so no child pays for them (stdlib only: nothing of the user's);
    # the last rows are what benchmark programs import most, as code_eval's workers have them
    # (not tempfile: it imports random, whose at-fork hook would reseed in every child)
    for name in ("ctypes", "faulthandler", "shutil", "subprocess", "traceback", "types",
                 "typing", "math", "re", "collections", "itertools", "functools", "heapq",
                 "bisect", "string", "copy", "operator"):  # fmt: skip
        __import__(name)
    import gc

    cfg = {"ns": argv[0] == "1", "scratch": argv[1], "site": argv[2].split(os.pathsep),
           "libc": _libc(), "caps": _empty_caps(), "guarded": None}  # fmt: skip
    if cfg["ns"]:
        cfg["clone"] = _raw_clone(cfg["libc"])
    _check(cfg["libc"].prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl subreaper")
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    exec_only = argv[3:4] == ["exec"]
    if exec_only and cfg["ns"]:
        cfg["guarded"] = _guard()
    gc.freeze()  # children's collections skip these objects: fewer copy-on-write page faults
    while True:
        head = _read_exact(0, 4)
        if head is None:
            return
        body = _read_exact(0, struct.unpack("=I", head)[0])
        if body is None:
            return
        try:
            req = json.loads(body)
            if exec_only and req["mode"] != "exec":
                raise ValueError(f"this server runs exec requests only, not {req['mode']!r}")
            answer = _serve_one(req, cfg)
        except Exception as e:  # the server itself failed: say so, keep serving
            answer = {"status": None, "stopped": "", "out": "", "duration": 0.0,
                      "err": f"sandbox server error: {e!r}", "server_error": True}
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
            resource.RUSAGE_CHILDREN)
        answer["cpu_s"] = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
        data = json.dumps(answer).encode()
        os.write(1, struct.pack("=I", len(data)) + data)


def main(argv):
    """``MODE cpu mem nproc fsize ...``: ``main``/``exec`` SITE PROG run one program (the
    cold path), ``cmd`` ARGV... replaces itself with a command, ``serve`` starts the server."""
    mode = argv[0]
    if mode == "serve":
        serve(argv[1:])
        return
    set_limits(*(int(x) for x in argv[1:5]))
    if mode == "cmd":
        try:
            os.execvp(argv[5], argv[5:])
        except OSError as e:
            os.write(2, f"cannot run {argv[5]!r}: {e}\n".encode())
            os._exit(127)
    site, prog = argv[5].split(os.pathsep), argv[6]
    if mode == "exec":
        token = os.read(0, 256).decode()
        with open(prog, encoding="utf-8") as f:
            source = f.read()
        run_exec(source, token, site)
    run_main(prog, site)


if __name__ == "__main__":
    main(sys.argv[1:])
