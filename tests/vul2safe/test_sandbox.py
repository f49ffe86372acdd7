"""Real-bubblewrap tests of the program sandbox: hostile programs must each end with their own
status, leave the host untouched and leave no process behind, while the batch goes on."""

from __future__ import annotations

import glob
import os
import resource
import shutil
import socket
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from vul2safe import sandbox
from vul2safe.errors import SandboxUnavailable
from vul2safe.sandbox import ExecStatus, SandboxLimits, run_command, run_program, run_programs

needs_bwrap = pytest.mark.usefixtures("require_bwrap")
REPO = Path(__file__).resolve().parents[2]


def _spawn_marker(marker: str) -> str:
    """Code that leaves a long-lived, detached child whose cmdline carries ``marker``."""
    return (
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', "
        f"{marker!r}], start_new_session=True)\n"
    )


def _processes_with(marker: str) -> list[int]:
    """Pids on the host whose cmdline contains ``marker`` (other than this test process)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def _sandbox_uid_processes() -> list[int]:
    """Pids still running under one of this process's private sandbox uids."""
    low, high = sandbox._UID_BASE, sandbox._UID_BASE + 4096
    pids = []
    for status in glob.glob("/proc/[0-9]*/status"):
        try:
            text = Path(status).read_text()
        except OSError:
            continue
        uid_line = next((ln for ln in text.splitlines() if ln.startswith("Uid:")), "")
        if any(low <= int(u) < high for u in uid_line.split()[1:]):
            pids.append(int(status.split("/")[2]))
    return pids


@needs_bwrap
@pytest.mark.parametrize("warm", [True, False], ids=["fork-server", "bwrap-per-program"])
def test_hostile_batch_each_ends_with_its_own_status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, warm: bool
) -> None:
    """Both execution paths: the warm fork server, and one bwrap per program (the fallback
    where the server cannot start)."""
    assert sandbox._warm_available(True), "the warm fork server does not start here"
    monkeypatch.setitem(sandbox._warm_ok, True, warm)
    monkeypatch.setenv("VUL2SAFE_TEST_SECRET", "hunter2")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # private: others run programs too
    marker = f"v2s-marker-{uuid.uuid4().hex}"
    home = os.path.expanduser("~")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    programs = {
        "ok": "def add(a, b):\n    return a + b\nassert add(2, 3) == 5\nprint('fine')\n",
        "assert": "assert 1 == 2\n",
        "zero": "1/0\n",
        "spin": _spawn_marker(marker) + "while True:\n    pass\n",
        "forkbomb": _spawn_marker(marker) + "import os\nwhile True:\n    os.fork()\n",
        "alloc": "x = b' ' * (50 * 10**9)\n",
        "etc": f"open('/etc/{marker}', 'w').write('pwned')\n",
        "home": f"open({os.path.join(home, marker)!r}, 'w').write('pwned')\n",
        "tilde": f"import os\nopen(os.path.expanduser('~/{marker}'), 'w').write('pwned')\n",
        "net": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
        "parent": "import os\nos.kill(os.getppid(), 9)\n",
        "flood": "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n"
        "    sys.stdout.write(chunk)\n",
        "environ": "import os\n"
        "data = open('/proc/self/environ', 'rb').read()\n"
        "assert b'hunter2' not in data and b'VUL2SAFE_TEST_SECRET' not in data, data\n"
        "assert 'VUL2SAFE_TEST_SECRET' not in os.environ\n"
        "try:\n    init = open('/proc/1/environ', 'rb').read()\n"
        "except OSError:\n    init = b''\n"
        "assert b'hunter2' not in init\n",
    }
    done: list[int] = []
    results = run_programs(
        list(programs.values()),
        jobs=2,
        limits=SandboxLimits(timeout_s=3),
        progress=done.append,
    )
    by_name = dict(zip(programs, results, strict=True))

    assert sum(done) == len(programs)
    assert by_name["ok"].status is ExecStatus.PASSED
    assert by_name["ok"].stdout_tail == "fine\n"
    assert by_name["assert"].status is ExecStatus.FAILED
    assert by_name["zero"].status is ExecStatus.ERROR
    assert by_name["zero"].detail == "ZeroDivisionError: division by zero"
    assert by_name["spin"].status is ExecStatus.TIMEOUT
    assert by_name["forkbomb"].status is not ExecStatus.PASSED
    # stopped by the process limit (fork fails), not by the wall clock
    assert by_name["forkbomb"].status is ExecStatus.ERROR, by_name["forkbomb"]
    assert "Resource temporarily unavailable" in by_name["forkbomb"].detail
    assert by_name["alloc"].status is ExecStatus.MEMORY
    for name in ("etc", "home", "tilde", "net"):
        assert by_name[name].status is ExecStatus.ERROR, (name, by_name[name])
    assert "ConnectionRefused" in by_name["net"].detail or "Network" in by_name["net"].detail
    # the program's parent is the sandbox's init: as root (private uid) the kill is refused,
    # in a user namespace the init ignores it; either way the run goes on to its own end
    if os.geteuid() == 0:
        assert by_name["parent"].status is ExecStatus.ERROR, by_name["parent"]
        assert "Operation not permitted" in by_name["parent"].detail
    else:
        assert by_name["parent"].status is ExecStatus.PASSED, by_name["parent"]
    assert by_name["flood"].status in {ExecStatus.KILLED, ExecStatus.TIMEOUT, ExecStatus.ERROR}
    # stopped by the output cap as soon as it is crossed, not by the wall clock
    assert by_name["flood"].status is ExecStatus.KILLED, by_name["flood"]
    assert by_name["flood"].detail == f"output over {SandboxLimits().max_output_bytes} bytes"
    assert len(by_name["flood"].stdout_tail) <= sandbox.TAIL_BYTES
    assert by_name["environ"].status is ExecStatus.PASSED, by_name["environ"]

    # the host is untouched
    assert not Path("/etc", marker).exists()
    assert not Path(home, marker).exists()
    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()
    # nothing is left behind: no marker process, no process of a sandbox uid, no temp dir
    assert _processes_with(marker) == []
    left = _sandbox_uid_processes()
    assert left == [], [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left]
    assert list(tmp_path.iterdir()) == []
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 200, f"host memory grew by {grown_mb:.0f} MB while reading output"


@needs_bwrap
def test_cpu_limit_is_a_timeout() -> None:
    # a wall clock far beyond 1 s of CPU, so a loaded machine cannot make it fire first
    result = run_program("while True:\n    pass\n", limits=SandboxLimits(timeout_s=120, cpu_s=1))
    assert result.status is ExecStatus.TIMEOUT
    assert "CPU time limit" in result.detail  # RLIMIT_CPU fired, not the wall clock


@needs_bwrap
def test_sandbox_sees_clean_fs_and_env() -> None:
    code = (
        "import os\n"
        "assert os.getcwd() == '/sandbox'\n"
        "open('scratch.txt', 'w').write('ok')\n"  # the tmpfs working dir is writable
        "assert set(os.environ) <= {'PATH', 'HOME', 'LANG', 'PYTHONDONTWRITEBYTECODE',"
        " 'PYTHONHASHSEED', 'TMPDIR', 'PWD'}, os.environ\n"
        f"assert not os.path.exists({str(REPO)!r}) and not os.path.exists('/home')\n"
    )  # the interpreter's own tree is visible (read-only); the repo and /home are not
    result = run_program(code)
    assert result.status is ExecStatus.PASSED, result


@needs_bwrap
def test_exit_codes_and_syntax_errors() -> None:
    results = run_programs(["import sys\nsys.exit(0)\n", "import sys\nsys.exit(3)\n", "def (:\n"])
    assert [r.status for r in results] == [ExecStatus.PASSED, ExecStatus.ERROR, ExecStatus.ERROR]
    assert results[1].detail == "exit status 3"
    assert results[2].detail.startswith("SyntaxError")


@needs_bwrap
def test_ordinary_stdlib_programs_work() -> None:
    programs = [
        "import multiprocessing as mp\n\ndef sq(x):\n    return x * x\n\n"
        "if __name__ == '__main__':\n    with mp.Pool(2) as pool:\n"
        "        assert pool.map(sq, [1, 2, 3]) == [1, 4, 9]\n",
        "import pickle\n\nclass A:\n    pass\n\n"
        "assert type(pickle.loads(pickle.dumps(A()))) is A\n",
        "from concurrent.futures import ThreadPoolExecutor\n"
        "with ThreadPoolExecutor(16) as ex:\n    assert sum(ex.map(abs, range(-100, 0))) == 5050\n",
        "import tempfile\nwith tempfile.TemporaryDirectory() as d:\n"
        "    open(d + '/x', 'w').write('1')\n",
    ]
    results = run_programs(programs, jobs=2, limits=SandboxLimits(timeout_s=10))
    assert [r.status for r in results] == [ExecStatus.PASSED] * len(programs), results


def test_unavailable_sandbox_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_probe_bwrap", lambda: (False, "bwrap not found (test)"))
    assert sandbox.sandbox_available() == (False, "bwrap not found (test)")
    with pytest.raises(SandboxUnavailable) as info:
        run_program("print(1)\n")
    message = str(info.value)
    assert "apt-get install bubblewrap" in message
    assert "--unsafe-no-sandbox" in message
    with pytest.raises(SandboxUnavailable):
        run_programs(["print(1)\n"], jobs=1)


def test_a_virtualenv_under_tmp_is_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sandbox's private /tmp would hide such an interpreter: say so instead of failing."""
    exe, _, site = sandbox.python_paths()
    monkeypatch.setattr(sandbox, "python_paths", lambda: (exe, ["/tmp/ci/venv"], site))
    ok, reason = sandbox._probe_bwrap.__wrapped__()
    assert not ok
    assert "/tmp/ci/venv" in reason and "create the virtualenv elsewhere" in reason


def test_unsafe_mode_runs_with_rlimits_and_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_probe_bwrap", lambda: (False, "bwrap not found (test)"))
    monkeypatch.setattr(sandbox, "_unsafe_warned", False)
    with pytest.warns(RuntimeWarning, match="UNSAFE"):
        result = run_program("print('hi')\n", allow_unsafe=True)
    assert result.status is ExecStatus.PASSED
    assert result.stdout_tail == "hi\n"
    limited = run_programs(
        ["x = b' ' * (50 * 10**9)\n", "assert False\n"],
        allow_unsafe=True,
        limits=SandboxLimits(timeout_s=5),
    )
    assert [r.status for r in limited] == [ExecStatus.MEMORY, ExecStatus.FAILED]


@needs_bwrap
def test_run_command_compiles_and_runs_asan_binaries(tmp_path: Path) -> None:
    """The CWEval shape: gcc with AddressSanitizer, then the binary, in a caller's folder."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed for this test: apt-get install gcc")
    work = tmp_path / "task"
    work.mkdir()
    (work / "overflow.c").write_text(
        "#include <stdlib.h>\nint main(void) {\n  int *a = malloc(4 * sizeof(int));\n"
        "  a[4] = 1;\n  free(a);\n  return 0;\n}\n"
    )
    asan = SandboxLimits(timeout_s=60, memory_mb=None)  # ASan needs an unlimited address space
    built = run_command(
        ["gcc", "-fsanitize=address", "-g", "overflow.c", "-o", "overflow"],
        workdir=work,
        limits=asan,
    )
    assert built.status is ExecStatus.PASSED, built
    assert (work / "overflow").is_file()  # what the command wrote stays for the caller
    ran = run_command(["./overflow"], workdir=work, limits=asan)
    assert ran.status is ExecStatus.ERROR, ran
    assert "heap-buffer-overflow" in ran.stderr_tail
    missing = run_command(["no-such-tool-v2s"], workdir=work, limits=asan)
    assert (missing.status, missing.exit_code) == (ExecStatus.ERROR, 127)
    # a clean binary passes: LeakSanitizer at exit reads /proc/<its pid>/task, so /proc must
    # be the command's own pid namespace's (a grandchild, like pytest's subprocess)
    (work / "clean.c").write_text(
        "#include <stdlib.h>\nint main(void) {\n  int *a = malloc(4 * sizeof(int));\n"
        "  a[3] = 1;\n  free(a);\n  return 0;\n}\n"
    )
    built = run_command(["gcc", "-fsanitize=address", "clean.c", "-o", "clean"], workdir=work,
                        limits=asan)  # fmt: skip
    assert built.status is ExecStatus.PASSED, built
    clean = run_command(["sh", "-c", "./clean && ./clean"], workdir=work, limits=asan)
    assert clean.status is ExecStatus.PASSED, clean


@needs_bwrap
def test_run_command_runs_pytest_isolated(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VUL2SAFE_TEST_SECRET", "hunter2")
    marker = f"v2s-marker-{uuid.uuid4().hex}"
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "helper.py").write_text("VALUE = 42\n")
    work = tmp_path / "task"
    work.mkdir()
    (work / "test_task.py").write_text(
        "import os, socket, sys\n"
        f"sys.path.insert(0, {str(extra)!r})\n"
        "import helper\n\n"
        "def test_sees_ro_bind_and_env():\n"
        "    assert helper.VALUE == 42\n"
        "    assert os.environ['TASK_MODE'] == 'strict'\n"
        "    assert 'VUL2SAFE_TEST_SECRET' not in os.environ\n\n"
        "def test_cannot_write_ro_bind():\n"
        f"    try:\n        open({str(extra / marker)!r}, 'w')\n"
        "    except OSError:\n        return\n"
        "    raise AssertionError('wrote into a read-only bind')\n\n"
        "def test_no_network():\n"
        "    try:\n        socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
        "    except OSError:\n        return\n"
        "    raise AssertionError('network reachable')\n\n"
        "def test_fails():\n    assert 1 == 2\n"
    )
    result = run_command(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml=out.xml"],
        workdir=work,
        limits=SandboxLimits(timeout_s=120, memory_mb=None),
        ro_binds=[extra],
        env={"TASK_MODE": "strict"},
    )
    assert result.status is ExecStatus.ERROR, result  # pytest's exit code 1: one test failed
    assert result.exit_code == 1
    assert "1 failed, 3 passed" in result.stdout_tail, result.stdout_tail
    assert (work / "out.xml").is_file()
    assert not (extra / marker).exists()


@needs_bwrap
def test_run_command_timeout_kills_everything(tmp_path: Path) -> None:
    marker = f"v2s-marker-{uuid.uuid4().hex}"
    result = run_command(
        ["sh", "-c", f"echo x > written; setsid sleep 120 {marker} & exec sleep 120"],
        workdir=tmp_path,
        limits=SandboxLimits(timeout_s=1),
    )
    assert result.status is ExecStatus.TIMEOUT
    assert _processes_with(marker) == []
    assert _sandbox_uid_processes() == []
    assert list(tmp_path.iterdir()) == []  # a stopped run hands nothing back


def _host_bytes(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file())


@needs_bwrap
def test_run_command_caps_the_whole_work_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Writing until the disk is full (bytes, inodes, hard links, sparse files) fills only the
    command's capped tmpfs: each run ends with its own status, the caller's folder gets at
    most the cap back, and nothing keeps running."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "host-tmp"))
    (tmp_path / "host-tmp").mkdir()
    marker = f"v2s-marker-{uuid.uuid4().hex}"
    limits = SandboxLimits(timeout_s=60, disk_mb=8, max_files=300)
    hostile = {  # each loops until the kernel refuses, then lets the error end it
        "bytes": _spawn_marker(marker)
        + "i = 0\nwhile True:\n    open(f'f{i}', 'wb').write(b'x' * (1 << 20))\n    i += 1\n",
        "dirs": "import os\ni = 0\nwhile True:\n    os.mkdir(f'd{i}')\n    i += 1\n",
        "links": "import os\nopen('a', 'w').write('x')\ni = 0\n"
        "while True:\n    os.link('a', f'l{i}')\n    i += 1\n",
        "sparse": "for i in range(100):\n"
        "    with open(f's{i}', 'wb') as f:\n        f.truncate(60 << 20)\n",
    }
    results = {}
    for name, code in hostile.items():
        work = tmp_path / name
        work.mkdir()
        (work / "input.txt").write_text("caller's file\n")
        results[name] = run_command([sys.executable, "-c", code], workdir=work, limits=limits)
        assert _host_bytes(work) <= 8 << 20, name
        assert len(list(work.rglob("*"))) <= 300, name
        assert (work / "input.txt").read_text() == "caller's file\n"
    for name in ("bytes", "dirs", "links"):
        result = results[name]
        assert result.status is ExecStatus.ERROR, (name, result)
        assert "No space left on device" in result.stderr_tail, (name, result)
        assert result.detail == "work folder full (cap 8 MB / 300 files): exit status 1"
    assert _host_bytes(tmp_path / "bytes") >= 7 << 20  # what fitted came back
    # sparse files fit the tmpfs but would fill the host: they are not copied back
    assert results["sparse"].status is ExecStatus.ERROR, results["sparse"]
    assert "not copied back" in results["sparse"].detail
    assert not list((tmp_path / "sparse").glob("s*"))
    assert _processes_with(marker) == []
    assert _sandbox_uid_processes() == []
    assert list((tmp_path / "host-tmp").iterdir()) == []


@needs_bwrap
def test_run_command_hands_back_plain_files_only(tmp_path: Path) -> None:
    """Links and set-uid bits the command makes never reach the caller's folder; a caller's
    folder that does not fit the cap is refused with a clear reason."""
    (tmp_path / "keep.txt").write_text("mine\n")
    result = run_command(
        ["sh", "-c", "ln -s /etc/passwd link; echo hi > suid; chmod 4777 suid; rm keep.txt;"
         " mkdir -p new/deeper && echo deep > new/deeper/file"],
        workdir=tmp_path,
        limits=SandboxLimits(timeout_s=30),
    )  # fmt: skip
    assert result.status is ExecStatus.PASSED, result
    assert not (tmp_path / "link").exists() and not (tmp_path / "link").is_symlink()
    assert (tmp_path / "suid").stat().st_mode & 0o7777 == 0o755
    assert (tmp_path / "new" / "deeper" / "file").read_text() == "deep\n"
    assert (tmp_path / "keep.txt").read_text() == "mine\n"  # deleting removes only the copy
    (tmp_path / "big").write_bytes(b"x" * (2 << 20))
    refused = run_command(["true"], workdir=tmp_path, limits=SandboxLimits(disk_mb=1))
    assert refused.status is ExecStatus.ERROR
    assert refused.detail.startswith("sandbox setup failed: the caller's files do not fit")


@needs_bwrap
def test_warm_workers_give_each_program_a_fresh_sandbox() -> None:
    """The fork server is in use here, and nothing one program leaves is seen by the next."""
    assert sandbox._warm_available(True), "the warm fork server does not start here"
    leave = (
        "import os, subprocess, sys\n"
        "open('/tmp/left-behind', 'w').write('x')\n"
        "open('left-in-cwd', 'w').write('x')\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " start_new_session=True)\n"
    )
    look = (
        "import os\n"
        "assert not os.path.exists('/tmp/left-behind')\n"
        "assert os.listdir('.') in ([], ['main.py'])\n"
        "others = [p for p in os.listdir('/proc') if p.isdigit()"
        " and os.stat('/proc/' + p).st_uid == os.getuid() and p != os.readlink('/proc/self')]\n"
        "assert others == [], others\n"
    )
    results = run_programs([leave, look, leave, look], jobs=1)
    assert [r.status for r in results] == [ExecStatus.PASSED] * 4, results
    assert _sandbox_uid_processes() == []


@needs_bwrap
def test_exec_mode_runs_like_code_eval() -> None:
    """``mode="exec"``: passed only when the program runs to its end; exit is a failure."""
    marker = f"v2s-marker-{uuid.uuid4().hex}"
    programs = {
        "ok": "def f():\n    return 1\nprint('noise' * 10**6)\nassert f() == 1\n",
        "main_guard": "if __name__ == '__main__':\n    raise SystemExit(0)\nassert True\n",
        "sys_exit": "import sys\nsys.exit(0)\nassert True\n",
        "os_exit": "import os\nos._exit(0)\n",
        "exit_builtin": "exit(0)\n",
        "assert": "assert 1 == 2\n",
        "input": "x = input()\n",
        "subprocess": "import subprocess\nsubprocess.run(['true'])\n",
        # numpy is already loaded in code_eval's workers, so importing it works there too
        "numpy": "import numpy as np\nassert int(np.arange(3).sum()) == 3\n",
        # what the guard does not stop: a detached child; it must not outlive the run
        "spawn": "import os, sys\nos.posix_spawn(sys.executable, [sys.executable, '-c', "
        f"'import time; time.sleep(60)', {marker!r}], {{}}, setsid=True)\n",
        "spin": "while True:\n    pass\n",
    }
    results = run_programs(
        list(programs.values()), jobs=2, limits=SandboxLimits(timeout_s=3), mode="exec"
    )
    by_name = dict(zip(programs, results, strict=True))
    assert by_name["ok"].status is ExecStatus.PASSED, by_name["ok"]
    assert by_name["ok"].stdout_tail == ""  # printed output is discarded, never a failure
    assert by_name["main_guard"].status is ExecStatus.PASSED  # __name__ is not "__main__"
    assert by_name["sys_exit"].status is ExecStatus.ERROR
    assert by_name["sys_exit"].detail == "SystemExit: 0"
    assert by_name["os_exit"].status is ExecStatus.ERROR
    assert "before its tests finished" in by_name["os_exit"].detail
    assert by_name["exit_builtin"].status is ExecStatus.ERROR  # reliability_guard: exit = None
    assert by_name["assert"].status is ExecStatus.FAILED
    assert by_name["input"].status is ExecStatus.ERROR
    assert by_name["subprocess"].status is ExecStatus.ERROR  # Popen = None, as code_eval has it
    assert by_name["numpy"].status is ExecStatus.PASSED, by_name["numpy"]
    assert by_name["spawn"].status is ExecStatus.PASSED, by_name["spawn"]
    assert by_name["spin"].status is ExecStatus.TIMEOUT
    assert _processes_with(marker) == []
    assert _sandbox_uid_processes() == []
    with pytest.raises(ValueError, match="unknown run mode"):
        run_programs(["pass\n"], mode="eval")  # type: ignore[arg-type]


@needs_bwrap
@pytest.mark.parametrize("warm", [True, False], ids=["fork-server", "bwrap-per-program"])
def test_every_exec_program_sees_the_whole_guard(
    monkeypatch: pytest.MonkeyPatch, warm: bool
) -> None:
    """An exec-only fork server applies ``reliability_guard`` to itself once; each program must
    still see all of it, also after a program that imported numpy (whose child undoes the
    guard for that import and applies it again) and on the bwrap-per-program path."""
    monkeypatch.setitem(sandbox._warm_ok, True, warm)
    from vul2safe.sandbox._runner import _BLOCKED_MODULES, _GUARDED_OS

    check = (
        "import builtins, os, shutil, subprocess, sys\n"
        f"assert all(getattr(os, n) is None for n in {_GUARDED_OS!r})\n"
        "assert shutil.rmtree is shutil.move is shutil.chown is subprocess.Popen is None\n"
        "assert builtins.exit is builtins.quit is builtins.help is None\n"
        f"assert all(sys.modules[n] is None for n in {_BLOCKED_MODULES!r})\n"
        "assert os.environ['OMP_NUM_THREADS'] == '1'\n"
        "try:\n    import resource\nexcept ImportError:\n    pass\n"
        "else:\n    raise AssertionError('resource is importable')\n"
    )
    numpy = "import numpy as np\nassert int(np.arange(4).sum()) == 6\n"
    results = run_programs([check, numpy + check, check], jobs=1, mode="exec")
    assert [r.status for r in results] == [ExecStatus.PASSED] * 3, results


@needs_bwrap
def test_warm_servers_are_kept_between_calls_and_a_forked_child_starts_its_own() -> None:
    """A second call leases the servers the first one started (no bwrap start-up); a child
    forked meanwhile (multiprocessing's default here) has none of their threads and starts
    its own instead of waiting on them."""
    import multiprocessing

    from vul2safe.sandbox import _workers

    assert sandbox._warm_available(True), "the warm fork server does not start here"
    _workers.stop_idle()
    run_programs(["x = 1\n"] * 4, jobs=2, mode="exec")
    first = {id(w) for w in _workers._idle}
    assert len(first) == 2
    run_programs(["x = 2\n"] * 4, jobs=2, mode="exec")
    assert {id(w) for w in _workers._idle} == first
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        status = pool.apply(_status_of_one_program, ("assert 1 + 1 == 2\n",))
    assert status == "passed"


def _status_of_one_program(code: str) -> str:
    return run_programs([code], mode="exec")[0].status.value
