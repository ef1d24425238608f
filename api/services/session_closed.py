"""What happens when a session record closes. Today: it is recorded.

The orders and refunds flow (api/payments) adds its own handler next to this
one (see api/services/hooks.py): find the order by `session.order_no`, settle
it from `billed_fen` / `refund_fen`, refund the unused money.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from api.services.events import ClosedSession

log = logging.getLogger(__name__)


def on_session_closed(db: Session, closed: ClosedSession) -> None:
    """Note when the central API learned that the session closed."""
    session = closed.session
    session.closed_received_ms = closed.now_ms
    log.info(
        "session closed: shed=%s session=%s port=%s order=%s reason=%s energy_wh=%s "
        "billed_fen=%s refund_fen=%s",
        closed.shed_id,
        session.id,
        session.port,
        session.order_no,
        session.end_reason,
        session.energy_wh,
        session.billed_fen,
        session.refund_fen,
    )
