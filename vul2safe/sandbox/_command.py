"""Runs inside the sandbox for :func:`vul2safe.sandbox.run_command`: gives the command a work
folder on a tmpfs capped in bytes and inodes, runs it, and hands back what it wrote.

``python -I -S command.py CPU MEM NPROC FSIZE DISK FILES UID OUT_FD WORK CMD...``

bwrap binds the caller's folder read-only at WORK (the cwd) and gives this script
CAP_SYS_ADMIN, CAP_CHOWN, CAP_DAC_READ_SEARCH and CAP_KILL in the sandbox's namespaces.

1. It mounts a tmpfs of DISK bytes and FILES inodes over WORK (directories, links and hard
   links each take one) and copies the caller's files in: the command writes to RAM that is
   capped as a whole, never to the host's disk (``RLIMIT_FSIZE`` caps one file only).
2. It forks the command Q: Q drops to UID (as root; -1 keeps the uid), loses every
   capability, gets the rlimits and execs the command. When Q ends, this process (the
   namespace's subreaper) kills and reaps all Q left (see ``_run``).
3. It writes to OUT_FD (a host file the command never sees: closed in Q, and this process is
   not dumpable) a tar of the files new or changed in WORK, at most DISK bytes of file data,
   from offset ``HEADER``, then a JSON report at offset 0: whether the folder was full, how
   many files were left out, or why setup failed. A run the host stops never gets a report,
   so nothing of it is copied back; nor does one whose command killed this process (in a
   user namespace they share a uid): bwrap then ends, and its pid namespace with it.

It exits with Q's exit code (128 + N for signal N, as bwrap reports one). Stdlib only, like
the runner whose helpers it shares; hand-written because bubblewrap can neither cap a bind
mount nor copy files out, and a loop device or a quota needs root.
"""

import contextlib
import json
import os
import shutil
import signal
import stat
import sys
import tarfile

if __name__ == "__main__":  # in the sandbox, the runner is bound beside this file (the host
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # imports only HEADER)
    from runner import (
        _CLONE_NEWNS,
        _MS_NODEV,
        _MS_NOSUID,
        _MS_PRIVATE,
        _MS_REC,
        _PR_SET_CHILD_SUBREAPER,
        _PR_SET_DUMPABLE,
        EXIT_ERROR,
        _check,
        _drop_caps,
        _empty_caps,
        _libc,
        set_limits,
    )

HEADER = 4096  # bytes reserved for the JSON report at the start of OUT_FD


def _report(out_fd, info):
    os.pwrite(out_fd, json.dumps(info).encode()[:HEADER], 0)


def _setup(work, disk, files, uid, libc):
    """Mount the capped tmpfs over WORK and copy the caller's files in; the source path."""
    src = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    # a mount namespace of our own: bwrap's own cannot be changed from inside a user namespace
    _check(libc.unshare(_CLONE_NEWNS), "unshare mount")
    _check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "mount private")
    owner = f",uid={uid},gid={uid}" if uid >= 0 else ""
    opts = f"size={disk},nr_inodes={files},mode=0755{owner}".encode()
    _check(libc.mount(b"tmpfs", work.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, opts),
           "mount tmpfs")  # fmt: skip
    source = f"/proc/self/fd/{src}"  # the caller's folder, now hidden under the tmpfs
    shutil.copytree(source, work, symlinks=True, dirs_exist_ok=True)
    if uid >= 0:
        os.lchown(work, uid, uid)
        for dirpath, dirnames, filenames in os.walk(work):
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), uid, uid)
    return source


def _command(argv, uid, limits, work, libc):
    """Q: drop everything, then become the command."""
    try:
        os.closerange(3, 65536)
        os.chdir(work)
        if uid >= 0:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)  # from root: this also clears every capability
        _drop_caps(libc, _empty_caps())  # in a user namespace the supervisor's caps remain
        set_limits(*limits)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    except BaseException as e:
        os.write(2, f"sandbox setup failed: {e!r}\n".encode())
        os._exit(EXIT_ERROR)
    try:
        os.execvp(argv[0], argv)
    except BaseException as e:
        os.write(2, f"cannot run {argv[0]!r}: {e}\n".encode())
    os._exit(127)


def _exit_code(status):
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def _run(argv, uid, limits, work, libc):
    """Run Q, then kill and reap all it left; Q's exit code.

    This process is the subreaper of bwrap's pid namespace, so everything Q starts ends up
    its descendant; ``kill(-1)`` reaches every process but bwrap's init and this one, and a
    fork racing it fails. Not a pid namespace of our own: ``/proc`` must stay the one of the
    namespace the command is in (LeakSanitizer reads ``/proc/<getpid()>/task``)."""
    _check(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl subreaper")
    q = os.fork()
    if q == 0:
        _command(argv, uid, limits, work, libc)
    code = None
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return code
        if pid == q:
            code = _exit_code(status)
        if code is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)


def _full(work):
    """Whether the tmpfs has (next to) no room or no inode left."""
    fs = os.statvfs(work)
    return fs.f_bavail * fs.f_frsize < 65536 or fs.f_favail < 2


def _unchanged(path, old_path, st):
    try:
        old = os.lstat(old_path)
    except OSError:
        return False
    if stat.S_ISDIR(st.st_mode):
        return stat.S_ISDIR(old.st_mode)
    return (stat.S_ISREG(old.st_mode) and old.st_size == st.st_size
            and old.st_mtime_ns == st.st_mtime_ns)  # fmt: skip


def _plain(info):
    """No set-uid/set-gid/sticky bits, no group/other write, no owner: the host extracts
    these (as root, too: with Python < 3.11.4 it has no tarfile ``data`` filter)."""
    info.mode &= 0o755
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _send(out_fd, source, work, budget):
    """Tar what is new or changed (directories and regular files only) into OUT_FD; report
    how many files were left out (over the byte budget, or unreadable)."""
    os.ftruncate(out_fd, 0)
    os.lseek(out_fd, HEADER, os.SEEK_SET)
    left_out, seen = 0, set()
    with os.fdopen(out_fd, "wb", closefd=False) as stream, \
            tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(work):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, work)
            for name in sorted(dirnames + filenames):
                path = os.path.join(dirpath, name)
                rel = os.path.normpath(os.path.join(rel_dir, name))
                try:
                    st = os.lstat(path)
                    kind = stat.S_IFMT(st.st_mode)
                    if kind not in (stat.S_IFDIR, stat.S_IFREG):
                        continue  # links, fifos, sockets: never copied back
                    if _unchanged(path, os.path.join(source, rel), st):
                        continue
                    if kind == stat.S_IFREG and (st.st_dev, st.st_ino) not in seen:
                        if st.st_size > budget:  # sparse files: apparent size counts
                            left_out += 1
                            continue
                        budget -= st.st_size
                        seen.add((st.st_dev, st.st_ino))
                    tar.add(path, rel, recursive=False, filter=_plain)
                except (OSError, ValueError, UnicodeError):
                    left_out += 1
    return left_out


def main(argv):
    limits = [int(x) for x in argv[:4]]
    disk, files, uid, out_fd = (int(x) for x in argv[4:8])
    work, command = argv[8], argv[9:]
    libc = _libc()
    _check(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl dumpable")
    try:
        source = _setup(work, disk, files, uid, libc)
    except OSError as e:  # shutil.Error too: it gathers the copy's errors
        why = "the caller's files do not fit" if _full(work) else repr(e)[:500]
        _report(out_fd, {"setup_error": f"{why} (work folder cap: {disk} bytes, {files} files)"})
        os._exit(EXIT_ERROR)
    code = _run(command, uid, limits, work, libc)
    full = _full(work)
    left_out = _send(out_fd, source, work, disk)
    _report(out_fd, {"full": full, "left_out": left_out})
    os._exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
