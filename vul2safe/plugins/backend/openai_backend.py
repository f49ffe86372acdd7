"""The ``openai`` backend: any OpenAI-compatible server (vLLM, Ollama, hosted APIs).

- ``--base-url`` selects the server; the key comes from the variable ``options.api_key_env``
  (default ``OPENAI_API_KEY``). A local server without a key gets the dummy key ``EMPTY``.
- ``options.concurrency`` requests are in flight at once: a thread pool of that size shares
  one (thread-safe) ``openai.OpenAI`` client; completions are yielded in the order they finish,
  so the runner saves each at once. A pool of blocking calls is all this needs: the work is
  waiting on the server, and the client's own connection pool is shared.
- Retries are the client's own (``max_retries=options.max_retries``): it retries 408/409/429,
  5xx, connection errors and timeouts with exponential backoff and jitter, honouring
  ``Retry-After``; other HTTP errors fail at once. Each retry is logged here as a warning that
  names the task, the sample and the cause (httpx event hooks on the client's connection pool).
  A request that fails for good raises a :class:`Vul2SafeError` naming the task, the sample,
  the number of attempts and the status.
- Chat prompts use ``/chat/completions`` (the server applies the model's chat template);
  ``use_chat_template=False`` and completion prompts use ``/completions``. A response prefix
  is sent as a final assistant message (a prefill), which vLLM, Ollama and our
  :mod:`vul2safe.testing.server` continue; if a server echoes the prefix back it is
  stripped. Set ``extra["continue_final_message"] = True`` to also send vLLM's
  ``continue_final_message``/``add_generation_prompt`` flags (other servers may reject them).

``extra`` knobs: ``connect_timeout_s`` (10, the reachability check in ``open``, not retried),
``continue_final_message`` (False); any other key is refused in ``open`` (a typo or a knob
this backend no longer reads would otherwise be silently ignored).

Length: ``max_tokens`` is sent as asked (``None``: not sent, the server's default). Only the
server knows the model's context: vLLM's server caps ``max_tokens`` at its ``max_model_len``
minus the prompt; a server that refuses a request longer than the context answers HTTP 400,
reported as one line naming the task — pass ``--max-tokens`` then.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any
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
    check_extra,
)
from vul2safe.generation.prompting import render_prompt
from vul2safe.hookspecs import Register

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUSES = frozenset({408, 409, 429})  # and every 5xx: what the openai client retries
POOL_THREAD_PREFIX = "vul2safe-openai-request"
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "host.docker.internal"}
_RETRY_COUNT = "x-stainless-retry-count"  # the header the openai client numbers attempts with
OPTIONS = frozenset({"connect_timeout_s", "continue_final_message"})  # the ``extra`` keys read


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


def _attempts(exc: Any, default: int) -> int:
    """How many attempts the client made: the retry counter of the last request it sent."""
    request = getattr(exc, "request", None)
    if request is None and getattr(exc, "response", None) is not None:
        request = exc.response.request
    try:
        return int(request.headers.get(_RETRY_COUNT)) + 1
    except (AttributeError, TypeError, ValueError):
        return default


class _RetryLog:
    """Logs the client's retries with the task they belong to.

    The client retries inside one blocking call on a pool thread, so a thread-local says which
    sample that thread is working on; the response hook remembers the last status, the
    request hook logs when the client sends attempt 2, 3, ...
    """

    def __init__(self, max_retries: int) -> None:
        self.max_retries = max_retries
        self.local = threading.local()

    def start(self, what: str) -> None:
        self.local.what = what
        self.local.last = None

    def on_request(self, request: Any) -> None:
        try:
            retry = int(request.headers.get(_RETRY_COUNT) or 0)
        except ValueError:
            return
        if retry:
            cause = getattr(self.local, "last", None) or "no response (timeout or dropped)"
            what = getattr(self.local, "what", request.url.path)
            log.warning("%s: %s; retry %d/%d", what, cause, retry, self.max_retries)
        self.local.last = None

    def on_response(self, response: Any) -> None:
        if response.status_code >= 400:
            self.local.last = f"HTTP {response.status_code}"


class OpenAISession(Session):
    """An ``openai.OpenAI`` client; :meth:`generate` drives it from a thread pool."""

    def __init__(self, options: BackendOptions) -> None:
        import openai

        self._openai = openai
        self.options = options
        self.base_url = (options.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.chat = options.use_chat_template
        self.continue_final = bool(options.extra.get("continue_final_message", False))
        self.served: dict[str, Any] = {}
        self.max_retries = max(0, options.max_retries)
        self._retry_log = _RetryLog(self.max_retries)
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=_api_key(options, self.base_url),
            max_retries=self.max_retries,
            timeout=options.timeout_s,
            http_client=openai.DefaultHttpxClient(
                event_hooks={
                    "request": [self._retry_log.on_request],
                    "response": [self._retry_log.on_response],
                }
            ),
        )
        try:
            self._check(float(options.extra.get("connect_timeout_s", 10.0)))
        except BaseException:
            self.close()
            raise

    def _check(self, timeout_s: float) -> None:
        """One cheap ``GET /models`` (no retries) so a wrong URL fails now, in one line."""
        openai = self._openai
        try:
            page = self._client.with_options(max_retries=0).models.list(timeout=timeout_s)
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
        workers = max(1, min(self.options.concurrency, len(requests)))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=POOL_THREAD_PREFIX)
        queue = iter(enumerate(requests))
        pending: dict[Future[Completion], int] = {}

        def top_up() -> None:
            # at most `workers` requests submitted at a time, and new ones only after a
            # success: once a request fails, nothing further reaches the server
            for index, request in itertools.islice(queue, workers - len(pending)):
                pending[pool.submit(self._request, request, params)] = index

        finished = False
        try:
            top_up()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    completion = future.result()
                    top_up()
                    yield index, completion
            finished = True
        finally:
            # on an error or an early stop, calls already on the wire end on their own
            # (bounded by the timeout) rather than blocking the caller
            pool.shutdown(wait=finished, cancel_futures=True)

    def _request(self, request: GenerationRequest, params: SamplingParams) -> Completion:
        """One sample, with the client's retries; a final failure in one clear line."""
        openai = self._openai
        what = f"task {request.prompt.key!r} sample {request.sample_index}"
        self._retry_log.start(what)
        default = self.max_retries + 1
        try:
            return self._send(request, params)
        except openai.APITimeoutError as exc:
            attempts = _attempts(exc, default)
            problem = f"timed out after {self.options.timeout_s:g}s"
        except openai.APIConnectionError as exc:
            attempts = _attempts(exc, default)
            problem = f"connection error: {_reason(exc)}"
        except openai.APIStatusError as exc:
            problem = f"HTTP {exc.status_code}: {_status_message(exc)}"
            if exc.status_code not in RETRY_STATUSES and exc.status_code < 500:
                raise Vul2SafeError(
                    f"{self.base_url} refused {what} (model {self.options.model!r}): {problem}"
                ) from None
            attempts = _attempts(exc, default)
        raise Vul2SafeError(
            f"request for {what} to {self.base_url} failed after {attempts} "
            f"attempt(s): {problem}; raise --max-retries/--timeout or check the server"
        )

    def _send(self, request: GenerationRequest, params: SamplingParams) -> Completion:
        prompt = request.prompt
        common: dict[str, Any] = {
            "model": self.options.model,
            "n": 1,
            "seed": params.seed + request.sample_index,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.max_tokens is not None:
            common["max_tokens"] = params.max_tokens
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
            response = self._client.chat.completions.create(messages=messages, **common)
            choice = response.choices[0]
            text = choice.message.content or ""
        else:
            text_prompt, _ = render_prompt(None, prompt, use_chat_template=False)
            response = self._client.completions.create(prompt=text_prompt, **common)
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
        self._client.close()


def _status_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(getattr(exc, "message", exc))[:300]


class OpenAIBackend(Backend):
    name = "openai"
    description = "any OpenAI-compatible server (vLLM, Ollama, hosted) via --base-url"

    def open(self, options: BackendOptions) -> OpenAISession:
        check_extra(self.name, options.extra, OPTIONS)
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
