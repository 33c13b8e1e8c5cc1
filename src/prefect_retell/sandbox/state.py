"""The in-memory world of a sandbox: numbers, agents, calls, limits, faults, stats.

`Sandbox` is what the HTTP app serves and what Python code (tests, demos,
benchmarks) steers directly: `set_outcome`, `add_fault`, `set_cps`,
`set_webhook_url`, `stats`, `reset`. Every method takes one lock, because the
server's event loop and the caller's threads touch the same object; no method
waits while holding it. Webhooks are queued here as calls are placed and stopped,
and sent by the running server's `WebhookDispatcher` (see `webhooks`).

Limits mirror Retell's account limits:

- calls per second, per dialling number: more accepted creates than the number's
  CPS within the trailing second answer 429 "Account rate limited, please throttle
  your requests." with `Retry-After: 1`;
- concurrency: a create while `concurrency_limit` calls are live (registered or
  ongoing) is refused with 429 or, in "error_call" mode, accepted as a call that
  ends at once with `error/concurrency_limit_reached`;
- idempotency: a create repeating a key seen within the TTL places no call and
  answers 201 with the original call as it is now; CPS and concurrency do not
  apply to such replays.
"""

from __future__ import annotations

import copy
import heapq
import hmac
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .calls import (
    LIVE_STATUSES,
    CallRecord,
    Phase,
    live_until,
    phase_at,
    render_call,
)
from .config import SandboxConfig, check_webhook_url
from .errors import RATE_LIMITED_MESSAGE, ApiError, bad_request, not_found
from .faults import Fault, FaultBook, WebhookFault, parse_fault
from .listing import (
    Page,
    call_filter,
    named_call_ids,
    paginate,
    parse_page_request,
)
from .outcomes import (
    CallPlan,
    Outcome,
    error_plan,
    pick_weighted,
    plan_call,
    stable_fractions,
)
from .validation import (
    CreateRequest,
    parse_create_request,
    parse_number_update,
    require_e164,
)
from .webhooks import (
    Delivery,
    WebhookLedger,
    delivery_options,
    encode_payload,
    sign_body,
)
from .world import seed_agents, seed_cps, seed_llms, seed_phone_numbers

CPS_WINDOW_SECONDS = 1.0
RETRY_AFTER_HEADERS = {"Retry-After": "1"}
GET_CALL_ROUTE = "GET /v2/get-call/{call_id}"


@dataclass
class _Counters:
    requests: Counter[str] = field(default_factory=Counter)
    responses: Counter[str] = field(default_factory=Counter)
    rate_limited: dict[str, int] = field(
        default_factory=lambda: {"cps": 0, "concurrency": 0, "injected": 0}
    )
    idempotent_replays: int = 0
    max_live_calls: int = 0
    get_call_requests: Counter[str] = field(default_factory=Counter)


class Sandbox:
    """A Retell account simulated in memory.

    Args:
        config: How the world behaves; defaults to `SandboxConfig()`.
        clock: Source of real epoch seconds; replace it to step time by hand.

    Attributes:
        config: The configuration (read-only).
        base_url: Where the sandbox is served, once a server runs it; used in
            recording and log links.

    Examples:
        >>> sandbox = Sandbox(SandboxConfig(time_scale=0.01))
        >>> sandbox.set_outcome("+14155550171", Outcome(kind="stuck_ongoing"))
        >>> sandbox.set_cps("+16505550100", 2)
        >>> sandbox.set_webhook_url("http://127.0.0.1:8000/webhooks/retell")
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or SandboxConfig()
        self.base_url: str | None = None
        self._clock = clock
        self._lock = threading.RLock()
        now_ms = round(clock() * 1000)
        self._numbers = seed_phone_numbers(now_ms)
        self._cps = seed_cps(self.config.concurrency_limit)
        self._agents = seed_agents(now_ms)
        self._llms = seed_llms(now_ms)
        self._dnc = frozenset(self.config.dnc_numbers)
        self._resets = 0
        self._webhook_watcher: Callable[[], None] | None = None
        self._forget_activity()

    # -- steering (Python API) -------------------------------------------------

    def set_outcome(
        self,
        to_number: str,
        outcome: Outcome | Mapping[str, Any] | Sequence[Any] | None,
    ) -> None:
        """Decide what happens to calls placed to `to_number` from now on.

        Calls already placed keep the future they were given. A list gives the
        n-th call its n-th outcome and every later call the last one, to stage a
        first attempt that fails and a second that connects.

        Args:
            to_number: The destination, E.164.
            outcome: The outcome (or its JSON form), a list of them, or None to
                restore the default.
        """
        with self._lock:
            if outcome is None:
                self._outcomes.pop(to_number, None)
                return
            items = outcome if isinstance(outcome, Sequence) else [outcome]
            if not items:
                raise ValueError("an outcome list needs at least one outcome")
            self._outcomes[to_number] = [Outcome.model_validate(o) for o in items]

    def add_fault(self, fault: Fault | WebhookFault | Mapping[str, Any]) -> None:
        """Arm a fault after those already armed.

        Args:
            fault: An API fault or a webhook fault, or the JSON form of either
                (one with an "event" key is a webhook fault).
        """
        parsed = parse_fault(fault)
        with self._lock:
            if isinstance(parsed, WebhookFault):
                self._webhook_faults.add(parsed)
            else:
                self._faults.add(parsed)

    def clear_faults(self) -> None:
        """Disarm every fault, API and webhook ones alike."""
        with self._lock:
            self._faults.clear()
            self._webhook_faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        """Return the armed faults with how often each has fired.

        API faults come first, then webhook faults (those with an "event" key).
        """
        with self._lock:
            return self._faults.report() + self._webhook_faults.report()

    def set_webhook_url(self, url: str | None, *, agent_id: str | None = None) -> None:
        """Say where the webhooks of calls go, from their next event on.

        Args:
            url: An http(s) URL, or None to send no webhooks (account level) or
                to fall back to the account's URL (agent level).
            agent_id: Set the URL of this agent (every version) instead of the
                account's; it replaces the account's URL for the agent's calls,
                and get-agent shows it.

        Raises:
            KeyError: If `agent_id` is not an agent of the sandbox.
            ValueError: If `url` is not an http(s) URL.
        """
        if url is not None:
            url = check_webhook_url(url)
        with self._lock:
            if agent_id is None:
                self._webhooks.account_url = url
                return
            if agent_id not in self._agents:
                raise KeyError(f"not an agent of the sandbox: {agent_id}")
            for version in self._agents[agent_id]:
                version["webhook_url"] = url

    def set_cps(self, phone_number: str, cps: int) -> None:
        """Set how many calls per second `phone_number` may start.

        Args:
            phone_number: One of the account's numbers.
            cps: Creates allowed in any trailing second, at least 1.

        Raises:
            KeyError: If the number is not one of the account's.
            ValueError: If `cps` is below 1.
        """
        if isinstance(cps, bool) or not isinstance(cps, int) or cps < 1:
            raise ValueError(f"cps must be an integer of at least 1, not {cps!r}")
        with self._lock:
            if phone_number not in self._numbers:
                raise KeyError(f"not a number of the sandbox account: {phone_number}")
            self._cps[phone_number] = cps

    def stats(self) -> dict[str, Any]:
        """Return what the sandbox has seen, as JSON-ready data.

        Returns:
            `requests` per route template, `responses` per status code ("dropped"
            for connections a fault broke), `rate_limited` (cps; concurrency,
            which in "error_call" mode counts the calls accepted as errors;
            injected 429 faults), `idempotent_replays`, `max_live_calls`,
            `live_calls`, `webhooks` and `calls`: one entry per call with its
            current status and `get_call_requests`, the get-call requests that
            named it (faulted ones included), which shows whether it was polled.

            `webhooks` holds, per event type, `attempted` (POSTs sent, retries
            and duplicate copies included), `acknowledged` (deliveries answered
            2xx), `failed` (deliveries given up after the last retry) and
            `dropped` (deliveries a drop fault swallowed), and `in_flight`: the
            deliveries handed to the server and not finished yet.
        """
        with self._lock:
            now = self._clock()
            counters = self._stats
            return {
                "requests": dict(counters.requests),
                "responses": dict(counters.responses),
                "rate_limited": dict(counters.rate_limited),
                "idempotent_replays": counters.idempotent_replays,
                "max_live_calls": counters.max_live_calls,
                "live_calls": self._live_count(now),
                "webhooks": self._webhooks.report(),
                "calls": [
                    self._call_summary(call, now) for call in self._calls.values()
                ],
            }

    def reset(self) -> None:
        """Return to the seeded world, as the sandbox started.

        Calls, faults, outcome overrides, idempotency keys and stats are
        forgotten; numbers get back their seeded agents and CPS. Webhooks not
        yet sent are abandoned, agents lose their webhook URL and the account's
        returns to the configured one. The configuration stays.
        """
        with self._lock:
            now_ms = round(self._clock() * 1000)
            self._numbers = seed_phone_numbers(now_ms)
            self._cps = seed_cps(self.config.concurrency_limit)
            for versions in self._agents.values():
                for version in versions:
                    version["webhook_url"] = None
            self._resets += 1
            self._forget_activity()
        self._nudge_webhooks()

    def get_call(self, call_id: str) -> dict[str, Any]:
        """Return the call object GET /v2/get-call would answer.

        Unlike an HTTP read, this never consumes the one read that reports an
        Outcome's `transient_status`, so inspecting a call does not change what
        the client under test sees.

        Raises:
            KeyError: If no call has this id.
        """
        with self._lock:
            call = self._calls.get(call_id)
            if call is None:
                raise KeyError(call_id)
            return self._render(call, self._clock())

    # -- Retell API (used by the app) -----------------------------------------

    def is_authorized(self, authorization: str | None) -> bool:
        """Tell whether an Authorization header carries the sandbox's key."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self.config.api_key.encode())

    def create_call(self, body: Any) -> dict[str, Any]:
        """Handle POST /v2/create-phone-call and return the call object.

        Raises:
            ApiError: 400 invalid body or DNC, 422 unknown number or agent, 429
                over CPS or concurrency.
        """
        request = parse_create_request(body)
        with self._lock:
            now = self._clock()
            replay = self._replay(request, now)
            if replay is not None:
                return replay

            number = self._dialling_number(request)
            agent = self._resolve_agent(request, number)
            self._admit(request.from_number, now)
            call = self._place(request, agent, now)
            answer = render_call(call, now, base_url=self.base_url, fresh=True)
        self._nudge_webhooks()
        return answer

    def read_call(self, call_id: str) -> dict[str, Any]:
        """Handle GET /v2/get-call/{call_id}.

        Raises:
            ApiError: 422 for an unknown call id.
        """
        with self._lock:
            call = self._find_call(call_id)
            now = self._clock()
            override = None
            if self._transient_due(call, now):
                override = call.plan.transient_status
                call.transient_pending = False
            return self._render(call, now, status_override=override)

    def list_calls(self, body: Any) -> dict[str, Any]:
        """Handle POST /v3/list-calls.

        A call appears only `list_lag_seconds` after its creation, as Retell's
        list can lag behind get-call. A listed call due to report its Outcome's
        transient status reports it here, and that read uses it up.

        Raises:
            ApiError: 400 for malformed filters, limits or cursors.
        """
        body = {} if body is None else body
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        request = parse_page_request(body)
        criteria = body.get("filter_criteria")
        matches = call_filter(criteria)
        with self._lock:
            now = self._clock()
            calls = [
                self._render(call, now, listing=True)
                for call in self._listed(named_call_ids(criteria), now)
            ]
            if request.descending:
                calls.reverse()
            page = paginate(calls, request, "call_id", matches)
            self._show_transient(page.items, now)

        answer = _page_answer(page)
        if body.get("include_total") is True:
            answer["total"] = sum(1 for call in calls if matches(call))
        return answer

    def stop_call(self, call_id: str) -> None:
        """Handle POST /v2/stop-call/{call_id}: end a live call now.

        A ringing call becomes `not_connected`, a connected one `ended`, both with
        reason `manual_stopped`; a call already final is left unchanged.

        Raises:
            ApiError: 422 for an unknown call id.
        """
        with self._lock:
            call = self._find_call(call_id)
            now = self._clock()
            if phase_at(call, now).status not in LIVE_STATUSES:
                return
            call.stopped_at = now
            self._live.discard(call_id)
            self._webhooks.schedule(call)
        self._nudge_webhooks()

    def get_phone_number(self, phone_number: str) -> dict[str, Any]:
        """Handle GET /get-phone-number/{phone_number}."""
        with self._lock:
            return copy.deepcopy(self._find_number(phone_number))

    def update_phone_number(self, phone_number: str, body: Any) -> dict[str, Any]:
        """Handle PATCH /update-phone-number/{phone_number}.

        Raises:
            ApiError: 422 unknown number or agent, 400 malformed body, weights
                not adding up to 1, or a removed `*_agent_id`/`*_agent_version`.
        """
        with self._lock:
            record = self._find_number(phone_number)
            changes = parse_number_update(body)
            self._check_agents_exist(changes)
            trunk = changes.pop("sip_outbound_trunk_config", None)
            record.update(changes)
            if trunk:
                self._merge_trunk(record, trunk)
            record["last_modification_timestamp"] = round(self._clock() * 1000)
            return copy.deepcopy(record)

    def list_phone_numbers(self, query: Mapping[str, Any]) -> dict[str, Any]:
        """Handle GET /v2/list-phone-numbers?limit&pagination_key&sort_order."""
        request = parse_page_request(query)
        with self._lock:
            numbers = copy.deepcopy(list(self._numbers.values()))
        if request.descending:
            numbers.reverse()
        page = paginate(numbers, request, "phone_number")
        return _page_answer(page)

    def get_agent(self, agent_id: str, version: str | None) -> dict[str, Any]:
        """Handle GET /get-agent/{agent_id}?version=.

        Raises:
            ApiError: 422 for an unknown agent or version.
        """
        with self._lock:
            versions = self._agents.get(agent_id)
            if versions is None:
                raise not_found()
            return copy.deepcopy(_pick_version(versions, version))

    def list_agents(self, query: Mapping[str, Any], body: Any) -> dict[str, Any]:
        """Handle POST /v2/list-agents (paging in the query, filters in the body)."""
        request = parse_page_request(query)
        matches = _agent_filter(body)
        with self._lock:
            latest = [versions[-1] for versions in self._agents.values()]
        items = [_agent_summary(agent) for agent in latest if matches(agent)]
        if request.descending:
            items.reverse()
        return _page_answer(paginate(items, request, "agent_id"))

    def get_llm(self, llm_id: str, version: str | None) -> dict[str, Any]:
        """Handle GET /get-retell-llm/{llm_id}?version=."""
        with self._lock:
            versions = self._llms.get(llm_id)
            if versions is None:
                raise not_found()
            return copy.deepcopy(_pick_version(versions, version))

    def concurrency(self) -> dict[str, Any]:
        """Handle GET /get-concurrency."""
        with self._lock:
            live = self._live_count(self._clock())
        limit = self.config.concurrency_limit
        purchase_limit = max(100, limit)
        return {
            "current_concurrency": live,
            "concurrency_limit": limit,
            "base_concurrency": limit,
            "purchased_concurrency": 0,
            "concurrency_purchase_limit": purchase_limit,
            "remaining_purchase_limit": purchase_limit,
            "concurrency_burst_enabled": False,
            "concurrency_burst_limit": 0,
            "reserved_inbound_concurrency": 0,
        }

    # -- faults, stats and artefacts (used by the app) -------------------------

    def take_fault(
        self,
        endpoint: str,
        *,
        call_id: str | None = None,
        to_number: str | None = None,
        listed_call_ids: frozenset[str] | None = None,
    ) -> Fault | None:
        """Return the fault a request triggers, counting it, or None.

        Args:
            endpoint: The endpoint name, e.g. "get-call".
            call_id: The call in the request path, if any; its destination is
                used for `to_number` matchers when `to_number` is not given.
            to_number: The destination named in the request body, if any.
            listed_call_ids: The calls a list-calls `call_id` filter names, so
                that a fault scoped to one call also hits the lists that read it.
        """
        with self._lock:
            if to_number is None and call_id in self._calls:
                to_number = self._calls[call_id].to_number
            listed = [
                (listed_id, self._calls[listed_id].to_number)
                for listed_id in listed_call_ids or ()
                if listed_id in self._calls
            ]
            fault = self._faults.take(
                endpoint, call_id=call_id, to_number=to_number, listed=listed
            )
            if fault is not None and fault.action == "error" and fault.status == 429:
                self._stats.rate_limited["injected"] += 1
            return fault

    def record_request(self, route: str, *, call_id: str | None = None) -> None:
        """Count a request to a Retell route, keyed "METHOD /template".

        Args:
            route: "METHOD /template".
            call_id: The call named in the path, if any; get-call requests are
                also counted per call.
        """
        with self._lock:
            self._stats.requests[route] += 1
            if route == GET_CALL_ROUTE and call_id is not None:
                self._stats.get_call_requests[call_id] += 1

    def record_response(self, status: int | str) -> None:
        """Count an answer by status code ("dropped" for broken connections)."""
        with self._lock:
            self._stats.responses[str(status)] += 1

    def call_log(self, call_id: str) -> str | None:
        """Return the plain-text timeline behind a call's `public_log_url`."""
        with self._lock:
            call = self._calls.get(call_id)
            if call is None:
                return None
            return _timeline(call, phase_at(call, self._clock()))

    def has_recording(self, call_id: str) -> bool:
        """Tell whether a call has a recording (it connected and ended)."""
        with self._lock:
            call = self._calls.get(call_id)
            if call is None:
                return False
            phase = phase_at(call, self._clock())
            return phase.status == "ended" and phase.start is not None

    # -- webhooks (used by the server's WebhookDispatcher) ----------------------

    def watch_webhooks(self, callback: Callable[[], None] | None) -> None:
        """Register the one function called when webhooks may have become due.

        It is called from whichever thread placed, stopped or reset calls, after
        the lock is released, and must only schedule work, never wait.

        Args:
            callback: The function, or None to stop being told.
        """
        with self._lock:
            self._webhook_watcher = callback

    @property
    def webhook_generation(self) -> int:
        """How many resets the sandbox has had; older deliveries are stale."""
        with self._lock:
            return self._webhooks.generation

    def seconds_until_next_webhook(self) -> float | None:
        """Return real seconds until the next queued event is due, or None."""
        with self._lock:
            due = self._webhooks.next_due()
            return None if due is None else max(0.0, due - self._clock())

    def take_due_webhooks(self) -> list[Delivery]:
        """Take the events that are due and turn them into deliveries.

        Events of calls with no webhook URL (neither the agent's nor the
        account's) are used up without being sent. Each event consumes at most
        one webhook fault.
        """
        with self._lock:
            now = self._clock()
            deliveries = []
            for call, event, when in self._webhooks.pop_due(now, self._calls):
                url = call.agent.get("webhook_url") or self._webhooks.account_url
                if url:
                    deliveries.append(self._delivery(call, event, when, url))
            return deliveries

    def sign_webhook(self, body: bytes) -> str:
        """Return the `x-retell-signature` value for `body`, signed now."""
        timestamp_ms = round(self._clock() * 1000)
        return sign_body(body, self.config.api_key, timestamp_ms)

    def record_webhook(self, delivery: Delivery, outcome: str) -> None:
        """Count an attempt, an acknowledgement or a failure of a delivery copy.

        Args:
            delivery: The delivery; those from before a reset are not counted.
            outcome: "attempted", "acknowledged" or "failed".
        """
        with self._lock:
            if delivery.generation == self._webhooks.generation:
                self._webhooks.count(outcome, delivery.event)

    def settle_webhook(self, delivery: Delivery) -> None:
        """Note that one copy of a delivery finished, one way or another."""
        with self._lock:
            if delivery.generation == self._webhooks.generation:
                self._webhooks.in_flight -= 1

    def abandon_webhooks(self) -> None:
        """Note that no delivery is in flight any more: the dispatcher stopped."""
        with self._lock:
            self._webhooks.in_flight = 0

    # -- internals -------------------------------------------------------------

    def _forget_activity(self) -> None:
        self._calls: dict[str, CallRecord] = {}
        # Live calls, and the same calls ordered by the moment they stop being
        # live: counting them pops only the calls that ended since the last
        # count, where asking every call its phase made 10,000 creates take
        # minutes. A stopped call leaves the set at once and its heap entry
        # when its natural end passes (never, for a stuck call: one small tuple
        # per stopped stuck call stays until the next reset).
        self._live: set[str] = set()
        self._live_ends: list[tuple[float, str]] = []
        self._idempotency: dict[str, tuple[str, float]] = {}
        self._recent_creates: dict[str, deque[float]] = {}
        self._outcomes: dict[str, list[Outcome]] = {}
        self._placed_to: Counter[str] = Counter()
        self._faults: FaultBook[Fault] = FaultBook()
        self._webhook_faults: FaultBook[WebhookFault] = FaultBook()
        self._stats = _Counters()
        self._webhooks = WebhookLedger(self.config.webhook_url, generation=self._resets)

    def _nudge_webhooks(self) -> None:
        with self._lock:
            watcher = self._webhook_watcher
        if watcher is not None:
            watcher()

    def _delivery(
        self, call: CallRecord, event: str, when: float, url: str
    ) -> Delivery:
        ledger = self._webhooks

        def applicable(fault: WebhookFault) -> bool:
            return fault.action != "reorder" or ledger.has_later_event(call, event)

        fault = self._webhook_faults.take(
            event,
            call_id=call.call_id,
            to_number=call.to_number,
            applicable=applicable,
        )
        body = encode_payload(event, self._webhook_call(call, event, when))
        delivery = Delivery(
            event, call.call_id, url, body, ledger.generation, **delivery_options(fault)
        )
        if delivery.dropped:
            ledger.count("dropped", event)
        else:
            ledger.in_flight += delivery.copies
        return delivery

    def _webhook_call(
        self, call: CallRecord, event: str, when: float
    ) -> dict[str, Any]:
        # The call as get-call shows it at the event's moment; a call that
        # connects and ends in one instant still starts "ongoing".
        phase = Phase("ongoing", start=when) if event == "call_started" else None
        return render_call(call, when, base_url=self.base_url, phase=phase)

    def _override(self, to_number: str) -> Outcome | None:
        sequence = self._outcomes.get(to_number)
        if not sequence:
            return None
        placed = self._placed_to[to_number]
        self._placed_to[to_number] += 1
        return sequence[min(placed, len(sequence) - 1)]

    def _replay(self, request: CreateRequest, now: float) -> dict[str, Any] | None:
        key = request.idempotency_key
        seen = self._idempotency.get(key) if key else None
        if seen is None or now - seen[1] >= self.config.idempotency_ttl_seconds:
            return None
        self._stats.idempotent_replays += 1
        return self._render(self._calls[seen[0]], now)

    def _dialling_number(self, request: CreateRequest) -> dict[str, Any]:
        number = self._numbers.get(request.from_number)
        exempt = (
            request.ignore_e164_validation
            and number is not None
            and number["phone_number_type"] == "custom"
        )
        if not exempt:
            require_e164(request.from_number, "from_number")
        if number is None:
            raise not_found()
        if request.honor_internal_dnc and request.to_number in self._dnc:
            raise bad_request(
                "to_number is on the internal do-not-call list and "
                "honor_internal_dnc is true; the call was not placed."
            )
        return number

    def _resolve_agent(
        self, request: CreateRequest, number: dict[str, Any]
    ) -> dict[str, Any]:
        if request.override_agent_id is not None:
            versions = self._agents.get(request.override_agent_id)
            if versions is None:
                raise not_found()
            return _pick_version(versions, request.override_agent_version)

        entries = number.get("outbound_agents")
        if not entries:
            raise bad_request(
                "from_number has no outbound agent; bind one with "
                "update-phone-number (outbound_agents) or pass override_agent_id."
            )
        draw = stable_fractions(
            self.config.seed, "agent", request.from_number, request.to_number
        )[0]
        choices = [(str(i), entry["weight"]) for i, entry in enumerate(entries)]
        entry = entries[int(pick_weighted(choices, draw))]
        wanted = request.override_agent_version
        if wanted is None:
            wanted = entry.get("agent_version")
        return _pick_version(self._agents[entry["agent_id"]], wanted)

    def _admit(self, from_number: str, now: float) -> None:
        recent = self._recent_creates.setdefault(from_number, deque())
        while recent and recent[0] <= now - CPS_WINDOW_SECONDS:
            recent.popleft()
        if len(recent) >= self._cps[from_number]:
            self._stats.rate_limited["cps"] += 1
            raise ApiError(429, RATE_LIMITED_MESSAGE, RETRY_AFTER_HEADERS)

        live = self._live_count(now)
        limit = self.config.concurrency_limit
        if live >= limit and self.config.concurrency_mode == "reject":
            self._stats.rate_limited["concurrency"] += 1
            raise ApiError(
                429,
                f"Concurrency limit reached: {live} of {limit} calls are live; "
                "retry when a call ends.",
                RETRY_AFTER_HEADERS,
            )

    def _place(
        self, request: CreateRequest, agent: dict[str, Any], now: float
    ) -> CallRecord:
        if self._live_count(now) >= self.config.concurrency_limit:
            # Only reached in "error_call" mode: Retell accepts, then fails it.
            self._stats.rate_limited["concurrency"] += 1
            plan = error_plan("concurrency_limit_reached")
        else:
            plan = plan_call(
                self.config.seed, request.to_number, self._override(request.to_number)
            )

        call = self._new_record(request, agent, plan, now)
        self._calls[call.call_id] = call
        self._recent_creates[request.from_number].append(now)
        if request.idempotency_key:
            self._idempotency[request.idempotency_key] = (call.call_id, now)
        self._live.add(call.call_id)
        heapq.heappush(self._live_ends, (live_until(call), call.call_id))
        self._webhooks.schedule(call)
        self._stats.max_live_calls = max(
            self._stats.max_live_calls, self._live_count(now)
        )
        return call

    def _new_record(
        self,
        request: CreateRequest,
        agent: dict[str, Any],
        plan: CallPlan,
        now: float,
    ) -> CallRecord:
        engine = agent["response_engine"]
        llm_versions = self._llms[engine["llm_id"]]
        llm = llm_versions[min(engine["version"], len(llm_versions) - 1)]
        number_type = self._numbers[request.from_number]["phone_number_type"]
        telephony = {}
        if number_type == "retell-twilio":
            telephony["twilio_call_sid"] = "CA" + secrets.token_hex(16)

        return CallRecord(
            call_id="call_" + secrets.token_hex(16),
            created_at=now,
            from_number=request.from_number,
            to_number=request.to_number,
            agent=agent,
            llm=llm,
            plan=plan,
            time_scale=self.config.time_scale,
            metadata=copy.deepcopy(request.metadata),
            dynamic_variables=request.dynamic_variables,
            custom_sip_headers=request.custom_sip_headers,
            idempotency_key=request.idempotency_key,
            telephony_identifier=telephony,
            transient_pending=plan.transient_status is not None,
        )

    def _listed(self, named: frozenset[str] | None, now: float) -> list[CallRecord]:
        """The calls list-calls can see, oldest first; only `named` ones if given."""
        lag = self.config.list_lag_seconds
        return [
            call
            for call in self._calls.values()
            if (named is None or call.call_id in named) and now - call.created_at >= lag
        ]

    def _show_transient(self, items: list[dict[str, Any]], now: float) -> None:
        """Put a due transient status into the listed items, using it up."""
        for item in items:
            call = self._calls[item["call_id"]]
            if self._transient_due(call, now):
                item.update(
                    call_status=call.plan.transient_status, disconnection_reason=None
                )
                call.transient_pending = False

    @staticmethod
    def _transient_due(call: CallRecord, now: float) -> bool:
        if not call.transient_pending or call.stopped_at is not None:
            return False
        return phase_at(call, now).status != "registered"

    def _live_count(self, now: float) -> int:
        ends = self._live_ends
        while ends and ends[0][0] <= now:
            self._live.discard(heapq.heappop(ends)[1])
        return len(self._live)

    def _find_call(self, call_id: str) -> CallRecord:
        call = self._calls.get(call_id)
        if call is None:
            raise not_found()
        return call

    def _find_number(self, phone_number: str) -> dict[str, Any]:
        record = self._numbers.get(phone_number)
        if record is None:
            raise not_found()
        return record

    def _check_agents_exist(self, changes: dict[str, Any]) -> None:
        for value in changes.values():
            if not isinstance(value, list):
                continue
            for entry in value:
                if isinstance(entry, dict) and "agent_id" in entry:
                    versions = self._agents.get(entry["agent_id"])
                    if versions is None:
                        raise not_found()
                    _pick_version(versions, entry.get("agent_version"))

    @staticmethod
    def _merge_trunk(record: dict[str, Any], trunk: dict[str, Any]) -> None:
        # The password is accepted but, as with Retell, never shown again.
        trunk.pop("auth_password", None)
        current = record.get("sip_outbound_trunk_config") or {}
        record["sip_outbound_trunk_config"] = {**current, **trunk}

    def _render(self, call: CallRecord, now: float, **options: Any) -> dict[str, Any]:
        return render_call(call, now, base_url=self.base_url, **options)

    def _call_summary(self, call: CallRecord, now: float) -> dict[str, Any]:
        return {
            "call_id": call.call_id,
            "from_number": call.from_number,
            "to_number": call.to_number,
            "created_at": call.created_at,
            "idempotency_key": call.idempotency_key,
            "agent_id": call.agent["agent_id"],
            "call_status": phase_at(call, now).status,
            "metadata": copy.deepcopy(call.metadata),
            "get_call_requests": self._stats.get_call_requests[call.call_id],
        }


def _pick_version(
    versions: list[dict[str, Any]], wanted: int | str | None
) -> dict[str, Any]:
    """Resolve a version request: an integer, "latest", "latest_published" or a tag.

    Tags are not modelled: like an unassigned tag on Retell, they give the latest
    version.

    Raises:
        ApiError: 422 for a version number that does not exist.
    """
    if isinstance(wanted, str) and wanted.isdigit():
        wanted = int(wanted)
    if isinstance(wanted, int):
        if not 0 <= wanted < len(versions):
            raise not_found()
        return versions[wanted]
    if wanted == "latest_published":
        published = [version for version in versions if version["is_published"]]
        return (published or versions)[-1]
    return versions[-1]


def _agent_filter(body: Any) -> Callable[[dict[str, Any]], bool]:
    criteria = body.get("filter_criteria") if isinstance(body, dict) else None
    if not criteria:
        return lambda _agent: True
    if not isinstance(criteria, dict):
        raise bad_request("filter_criteria must be an object.")
    text = criteria.get("query")
    if text is not None and not isinstance(text, str):
        raise bad_request("filter_criteria.query must be a string.")

    def matches(agent: dict[str, Any]) -> bool:
        if text is None:
            return True
        needle = text.lower()
        return needle in agent["agent_name"].lower() or needle in agent["agent_id"]

    return matches


def _agent_summary(agent: dict[str, Any]) -> dict[str, Any]:
    return {
        "agent_id": agent["agent_id"],
        "agent_name": agent["agent_name"],
        "channel": "voice",
        "is_suspended": False,
        "is_transfer_agent": False,
        "tags": {},
        "user_modified_timestamp": agent["last_modification_timestamp"],
    }


def _page_answer(page: Page) -> dict[str, Any]:
    return {
        "items": page.items,
        "has_more": page.has_more,
        "pagination_key": page.pagination_key,
    }


def _timeline(call: CallRecord, phase: Phase) -> str:
    def stamp(seconds: float | None) -> str:
        if seconds is None:
            return "-"
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + "Z"

    lines = [
        f"sandbox call log for {call.call_id}",
        f"agent: {call.agent['agent_id']} v{call.agent['version']}",
        f"to: ...{call.to_number[-4:]}",
        f"created: {stamp(call.created_at)}",
        f"connected: {stamp(phase.start)}",
        f"final: {stamp(phase.end)}",
        f"status: {phase.status}",
        f"disconnection_reason: {phase.reason or '-'}",
    ]
    return "\n".join(lines) + "\n"
