"""End reasons and alarm kinds, grouped for the report: the one place that maps
the edge core's strings (controller/core/shed.py, chargeend.py) to report groups.

Groups: full, unplugged, money used up, safety trip, stopped (by the
resident, a card tap or staff), other (caps, no load, device offline, ...).
An end reason this table does not know is `other`, never dropped.
"""

from __future__ import annotations

from typing import Final, Literal

EndGroup = Literal["full", "unplugged", "money", "safety", "stopped", "other"]
END_GROUPS: Final[tuple[EndGroup, ...]] = (
    "full",
    "unplugged",
    "money",
    "safety",
    "stopped",
    "other",
)

# Alarm kinds that trip a socket or cut the shed: each raised alarm is an incident.
SAFETY_ALARMS: Final = frozenset(
    {"overpower", "overtemp", "relay_fault", "smoke", "env_overtemp", "water"}
)

_GROUPS: Final[dict[str, EndGroup]] = {
    "full": "full",
    "unplugged": "unplugged",
    "money_used_up": "money",
    **dict.fromkeys(SAFETY_ALARMS, "safety"),
    **dict.fromkeys(
        (
            "button",
            "card_stop",
            "resident",
            "operator",
            "staff",
            "central",
            "disabled",
            "order_refunded",
        ),
        "stopped",
    ),
}


def end_group(reason: str | None) -> EndGroup:
    """The report group of a session's end reason."""
    if reason is None:
        return "other"
    return _GROUPS.get(reason, "other")


def is_incident(alarm_kind: str) -> bool:
    return alarm_kind in SAFETY_ALARMS


def reasons_in(group: EndGroup) -> tuple[str, ...]:
    """The end reasons this table puts in `group` (`other` also takes any unknown one)."""
    return tuple(sorted(reason for reason, g in _GROUPS.items() if g == group))
