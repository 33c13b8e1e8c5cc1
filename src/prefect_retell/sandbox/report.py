"""Reading a sandbox's record: how fast calls were created, and how evenly."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

__all__ = ["CreationReport", "creation_report"]


class CreationReport(BaseModel):
    """How the calls from one number were paced, as the sandbox recorded them.

    Attributes:
        calls: Calls created.
        most_in_one_second: The most creations in any one-second window.
        mean_rate: Calls per second from the first creation to the last.
        rate_limited: 429 answers the sandbox sent, by cause.
    """

    calls: int
    most_in_one_second: int
    mean_rate: float
    rate_limited: dict[str, int]

    def describe(self) -> str:
        """One sentence for a person."""
        return (
            f"{self.calls} calls created, at most {self.most_in_one_second} in any "
            f"one-second window, {self.mean_rate:.2f} calls/s from first to last; "
            f"429 answers: {sum(self.rate_limited.values())} "
            f"(cps {self.rate_limited.get('cps', 0)}, "
            f"concurrency {self.rate_limited.get('concurrency', 0)})."
        )


def creation_report(stats: dict[str, Any], from_number: str) -> CreationReport:
    """Summarise `Sandbox.stats()` for the calls placed from `from_number`."""
    times = sorted(
        call["created_at"]
        for call in stats["calls"]
        if call["from_number"] == from_number
    )
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return CreationReport(
        calls=len(times),
        most_in_one_second=most_in_one_second(times),
        mean_rate=(len(times) - 1) / span if span else 0.0,
        rate_limited=dict(stats["rate_limited"]),
    )


def most_in_one_second(times: list[float]) -> int:
    """The most moments of a sorted list that fit in any window of one second."""
    most, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most
