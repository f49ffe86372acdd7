"""The openai backend against our real OpenAI-compatible HTTP server on 127.0.0.1.

The server serves the tiny model; its ``fault_plan`` injects 429s, 5xx, delays and dropped
connections so the client's retry, timeout and error paths run over real sockets. Concurrency
and streaming are asserted with events the fault plan waits on (requests provably in flight
together, a request provably held back), never with timings or thread counts.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vul2safe import plugins
from vul2safe.errors import UsageError, Vul2SafeError
from vul2safe.generation.base import (
    BackendOptions,
    GenerationRequest,
    Prompt,
    SamplingParams,
)
from vul2safe.generation.runner import generate_samples, read_samples
from vul2safe.plugins.backend.openai_backend import OpenAIBackend, OpenAISession
from vul2safe.plugins.backend.transformers_backend import TransformersBackend
from vul2safe.testing.server import Fault, OpenAICompatServer

CHAT = Prompt("chat", "chat", messages=({"role": "user", "content": "Write a C strcpy."},))
PREFIXED = Prompt(
    "prefixed",
    "chat",
    messages=({"role": "user", "content": "Parse a config file."},),
    response_prefix="```python\n",
)
COMPLETION = Prompt("completion", "completion", text="def read_config(path):\n")
PARAMS = SamplingParams(temperature=1.0, max_tokens=8, seed=11)


def _open(server: OpenAICompatServer, **overrides: Any) -> OpenAISession:
    options = BackendOptions(model="tiny", base_url=server.url, **overrides)
    return OpenAIBackend().open(options)


@pytest.fixture
def session(openai_server: OpenAICompatServer) -> Iterator[OpenAISession]:
    opened = _open(openai_server, concurrency=4, timeout_s=10)
    yield opened
    opened.close()


def _all(session: OpenAISession, requests: list[GenerationRequest], params=PARAMS):
    results = dict(session.generate(requests, params))
    assert sorted(results) == list(range(len(requests)))
    return [results[i] for i in range(len(requests))]


def test_registered_under_its_name() -> None:
    assert isinstance(plugins.backends.get("openai"), OpenAIBackend)


def test_same_samples_as_the_transformers_backend(
    session: OpenAISession, tiny_model_dir: Path
) -> None:
    """Chat (with template), prefill and completion prompts, three seeds each: the HTTP path
    gives exactly what the in-process backend gives."""
    requests = [GenerationRequest(p, i) for p in (CHAT, PREFIXED, COMPLETION) for i in range(3)]
    remote = _all(session, requests)
    with TransformersBackend().open(BackendOptions(model=str(tiny_model_dir))) as local:
        expected = dict(local.generate(requests, PARAMS))
    assert [c.text for c in remote] == [expected[i].text for i in range(len(requests))]
    for completion, reference in zip(remote, [expected[i] for i in range(9)], strict=True):
        assert completion.finish_reason == reference.finish_reason
        assert completion.prompt_tokens == reference.prompt_tokens
        assert completion.completion_tokens == reference.completion_tokens
    assert len({c.text for c in remote[:3]}) == 3  # distinct seeds, distinct samples
    info = session.describe()
    assert info["backend"] == "openai" and info["mode"] == "chat"
    assert info["served_model"]["root"] == str(tiny_model_dir)


def test_stop_strings_and_completion_mode(openai_server: OpenAICompatServer) -> None:
    with _open(openai_server, use_chat_template=False) as plain:
        greedy = SamplingParams(temperature=0.0, max_tokens=16)
        [full] = _all(plain, [GenerationRequest(CHAT, 0)], greedy)
        stop = full.text[4:7]
        params = SamplingParams(temperature=0.0, max_tokens=16, stop=(stop,))
        [cut] = _all(plain, [GenerationRequest(CHAT, 0)], params)
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.finish_reason == "stop" and full.finish_reason == "length"
    assert plain.describe()["mode"] == "completion"


def test_429_is_retried_then_succeeds(
    session: OpenAISession, openai_server: OpenAICompatServer, caplog: pytest.LogCaptureFixture
) -> None:
    openai_server.fault_plan = lambda n, path, body: (
        Fault(status=429, retry_after=0.01) if n == 1 else None
    )
    with caplog.at_level(logging.WARNING, logger="vul2safe.plugins.backend.openai_backend"):
        [completion] = _all(session, [GenerationRequest(CHAT, 0)])
    assert completion.completion_tokens == 8
    assert openai_server.stats.requests == 2
    assert "HTTP 429" in caplog.text and "retry 1/5" in caplog.text


def test_5xx_until_retries_run_out_is_one_clear_error(
    openai_server: OpenAICompatServer,
) -> None:
    openai_server.fault_plan = lambda n, path, body: Fault(status=503)
    with _open(openai_server, max_retries=2) as failing, pytest.raises(Vul2SafeError) as excinfo:
        _all(failing, [GenerationRequest(CHAT, 3)])
    message = str(excinfo.value)
    assert "task 'chat' sample 3" in message
    assert "after 3 attempt(s)" in message and "HTTP 503" in message
    assert "\n" not in message
    assert openai_server.stats.requests == 3


def test_client_errors_are_not_retried(openai_server: OpenAICompatServer) -> None:
    options = BackendOptions(model="no-such-model", base_url=openai_server.url, max_retries=3)
    with OpenAIBackend().open(options) as wrong, pytest.raises(Vul2SafeError) as excinfo:
        _all(wrong, [GenerationRequest(CHAT, 0)])
    assert "HTTP 404" in str(excinfo.value) and "no-such-model" in str(excinfo.value)
    assert openai_server.stats.requests == 1


def test_timeout_is_retried_then_succeeds(openai_server: OpenAICompatServer) -> None:
    openai_server.fault_plan = lambda n, path, body: Fault(delay_s=2.0) if n == 1 else None
    with _open(openai_server, timeout_s=0.5) as slow:
        [completion] = _all(slow, [GenerationRequest(CHAT, 0)])
    assert completion.completion_tokens == 8
    assert openai_server.stats.requests == 2


def test_every_attempt_timing_out_fails_clearly(openai_server: OpenAICompatServer) -> None:
    openai_server.fault_plan = lambda n, path, body: Fault(delay_s=1.5)
    slow = _open(openai_server, timeout_s=0.3, max_retries=1)
    with slow, pytest.raises(Vul2SafeError) as excinfo:
        _all(slow, [GenerationRequest(COMPLETION, 0)])
    assert "timed out after 0.3s" in str(excinfo.value)
    assert "task 'completion' sample 0" in str(excinfo.value)
    assert openai_server.stats.requests == 2


def test_dropped_connection_is_retried(openai_server: OpenAICompatServer) -> None:
    openai_server.fault_plan = lambda n, path, body: Fault(drop=True) if n <= 2 else None
    with _open(openai_server) as client:
        completions = _all(client, [GenerationRequest(CHAT, 0), GenerationRequest(CHAT, 1)])
    assert all(c.completion_tokens == 8 for c in completions)
    assert openai_server.stats.requests == 4


def test_unreachable_endpoint_is_one_clear_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    closed: list[bool] = []
    real_close = OpenAISession.close

    def close(self: OpenAISession) -> None:
        real_close(self)
        closed.append(self._client.is_closed())

    with pytest.MonkeyPatch.context() as patch, pytest.raises(Vul2SafeError) as excinfo:
        patch.setattr(OpenAISession, "close", close)
        OpenAIBackend().open(BackendOptions(model="tiny", base_url=url))
    message = str(excinfo.value)
    assert message.startswith(f"cannot reach OpenAI-compatible server at {url}: ")
    assert message.endswith("; is it running? (--base-url)")
    assert "\n" not in message
    assert closed == [True]  # the half-opened session released its client


def test_remote_server_needs_an_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_KEY", raising=False)
    options = BackendOptions(model="m", base_url="https://llm.example.com/v1", api_key_env="MY_KEY")
    with pytest.raises(Vul2SafeError, match=r"set \$MY_KEY"):
        OpenAIBackend().open(options)


def test_concurrency_is_bounded_and_used(openai_server: OpenAICompatServer) -> None:
    """The first three requests wait at the server until all three have arrived: that only
    happens if the client really has three in flight; the client never has a fourth."""
    together = threading.Barrier(3)
    met: list[bool] = []

    def plan(n: int, path: str, body: dict[str, Any]) -> None:
        if n <= 3:
            try:
                together.wait(timeout=60)  # a safety net for a broken client, not a timing
                met.append(True)
            except threading.BrokenBarrierError:
                met.append(False)

    openai_server.fault_plan = plan
    requests = [GenerationRequest(COMPLETION, i) for i in range(12)]
    with _open(openai_server, concurrency=3) as client:
        _all(client, requests)
    assert met == [True, True, True]
    assert openai_server.stats.requests == 12
    assert openai_server.stats.max_in_flight == 3


def test_results_arrive_as_they_finish(openai_server: OpenAICompatServer) -> None:
    """The server holds the first request until the caller has received the other three:
    only a backend that yields each completion as it finishes gets past that."""
    slow = "slow down"
    release = threading.Event()
    released: list[bool] = []

    def plan(n: int, path: str, body: dict[str, Any]) -> None:
        if slow in str(body.get("messages")):
            released.append(release.wait(timeout=60))  # a safety net, not a timing

    openai_server.fault_plan = plan
    requests = [
        GenerationRequest(Prompt("slow", "chat", ({"role": "user", "content": slow},)), 0),
        *(GenerationRequest(CHAT, i) for i in range(3)),
    ]
    order = []
    with _open(openai_server, concurrency=4) as client:
        for index, _ in client.generate(requests, PARAMS):
            order.append(index)
            if sorted(order) == [1, 2, 3]:
                release.set()
    assert released == [True]  # the three fast ones reached the caller while 0 was held
    assert order[-1] == 0 and sorted(order) == [0, 1, 2, 3]


def test_runner_over_http_resumes_after_the_server_gives_up(
    openai_server: OpenAICompatServer, tmp_path: Path
) -> None:
    """A server that starts failing mid-run: the run stops with a clear error, the samples
    already received are saved, and a rerun fetches only the rest."""
    prompts = [
        Prompt(f"task{i}", "chat", ({"role": "user", "content": f"task {i}"},)) for i in range(4)
    ]
    out = tmp_path / "samples.jsonl"
    openai_server.fault_plan = lambda n, path, body: Fault(status=500) if n > 5 else None
    client = _open(openai_server, concurrency=1, max_retries=1)
    with client, pytest.raises(Vul2SafeError, match="HTTP 500"):
        generate_samples(client, prompts, PARAMS, 2, out)
    assert len(read_samples(out)) == 5
    openai_server.reset()
    with _open(openai_server, concurrency=2) as client:
        samples = generate_samples(client, prompts, PARAMS, 2, out)
    assert openai_server.stats.requests == 3
    assert [(s["task_id"], s["sample_index"]) for s in samples] == [
        (f"task{i}", j) for i in range(4) for j in range(2)
    ]
    assert len(out.read_text().splitlines()) == 8


def test_server_speaks_the_openai_http_api(openai_server: OpenAICompatServer) -> None:
    """The raw HTTP surface other clients see: models, n choices with seed + k, prefill,
    one-element prompt lists, and errors in OpenAI's shape."""
    import httpx

    base = openai_server.url
    models = httpx.get(f"{base}/models").json()
    assert [m["id"] for m in models["data"]] == ["tiny"]
    chat = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
        "temperature": 1.0,
        "seed": 5,
    }
    both = httpx.post(f"{base}/chat/completions", json={**chat, "n": 2}).json()
    assert both["object"] == "chat.completion"
    assert [c["index"] for c in both["choices"]] == [0, 1]
    first = httpx.post(f"{base}/chat/completions", json=chat).json()
    second = httpx.post(f"{base}/chat/completions", json={**chat, "seed": 6}).json()
    assert both["choices"][0]["message"] == first["choices"][0]["message"]
    assert both["choices"][1]["message"] == second["choices"][0]["message"]
    assert both["usage"]["completion_tokens"] == (
        first["usage"]["completion_tokens"] + second["usage"]["completion_tokens"]
    )
    prefill = {"role": "assistant", "content": "```c"}
    reply = httpx.post(
        f"{base}/chat/completions", json={**chat, "messages": [*chat["messages"], prefill]}
    ).json()
    assert reply["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"]
    assert not reply["choices"][0]["message"]["content"].startswith("```c")
    completion = httpx.post(
        f"{base}/completions", json={"model": "tiny", "prompt": ["int main("], "max_tokens": 3}
    ).json()
    assert completion["object"] == "text_completion" and "text" in completion["choices"][0]
    bad = httpx.post(f"{base}/completions", content=b"{not json")
    assert bad.status_code == 400 and "error" in bad.json()
    assert httpx.post(f"{base}/completions", json={"prompt": 3}).status_code == 400
    assert httpx.post(f"{base}/nothing", json={}).status_code == 404


def test_max_tokens_is_sent_as_asked_and_left_to_the_server_when_unset(
    session: OpenAISession, openai_server: OpenAICompatServer
) -> None:
    bodies: list[dict[str, Any]] = []
    openai_server.fault_plan = lambda n, path, body: bodies.append(dict(body))  # no fault
    [capped] = _all(session, [GenerationRequest(CHAT, 0)], SamplingParams(max_tokens=5))
    [unset] = _all(session, [GenerationRequest(CHAT, 0)], SamplingParams(max_tokens=None))
    assert bodies[0]["max_tokens"] == 5 and "max_tokens" not in bodies[1]
    assert capped.completion_tokens is not None and capped.completion_tokens <= 5
    assert unset.completion_tokens is not None and unset.completion_tokens > 5  # server's default


def test_unknown_extra_is_refused_naming_the_valid_keys(openai_server: OpenAICompatServer) -> None:
    with pytest.raises(UsageError, match=r"no option 'retry_base_s'; valid --backend-arg keys: "
                       r"connect_timeout_s, continue_final_message"):  # fmt: skip
        _open(openai_server, extra={"retry_base_s": 0.05, "connect_timeout_s": 5})
