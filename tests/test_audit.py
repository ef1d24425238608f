"""The audit log (api/services/audit.py): every command sent through the API and
every money movement is a row, results are new rows, and the database itself
refuses to change or delete a row (PostgreSQL and SQLite triggers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DatabaseError

from api.models import AuditEntry
from tests.test_orders_harness import pay_env

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db"]


def rows(session_factory: object) -> list[tuple[str, str, str, str]]:
    with session_factory() as db:  # type: ignore[operator]
        found = db.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        return [(e.actor, e.action, e.target, e.result) for e in found]


async def test_an_admin_token_command_is_audited_and_its_result_is_a_new_row(api: Api) -> None:
    shed_id, shed = await api.register_shed()
    made = await api.client.post(
        f"/api/v1/admin/sheds/{shed_id}/commands",
        json={"kind": "disable", "data": {"port": 2, "reason": "loose"}},
        headers=api.admin,
    )
    assert made.status_code == 201, made.text
    command_id = made.json()["id"]
    sessions = api.app.state.ctx.sessions
    assert rows(sessions) == [("admin-token", "disable", "port 2", "pending")]
    answer = await api.client.post(
        f"/api/v1/sheds/{shed_id}/commands/{command_id}/result",
        json={"ok": True, "data": {}},
        headers=shed,
    )
    assert answer.status_code == 200, answer.text
    assert rows(sessions) == [
        ("admin-token", "disable", "port 2", "pending"),  # as it was written
        ("shed", "result", "port 2", "ok"),
    ]
    with sessions() as db:
        first, result = db.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        assert result.data == {"of": first.id} and result.command_id == command_id
    staff = await api.user("staff", "demo")
    listed = (await api.client.get("/api/v1/staff/audit", headers=staff)).json()
    assert [(e["actor"], e["action"], e["result"]) for e in listed] == [
        ("admin-token", "disable", "ok")
    ]


async def test_the_audit_log_refuses_update_and_delete(api: Api) -> None:
    shed_id, _ = await api.register_shed()
    await api.client.post(
        f"/api/v1/admin/sheds/{shed_id}/commands",
        json={"kind": "enable", "data": {"port": 1}},
        headers=api.admin,
    )
    engine = api.app.state.ctx.engine
    for statement in (
        "UPDATE audit_log SET result = 'ok'",
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
    ):
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    assert rows(api.app.state.ctx.sessions) == [("admin-token", "enable", "port 1", "pending")]


async def test_payments_starts_stops_and_refunds_are_audited(db_url: str) -> None:
    async with pay_env(db_url) as env:
        shed = await env.shed()
        created = await env.new_order(shed, 1)
        no = created["out_trade_no"]
        await env.pay_on_page(created)
        await env.status_becomes(no, "starting")
        run = await env.start(shed, created)
        await run.charge(30, 200.0)
        stop = await env.http.post(f"/api/v1/orders/{no}/stop")
        assert stop.status_code == 202, stop.text
        command = await shed.next_command()
        await shed.answer(command, True)
        await run.close()
        await env.rt.run_once()
        await env.status_becomes(no, "refunded")
        sessions = env.app.state.ctx.sessions
        found = rows(sessions)
        order = f"order {no}"
        assert ("provider", "payment", order, "ok") in found
        assert ("payment", "start_session", "port 1", "pending") in found
        assert ("resident", "stop_session", "port 1", "pending") in found
        assert ("api", "refund", order, "pending") in found
        assert ("provider", "refund_paid", order, "ok") in found
        assert [r for r in found if r[1] == "result"] == [
            ("shed", "result", "port 1", "ok"),
            ("shed", "result", "port 1", "ok"),
        ]
        view = await env.view(no)
        with sessions() as db:
            (paid,) = db.scalars(select(AuditEntry).where(AuditEntry.action == "payment")).all()
            (refund,) = db.scalars(select(AuditEntry).where(AuditEntry.action == "refund")).all()
            assert paid.data is not None and refund.data is not None
            assert paid.data["amount_fen"] == view["paid_fen"]
            assert refund.data["amount_fen"] == view["receipt"]["refund_fen"]
