"""The ``openai`` backend: any OpenAI-compatible server (vLLM, Ollama, hosted APIs).

- ``--base-url`` selects the server; the key comes from the variable ``options.api_key_env``
  (default ``OPENAI_API_KEY``). A local server without a key gets the dummy key ``EMPTY``.
- ``options.concurrency`` requests are in flight at once: that many async workers share one
  ``AsyncOpenAI`` client, on an event loop in a background thread. Completions are handed to
  the caller's thread through a queue as each finishes, so the runner saves them at once.
- Retries are ours, not the client's (it gets ``max_retries=0``), so every retry is logged
  and testable: 408/409/429/5xx, connection errors and timeouts are retried up to
  ``options.max_retries`` times with exponential backoff and jitter (a ``Retry-After`` header
  is honoured); other HTTP errors fail at once. A request that fails for good raises a
  :class:`Vul2SafeError` naming the task, the sample and the status.
- Chat prompts use ``/chat/completions`` (the server applies the model's chat template);
  ``use_chat_template=False`` and completion prompts use ``/completions``. A response prefix
  is sent as a final assistant message (a prefill), which vLLM, Ollama and our
  :mod:`vul2safe.testing.server` continue; if a server echoes the prefix back it is
  stripped. Set ``extra["continue_final_message"] = True`` to also send vLLM's
  ``continue_final_message``/``add_generation_prompt`` flags (other servers may reject them).

``extra`` knobs: ``retry_base_s`` (1.0), ``retry_max_s`` (30), ``connect_timeout_s`` (10, the
reachability check in ``open``), ``continue_final_message`` (False).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import random
import threading
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from vul2safe import hookimpl
from vul2safe.errors import Vul2SafeError
from vul2safe.generation.base import (
    Backend,
    BackendOptions,
    Completion,
    GenerationRequest,
    SamplingParams,
    Session,
)
from vul2safe.hookspecs import Register
from vul2safe.plugins.backend.transformers_backend import render_prompt

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUSES = frozenset({408, 409, 429})
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "host.docker.internal"}

T = TypeVar("T")


def is_local_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in _LOCAL_HOSTS or host.startswith("127.") or host.endswith(".localhost")


def _api_key(options: BackendOptions, base_url: str) -> str:
    key = os.environ.get(options.api_key_env)
    if key:
        return key
    if is_local_url(base_url):
        return "EMPTY"
    raise Vul2SafeError(
        f"no API key for {base_url}: set ${options.api_key_env} (or name another variable "
        "with --api-key-env); for a server without authentication set it to EMPTY"
    )


def _reason(exc: BaseException) -> str:
    """The most specific message in an exception chain (the client wraps httpx errors)."""
    cause: BaseException | None = exc
    message = str(exc) or type(exc).__name__
    while cause is not None:
        text = str(cause).strip()
        if text and text not in ("Connection error.", "Request timed out."):
            message = text
        cause = cause.__cause__ or cause.__context__
    return message.splitlines()[0]


class OpenAISession(Session):
    """An ``AsyncOpenAI`` client on a private event loop thread."""

    def __init__(self, options: BackendOptions) -> None:
        import openai

        self._openai = openai
        self.options = options
        self.base_url = (options.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.chat = options.use_chat_template
        extra = options.extra
        self.retry_base_s = float(extra.get("retry_base_s", 1.0))
        self.retry_max_s = float(extra.get("retry_max_s", 30.0))
        self.continue_final = bool(extra.get("continue_final_message", False))
        self.served: dict[str, Any] = {}
        api_key = _api_key(options, self.base_url)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="vul2safe-openai-loop", daemon=True
        )
        self._thread.start()
        self._client: Any = None
        try:
            self._client = self._call(self._make_client(api_key))
            self._call(self._check(float(extra.get("connect_timeout_s", 10.0))))
        except BaseException:
            self.close()
            raise

    # -- plumbing between the caller's thread and the loop

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _make_client(self, api_key: str) -> Any:
        return self._openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key,
            max_retries=0,
            timeout=self.options.timeout_s,
        )

    async def _check(self, timeout_s: float) -> None:
        """One cheap ``GET /models`` so a wrong URL fails now, with one clear line."""
        openai = self._openai
        try:
            page = await self._client.models.list(timeout=timeout_s)
        except openai.APIConnectionError as exc:
            raise Vul2SafeError(
                f"cannot reach OpenAI-compatible server at {self.base_url}: {_reason(exc)}; "
                "is it running? (--base-url)"
            ) from None
        except openai.AuthenticationError as exc:
            raise Vul2SafeError(
                f"server at {self.base_url} rejected the API key from "
                f"${self.options.api_key_env}: HTTP {exc.status_code}"
            ) from None
        except openai.APIStatusError as exc:  # some servers do not list models: carry on
            log.warning(
                "GET %s/models answered HTTP %s; continuing", self.base_url, exc.status_code
            )
            return
        models = {m.id: m for m in page.data}
        if self.options.model in models:
            self.served = models[self.options.model].model_dump()
        elif models:
            log.warning(
                "model %r is not listed by %s (available: %s)",
                self.options.model,
                self.base_url,
                ", ".join(sorted(models)[:10]),
            )

    # -- the Session contract

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "openai",
            "model": self.options.model,
            "revision": self.options.revision,
            "base_url": self.base_url,
            "served_model": self.served or None,
            "chat_template": None,  # applied by the server; not visible to us
            "mode": "chat" if self.chat else "completion",
        }

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> Iterator[tuple[int, Completion]]:
        if not requests:
            return
        results: queue.Queue[tuple[int, Completion | BaseException]] = queue.Queue()
        future = asyncio.run_coroutine_threadsafe(self._run(requests, params, results), self._loop)
        remaining = len(requests)
        try:
            while remaining:
                try:
                    index, outcome = results.get(timeout=0.2)
                except queue.Empty:
                    if future.done() and results.empty():
                        future.result()  # surfaces a crash of the loop side
                        raise Vul2SafeError("openai backend stopped without finishing") from None
                    continue
                if isinstance(outcome, BaseException):
                    raise outcome
                remaining -= 1
                yield index, outcome
        finally:
            if not future.done():  # caller stopped early or an error: stop the workers
                future.cancel()

    async def _run(
        self,
        requests: Sequence[GenerationRequest],
        params: SamplingParams,
        results: queue.Queue[tuple[int, Completion | BaseException]],
    ) -> None:
        """``concurrency`` workers pull request indices; the pool is the concurrency bound."""
        todo: asyncio.Queue[int] = asyncio.Queue()
        for index in range(len(requests)):
            todo.put_nowait(index)

        async def worker() -> None:
            while not todo.empty():
                index = todo.get_nowait()
                completion = await self._with_retries(requests[index], params)
                results.put((index, completion))

        workers = [
            asyncio.create_task(worker())
            for _ in range(max(1, min(self.options.concurrency, len(requests))))
        ]
        try:
            await asyncio.gather(*workers)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            results.put((-1, exc))
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _with_retries(self, request: GenerationRequest, params: SamplingParams) -> Completion:
        openai = self._openai
        attempts = max(0, self.options.max_retries) + 1
        what = f"task {request.prompt.key!r} sample {request.sample_index}"
        for attempt in range(1, attempts + 1):
            retry_after: float | None = None
            try:
                return await self._send(request, params)
            except openai.APITimeoutError:
                problem = f"timed out after {self.options.timeout_s:g}s"
            except openai.APIConnectionError as exc:
                problem = f"connection error: {_reason(exc)}"
            except openai.APIStatusError as exc:
                problem = f"HTTP {exc.status_code}: {_status_message(exc)}"
                if exc.status_code not in RETRY_STATUSES and exc.status_code < 500:
                    raise Vul2SafeError(
                        f"{self.base_url} refused {what} (model {self.options.model!r}): {problem}"
                    ) from None
                retry_after = _retry_after(exc)
            if attempt == attempts:
                raise Vul2SafeError(
                    f"request for {what} to {self.base_url} failed after {attempts} "
                    f"attempt(s): {problem}; raise --max-retries/--timeout or check the server"
                )
            delay = self._backoff(attempt, retry_after)
            log.warning("%s: %s; retry %d/%d in %.2fs", what, problem, attempt, attempts - 1, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential with "equal jitter": half fixed, half random, capped."""
        cap = min(self.retry_max_s, self.retry_base_s * 2 ** (attempt - 1))
        delay = cap / 2 + random.uniform(0, cap / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_max_s))
        return delay

    async def _send(self, request: GenerationRequest, params: SamplingParams) -> Completion:
        prompt = request.prompt
        common: dict[str, Any] = {
            "model": self.options.model,
            "n": 1,
            "seed": params.seed + request.sample_index,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        if params.stop:
            common["stop"] = list(params.stop)
        if prompt.mode == "chat" and self.chat:
            messages = [dict(m) for m in prompt.messages]
            if prompt.response_prefix:
                messages.append({"role": "assistant", "content": prompt.response_prefix})
                if self.continue_final:
                    common["extra_body"] = {
                        "continue_final_message": True,
                        "add_generation_prompt": False,
                    }
            response = await self._client.chat.completions.create(messages=messages, **common)
            choice = response.choices[0]
            text = choice.message.content or ""
        else:
            text_prompt, _ = render_prompt(None, prompt, use_chat_template=False)
            response = await self._client.completions.create(prompt=text_prompt, **common)
            choice = response.choices[0]
            text = choice.text or ""
        if (
            prompt.response_prefix
            and prompt.mode == "chat"
            and text.startswith(prompt.response_prefix)
        ):
            text = text[len(prompt.response_prefix) :]  # the server echoed the prefill
        usage = response.usage
        return Completion(
            text=text,
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
        )

    def close(self) -> None:
        if not self._loop.is_running():
            return

        async def shutdown() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._client is not None:
                await self._client.close()
            await self._loop.shutdown_default_executor()  # getaddrinfo's worker threads

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        except Exception as exc:  # closing must not mask the error that led here
            log.debug("closing the openai client: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def _status_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(getattr(exc, "message", exc))[:300]


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    raw = response.headers.get("retry-after") if response is not None else None
    try:
        return float(raw) if raw is not None else None
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None


class OpenAIBackend(Backend):
    name = "openai"
    description = "any OpenAI-compatible server (vLLM, Ollama, hosted) via --base-url"

    def open(self, options: BackendOptions) -> OpenAISession:
        try:
            import openai  # noqa: F401
        except ImportError:
            raise Vul2SafeError(
                "the openai backend needs the openai package; pip install openai"
            ) from None
        return OpenAISession(options)


@hookimpl
def register_backends(register: Register) -> None:
    register(OpenAIBackend())
