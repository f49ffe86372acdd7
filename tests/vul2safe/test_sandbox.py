"""Real-bubblewrap tests of the program sandbox: hostile programs must each end with their own
status, leave the host untouched and leave no process behind, while the batch goes on."""

from __future__ import annotations

import glob
import os
import resource
import socket
import tempfile
import uuid
from pathlib import Path

import pytest

from vul2safe import sandbox
from vul2safe.errors import SandboxUnavailable
from vul2safe.sandbox import ExecStatus, SandboxLimits, run_program, run_programs

needs_bwrap = pytest.mark.usefixtures("require_bwrap")


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
def test_hostile_batch_each_ends_with_its_own_status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
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
    assert by_name["forkbomb"].duration_s < 3.5
    assert by_name["alloc"].status is ExecStatus.MEMORY
    for name in ("etc", "home", "tilde", "net"):
        assert by_name[name].status is ExecStatus.ERROR, (name, by_name[name])
    assert "ConnectionRefused" in by_name["net"].detail or "Network" in by_name["net"].detail
    assert by_name["parent"].status in set(ExecStatus)
    assert by_name["flood"].status in {ExecStatus.KILLED, ExecStatus.TIMEOUT, ExecStatus.ERROR}
    assert by_name["flood"].duration_s < 3.5
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
    assert _sandbox_uid_processes() == []
    assert list(tmp_path.iterdir()) == []
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 200, f"host memory grew by {grown_mb:.0f} MB while reading output"


@needs_bwrap
def test_cpu_limit_is_a_timeout() -> None:
    result = run_program("while True:\n    pass\n", limits=SandboxLimits(timeout_s=8, cpu_s=1))
    assert result.status is ExecStatus.TIMEOUT
    assert "CPU time limit" in result.detail  # RLIMIT_CPU fired before the 8 s wall clock


@needs_bwrap
def test_sandbox_sees_clean_fs_and_env() -> None:
    code = (
        "import os\n"
        "assert os.getcwd() == '/sandbox'\n"
        "open('scratch.txt', 'w').write('ok')\n"  # the tmpfs working dir is writable
        "assert set(os.environ) <= {'PATH', 'HOME', 'LANG', 'PYTHONDONTWRITEBYTECODE',"
        " 'PYTHONHASHSEED', 'TMPDIR', 'PWD'}, os.environ\n"
        "assert not os.path.exists('/work') and not os.path.exists('/home')\n"
    )
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
