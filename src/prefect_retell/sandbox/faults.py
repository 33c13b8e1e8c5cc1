"""Faults a rehearsal can stage: on the API's answers, and on the webhooks it sends.

Each `Fault` names an endpoint ("*" for all) and an action:

- ``error``: answer `status`, `body` and `headers` without processing the request,
  so nothing is created (5xx outages, 429 with any Retry-After form).
- ``drop``: process the request (a create really places the call), then break the
  connection mid-response; the client sees a transport error and cannot tell
  whether it worked.
- ``hang``: process the request, then wait `seconds` before answering; a client
  with a shorter read timeout gives up although the call exists.
- ``delay``: wait `seconds`, then process and answer normally.

Each `WebhookFault` names a webhook event ("*" for all) and what happens to its
delivery (see `WebhookFault`): ``duplicate``, ``delay``, ``reorder`` or ``drop``.

Faults apply in the order they were added, and each request (or webhook event)
consumes at most one. `after` lets that many matching requests through first;
`times` is how many it then applies to (0 = all of them).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Generic, Literal, Protocol, TypeVar

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

WEBHOOK_EVENTS = ("call_started", "call_ended", "call_analyzed")
"""The call events the sandbox sends, in the order a call has them."""


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

    @property
    def target(self) -> str:
        """The endpoint it watches, as the fault book matches it."""
        return self.endpoint

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


class WebhookFault(BaseModel):
    """A rule that changes how some webhook events are delivered.

    - ``duplicate``: send `copies` identical deliveries at once, each with its
      own signature and retries, as Retell's retries after a timeout produce.
    - ``delay``: send the event `seconds` (real seconds) later than it happens;
      later events of the same call may overtake it.
    - ``reorder``: hold the event back and send it right after the call's next
      event, e.g. `call_ended` before `call_started`. The call's last event (or
      the last one known, for a call stuck live) cannot be held, so the fault
      passes over it and stays armed.
    - ``drop``: never send it, as when every retry is lost.

    Examples:
        `call_ended` posted twice at once; `call_started` after `call_ended` for
        one destination; `call_analyzed` that never comes:

        >>> twice = WebhookFault(event="call_ended", action="duplicate")
        >>> late = WebhookFault(
        ...     event="call_started", action="reorder", to_number="+14155550123"
        ... )
        >>> lost = WebhookFault(event="call_analyzed", action="drop", times=0)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: str = Field(
        description=f"One of {', '.join(WEBHOOK_EVENTS)}, or '*' for all."
    )
    action: Literal["duplicate", "delay", "reorder", "drop"]
    copies: int = Field(
        default=2, ge=2, le=20, description="For 'duplicate': deliveries sent."
    )
    seconds: float = Field(
        default=0, ge=0, description="For 'delay': real seconds added."
    )
    times: int = Field(
        default=1, ge=0, description="Events it applies to; 0 means every one."
    )
    after: int = Field(
        default=0, ge=0, description="Matching events to let through first."
    )
    to_number: str | None = Field(
        default=None, description="Only events of calls to this destination."
    )
    call_id: str | None = Field(default=None, description="Only events of this call.")

    @field_validator("event")
    @classmethod
    def _known_event(cls, value: str) -> str:
        if value != "*" and value not in WEBHOOK_EVENTS:
            raise ValueError(
                f"unknown event {value!r}; use '*' or one of "
                f"{', '.join(WEBHOOK_EVENTS)}"
            )
        return value

    @property
    def target(self) -> str:
        """The event it watches, as the fault book matches it."""
        return self.event


class _Targeted(Protocol):
    @property
    def target(self) -> str: ...

    @property
    def times(self) -> int: ...

    @property
    def after(self) -> int: ...

    @property
    def to_number(self) -> str | None: ...

    @property
    def call_id(self) -> str | None: ...

    def model_dump(self) -> dict[str, Any]: ...


FaultT = TypeVar("FaultT", bound=_Targeted)


@dataclass
class _ArmedFault(Generic[FaultT]):
    fault: FaultT
    seen: int = 0
    applied: int = 0

    @property
    def spent(self) -> bool:
        return self.fault.times > 0 and self.applied >= self.fault.times

    def matches(
        self, target: str, call_ids: Collection[str], to_numbers: Collection[str]
    ) -> bool:
        fault = self.fault
        if fault.target not in ("*", target):
            return False
        if fault.call_id is not None and fault.call_id not in call_ids:
            return False
        return fault.to_number is None or fault.to_number in to_numbers


class FaultBook(Generic[FaultT]):
    """The faults of one kind (API or webhook) and how often each has fired.

    Not thread-safe by itself; the `Sandbox` calls it under its lock.
    """

    def __init__(self) -> None:
        self._armed: list[_ArmedFault[FaultT]] = []

    def add(self, fault: FaultT) -> None:
        """Arm a fault after the existing ones."""
        self._armed.append(_ArmedFault(fault))

    def clear(self) -> None:
        """Disarm every fault."""
        self._armed.clear()

    def take(
        self,
        target: str,
        *,
        call_id: str | None = None,
        to_number: str | None = None,
        applicable: Callable[[FaultT], bool] | None = None,
        listed: Collection[tuple[str, str]] = (),
    ) -> FaultT | None:
        """Return the fault this request or event triggers, counting it, or None.

        Args:
            target: The endpoint name, e.g. "create-phone-call", or the webhook
                event, e.g. "call_ended".
            call_id: The call the request or event is about, if any.
            to_number: The destination it is about, if known.
            applicable: Says whether a matching fault can act here at all; one
                that cannot is passed over without being counted.
            listed: `(call_id, to_number)` of each call a list-calls filter
                names; a fault scoped to one of them applies to the request.
        """
        call_ids = {call_id, *(listed_id for listed_id, _ in listed)} - {None}
        to_numbers = {to_number, *(number for _, number in listed)} - {None}
        for armed in self._armed:
            if armed.spent or not armed.matches(target, call_ids, to_numbers):
                continue
            if applicable is not None and not applicable(armed.fault):
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


def parse_fault(
    fault: Fault | WebhookFault | Mapping[str, Any],
) -> Fault | WebhookFault:
    """Return an API or webhook fault from either model or its JSON form.

    Raises:
        pydantic.ValidationError: If the JSON form is not a valid fault.
    """
    if isinstance(fault, (Fault, WebhookFault)):
        return fault
    if isinstance(fault, Mapping) and "event" in fault:
        return WebhookFault.model_validate(fault)
    return Fault.model_validate(fault)
