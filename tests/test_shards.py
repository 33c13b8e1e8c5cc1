"""One campaign split into shards, and one campaign over several from-numbers.

Real Prefect flow runs against the session's Prefect server and the sandbox. Two
shards run at once in this process, each with its own pacer, as they would on two
workers: only the Prefect server holds them to one CPS together. Pacing is judged
on the sandbox's record of when it accepted each create.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any
from uuid import UUID, uuid4

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flow_support import (
    TELNYX,
    TWILIO,
    contacts_file,
    credentials_for,
    most_in_one_second,
)
from prefect_retell import CampaignResult, RetellConfigurationError, outbound_campaign
from prefect_retell.flows.campaign import shard_of
from prefect_retell.sandbox import Outcome

# Calls per second in these tests: low enough that a few dozen contacts make
# several seconds of dialling, and two processes have to share every second.
CPS = 3


def _numbers(first: int, count: int, prefix: str = "+1415555") -> list[str]:
    return [f"{prefix}{n:04d}" for n in range(first, first + count)]


async def _shards(
    sandbox, contacts: str, campaign_id: str, count: int, **parameters: Any
) -> list[tuple[CampaignResult, UUID]]:
    """Run every shard of a campaign at once; their results and flow run ids."""
    parameters.setdefault("credentials", credentials_for(sandbox))
    parameters.setdefault("poll_interval_seconds", 0.05)

    async def shard(number: int):
        state = await outbound_campaign(
            contacts=contacts,
            campaign_id=campaign_id,
            shard=number,
            shard_count=count,
            return_state=True,
            **parameters,
        )
        return await state.result(), state.state_details.flow_run_id

    return await asyncio.gather(*(shard(n) for n in range(1, count + 1)))


def _creation_times(stats: dict[str, Any], from_number: str) -> list[float]:
    return sorted(
        call["created_at"]
        for call in stats["calls"]
        if call["from_number"] == from_number
    )


# --- Shards: two flow runs share one list and one CPS -----------------------------

SHARDED = _numbers(200, 30)
SHARDED_ROWS = [
    *(
        {"phone": number, "first_name": f"Guest {i}"}
        for i, number in enumerate(SHARDED)
    ),
    {"phone": SHARDED[3], "first_name": "Again"},  # a repeat of row 4
    {"phone": "not a number", "first_name": "Nobody"},  # rejected
]


@pytest.fixture(scope="module")
async def two_shards(prefect_server, sandbox_server):
    """The 32-row list run as shards 1 and 2 of 2, at the same time, at CPS 3."""
    sandbox_server.sandbox.reset()
    runs = await _shards(
        sandbox_server,
        contacts_file(SHARDED_ROWS),
        f"test-shards-{uuid4().hex[:12]}",
        2,
        from_number=TWILIO,
        cps=CPS,
    )
    return runs, sandbox_server.sandbox.stats()


def test_shards_together_dial_every_contact_exactly_once(two_shards):
    """Between them, the shards placed one call to each of the 30 numbers."""
    _, stats = two_shards
    dialled = Counter(call["to_number"] for call in stats["calls"])
    assert dialled == Counter(SHARDED)


def test_each_shard_dials_only_its_own_share(two_shards):
    """A shard's calls go to the numbers `shard_of` gives it, and both have some."""
    runs, _ = two_shards
    for shard, (result, _) in enumerate(runs, start=1):
        dialled = {row.to_number for row in result.rows if row.outcome == "called"}
        assert dialled == {n for n in SHARDED if shard_of(n, 2) == shard}
        assert dialled


def test_shards_never_exceed_the_cps_together(two_shards):
    """The two shards' creations never exceed 3 in any one-second window; no 429."""
    _, stats = two_shards
    times = _creation_times(stats, TWILIO)
    assert len(times) == len(SHARDED)
    assert most_in_one_second(times) <= CPS
    assert sum(stats["rate_limited"].values()) == 0


def test_shard_results_cover_every_row_exactly_once(two_shards):
    """Every row is reported by one shard; the bad row by shard 1, the repeat by
    the shard of the number it repeats."""
    runs, _ = two_shards
    rows = [row for result, _ in runs for row in result.rows]
    assert sorted(row.row for row in rows) == list(range(1, len(SHARDED_ROWS) + 1))
    first, second = (result for result, _ in runs)
    assert [r.outcome for r in first.rows if r.row == 32] == ["rejected"]
    repeat_shard = shard_of(SHARDED[3], 2)
    repeat = [r for r in (first, second)[repeat_shard - 1].rows if r.row == 31]
    assert [(r.outcome, r.duplicate_of) for r in repeat] == [("duplicate", 4)]


async def test_each_shard_names_itself_in_its_artifacts(two_shards):
    """Each shard publishes its results and summary under keys naming the shard."""
    runs, _ = two_shards
    async with get_client() as client:
        for shard, (_, flow_run_id) in enumerate(runs, start=1):
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
            keys = {artifact.key for artifact in artifacts}
            suffix = f"-shard-{shard}-of-2"
            assert {
                "retell-campaign-results" + suffix,
                "retell-campaign-summary" + suffix,
                "retell-campaign-progress" + suffix,
            } <= keys
            [summary] = [a for a in artifacts if a.key.startswith("retell-campaign-s")]
            assert f"Shard {shard} of 2" in summary.data


async def test_a_shards_share_does_not_depend_on_row_order(prefect_server, sandbox):
    """Shard 1 on the list, then shard 2 on the list reversed: every contact once.

    Were shares taken by row position, reversing the rows would hand shard 2
    contacts shard 1 had not dialled, and leave others to nobody.
    """
    numbers = _numbers(300, 12)
    rows = [{"phone": number} for number in numbers]
    campaign_id = f"test-shard-order-{uuid4().hex[:12]}"
    common = dict(
        from_number=TWILIO,
        cps=5,
        campaign_id=campaign_id,
        credentials=credentials_for(sandbox),
        poll_interval_seconds=0.05,
        shard_count=2,
    )
    first = await outbound_campaign(contacts=contacts_file(rows), shard=1, **common)
    second = await outbound_campaign(
        contacts=contacts_file(rows[::-1]), shard=2, **common
    )

    dialled = Counter(call["to_number"] for call in sandbox.sandbox.stats()["calls"])
    assert dialled == Counter(numbers)
    assert {r.to_number for r in first.rows}.isdisjoint(
        r.to_number for r in second.rows
    )


def test_shard_of_is_stable_and_spreads_numbers():
    """The same number always lands in the same shard; 900 numbers spread evenly."""
    numbers = _numbers(0, 900, prefix="+1212555")
    shards = [shard_of(number, 3) for number in numbers]
    assert shards == [shard_of(number, 3) for number in numbers]
    counts = Counter(shards)
    assert set(counts) == {1, 2, 3}
    assert all(250 <= count <= 350 for count in counts.values())


@pytest.mark.parametrize(("shard", "count"), [(0, 2), (3, 2), (1, 0)])
async def test_an_impossible_shard_is_refused_before_dialling(
    prefect_server, sandbox, shard, count
):
    """A shard outside 1..shard_count stops the flow; nothing is dialled."""
    with pytest.raises(RetellConfigurationError, match="shard must be from 1"):
        await outbound_campaign(
            contacts=contacts_file([{"phone": "+14155550400"}]),
            from_number=TWILIO,
            credentials=credentials_for(sandbox),
            shard=shard,
            shard_count=count,
        )
    assert sandbox.sandbox.stats()["calls"] == []


# --- Several from-numbers: each at its own CPS, rates add up ----------------------

# Twilio may call Great Britain; Telnyx (US, CA, IN) may not.
GB_NUMBERS = ["+442079460101", "+442079460102"]
ROTATED = _numbers(500, 22) + GB_NUMBERS
NUMBER_CPS = 2


@pytest.fixture(scope="module")
async def two_numbers(prefect_server, sandbox_server):
    """24 contacts (2 in Great Britain) from the Twilio and Telnyx numbers at CPS 2."""
    sandbox_server.sandbox.reset()
    result = await outbound_campaign(
        contacts=contacts_file([{"phone": number} for number in ROTATED]),
        from_numbers=[TWILIO, TELNYX],
        credentials=credentials_for(sandbox_server),
        cps=NUMBER_CPS,
        max_concurrency=40,
        poll_interval_seconds=0.05,
        campaign_id=f"test-numbers-{uuid4().hex[:12]}",
    )
    return result, sandbox_server.sandbox.stats()


def test_several_numbers_dial_every_contact_once(two_numbers):
    """Each of the 24 contacts got exactly one call, whichever number placed it."""
    result, stats = two_numbers
    assert Counter(call["to_number"] for call in stats["calls"]) == Counter(ROTATED)
    assert result.counts == {"called": len(ROTATED)}


def test_each_number_keeps_its_own_cps(two_numbers):
    """Per number, never more than 2 creations in any one-second window; no 429."""
    _, stats = two_numbers
    for number in (TWILIO, TELNYX):
        times = _creation_times(stats, number)
        assert len(times) >= len(ROTATED) // 4, number
        assert most_in_one_second(times) <= NUMBER_CPS, number
    assert sum(stats["rate_limited"].values()) == 0


def test_several_numbers_dial_faster_than_one_could(two_numbers):
    """All 24 were created in less time than one number at CPS 2 needs for them."""
    _, stats = two_numbers
    times = sorted(call["created_at"] for call in stats["calls"])
    one_number_at_best = (len(times) - 1) / NUMBER_CPS
    assert times[-1] - times[0] < one_number_at_best


def test_a_destination_goes_only_to_a_number_that_may_call_it(two_numbers):
    """The British contacts were called from Twilio, the only number allowed to."""
    _, stats = two_numbers
    callers = {c["from_number"] for c in stats["calls"] if c["to_number"] in GB_NUMBERS}
    assert callers == {TWILIO}


async def test_every_number_is_checked_before_dialling(prefect_server, sandbox):
    """A number not on the account, or one whose provider allows less than `cps`,
    stops the campaign before the first call."""
    contacts = contacts_file([{"phone": "+14155550410"}])
    common = dict(contacts=contacts, credentials=credentials_for(sandbox))
    with pytest.raises(RetellConfigurationError, match=r"\+\*+9999 is not a phone"):
        await outbound_campaign(from_numbers=[TELNYX, "+16505559999"], **common)
    with pytest.raises(
        RetellConfigurationError,
        match=r"cps=6 is above the 5 calls per second that a retell-twilio number "
        r"allows \(\+\*+0100\)",
    ):
        await outbound_campaign(from_numbers=[TELNYX, TWILIO], cps=6, **common)
    with pytest.raises(RetellConfigurationError, match="Give from_number or"):
        await outbound_campaign(**common)
    assert sandbox.sandbox.stats()["calls"] == []


async def test_resume_finds_calls_whichever_number_placed_them(prefect_server, sandbox):
    """Run with two numbers, then resume with one: nobody is dialled again.

    Calls still live at the deadline are reported timed_out and not recorded as
    final, so the resumed run must find them at Retell by the campaign's
    metadata, including those the dropped number placed.
    """
    stuck = _numbers(600, 6)
    plain = _numbers(610, 4)
    for number in stuck:
        sandbox.sandbox.set_outcome(
            number, Outcome(kind="stuck_ongoing", ring_seconds=1)
        )
    campaign_id = f"test-numbers-resume-{uuid4().hex[:12]}"
    common = dict(
        contacts=contacts_file([{"phone": number} for number in stuck + plain]),
        credentials=credentials_for(sandbox),
        cps=NUMBER_CPS,
        campaign_id=campaign_id,
        poll_interval_seconds=0.05,
        call_timeout_seconds=1.0,
    )
    first = await outbound_campaign(from_numbers=[TWILIO, TELNYX], **common)
    placed = sandbox.sandbox.stats()["calls"]
    assert Counter(r.outcome for r in first.rows) == {"timed_out": 6, "called": 4}
    # The premise: the number dropped below placed some of the stuck calls.
    assert any(c["from_number"] == TWILIO and c["to_number"] in stuck for c in placed)

    again = await outbound_campaign(from_numbers=[TELNYX], **common)

    assert len(sandbox.sandbox.stats()["calls"]) == len(placed)
    call_ids = {c["to_number"]: c["call_id"] for c in placed}
    assert {r.to_number: r.call_id for r in again.rows} == call_ids
