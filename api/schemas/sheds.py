"""Compounds, sheds and what a shed looks like right now."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Name, PlainId, Port


class CompoundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: PlainId
    name: Name


class CompoundView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    created_ms: int


class BayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: Port
    port: Port | None = None


class ShedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: PlainId
    name: Name
    compound_id: PlainId
    # Known up front (the QR sticker sheet); sheds report the rest as they run.
    ports: list[Port] = Field(default_factory=list, max_length=1000)
    bays: list[BayIn] = Field(default_factory=list, max_length=1000)


class ShedView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    compound_id: str
    created_ms: int
    last_seen_ms: int | None


class ShedRegistered(BaseModel):
    shed: ShedView
    token: str = Field(description="The shed's bearer token. Shown once; only its hash is kept.")


class TokenView(BaseModel):
    token: str


class SocketView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    port: int
    state: str
    since_ms: int
    disabled_reason: str | None
    power_w: float | None


class BayView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    port: int | None
    occupied: bool
    since_ms: int


class ShedStatus(BaseModel):
    shed_id: str
    name: str
    compound_id: str
    online: bool
    last_seen_ms: int | None
    free_sockets: int
    free_bays: int
    active_alarms: int
    sockets: list[SocketView]
    bays: list[BayView]


class SessionView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    port: int
    auth_kind: str
    auth_ref: str
    auth_mode: str
    prepaid_fen: int | None
    order_no: str | None
    tariff_id: str | None
    tariff_version: int | None
    started_ms: int
    stop_ms: int | None
    ended_ms: int | None
    end_reason: str | None
    energy_wh: int
    billed_fen: int
    refund_fen: int
    flags: list[str]
    version: int


class TariffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # unknown fields are refused, not dropped
    compound_id: PlainId | None = None
    tariff: dict[str, Any] = Field(description="A tariff as docs/tariffs.md describes it.")


class TariffView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    version: int
    compound_id: str | None
    name: str
    body: dict[str, Any]
    created_ms: int
