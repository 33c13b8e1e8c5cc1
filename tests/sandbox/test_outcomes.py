"""Deterministic outcomes and the lazily computed lifecycle, without HTTP."""

from __future__ import annotations

from collections import Counter

import pytest

from prefect_retell.sandbox import Outcome, Sandbox, SandboxConfig
from prefect_retell.sandbox.errors import ApiError
from prefect_retell.sandbox.outcomes import default_outcome, plan_call


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_default_outcome_is_stable_across_calls():
    """The same seed and number always give the same outcome."""
    assert default_outcome(0, "+14155550123") == default_outcome(0, "+14155550123")


def test_default_outcome_depends_on_the_seed():
    """Across many numbers, another seed changes some outcomes."""
    numbers = [f"+1415555{index:04d}" for index in range(50)]
    kinds = [default_outcome(0, n).kind for n in numbers]
    other = [default_outcome(1, n).kind for n in numbers]

    assert kinds != other


def test_default_outcome_shares_and_ranges():
    """Shares come close to 60/12/14/8/6 and durations stay in their ranges."""
    outcomes = [default_outcome(7, f"+1212555{i:04d}") for i in range(4000)]
    shares = Counter(outcome.kind for outcome in outcomes)

    expected = {
        "answered": 0.60,
        "voicemail": 0.12,
        "no_answer": 0.14,
        "busy": 0.08,
        "failed": 0.06,
    }
    for kind, share in expected.items():
        assert shares[kind] / len(outcomes) == pytest.approx(share, abs=0.03)
    assert all(2 <= outcome.ring_seconds <= 25 for outcome in outcomes)
    assert all(20 <= outcome.talk_seconds <= 150 for outcome in outcomes)


def test_override_keeps_default_durations_when_unset():
    """An override without durations borrows the number's default ones."""
    plan = plan_call(0, "+14155550123", Outcome(kind="voicemail"))

    assert plan.ring_seconds == default_outcome(0, "+14155550123").ring_seconds
    assert plan.disconnection_reason == "voicemail_reached"


def test_lifecycle_boundaries_with_a_fake_clock():
    """Status changes exactly at the end of the ring and of the talk."""
    clock = FakeClock()
    sandbox = Sandbox(SandboxConfig(time_scale=0.5), clock=clock)
    sandbox.set_outcome(
        "+14155550123", Outcome(kind="answered", ring_seconds=4, talk_seconds=10)
    )
    call_id = sandbox.create_call(
        {"from_number": "+16505550100", "to_number": "+14155550123"}
    )["call_id"]

    statuses = []
    for elapsed in (0.0, 1.999, 2.0, 6.999, 7.0):
        clock.now = 1_800_000_000.0 + elapsed
        statuses.append(sandbox.get_call(call_id)["call_status"])

    assert statuses == ["registered", "registered", "ongoing", "ongoing", "ended"]
    call = sandbox.get_call(call_id)
    assert call["start_timestamp"] == 1_800_000_002_000
    assert call["end_timestamp"] == 1_800_000_007_000
    assert call["duration_ms"] == 10_000
    assert call["call_analysis"] is None


def test_analysis_follows_the_end_after_five_simulated_seconds():
    """The post-call analysis is absent at the end and present 5 s later."""
    clock = FakeClock()
    sandbox = Sandbox(SandboxConfig(time_scale=1.0), clock=clock)
    sandbox.set_outcome(
        "+14155550123", Outcome(kind="answered", ring_seconds=0, talk_seconds=10)
    )
    call_id = sandbox.create_call(
        {"from_number": "+16505550100", "to_number": "+14155550123"}
    )["call_id"]

    clock.now += 14.999
    before = sandbox.get_call(call_id)["call_analysis"]
    clock.now += 0.001
    after = sandbox.get_call(call_id)["call_analysis"]

    assert before is None
    assert after["call_successful"] in (True, False)


def test_default_reasons_per_kind():
    """Each kind ends with Retell's usual disconnection reason."""
    expected = {
        "no_answer": ("not_connected", "dial_no_answer"),
        "busy": ("not_connected", "dial_busy"),
        "failed": ("not_connected", "dial_failed"),
        "voicemail": ("ended", "voicemail_reached"),
        "error": ("error", "concurrency_limit_reached"),
    }
    clock = FakeClock()
    sandbox = Sandbox(clock=clock)
    for index, (kind, final) in enumerate(expected.items()):
        number = f"+1415555090{index}"
        sandbox.set_outcome(number, Outcome(kind=kind, ring_seconds=1, talk_seconds=1))
        call_id = sandbox.create_call(
            {"from_number": "+16505550101", "to_number": number}
        )["call_id"]
        clock.now += 10
        call = sandbox.get_call(call_id)
        assert (call["call_status"], call["disconnection_reason"]) == final, kind


def test_live_count_follows_each_call_end_in_any_order():
    """Calls leave the live count at their own end, not in the order placed."""
    clock = FakeClock()
    start = clock.now
    sandbox = Sandbox(SandboxConfig(time_scale=1.0, concurrency_limit=3), clock=clock)
    plans = {
        "+14155550171": Outcome(kind="answered", ring_seconds=1, talk_seconds=10),
        "+14155550172": Outcome(kind="no_answer", ring_seconds=2),
        "+14155550173": Outcome(kind="stuck_registered"),
    }
    call_ids = []
    for number, outcome in plans.items():
        sandbox.set_outcome(number, outcome)
        body = {"from_number": "+16505550100", "to_number": number}
        call_ids.append(sandbox.create_call(body)["call_id"])
    with pytest.raises(ApiError) as refused:
        sandbox.create_call(
            {"from_number": "+16505550100", "to_number": "+14155550174"}
        )

    def live_at(elapsed: float) -> tuple[int, int]:
        clock.now = start + elapsed
        current = sandbox.concurrency()["current_concurrency"]
        return current, sandbox.stats()["live_calls"]

    counts = [live_at(1.999), live_at(2.0)]
    sandbox.stop_call(call_ids[2])
    counts += [live_at(10.999), live_at(11.0)]

    assert refused.value.status == 429
    assert counts == [(3, 3), (2, 2), (1, 1), (0, 0)]
    assert sandbox.stats()["max_live_calls"] == 3
