"""Session fixtures for generation tests: one tiny random model, one OpenAI-compatible server.

Load with ``pytest_plugins = ["fixtures_generation"]`` in ``tests/conftest.py`` (``tests/`` is
on ``sys.path`` there), or import the fixtures into a directory's conftest. The model is built
once per process however many conftests import these fixtures.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

_built: dict[str, Path] = {}
_build_lock = threading.Lock()
_tmp: list[tempfile.TemporaryDirectory[str]] = []


def build_once() -> Path:
    """The tiny model directory, built on first use (~2 s after imports)."""
    from vul2safe.testing.tiny_model import build_tiny_model

    with _build_lock:
        if "tiny" not in _built:
            tmp = tempfile.TemporaryDirectory(prefix="vul2safe-tiny-model-")
            _tmp.append(tmp)  # removed when the interpreter exits
            _built["tiny"] = build_tiny_model(Path(tmp.name) / "tiny", seed=0)
        return _built["tiny"]


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """A tiny random Llama with a trained BPE tokenizer and a ChatML chat template."""
    return build_once()


@pytest.fixture(scope="session")
def openai_server_session(tiny_model_dir: Path) -> Iterator[object]:
    """The tiny model behind our OpenAI-compatible HTTP server on 127.0.0.1, served as
    ``tiny``. The model worker uses one torch thread: client and server share the cores."""
    from vul2safe.testing.server import serve

    server, _ = serve(tiny_model_dir, model_name="tiny", threads=1, max_batch=8)
    yield server
    server.close()


@pytest.fixture
def openai_server(openai_server_session: object) -> Iterator[object]:
    """The shared server with no faults, no latency and fresh statistics for this test."""
    openai_server_session.reset()  # type: ignore[attr-defined]
    yield openai_server_session
    openai_server_session.reset()  # type: ignore[attr-defined]
