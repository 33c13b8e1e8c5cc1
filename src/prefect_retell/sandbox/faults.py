"""Faults a rehearsal can stage: error answers, dropped connections, hangs, delays.

Each `Fault` names an endpoint ("*" for all) and an action:

- ``error``: answer `status`, `body` and `headers` without processing the request,
  so nothing is created (5xx outages, 429 with any Retry-After form).
- ``drop``: process the request (a create really places the call), then break the
  connection mid-response; the client sees a transport error and cannot tell
  whether it worked.
- ``hang``: process the request, then wait `seconds` before answering; a client
  with a shorter read timeout gives up although the call exists.
- ``delay``: wait `seconds`, then process and answer normally.

Faults apply in the order they were added, and each request consumes at most one.
`after` lets that many matching requests through first; `times` is how many it then
applies to (0 = all of them).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import RATE_LIMITED_MESSAGE

FAULT_ENDPOINTS = (
    "create-phone-call",
    "get-call",
    "list-calls",
    "stop-call",
    "get-phone-number",
    "update-phone-number",
    "list-phone-numbers",
    "get-agent",
    "list-agents",
    "get-retell-llm",
    "get-concurrency",
)


class Fault(BaseModel):
    """A rule that makes some requests misbehave.

    Examples:
        The second create answers 429 with a Retry-After of 2 s; the next three
        get-call reads fail with 500; a create is placed but its answer is lost:

        >>> throttle = Fault(
        ...     endpoint="create-phone-call", action="error", status=429,
        ...     headers={"Retry-After": "2"}, after=1,
        ... )
        >>> outage = Fault(endpoint="get-call", action="error", status=500, times=3)
        >>> lost = Fault(endpoint="create-phone-call", action="drop")
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str = Field(
        description=f"One of {', '.join(FAULT_ENDPOINTS)}, or '*' for all."
    )
    action: Literal["error", "drop", "hang", "delay"]
    status: int = Field(default=500, ge=100, le=599, description="For 'error'.")
    body: dict[str, Any] | str | None = Field(
        default=None,
        description=(
            "For 'error': a JSON object, or raw text such as a proxy's HTML page; "
            "default Retell's error body for the status."
        ),
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="For 'error': extra response headers."
    )
    seconds: float = Field(default=0, ge=0, description="For 'hang' and 'delay'.")
    times: int = Field(
        default=1, ge=0, description="Requests it applies to; 0 means every one."
    )
    after: int = Field(
        default=0, ge=0, description="Matching requests to let through first."
    )
    to_number: str | None = Field(
        default=None,
        description=(
            "Only requests about this destination: a create's to_number, the call "
            "of a call-scoped endpoint, or a call a list-calls call_id filter names."
        ),
    )
    call_id: str | None = Field(
        default=None,
        description=(
            "Only requests whose path names this call, or list-calls requests "
            "whose call_id filter names it."
        ),
    )

    @field_validator("endpoint")
    @classmethod
    def _known_endpoint(cls, value: str) -> str:
        # A typo would otherwise give a fault that silently never fires.
        if value != "*" and value not in FAULT_ENDPOINTS:
            raise ValueError(
                f"unknown endpoint {value!r}; use '*' or one of "
                f"{', '.join(FAULT_ENDPOINTS)}"
            )
        return value

    def error_body(self) -> dict[str, Any] | str:
        """Return the body an 'error' fault answers with."""
        if self.body is not None:
            return self.body
        if self.status == 429:
            return {"status": "error", "message": RATE_LIMITED_MESSAGE}
        try:
            phrase = HTTPStatus(self.status).phrase
        except ValueError:
            phrase = "Error"
        return {"status": "error", "message": f"{phrase} (sandbox fault)."}


@dataclass
class _ArmedFault:
    fault: Fault
    seen: int = 0
    applied: int = 0

    @property
    def spent(self) -> bool:
        return self.fault.times > 0 and self.applied >= self.fault.times

    def matches(
        self, endpoint: str, call_ids: Collection[str], to_numbers: Collection[str]
    ) -> bool:
        fault = self.fault
        if fault.endpoint not in ("*", endpoint):
            return False
        if fault.call_id is not None and fault.call_id not in call_ids:
            return False
        return fault.to_number is None or fault.to_number in to_numbers


class FaultBook:
    """The faults of a sandbox and how often each has fired.

    Not thread-safe by itself; the `Sandbox` calls it under its lock.
    """

    def __init__(self) -> None:
        self._armed: list[_ArmedFault] = []

    def add(self, fault: Fault) -> None:
        """Arm a fault after the existing ones."""
        self._armed.append(_ArmedFault(fault))

    def clear(self) -> None:
        """Disarm every fault."""
        self._armed.clear()

    def take(
        self,
        endpoint: str,
        *,
        call_id: str | None = None,
        to_number: str | None = None,
        listed: Collection[tuple[str, str]] = (),
    ) -> Fault | None:
        """Return the fault this request triggers, counting it, or None.

        Args:
            endpoint: The endpoint name, e.g. "create-phone-call".
            call_id: The call the request is about, if any.
            to_number: The destination the request is about, if known.
            listed: `(call_id, to_number)` of each call a list-calls filter
                names; a fault scoped to one of them applies to the request.
        """
        call_ids = {call_id, *(listed_id for listed_id, _ in listed)} - {None}
        to_numbers = {to_number, *(number for _, number in listed)} - {None}
        for armed in self._armed:
            if armed.spent or not armed.matches(endpoint, call_ids, to_numbers):
                continue
            armed.seen += 1
            if armed.seen <= armed.fault.after:
                continue
            armed.applied += 1
            return armed.fault
        return None

    def report(self) -> list[dict[str, Any]]:
        """Return each fault with its counters, for the control endpoint."""
        return [
            {
                **armed.fault.model_dump(),
                "applied": armed.applied,
                "spent": armed.spent,
            }
            for armed in self._armed
        ]
