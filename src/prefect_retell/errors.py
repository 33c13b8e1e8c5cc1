"""Exceptions raised by prefect-retell, grouped by cause.

```
RetellError
├── RetellAPIError                 Retell answered with an error status
│   ├── RetellAuthenticationError  401, 402: the key is missing, wrong or unpaid
│   ├── RetellNotFoundError        404, 422: no such call, agent or number
│   ├── RetellValidationError      400 (also a ValueError): the request was refused
│   ├── RetellRateLimitError       429: too many requests or calls at once
│   └── RetellServerError          5xx: Retell failed
├── RetellConnectionError          no answer at all: connect, read or protocol errors
├── RetellCallTimeoutError         a call did not reach a final status in time
└── RetellConfigurationError       (also a ValueError) a setting cannot work
```

Every message says what failed and where. None holds the API key, a request body
or a full phone number: Retell's own message is kept as `retell_message`.
"""

from __future__ import annotations

__all__ = [
    "RetellAPIError",
    "RetellAuthenticationError",
    "RetellCallTimeoutError",
    "RetellConfigurationError",
    "RetellConnectionError",
    "RetellError",
    "RetellNotFoundError",
    "RetellRateLimitError",
    "RetellServerError",
    "RetellValidationError",
]


class RetellError(Exception):
    """Base class of every error raised by prefect-retell."""


class RetellAPIError(RetellError):
    """Retell answered a request with an error status.

    Attributes:
        status_code: The HTTP status of the answer.
        method: The HTTP method of the request.
        path: The request path, without the query string.
        retell_message: The message from Retell's error body, if it had one.
        retry_after_seconds: The server's `Retry-After` hint, when it sent one.
    """

    def __init__(
        self,
        *,
        status_code: int,
        method: str,
        path: str,
        retell_message: str | None,
        retry_after_seconds: float | None = None,
        note: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.method = method
        self.path = path
        self.retell_message = retell_message
        self.retry_after_seconds = retry_after_seconds
        self.note = note
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = f"{self.method} {self.path} answered {self.status_code}"
        text += f" ({self.cause})"
        if self.retell_message:
            text += f": {self.retell_message}"
        if self.note:
            text += f"; {self.note}"
        return text

    @property
    def cause(self) -> str:
        """A few words naming the cause, used in the message."""
        return "error"


class RetellAuthenticationError(RetellAPIError):
    """The API key is missing, invalid, or its account cannot place calls."""

    @property
    def cause(self) -> str:
        if self.status_code == 402:
            return "payment required"
        return "authentication failed; check the API key"


class RetellNotFoundError(RetellAPIError):
    """The call, agent or phone number does not exist under this key.

    Retell answers 422 "cannot find asset" for unknown ids, so 422 maps here too.
    """

    @property
    def cause(self) -> str:
        return "not found"


class RetellValidationError(RetellAPIError, ValueError):
    """Retell refused the request's content; sending it again will not help."""

    @property
    def cause(self) -> str:
        return "invalid request"


class RetellRateLimitError(RetellAPIError):
    """Retell refused the request for now: too many requests or live calls."""

    @property
    def cause(self) -> str:
        return "rate limited"


class RetellServerError(RetellAPIError):
    """Retell failed to handle the request."""

    @property
    def cause(self) -> str:
        return "server error"


class RetellConnectionError(RetellError):
    """No usable answer arrived: the connection failed, broke or timed out.

    Attributes:
        method: The HTTP method of the request.
        path: The request path.
        request_sent: False when the request certainly never reached Retell
            (a failed connect), so that sending it again is always safe.
    """

    def __init__(self, message: str, *, method: str, path: str, request_sent: bool):
        self.method = method
        self.path = path
        self.request_sent = request_sent
        super().__init__(message)


class RetellCallTimeoutError(RetellError):
    """A call did not reach a final status within the time allowed.

    Attributes:
        call_id: The call that is still live.
        last_status: Its status when the wait ended.
    """

    def __init__(self, message: str, *, call_id: str, last_status: str | None):
        self.call_id = call_id
        self.last_status = last_status
        super().__init__(message)


class RetellConfigurationError(RetellError, ValueError):
    """A setting cannot work, found before anything was dialled."""
