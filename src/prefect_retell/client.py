"""An async client for the parts of the Retell API that prefect-retell uses.

The client is plain httpx, tenacity and pydantic: it works without Prefect. Retries
live here and nowhere else. A request is retried, with exponential backoff and
jitter, after a 429, a 5xx, a 408 or a broken connection, honouring the server's
`Retry-After`; any other 4xx is final. Every request it sends is safe to repeat:
reads and updates by nature, and call creation because the client always sends an
`idempotency_key`, which makes Retell return the call it already placed instead of
dialling again.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from prefect_retell.errors import (
    RetellAPIError,
    RetellAuthenticationError,
    RetellConnectionError,
    RetellNotFoundError,
    RetellRateLimitError,
    RetellServerError,
    RetellValidationError,
)
from prefect_retell.models import (
    Agent,
    AgentWeight,
    CallListPage,
    Concurrency,
    PhoneCall,
    PhoneCallRequest,
    PhoneNumber,
    RetellLLM,
)
from prefect_retell.privacy import redact_phone_numbers

__all__ = ["DEFAULT_BASE_URL", "RetellClient", "RetryPolicy"]

DEFAULT_BASE_URL = "https://api.retellai.com"

Sleep = Callable[[float], Awaitable[None]]

# Nothing reached the server: sending again cannot repeat a side effect.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """How the client retries a request that may succeed later.

    Attributes:
        max_attempts: Attempts in all, the first included.
        initial_backoff_seconds: The wait before the first retry, without a hint.
        max_backoff_seconds: The longest computed wait.
        max_retry_after_seconds: The longest server-requested wait honoured;
            a longer `Retry-After` is cut to this, never slept for a day.
        jitter: A function returning a factor in (0.75, 1]; fixed in tests.
    """

    max_attempts: int = 5
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0
    max_retry_after_seconds: float = 60.0
    jitter: Callable[[], float] = lambda: random.uniform(0.75, 1.0)

    def wait_seconds(self, retries_made: int, error: BaseException | None) -> float:
        """The wait before the next attempt, after `retries_made` retries."""
        hint = getattr(error, "retry_after_seconds", None)
        if hint is not None and hint >= 0:
            return min(hint, self.max_retry_after_seconds)
        backoff = self.initial_backoff_seconds * 2**retries_made
        return min(backoff, self.max_backoff_seconds) * self.jitter()


def _is_retryable(error: BaseException) -> bool:
    if isinstance(error, (RetellRateLimitError, RetellServerError)):
        return True
    return isinstance(error, RetellConnectionError)


def _parse_retry_after(headers: httpx.Headers) -> float | None:
    """Read `retry-after-ms`, then `Retry-After` in seconds or as an HTTP date."""
    if (millis := headers.get("retry-after-ms")) is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _error_message(response: httpx.Response) -> str | None:
    """Retell's message from an error body; a proxy's HTML page is not JSON."""
    try:
        body = response.json()
    except ValueError:
        text = " ".join(response.text.split())
        return text[:200] or None
    if isinstance(body, dict):
        for key in ("message", "error_message", "error", "detail"):
            if isinstance(body.get(key), str):
                return body[key]
    return str(body)[:200]


_ERRORS_BY_STATUS: dict[int, type[RetellAPIError]] = {
    400: RetellValidationError,
    401: RetellAuthenticationError,
    402: RetellAuthenticationError,
    403: RetellAuthenticationError,
    404: RetellNotFoundError,
    # Retell answers 422 "cannot find asset" for an unknown id.
    422: RetellNotFoundError,
    408: RetellServerError,
    429: RetellRateLimitError,
}


def _error_class(status_code: int) -> type[RetellAPIError]:
    if status_code >= 500:
        return RetellServerError
    return _ERRORS_BY_STATUS.get(status_code, RetellAPIError)


def _usable_key(api_key: str) -> str:
    """The key without the spaces a copy and paste brings, or an error naming where.

    A key with any other character outside printable ASCII cannot be sent in an
    HTTP header; httpx would fail later with an encoding error that quotes the
    whole header, key included.
    """
    key = api_key.strip()
    for position, char in enumerate(key, start=1):
        if not ("!" <= char <= "~"):
            raise RetellAuthenticationError(
                status_code=401,
                method="-",
                path="-",
                retell_message=None,
                note=(
                    f"the API key has a character that cannot be sent "
                    f"(U+{ord(char):04X}) at position {position}; copy it again "
                    "from the Retell dashboard"
                ),
            )
    return key


class RetellClient:
    """An async client for Retell's REST API.

    Args:
        api_key: The Retell API key, sent as a bearer token and never logged.
        base_url: The API's address; the sandbox's address in tests and demos.
        timeout_seconds: How long to wait for an answer to one request.
        connect_timeout_seconds: How long to wait for a connection.
        retry: How to retry; `RetryPolicy()` when not given.
        sleep: The coroutine used to wait between attempts (tests pass a fake).
        transport: An httpx transport, for tests that stage faults in-process.
        logger: Where retry warnings go; the module logger by default.

    Example:
        ```python
        async with RetellClient(api_key) as client:
            call = await client.create_phone_call(
                from_number="+16505550100", to_number="+14155550123"
            )
        ```
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout_seconds: float = 30.0,
        connect_timeout_seconds: float = 5.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> None:
        if not api_key:
            raise RetellAuthenticationError(
                status_code=401,
                method="-",
                path="-",
                retell_message=None,
                note="no API key was given; set RETELL_API_KEY or use a block",
            )
        api_key = _usable_key(api_key)
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._sleep = sleep or asyncio.sleep
        self._logger = logger if logger is not None else logging.getLogger(__name__)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {api_key}",
                "User-Agent": "prefect-retell",
            },
            timeout=httpx.Timeout(timeout_seconds, connect=connect_timeout_seconds),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"RetellClient(base_url={self.base_url!r}, api_key='********')"

    async def __aenter__(self) -> RetellClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # Phone numbers and agents

    async def get_phone_number(self, phone_number: str) -> PhoneNumber:
        """Read one of the account's phone numbers, with its bound agents."""
        data = await self._request("GET", f"/get-phone-number/{_path(phone_number)}")
        return PhoneNumber.model_validate(data)

    async def update_phone_number(
        self, phone_number: str, **fields: Any
    ) -> PhoneNumber:
        """Change a phone number's settings; fields left out stay unchanged.

        `inbound_agents` and `outbound_agents` take lists of `AgentWeight` (or
        dicts) whose weights sum to 1, or None to unbind.
        """
        body = {key: _jsonable(value) for key, value in fields.items()}
        data = await self._request(
            "PATCH", f"/update-phone-number/{_path(phone_number)}", json=body
        )
        return PhoneNumber.model_validate(data)

    async def get_agent(self, agent_id: str, version: int | str | None = None) -> Agent:
        """Read an agent, at a version or its latest."""
        params = {"version": version} if version is not None else None
        data = await self._request(
            "GET", f"/get-agent/{_path(agent_id)}", params=params
        )
        return Agent.model_validate(data)

    async def get_retell_llm(
        self, llm_id: str, version: int | None = None
    ) -> RetellLLM:
        """Read a Retell LLM response engine, whose prompt names the variables."""
        params = {"version": version} if version is not None else None
        data = await self._request(
            "GET", f"/get-retell-llm/{_path(llm_id)}", params=params
        )
        return RetellLLM.model_validate(data)

    async def get_concurrency(self) -> Concurrency:
        """Read the account's live calls and concurrency limit."""
        data = await self._request("GET", "/get-concurrency")
        return Concurrency.model_validate(data)

    # Calls

    async def create_phone_call(
        self,
        request: PhoneCallRequest | None = None,
        *,
        retry_rate_limited: bool = True,
        **fields: Any,
    ) -> PhoneCall:
        """Place an outbound call.

        Pass a `PhoneCallRequest` or its fields. An `idempotency_key` is added when
        missing, so that a retry after a lost answer returns the call already
        placed instead of dialling the person again.

        With `retry_rate_limited` False, a 429 answer is raised at once as
        `RetellRateLimitError`, for a caller that paces its calls itself: a
        create sent again after `Retry-After` would go out beside the paced
        ones, and at full CPS be refused in turn.
        """
        request = request or PhoneCallRequest(**fields)
        if request.idempotency_key is None:
            request = request.model_copy(
                update={"idempotency_key": f"prefect-retell-{uuid.uuid4().hex}"}
            )
        data = await self._request(
            "POST",
            "/v2/create-phone-call",
            retry_rate_limited=retry_rate_limited,
            json=request.to_body(),
        )
        return PhoneCall.model_validate(data)

    async def get_call(self, call_id: str) -> PhoneCall:
        """Read a call's current state."""
        data = await self._request("GET", f"/v2/get-call/{_path(call_id)}")
        return PhoneCall.model_validate(data)

    async def stop_call(self, call_id: str) -> None:
        """End a live call; a call already over is left as it is."""
        await self._request("POST", f"/v2/stop-call/{_path(call_id)}")

    async def list_calls_page(
        self,
        filter_criteria: dict[str, Any] | None = None,
        *,
        limit: int = 100,
        pagination_key: str | None = None,
        sort_order: str = "descending",
    ) -> CallListPage:
        """Read one page of calls matching `filter_criteria` (list-calls v3).

        Items carry no transcript: read a call with `get_call` for that.
        """
        body: dict[str, Any] = {"limit": limit, "sort_order": sort_order}
        if filter_criteria:
            body["filter_criteria"] = filter_criteria
        if pagination_key:
            body["pagination_key"] = pagination_key
        data = await self._request("POST", "/v3/list-calls", json=body)
        return CallListPage.model_validate(data)

    async def iter_calls(
        self,
        filter_criteria: dict[str, Any] | None = None,
        *,
        page_size: int = 100,
        sort_order: str = "descending",
    ) -> AsyncIterator[PhoneCall]:
        """Yield every call matching `filter_criteria`, page after page."""
        async for item in self.iter_call_items(
            filter_criteria, page_size=page_size, sort_order=sort_order
        ):
            yield PhoneCall.model_validate(item)

    async def iter_call_items(
        self,
        filter_criteria: dict[str, Any] | None = None,
        *,
        page_size: int = 100,
        sort_order: str = "descending",
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield every call matching `filter_criteria` as Retell's JSON object.

        For readers of a few fields of many calls, such as a poller that reads a
        thousand live calls a second: validating every item as a `PhoneCall`
        would cost it more CPU than all the rest of its work.
        """
        body: dict[str, Any] = {"limit": page_size, "sort_order": sort_order}
        if filter_criteria:
            body["filter_criteria"] = filter_criteria
        while True:
            page = await self._request("POST", "/v3/list-calls", json=body)
            for item in page.get("items") or []:
                yield item
            if not page.get("has_more") or not page.get("pagination_key"):
                return
            body["pagination_key"] = page["pagination_key"]

    # Transport

    async def _request(
        self, method: str, path: str, *, retry_rate_limited: bool = True, **kwargs: Any
    ) -> Any:
        def retryable(error: BaseException) -> bool:
            if isinstance(error, RetellRateLimitError):
                return retry_rate_limited
            return _is_retryable(error)

        retrying = AsyncRetrying(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(self.retry.max_attempts),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._send_once(method, path, **kwargs)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _send_once(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._connection_error(method, path, exc) from exc
        if response.is_success:
            return response.json() if response.content else None
        raise self._api_error(method, path, response)

    def _api_error(
        self, method: str, path: str, response: httpx.Response
    ) -> RetellAPIError:
        message = _error_message(response)
        if message:
            message = redact_phone_numbers(message.replace(self._api_key, "********"))
        return _error_class(response.status_code)(
            status_code=response.status_code,
            method=method,
            path=_display_path(path),
            retell_message=message,
            retry_after_seconds=_parse_retry_after(response.headers),
        )

    def _connection_error(
        self, method: str, path: str, exc: httpx.TransportError
    ) -> RetellConnectionError:
        sent = not isinstance(exc, _NOT_SENT)
        detail = "after the request was sent" if sent else "before anything was sent"
        return RetellConnectionError(
            f"{method} {_display_path(path)} got no answer: "
            f"{type(exc).__name__} {detail}",
            method=method,
            path=_display_path(path),
            request_sent=sent,
        )

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return self.retry.wait_seconds(state.attempt_number - 1, error)

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        self._logger.warning(
            "%s; attempt %d of %d, retrying in %.1f s",
            error,
            state.attempt_number,
            self.retry.max_attempts,
            wait,
        )


def _path(segment: str) -> str:
    # Retell's ids and E.164 numbers go into the path as they are: "+" stays.
    return quote(segment, safe="+")


def _display_path(path: str) -> str:
    """The path for messages, with a phone number in it masked."""
    return redact_phone_numbers(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, AgentWeight):
        return value.model_dump(exclude_none=True)
    return value
