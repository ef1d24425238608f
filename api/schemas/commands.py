"""Commands from the central API to a shed (docs/uplink-contract.md), and their results."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Fen, Ms, Port, Ref, bounded

CommandKind = Literal[
    "start_session", "stop_session", "disable", "enable", "tariff", "cards", "ack_alarm"
]
COMMAND_KINDS: Final[tuple[CommandKind, ...]] = (
    "start_session",
    "stop_session",
    "disable",
    "enable",
    "tariff",
    "cards",
    "ack_alarm",
)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class StartSessionData(_Strict):
    port: Port
    order_no: Ref
    prepaid_fen: Annotated[int, Field(strict=True, ge=1, le=100_000)]
    mode: Literal["until_full", "amount"] = "until_full"


class StopSessionData(_Strict):
    """Stop the socket's session; with `session_id` or `order_no`, only that one
    (the shed answers `session_changed` if another runs there by then)."""

    port: Port
    reason: Annotated[str, bounded(32, min_length=1)] = "staff"
    session_id: Ref | None = None
    order_no: Ref | None = None


class PortReasonData(_Strict):
    """`disable` and `enable`."""

    port: Port
    reason: Annotated[str, bounded(128)] = ""


class CardData(_Strict):
    """A card to add or change; a field left null keeps what the shed has.
    `balance_fen` sets the balance, `top_up_fen` adds to it (once per command)."""

    uid: Annotated[str, bounded(20, min_length=1)]
    balance_fen: Fen | None = None
    top_up_fen: Fen | None = None
    plan_until_ms: Ms | None = None
    blocked: bool | None = None


class CardsData(_Strict):
    cards: list[CardData]


class AckAlarmData(_Strict):
    """Staff acknowledged the shed's alarm `alarm_id` (a smoke lockout ends only then)."""

    alarm_id: Ref
    by: Annotated[str, bounded(64, min_length=1)]
    note: Annotated[str, bounded(512)] = ""


# `tariff` data is a tariff dict, validated by controller.core.tariffs.tariff_from_dict.
COMMAND_DATA: Final[dict[str, type[BaseModel]]] = {
    "start_session": StartSessionData,
    "stop_session": StopSessionData,
    "disable": PortReasonData,
    "enable": PortReasonData,
    "cards": CardsData,
    "ack_alarm": AckAlarmData,
}


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # unknown fields are refused, not dropped
    kind: CommandKind
    data: dict[str, Any]


class CommandView(BaseModel):
    """A command as the shed receives it."""

    id: str
    seq: int
    kind: str
    created_ms: int
    data: dict[str, Any]


class CommandsAnswer(BaseModel):
    commands: list[CommandView]


class CommandResultIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    ok: bool
    code: Annotated[str, bounded(64)] | None = None
    message: Annotated[str, bounded(512)] | None = None
    data: dict[str, Any] | None = None


class CommandStatus(CommandView):
    """A command with what became of it (admin view)."""

    shed_id: str
    delivered_ms: int | None
    result_ok: bool | None
    result_code: str | None
    result_message: str | None
    result_data: dict[str, Any] | None
    result_ms: int | None
