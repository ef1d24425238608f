"""What a resident sees at the QR code, before paying: the shed, the socket,
whether it can be paid for, and the posted price (complaint 7).

The price of a shed is what the shed bills new sessions at. The shed says so
itself: a `tariff` uplink record at start and on every change (its config's
`[tariff]`, or the one the central API sent it). A `tariff` command the shed
carried out after its last such record is newer still (its record is on the
way). Only a shed that never reported a tariff (an older controller) is shown
the newest tariff stored for its compound, else the controller's default
(1 元 per 4 h).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from sqlalchemy.orm import Session

from api.errors import NotFound
from api.models import Shed
from api.repos import compounds, sheds, sockets
from api.repos import orders as order_repo
from api.schemas.public import NotPayable, PublicShed, PublicSocket
from api.settings import ApiSettings
from controller.core.tariffs import Tariff, TariffError, default_tariff, describe, tariff_from_dict

log = logging.getLogger(__name__)

FREE_STATE: Final = "idle"
# Socket states (controller.core.fsm.SocketState) and why a socket in them cannot be paid for.
NOT_PAYABLE: Final[dict[str, NotPayable]] = {
    "authorized": "busy",
    "charging": "busy",
    "floating": "busy",
    "finishing": "busy",
    "fault": "fault",
    "offline": "offline",
    "disabled": "disabled",
}


def shed_online(shed: Shed, now_ms: int, settings: ApiSettings) -> bool:
    """Heard from within `shed_offline_after_s` (as /status says)."""
    last = shed.last_seen_ms
    return last is not None and now_ms - last <= settings.shed_offline_after_s * 1000


def socket_reason(state: str, *, online: bool, paid_order: bool) -> NotPayable | None:
    """None if a socket in `state` can be paid for, else why not.

    `paid_order`: a paid order holds the socket (its start is on the way)."""
    if not online:
        return "shed_offline"
    if state == FREE_STATE:
        return "busy" if paid_order else None
    return NOT_PAYABLE.get(state, "busy")


def shed_tariff(db: Session, shed: Shed) -> Tariff:
    """The price new sessions of this shed are billed at (see the module doc)."""
    command = order_repo.acknowledged_tariff_command(db, shed.id)
    reported = _reported_tariff(shed)
    if reported is not None and (
        command is None or (command.result_ms or 0) <= (shed.tariff_received_ms or 0)
    ):
        return reported
    if command is not None:
        try:
            return tariff_from_dict(command.data)
        except TariffError:
            log.warning("shed %s: tariff command %s does not parse", shed.id, command.id)
    stored = order_repo.newest_compound_tariff(db, shed.compound_id)
    if stored is not None:
        try:
            return tariff_from_dict(stored.body)
        except TariffError:
            log.warning("tariff %s v%s does not parse", stored.id, stored.version)
    return default_tariff()


def _reported_tariff(shed: Shed) -> Tariff | None:
    if shed.tariff is None:
        return None
    try:
        return tariff_from_dict(shed.tariff)
    except TariffError:
        log.warning("shed %s: reported tariff does not parse", shed.id)
        return None


def price_of(tariff: Tariff) -> dict[str, Any]:
    return dict(describe(tariff))


def _shed(db: Session, shed_id: str) -> Shed:
    shed = sheds.get_shed(db, shed_id)
    if shed is None:
        raise NotFound(f"no shed {shed_id}", code="unknown_shed")
    return shed


def public_shed(db: Session, shed_id: str, *, now_ms: int, settings: ApiSettings) -> PublicShed:
    shed = _shed(db, shed_id)
    online = shed_online(shed, now_ms, settings)
    socket_rows = sockets.list_sockets(db, shed.id)
    bay_rows = sockets.list_bays(db, shed.id)
    taken = order_repo.paid_ports(db, shed.id)
    compound = compounds.get_compound(db, shed.compound_id)
    free = sum(
        1
        for s in socket_rows
        if socket_reason(s.state, online=online, paid_order=s.port in taken) is None
    )
    return PublicShed(
        shed=shed.id,
        name=shed.name,
        compound=compound.name if compound is not None else shed.compound_id,
        free_sockets=free,
        total_sockets=len(socket_rows),
        free_bays=sum(1 for b in bay_rows if not b.occupied),
        total_bays=len(bay_rows),
        online=online,
        price=price_of(shed_tariff(db, shed)),
    )


def public_socket(
    db: Session, shed_id: str, port: int, *, now_ms: int, settings: ApiSettings
) -> PublicSocket:
    shed = _shed(db, shed_id)
    socket = sockets.get_socket(db, shed.id, port)
    if socket is None:
        raise NotFound(f"no socket {port} in shed {shed_id}", code="unknown_socket")
    online = shed_online(shed, now_ms, settings)
    reason = socket_reason(
        socket.state, online=online, paid_order=port in order_repo.paid_ports(db, shed.id)
    )
    return PublicSocket(
        shed=shed.id,
        shed_name=shed.name,
        port=port,
        state=socket.state,
        payable=reason is None,
        reason=reason,
        price=price_of(shed_tariff(db, shed)),
        deposit_fen=settings.order_deposit_fen,
        amounts_fen=list(settings.order_amounts_fen),
    )
