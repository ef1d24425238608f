"""What the staff board shows, and the bodies of staff actions (docs/staff-board.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import bounded

Note = Annotated[str, bounded(512)]
Reason = Annotated[str, bounded(128, min_length=1)]


class SocketTile(BaseModel):
    port: int
    state: str
    since_ms: int
    w: float | None = Field(description="live power; null when no live reading is fresh")
    session_id: str | None
    session_wh: int | None
    session_started_ms: int | None
    temp_c: float | None
    relay: bool | None
    disabled_reason: str | None
    bay: int | None = Field(description="the parking bay next to this socket")
    bay_occupied: bool | None


class BayTile(BaseModel):
    number: int
    port: int | None
    occupied: bool
    since_ms: int
    idle_occupied: bool = Field(description="occupied while its socket is not charging")


class ShedBoard(BaseModel):
    shed_id: str
    name: str
    compound_id: str
    online: bool
    last_seen_ms: int | None
    live_ms: int | None = Field(description="when the newest live snapshot was taken")
    live_fresh: bool
    power_w: float
    states: dict[str, int]
    active_alarms: int
    sockets: list[SocketTile]
    bays: list[BayTile]


class BoardView(BaseModel):
    now_ms: int
    sheds: list[ShedBoard]


AlarmSource = Literal["shed", "api"]


class AlarmView(BaseModel):
    shed_id: str
    id: str
    kind: str
    source: AlarmSource = Field(description="raised by the shed, or by the API itself")
    raised_ms: int
    detail: str
    port: int | None
    bay: int | None
    active: bool
    acked_ms: int | None
    acked_by: str | None
    note: str | None
    cleared_ms: int | None
    ack_pending: bool = Field(description="acknowledged on the board, the shed has not confirmed")


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Annotated[str, bounded(512, min_length=1)]


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Note = ""


class DisableIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


class AuditView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at_ms: int
    actor: str
    compound_id: str | None
    shed_id: str | None
    action: str
    target: str
    note: str | None
    data: dict[str, Any] | None
    result: Literal["ok", "pending", "failed"]
    result_code: str | None
    result_message: str | None
    result_ms: int | None
    command_id: str | None


class ActionAnswer(BaseModel):
    """A staff action: its audit row (`result` is `pending` until the shed answers)."""

    audit: AuditView
