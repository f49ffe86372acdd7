"""The one OpenAI-compatible HTTP server base that the test servers share (stdlib only).

Two servers speak the OpenAI API in tests and benchmarks: :mod:`vul2safe.testing.server`
(a local transformers model behind it) and the build tests' scripted teacher (rule-based
replies). Both subclass :class:`OpenAIHTTPServer` and only say how to *answer* one request;
the plumbing is here, once: a loopback ``ThreadingHTTPServer`` with keep-alive,
``GET /v1/models``, ``POST /v1/chat/completions`` and ``/v1/completions`` (non-streaming),
errors in OpenAI's JSON shape, request counters, simulated latency and fault injection.

Hand-written on ``http.server`` on purpose: the point is a real socket that the real
``openai`` client talks to, with faults (delays, HTTP errors, dropped connections) injected
at the byte level, and no web framework dependency for a test helper.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from vul2safe.errors import Vul2SafeError

log = logging.getLogger(__name__)

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"

__all__ = [
    "CHAT",
    "COMPLETIONS",
    "Answer",
    "Choice",
    "Fault",
    "FaultPlan",
    "OpenAIHTTPServer",
    "RequestError",
    "ServerStats",
]


@dataclass(frozen=True)
class Fault:
    """What an injected fault does to one request (in this order): wait, then fail or drop."""

    delay_s: float = 0.0
    status: int | None = None  # answer with this HTTP error instead of generating
    drop: bool = False  # close the connection without any response
    retry_after: float | None = None  # a Retry-After header on the error


#: Called with the request number (from 1), path and body of every generation request.
FaultPlan = Callable[[int, str, dict[str, Any]], Fault | None]


@dataclass
class ServerStats:
    """What the server saw; tests assert on it (e.g. bounded client concurrency)."""

    requests: int = 0  # generation requests received (numbered from 1 for the fault plan)
    in_flight: int = 0
    max_in_flight: int = 0
    batches: list[int] = field(default_factory=list)  # size of each generate() batch, if any


class RequestError(Exception):
    """Raised by :meth:`OpenAIHTTPServer.answer` to reply with an OpenAI-shaped HTTP error."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


@dataclass(frozen=True)
class Choice:
    """One generated choice: its text, why it ended, and its token count (if known)."""

    text: str
    finish_reason: str | None = "stop"
    completion_tokens: int | None = None


@dataclass(frozen=True)
class Answer:
    """A subclass's reply to one request; the base wraps it in the OpenAI response shape."""

    choices: list[Choice]
    prompt_tokens: int = 0


class OpenAIHTTPServer(ThreadingHTTPServer):
    """A loopback OpenAI-compatible server; subclasses implement :meth:`answer`.

    ``url`` is the ``--base-url`` to give clients. Start it with :meth:`start` (a daemon
    thread), stop it with :meth:`close`, which also ends kept-alive connections so that a
    closed server is really unreachable.
    """

    daemon_threads = True
    block_on_close = False  # a test's delayed request must not hold up shutdown
    request_queue_size = 128  # bursts of concurrent clients must not be refused
    #: The generation routes this server answers; others get 404.
    endpoints: tuple[str, ...] = (CHAT, COMPLETIONS)
    owned_by = "vul2safe"

    def __init__(
        self,
        address: tuple[str, int],
        model_name: str,
        *,
        model_root: str = "",
        fault_plan: FaultPlan | None = None,
        latency_s: float = 0.0,
        keep_bodies: bool = False,
    ) -> None:
        super().__init__(address, _Handler)
        self.model_name = model_name
        self.model_root = model_root
        self.fault_plan = fault_plan
        self.latency_s = latency_s
        self.stats = ServerStats()
        self.keep_bodies = keep_bodies
        self.bodies: list[dict[str, Any]] = []  # every generation request, if keep_bodies
        self._stats_lock = threading.Lock()
        self._stats_idle = threading.Condition(self._stats_lock)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # --- what a subclass provides -------------------------------------------------------

    def answer(self, path: str, body: dict[str, Any], number: int) -> Answer:
        """The reply to request ``number`` (``path`` is :data:`CHAT` or :data:`COMPLETIONS`);
        raise :class:`RequestError` for a client error."""
        raise NotImplementedError

    def extra_get(self, path: str) -> dict[str, Any] | None:
        """A JSON reply for another ``GET`` route (e.g. counters), or ``None`` for 404."""
        return None

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name}:{port}/v1"

    def start(self, name: str = "vul2safe-openai-server") -> threading.Thread:
        """Serve on a daemon thread; returns it."""
        self._thread = threading.Thread(target=self.serve_forever, name=name, daemon=True)
        self._thread.start()
        return self._thread

    def close(self) -> None:
        """Stop serving and end every open connection."""
        if self._thread is not None:
            self.shutdown()
        self.server_close()
        self.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def reset(self) -> None:
        """Forget faults, latency, statistics and bodies (between tests sharing one server).

        Waits for requests still being answered (a previous test may have abandoned one):
        zeroing the in-flight gauge under them would leave it negative and skew the next
        test's concurrency figures. The 60 s bound is a safety net, not a timing.
        """
        with self._stats_idle:
            self._stats_idle.wait_for(lambda: self.stats.in_flight <= 0, timeout=60)
            self.fault_plan = None
            self.latency_s = 0.0
            self.stats.requests = self.stats.in_flight = self.stats.max_in_flight = 0
            self.stats.batches.clear()
            self.bodies.clear()

    def enter(self, body: dict[str, Any] | None = None) -> int:
        """Count a generation request in; returns its number (from 1)."""
        with self._stats_lock:
            self.stats.requests += 1
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
            if self.keep_bodies and body is not None:
                self.bodies.append(body)
            return self.stats.requests

    def leave(self) -> None:
        with self._stats_lock:
            self.stats.in_flight -= 1
            self._stats_idle.notify_all()

    # --- connection tracking (so close() can end kept-alive connections) ------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def response_payload(server: OpenAIHTTPServer, path: str, answer: Answer) -> dict[str, Any]:
    """``answer`` in the shape of an OpenAI chat.completion / text_completion object."""
    chat = path == CHAT
    choices: list[dict[str, Any]] = []
    for k, choice in enumerate(answer.choices):
        entry: dict[str, Any] = {
            "index": k,
            "finish_reason": choice.finish_reason,
            "logprobs": None,
        }
        if chat:
            entry["message"] = {"role": "assistant", "content": choice.text}
        else:
            entry["text"] = choice.text
        choices.append(entry)
    completion_tokens = sum(c.completion_tokens or 0 for c in answer.choices)
    return {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": server.model_name,
        "choices": choices,
        "usage": {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": answer.prompt_tokens + completion_tokens,
        },
    }


class _Handler(BaseHTTPRequestHandler):
    server: OpenAIHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers and the openai client
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): fine
            log.debug("client went away before the reply to %s", self.path)

    def _error(
        self, status: int, message: str, kind: str, headers: dict[str, str] | None = None
    ) -> None:
        self._send(status, {"error": {"message": message, "type": kind, "code": status}}, headers)

    def do_GET(self) -> None:
        path = self.path.rstrip("/")
        if path == "/v1/models":
            model = {
                "id": self.server.model_name,
                "object": "model",
                "created": 0,
                "owned_by": self.server.owned_by,
                "root": self.server.model_root,
            }
            self._send(200, {"object": "list", "data": [model]})
            return
        extra = self.server.extra_get(path)
        if extra is None:
            self._error(404, f"no route {self.path}", "not_found_error")
        else:
            self._send(200, extra)

    def do_POST(self) -> None:
        path = self.path.rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:  # the client hung up mid-request: nothing to answer or count
            self.close_connection = True
            return
        if path not in self.server.endpoints:
            self._error(404, f"no route {self.path}", "not_found_error")
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body is not an object")
        except ValueError as exc:
            self._error(400, f"invalid JSON body: {exc}", "invalid_request_error")
            return
        number = self.server.enter(body)
        left = False
        try:
            plan = self.server.fault_plan
            fault = plan(number, path, body) if plan else None
            if fault is not None and self._inject(fault):
                return
            if self.server.latency_s > 0:
                time.sleep(self.server.latency_s)
            model = body.get("model")
            if model not in (None, self.server.model_name):
                raise RequestError(404, f"The model `{model}` does not exist.", "not_found_error")
            payload = response_payload(self.server, path, self.server.answer(path, body, number))
            # out of flight before replying: the client's next request must not find this
            # one still counted (a batching server would wait for company that never comes)
            self.server.leave()
            left = True
            self._send(200, payload)
        except RequestError as exc:
            self._error(exc.status, exc.message, exc.kind)
        except Vul2SafeError as exc:
            self._error(400, str(exc), "invalid_request_error")
        except Exception as exc:  # report, keep serving
            log.exception("answering %s failed", path)
            self._error(500, f"{type(exc).__name__}: {exc}", "server_error")
        finally:
            if not left:
                self.server.leave()

    def _inject(self, fault: Fault) -> bool:
        """Apply a fault; True when the request has been answered (or dropped)."""
        if fault.delay_s:
            time.sleep(fault.delay_s)
        if fault.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if fault.status is not None:
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after else None
            kind = "rate_limit_error" if fault.status == 429 else "server_error"
            self._error(fault.status, f"injected fault {fault.status}", kind, headers)
            return True
        return False
