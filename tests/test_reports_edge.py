"""The shed's side of unserved demand: card taps refused for want of a free
socket become `demand` outbox records (controller/uplink_records.py, pure)."""

from __future__ import annotations

import pytest

from controller.core.model import CardRefused
from controller.uplink_records import RecordMaker

T = 1_795_341_000_000


@pytest.mark.parametrize(
    "reason",
    [
        "authorized",
        "charging",
        "floating",
        "finishing",
        "fault",
        "disabled",
        "offline",
        "over_budget",
    ],
)
def test_refusals_for_want_of_room_are_demand_records(reason: str) -> None:
    records = RecordMaker().records_for(CardRefused("A1B2C3D4", 7, reason), T)
    assert records == [
        (
            "demand",
            f"card-7-{T}",
            T,
            {"source": "card", "port": 7, "reason": reason, "card": "A1B2C3D4", "at_ms": T},
        ),
    ]


@pytest.mark.parametrize(
    "reason",
    [
        "unknown_card",
        "blocked",
        "ambiguous_card",
        "insufficient_balance",
        "safety_lockout",
        "no_meter_reading",
        "no_money",
    ],
)
def test_other_refusals_are_not_demand(reason: str) -> None:
    assert RecordMaker().records_for(CardRefused("A1B2C3D4", 7, reason), T) == []
