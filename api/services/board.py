"""The staff board's data: every shed a principal may see, each socket and bay
merged from the records (state changes, at once) and the newest live
snapshot (power, energy, temperature, relay; every few seconds).

Per socket, the state comes from whichever is newer: the socket record or the
snapshot. Measurements come from the snapshot while it is fresh
(`board_live_stale_s`), else they are unknown (None), never old numbers
shown as live.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.access import Principal, require_compound, require_role
from api.errors import NotFound
from api.models import Alarm, Bay, LiveSnapshot, Shed, Socket
from api.repos import alarms as alarm_repo
from api.repos import board as board_repo
from api.repos import sockets as socket_repo
from api.schemas.board import AlarmView, BayTile, BoardView, ShedBoard, SocketTile
from api.services.api_alarms import API_ALARM_KINDS

CHARGING_STATES: Final = frozenset({"authorized", "charging", "floating", "finishing"})
BOARD_ROLES: Final = ("staff",)


@dataclass(frozen=True, slots=True)
class BoardTimes:
    now_ms: int
    offline_after_ms: int
    stale_after_ms: int


def visible_sheds(db: Session, principal: Principal, shed_id: str | None = None) -> list[Shed]:
    """The sheds of the principal's staff compounds (one, with `shed_id`)."""
    require_role(principal, *BOARD_ROLES)
    compounds = principal.compounds(*BOARD_ROLES)
    query = select(Shed).order_by(Shed.compound_id, Shed.id)
    if compounds is not None:
        query = query.where(Shed.compound_id.in_(sorted(compounds)))
    if shed_id is not None:
        query = query.where(Shed.id == shed_id)
    found = list(db.scalars(query).all())
    if shed_id is not None and not found:
        shed = db.get(Shed, shed_id)
        if shed is None:
            raise NotFound(f"no shed {shed_id}", code="unknown_shed")
        require_compound(principal, shed.compound_id, *BOARD_ROLES)
    return found


def board(
    db: Session,
    principal: Principal,
    times: BoardTimes,
    *,
    shed_id: str | None = None,
    state: str | None = None,
) -> BoardView:
    sheds = visible_sheds(db, principal, shed_id)
    snaps = board_repo.snapshots(db, [s.id for s in sheds])
    boards = [shed_board(db, s, snaps.get(s.id), times) for s in sheds]
    if state is not None:
        for b in boards:
            b.sockets = [t for t in b.sockets if t.state == state]
    return BoardView(now_ms=times.now_ms, sheds=boards)


def shed_board(db: Session, shed: Shed, snap: LiveSnapshot | None, times: BoardTimes) -> ShedBoard:
    online = shed.last_seen_ms is not None and times.now_ms - shed.last_seen_ms <= (
        times.offline_after_ms
    )
    fresh = snap is not None and times.now_ms - snap.received_ms <= times.stale_after_ms
    live: dict[str, Any] = snap.data if snap is not None else {}
    live_ports = {int(p["port"]): p for p in live.get("ports", [])}
    live_bays = {int(b["bay"]): b for b in live.get("bays", [])}
    bays = _bays(socket_repo.list_bays(db, shed.id), live_bays, snap)
    bay_of_port = {b.port: b for b in bays if b.port is not None}
    rows = {s.port: s for s in socket_repo.list_sockets(db, shed.id)}
    tiles = [
        _tile(port, rows.get(port), live_ports.get(port), snap, fresh, bay_of_port.get(port))
        for port in sorted({*rows, *live_ports})
    ]
    charging = {t.port for t in tiles if t.state in CHARGING_STATES}
    for b in bays:
        b.idle_occupied = b.occupied and b.port is not None and b.port not in charging
    return ShedBoard(
        shed_id=shed.id,
        name=shed.name,
        compound_id=shed.compound_id,
        online=online,
        last_seen_ms=shed.last_seen_ms,
        live_ms=snap.taken_ms if snap is not None else None,
        live_fresh=fresh,
        power_w=round(sum(t.w or 0.0 for t in tiles), 1),
        states=dict(Counter(t.state for t in tiles)),
        active_alarms=alarm_repo.count_active_alarms(db, shed.id),
        sockets=tiles,
        bays=bays,
    )


def _tile(
    port: int,
    row: Socket | None,
    live: dict[str, Any] | None,
    snap: LiveSnapshot | None,
    fresh: bool,
    bay: BayTile | None,
) -> SocketTile:
    record_newer = row is not None and (
        snap is None or not fresh or live is None or (row.reported_ms or 0) > snap.taken_ms
    )
    if record_newer:
        assert row is not None
        state, since, reason = row.state, row.since_ms, row.disabled_reason
    else:
        assert live is not None
        state, since, reason = live["state"], live["since"], live.get("disabled_reason")
    measured = live if fresh and live is not None else {}
    return SocketTile(
        port=port,
        state=state,
        since_ms=since,
        w=measured.get("w"),
        session_id=measured.get("session") or (row.session_id if row is not None else None),
        session_wh=measured.get("session_wh"),
        session_started_ms=measured.get("session_started_ms"),
        temp_c=measured.get("temp_c"),
        relay=measured.get("relay"),
        disabled_reason=reason if state == "disabled" else None,
        bay=bay.number if bay is not None else None,
        bay_occupied=bay.occupied if bay is not None else None,
    )


def _bays(
    rows: Sequence[Bay], live: dict[int, dict[str, Any]], snap: LiveSnapshot | None
) -> list[BayTile]:
    tiles = []
    for row in rows:
        seen = live.get(row.number)
        newer = seen is not None and snap is not None and snap.taken_ms > (row.reported_ms or 0)
        occupied, since = (
            (seen["occupied"], seen["since"]) if newer and seen else (row.occupied, row.since_ms)
        )
        tiles.append(BayTile(number=row.number, port=row.port, occupied=occupied,
                             since_ms=since, idle_occupied=False))  # fmt: skip
    return tiles


# ---------------------------------------------------------------- alarms


def alarm_view(alarm: Alarm) -> AlarmView:
    return AlarmView(
        shed_id=alarm.shed_id,
        id=alarm.id,
        kind=alarm.kind,
        source="api" if alarm.kind in API_ALARM_KINDS else "shed",
        raised_ms=alarm.raised_ms,
        detail=alarm.detail,
        port=alarm.port,
        bay=alarm.bay,
        active=alarm.active,
        acked_ms=alarm.acked_ms,
        acked_by=alarm.acked_by,
        note=alarm.note,
        cleared_ms=alarm.cleared_ms,
        ack_pending=alarm.ack_command_id is not None and alarm.acked_ms is None,
    )


def alarms(
    db: Session,
    principal: Principal,
    *,
    shed_id: str | None = None,
    open_only: bool = True,
    limit: int = 200,
) -> list[AlarmView]:
    """Newest first. `open_only`: still active, or not yet acknowledged."""
    sheds = [s.id for s in visible_sheds(db, principal, shed_id)]
    rows = alarm_repo.alarms_of(db, sheds, open_only=open_only, limit=limit)
    return [alarm_view(a) for a in rows]
