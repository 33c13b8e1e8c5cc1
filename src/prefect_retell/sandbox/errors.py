"""The one exception the sandbox raises to answer a request with an error.

Every failure a Retell endpoint can report is an `ApiError`; the app turns it into
Retell's error body `{"status": "error", "message": ...}` with the given status and
headers. Messages never contain the API key or a full phone number, because clients
log them.
"""

from __future__ import annotations

NOT_FOUND_MESSAGE = "Cannot find requested asset under given api key."
RATE_LIMITED_MESSAGE = "Account rate limited, please throttle your requests."


class ApiError(Exception):
    """An error answer of the sandbox API.

    Args:
        status: HTTP status code to answer with.
        message: Human-readable message for the error body.
        headers: Extra response headers, such as `Retry-After`.
    """

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, str]:
        """Return Retell's error body for this error."""
        return {"status": "error", "message": self.message}


def not_found() -> ApiError:
    """Return the error Retell gives for an unknown call, agent, number or LLM id.

    Retell answers 422, not 404, when an id does not exist under the key.
    """
    return ApiError(422, NOT_FOUND_MESSAGE)


def bad_request(message: str) -> ApiError:
    """Return a 400 error with the given message."""
    return ApiError(400, message)
