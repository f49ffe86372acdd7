"""The shared OpenAI-compatible server base, over real sockets on 127.0.0.1.

A tiny subclass (it echoes the last message) shows what every test server gets from the
base: the routes, OpenAI-shaped replies and errors, counters, faults, and a close that
really closes. Both real test servers are subclasses of it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from vul2safe.testing.openai_http import (
    CHAT,
    Answer,
    Choice,
    Fault,
    OpenAIHTTPServer,
    RequestError,
)
from vul2safe.testing.server import OpenAICompatServer


class Echo(OpenAIHTTPServer):
    """Replies with the last message (chat) or the prompt (completions), upper-cased."""

    def answer(self, path: str, body: dict[str, Any], number: int) -> Answer:
        text = str(body["messages"][-1]["content"] if path == CHAT else body.get("prompt"))
        if text == "bad":
            raise RequestError(400, "bad is not allowed here")
        if text == "boom":
            raise RuntimeError("the model fell over")
        n = int(body.get("n") or 1)
        choices = [Choice(f"{text.upper()} {k}", "stop", 2) for k in range(n)]
        return Answer(choices, prompt_tokens=len(text.split()))

    def extra_get(self, path: str) -> dict[str, Any] | None:
        return {"requests": self.stats.requests} if path == "/stats" else None


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo(("127.0.0.1", 0), "echo", keep_bodies=True)
    server.start()
    yield server
    server.close()


def test_the_real_openai_client_talks_to_it(echo: Echo) -> None:
    client = openai.OpenAI(base_url=echo.url, api_key="EMPTY", max_retries=0)
    try:
        assert [m.id for m in client.models.list().data] == ["echo"]
        chat = client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "hi there"}], n=2
        )
        assert [c.message.content for c in chat.choices] == ["HI THERE 0", "HI THERE 1"]
        assert chat.usage is not None and chat.usage.prompt_tokens == 2
        assert chat.usage.completion_tokens == 4
        text = client.completions.create(model="echo", prompt="int main(")
        assert text.choices[0].text == "INT MAIN( 0" and text.object == "text_completion"
        with pytest.raises(openai.NotFoundError, match="does not exist"):
            client.chat.completions.create(
                model="other", messages=[{"role": "user", "content": "x"}]
            )
        with pytest.raises(openai.BadRequestError, match="bad is not allowed"):
            client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "bad"}]
            )
        with pytest.raises(openai.InternalServerError, match="RuntimeError: the model fell over"):
            client.with_options(max_retries=0).chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "boom"}]
            )
    finally:
        client.close()
    assert echo.stats.requests == 5  # generation requests only, errors included
    assert echo.stats.in_flight == 0 and echo.stats.max_in_flight == 1
    assert echo.bodies[0]["messages"] == [{"role": "user", "content": "hi there"}]


def test_routes_errors_and_extra_get(echo: Echo) -> None:
    base = echo.url
    assert httpx.get(base.removesuffix("/v1") + "/stats").json() == {"requests": 0}
    missing = httpx.get(f"{base}/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "message": "no route /v1/nothing",
        "type": "not_found_error",
        "code": 404,
    }
    garbled = httpx.post(f"{base}/chat/completions", content=b"{not json")
    assert garbled.status_code == 400 and "invalid JSON body" in garbled.json()["error"]["message"]
    assert echo.stats.requests == 0  # unparsable requests are not counted


def test_endpoints_limit_the_routes() -> None:
    class ChatOnly(Echo):
        endpoints = (CHAT,)

    server = ChatOnly(("127.0.0.1", 0), "echo")
    server.start()
    try:
        reply = httpx.post(f"{server.url}/completions", json={"model": "echo", "prompt": "x"})
        assert reply.status_code == 404
    finally:
        server.close()


def test_faults_status_retry_after_and_drop(echo: Echo) -> None:
    echo.fault_plan = lambda n, path, body: (
        Fault(status=429, retry_after=2) if n == 1 else Fault(drop=True) if n == 2 else None
    )
    body = {"model": "echo", "messages": [{"role": "user", "content": "x"}]}
    limited = httpx.post(f"{echo.url}/chat/completions", json=body)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{echo.url}/chat/completions", json=body)
    assert httpx.post(f"{echo.url}/chat/completions", json=body).status_code == 200
    assert echo.stats.requests == 3
    echo.reset()
    assert echo.fault_plan is None and echo.stats.requests == 0 and echo.bodies == []


def test_a_request_cut_off_mid_body_is_not_counted(echo: Echo) -> None:
    host, port = echo.server_address[:2]
    payload = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "x"}]})
    with socket.create_connection((host, port)) as raw:
        raw.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(payload) + 50}\r\n\r\n".encode()
            + payload.encode()
        )
        raw.shutdown(socket.SHUT_WR)  # the client hangs up before the body is complete
        assert raw.recv(1024) == b""  # no reply
    assert echo.stats.requests == 0 and echo.bodies == []


def test_close_ends_kept_alive_connections() -> None:
    server = Echo(("127.0.0.1", 0), "echo")
    server.start()
    with httpx.Client() as client:  # keeps its connection open between requests
        body = {"model": "echo", "messages": [{"role": "user", "content": "x"}]}
        assert client.post(f"{server.url}/chat/completions", json=body).status_code == 200
        server.close()
        with pytest.raises(httpx.TransportError):
            client.post(f"{server.url}/chat/completions", json=body)


def test_both_test_servers_share_the_base() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "build"))
    try:
        from scripted_teacher import TeacherServer
    finally:
        sys.path.pop(0)
    assert issubclass(TeacherServer, OpenAIHTTPServer)
    assert issubclass(OpenAICompatServer, OpenAIHTTPServer)
