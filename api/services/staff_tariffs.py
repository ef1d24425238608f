"""Tariff editing by staff: every edit is a new version of the tariff (the
stored versions never change), sent to each shed of the compound as a
`tariff` command. A shed bills new sessions at it from then on; running
sessions keep the tariff they started with (docs/tariffs.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from api.access import Principal, require_compound
from api.errors import Conflict, Invalid
from api.models import AuditEntry, Tariff
from api.repos import orders as order_repo
from api.repos import sheds as shed_repo
from api.repos import tariffs as tariff_repo
from api.services import audit
from api.services.commands import enqueue_command
from api.services.tariffs import store_tariff

ROLES = ("staff",)


def current_tariff(db: Session, principal: Principal, compound_id: str) -> Tariff | None:
    require_compound(principal, compound_id, *ROLES)
    return order_repo.newest_compound_tariff(db, compound_id)


def publish_tariff(
    db: Session,
    principal: Principal,
    compound_id: str,
    body: Mapping[str, Any],
    note: str,
    *,
    now_ms: int,
) -> tuple[Tariff, list[AuditEntry]]:
    """Store `body` as the next version of its tariff id and send it to every shed."""
    require_compound(principal, compound_id, *ROLES)
    tariff_id = body.get("id")
    if not isinstance(tariff_id, str) or not tariff_id:
        raise Invalid("a tariff needs an id", code="tariff_bad_id")
    latest = tariff_repo.latest_tariff(db, tariff_id)
    if latest is not None and latest.compound_id != compound_id:
        raise Conflict(f"tariff {tariff_id} belongs to another compound", code="tariff_taken")
    version = latest.version + 1 if latest is not None else 1
    row = store_tariff(db, {**body, "version": version}, compound_id=compound_id, now_ms=now_ms)
    target = f"tariff {row.id} v{row.version}"
    rows = []
    for shed in shed_repo.list_sheds(db, compound_id):
        command = enqueue_command(db, shed.id, "tariff", row.body, now_ms=now_ms)
        rows.append(audit.record(
            db, principal, action="tariff", target=target, now_ms=now_ms,
            compound_id=compound_id, shed_id=shed.id, note=note, data={"name": row.name},
            result="pending", command_id=command.id,
        ))  # fmt: skip
    if not rows:
        rows.append(audit.record(db, principal, action="tariff", target=target, now_ms=now_ms,
                                 compound_id=compound_id, note=note))  # fmt: skip
    return row, rows
