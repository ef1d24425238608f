"""A shed's live snapshot (docs/uplink-contract.md, "Live snapshots")."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Fen, Ms, Port, Ref, Watts, Wh, bounded

MAX_LIVE_ITEMS = 1000


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class LivePort(_Strict):
    port: Port
    state: Annotated[str, bounded(16, min_length=1)]
    since: Ms
    w: Watts | None = None
    temp_c: Annotated[float, Field(ge=-60, le=300, allow_inf_nan=False)] | None = None
    relay: bool | None = None
    session: Ref | None = None
    session_wh: Wh | None = None
    session_started_ms: Ms | None = None
    session_cost_fen: Fen | None = None
    disabled_reason: Annotated[str, bounded(128)] | None = None


class LiveBay(_Strict):
    bay: Port
    occupied: bool
    since: Ms
    port: Port | None = None


class LiveIn(_Strict):
    taken_ms: Ms
    ports: Annotated[list[LivePort], Field(max_length=MAX_LIVE_ITEMS)]
    bays: Annotated[list[LiveBay], Field(max_length=MAX_LIVE_ITEMS)] = []


class LiveAnswer(BaseModel):
    stored: bool = Field(description="false: the API holds a snapshot taken later")
