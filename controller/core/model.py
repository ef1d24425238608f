"""Values the core works with and hands out: sessions, alarms, cards, actions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from controller.core.anomaly import AnomalyDetector
from controller.core.chargeend import ChargeEndDetector
from controller.core.tariffs import Bill, Tariff, Usage
from firmware_bridge.messages import PortCommand

AuthKind = Literal["order", "card", "plan"]
AuthMode = Literal["until_full", "amount"]


@dataclass(frozen=True, slots=True)
class Authorization:
    """Why a session may start. `prepaid_fen` None means no money limit (a plan)."""

    kind: AuthKind
    ref: str  # order number, card uid or plan id
    prepaid_fen: int | None
    mode: AuthMode = "until_full"


@dataclass(slots=True)
class Card:
    uid: str
    balance_fen: int = 0
    plan_until_ms: int | None = None  # monthly plan (包月) valid until
    blocked: bool = False

    def plan_valid(self, now_ms: int) -> bool:
        return self.plan_until_ms is not None and now_ms < self.plan_until_ms


@dataclass(slots=True)
class Session:
    id: str
    port: int
    auth: Authorization
    tariff: Tariff
    started_ms: int
    usage: Usage
    detector: ChargeEndDetector
    first_wh: int | None = None
    last_wh: int | None = None
    energy_wh: int = 0
    w: float = 0.0
    peak_w: float = 0.0
    stop_ms: int | None = None
    ended_ms: int | None = None
    end_reason: str | None = None
    lease_until_ms: int = 0
    last_renew_ms: int = 0
    last_checkpoint_ms: int = 0
    next_money_check_ms: int = 0  # the prepaid limit cannot be reached before this
    flags: set[str] = field(default_factory=set)
    reasons: list[tuple[int, str, str]] = field(default_factory=list)  # (ms, state, reason)
    bill: Bill | None = None
    charged_fen: int = 0
    refund_fen: int = 0
    anomaly: AnomalyDetector | None = None  # charge-curve checks (None: not watched)

    @property
    def open(self) -> bool:
        return self.ended_ms is None


@dataclass(slots=True)
class Alarm:
    id: str
    kind: (
        str  # smoke, env_overtemp, water, overpower, overtemp, relay_fault, board_offline,
        # bay_idle, anomaly_* (controller/core/anomaly.py)
    )
    raised_ms: int
    detail: str
    port: int | None = None
    bay: int | None = None
    board: str | None = None
    sensor: str | None = None
    active: bool = True  # the condition still holds
    acked_ms: int | None = None
    acked_by: str | None = None
    note: str | None = None
    cleared_ms: int | None = None

    @property
    def cuts_shed(self) -> bool:
        return self.kind in SHED_CUT_ALARMS


SHED_CUT_ALARMS = frozenset(("smoke", "env_overtemp", "water"))


# ---- actions: what the core asks the adapters to do -------------------------


@dataclass(frozen=True, slots=True)
class SendCommand:
    cmd: PortCommand


@dataclass(frozen=True, slots=True)
class PublishState:
    port: int
    state: str
    session: str | None
    w: float
    session_wh: int
    since: int


@dataclass(frozen=True, slots=True)
class SessionOpened:
    session: Session


@dataclass(frozen=True, slots=True)
class SessionCheckpoint:
    session: Session


@dataclass(frozen=True, slots=True)
class SessionClosed:
    session: Session


@dataclass(frozen=True, slots=True)
class AlarmChanged:
    alarm: Alarm


@dataclass(frozen=True, slots=True)
class CardDebited:
    uid: str
    fen: int
    balance_fen: int
    session_id: str


@dataclass(frozen=True, slots=True)
class CardRefused:
    uid: str
    port: int
    reason: str


@dataclass(frozen=True, slots=True)
class BayChanged:
    bay: int
    occupied: bool
    since_ms: int


Action = (
    SendCommand
    | PublishState
    | BayChanged
    | SessionOpened
    | SessionCheckpoint
    | SessionClosed
    | AlarmChanged
    | CardDebited
    | CardRefused
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An expected 'no' to a start request: a value, not an exception."""

    code: str  # busy, offline, disabled, fault, safety_lockout, over_budget, ...
    message: str
