"""Uplink records (docs/uplink-contract.md) and the data each kind carries.

The envelope and every `data` are validated strictly (no "5" for 5, no 5.0
for an amount of fen): a record that does not validate is rejected with a
code, never stored half-way. Unknown extra fields in `data` are kept (the
session row stores everything the shed sent) so newer controllers can add
fields without being rejected.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from api.schemas.common import Fen, Ms, Port, Ref, Watts, Wh, bounded
from controller.core.fsm import SocketState

MAX_RECORDS: Final = 500
RECORD_KINDS: Final = ("session", "socket", "alarm", "bay", "demand", "tariff")
RecordKind = Literal["session", "socket", "alarm", "bay", "demand", "tariff"]

SOCKET_STATES: Final = frozenset(state.value for state in SocketState)


class UplinkBody(BaseModel):
    """Records stay raw here: one bad record must not fail the whole batch."""

    records: list[Any]


class Rejection(BaseModel):
    id: str | None
    code: str
    message: str


class UplinkAnswer(BaseModel):
    applied: list[str]
    duplicates: list[str]
    rejected: list[Rejection]


class RecordEnvelope(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    id: Ref
    kind: Annotated[str, bounded(16, min_length=1)]
    key: Ref
    version: Annotated[int, Field(strict=True, ge=1, le=2**62)]
    ts: Ms
    data: dict[str, Any]


# ---------------------------------------------------------------- data per kind


class AuthData(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    kind: Literal["order", "card", "plan"]
    ref: Ref
    prepaid_fen: Fen | None = None
    mode: Literal["until_full", "amount"] = "until_full"


class SessionData(BaseModel):
    """A charging session as the controller stores it (controller/store.py).

    `auth` may come nested (`{"kind", "ref", "prepaid_fen", "mode"}`, as the
    controller's local API shows it) or flat (`auth_kind`, `auth_ref`,
    `auth_mode`, `prepaid_fen`, as its database row has it).
    """

    model_config = ConfigDict(strict=True, extra="allow")

    id: Ref | None = None
    port: Port
    auth: AuthData
    order_no: Ref | None = None
    tariff: dict[str, Any] | None = None
    started_ms: Ms
    stop_ms: Ms | None = None
    ended_ms: Ms | None = None
    end_reason: Annotated[str, bounded(32)] | None = None
    first_wh: Wh | None = None
    last_wh: Wh | None = None
    energy_wh: Wh = 0
    peak_w: Watts = 0.0
    billed_fen: Fen = 0
    refund_fen: Fen = 0
    flags: list[Annotated[str, bounded(64)]] = Field(default_factory=list)
    bill: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _flat_auth(cls, value: Any) -> Any:
        if isinstance(value, dict) and "auth" not in value and "auth_kind" in value:
            value = dict(value)
            value["auth"] = {
                "kind": value.get("auth_kind"),
                "ref": value.get("auth_ref"),
                "prepaid_fen": value.get("prepaid_fen"),
                "mode": value.get("auth_mode", "until_full"),
            }
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SessionData:
        if self.ended_ms is not None and self.ended_ms < self.started_ms:
            raise ValueError("ended_ms is before started_ms")
        prepaid = self.auth.prepaid_fen
        if prepaid is not None and self.refund_fen > prepaid:
            raise ValueError(f"refund_fen {self.refund_fen} exceeds prepaid_fen {prepaid}")
        return self

    @property
    def effective_order_no(self) -> str | None:
        if self.order_no is not None:
            return self.order_no
        return self.auth.ref if self.auth.kind == "order" else None


class SocketData(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    port: Port
    state: Annotated[str, bounded(16, min_length=1)]
    since: Ms = Field(validation_alias=AliasChoices("since", "since_ms"))
    disabled_reason: Annotated[str, bounded(128)] | None = None
    session: Ref | None = Field(None, validation_alias=AliasChoices("session", "session_id"))
    w: Watts | None = Field(None, validation_alias=AliasChoices("w", "power_w"))

    @model_validator(mode="after")
    def _known_state(self) -> SocketData:
        if self.state not in SOCKET_STATES:
            raise ValueError(f"unknown socket state {self.state!r}")
        return self


class AlarmData(BaseModel):
    """An alarm as controller/core/model.py has it."""

    model_config = ConfigDict(strict=True, extra="ignore")

    id: Ref | None = None
    kind: Annotated[str, bounded(32, min_length=1)]
    raised_ms: Ms
    detail: Annotated[str, bounded(256)] = ""
    port: Port | None = None
    bay: Port | None = None
    board: Ref | None = None
    sensor: Ref | None = None
    active: bool
    acked_ms: Ms | None = None
    acked_by: Ref | None = None
    note: Annotated[str, bounded(512)] | None = None
    cleared_ms: Ms | None = None


class BayData(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    bay: Port = Field(validation_alias=AliasChoices("bay", "number"))
    occupied: bool
    since: Ms = Field(validation_alias=AliasChoices("since", "since_ms"))
    port: Port | None = None


class DemandData(BaseModel):
    """A card tap the shed refused for want of a free socket (docs/reports.md)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    source: Literal["card"]
    port: Port
    reason: Annotated[str, bounded(32, min_length=1)]
    card: Annotated[str, bounded(20, min_length=1)]
    at_ms: Ms


class TariffData(BaseModel):
    """The tariff the shed bills new sessions at (key `current`), sent at start and
    on every change: the posted price is this one (api/services/orders_pricing.py)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    tariff: dict[str, Any]
