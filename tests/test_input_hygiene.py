"""Input hygiene at the boundary (api/boundary.py): control characters, body
sizes and unknown fields are refused with a problem response before any
route or database sees them. Runs on SQLite and PostgreSQL (NUL was a 500
on PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select

from api.models import AuditEntry, Command, User

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db"]


def count(api: Api, model: type) -> int:
    with api.app.state.ctx.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


async def test_nul_and_control_characters_are_refused_everywhere(api: Api) -> None:
    shed_id, shed = await api.register_shed()
    staff = await api.user("staff", "demo")
    users = count(api, User)
    probes = [
        ("POST", "/api/v1/auth/password", {"login": "wang\u0000", "password": "x"}, {}),
        ("POST", "/api/v1/auth/sms", {"phone": "1380013800\u0000"}, {}),
        ("POST", f"/api/v1/staff/sheds/{shed_id}/sockets/1/disable",
         {"reason": "loose\u0000"}, staff),
        ("POST", f"/api/v1/staff/sheds/{shed_id}/sockets/1/stop", {"note": "bell\u0007"}, staff),
        ("POST", "/api/v1/admin/compounds", {"id": "c1", "name": "小区\u001b[31m"}, api.admin),
        ("POST", "/api/v1/orders", {"shed_id": shed_id, "port": 1, "mode": "until_full",
                                    "phone": "13800138000", "note": "\u0085"}, {}),
    ]  # fmt: skip
    for method, url, body, headers in probes:
        answer = await api.client.request(
            method, url, content=json.dumps(body), headers={**headers,
            "Content-Type": "application/json"},
        )  # fmt: skip
        assert answer.status_code == 422, (url, answer.text)
        assert answer.json()["code"] == "control_character", (url, answer.text)
    # In a shed's uplink batch the record is rejected by itself; the rest applies.
    nul = {"id": "r1", "kind": "alarm", "key": "a-1", "version": 1, "ts": 1,
           "data": {"id": "a-1", "kind": "smoke", "raised_ms": 1, "active": True,
                    "detail": "x\u0000y"}}  # fmt: skip
    fine = {**nul, "id": "r2", "key": "a-2", "data": {**nul["data"], "id": "a-2", "detail": "ok"}}
    uplink = await api.client.post(
        f"/api/v1/sheds/{shed_id}/uplink", json={"records": [nul, fine]}, headers=shed
    )
    assert uplink.status_code == 200, uplink.text
    assert uplink.json()["applied"] == ["r2"]
    assert [(r["id"], r["code"]) for r in uplink.json()["rejected"]] == [("r1", "bad_record")]
    query = await api.client.get("/api/v1/staff/alarms?shed_id=a%00b", headers=staff)
    assert (query.status_code, query.json()["code"]) == (422, "control_character")
    form = await api.client.post(
        f"/board/s/{shed_id}/1/disable", data={"reason": "a\x00b"}, headers=staff
    )
    assert (form.status_code, form.json()["code"]) == (422, "control_character")
    assert (count(api, Command), count(api, AuditEntry), count(api, User)) == (0, 0, users)

    # Tab, newline and carriage return are text, and an escaped backslash is not NUL.
    fine = await api.client.post(
        f"/api/v1/staff/sheds/{shed_id}/sockets/1/disable",
        content=json.dumps({"reason": "line one\nline two\t\\u0000 literally"}),
        headers={**staff, "Content-Type": "application/json"},
    )
    assert fine.status_code == 200, fine.text
    with api.app.state.ctx.sessions() as db:
        (entry,) = db.scalars(select(AuditEntry)).all()
        assert entry.note == "line one\nline two\t\\u0000 literally"


async def test_bodies_are_bounded(api: Api) -> None:
    shed_id, shed = await api.register_shed()
    padded = {"login": "wang", "password": "x" * 70_000}
    big = await api.client.post("/api/v1/auth/password", json=padded)
    assert (big.status_code, big.json()["code"]) == (413, "too_large")
    raw = json.dumps(padded).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), 8192):
            yield raw[i : i + 8192]

    chunked = await api.client.post(
        "/api/v1/auth/password", content=pieces(), headers={"Content-Type": "application/json"}
    )  # no Content-Length: counted as it arrives
    assert (chunked.status_code, chunked.json()["code"]) == (413, "too_large")
    # A shed's batch of records may be larger than a public body.
    records = [
        {"id": f"r{n}", "kind": "event", "key": f"e-{n}", "version": 1, "ts": n + 1,
         "data": {"type": "note", "text": "x" * 400}}
        for n in range(300)
    ]  # fmt: skip
    batch = await api.client.post(
        f"/api/v1/sheds/{shed_id}/uplink", json={"records": records}, headers=shed
    )
    assert len(json.dumps({"records": records})) > 64 * 1024
    assert batch.status_code == 200, batch.text
    huge = await api.client.post(
        f"/api/v1/sheds/{shed_id}/uplink",
        content=b'{"records": []}' + b" " * (5 * 1024 * 1024),
        headers={**shed, "Content-Type": "application/json"},
    )
    assert (huge.status_code, huge.json()["code"]) == (413, "too_large")


async def test_unknown_fields_are_refused(api: Api) -> None:
    shed_id, _ = await api.register_shed()
    staff = await api.user("staff", "demo")
    probes = [
        ("/api/v1/orders", {"shed_id": shed_id, "port": 1, "mode": "until_full",
                            "phone": "13800138000", "paid_fen": 500}, {}),
        ("/api/v1/auth/sms", {"phone": "13800138000", "admin": True}, {}),
        ("/api/v1/auth/login", {"phone": "13800138000", "code": "123456", "user_id": 1}, {}),
        ("/api/v1/auth/password", {"login": "wang", "password": "x", "role": "admin"}, {}),
        (f"/api/v1/staff/sheds/{shed_id}/sockets/1/disable",
         {"reason": "r", "actor": "someone-else"}, staff),
    ]  # fmt: skip
    for url, body, headers in probes:
        answer = await api.client.post(url, json=body, headers=headers)
        assert answer.status_code == 422, (url, answer.text)
        assert answer.json()["code"] == "invalid_request"
        assert "extra" in answer.text.lower() or "not permitted" in answer.text.lower()
    assert count(api, AuditEntry) == 0


async def test_an_id_beyond_the_column_is_a_422_not_a_500(api: Api) -> None:
    # Found by tests/test_schemathesis.py: a user id past INTEGER was a 500 on PostgreSQL.
    answer = await api.client.patch(
        "/api/v1/admin/users/20922789888001", json={"disabled": True}, headers=api.admin
    )
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_request")


async def test_a_month_of_year_0000_is_a_422_not_a_500(api: Api) -> None:
    # Found by tests/test_schemathesis.py on the money page's routes.
    shed_id, _ = await api.register_shed()
    expense = await api.client.post(
        "/api/v1/money/demo/expenses",
        json={"month": "0000-01", "amount_fen": 100, "note": "x"},
        headers=api.admin,
    )
    assert (expense.status_code, expense.json()["code"]) == (422, "invalid_request")
    meter = await api.client.put(
        f"/api/v1/money/demo/meters/{shed_id}/0000-01", json={"energy_wh": 0}, headers=api.admin
    )
    assert (meter.status_code, meter.json()["code"]) == (422, "invalid_request")
    from api.services.money_page import MoneyError, parse_month

    with pytest.raises(MoneyError) as refused:
        parse_month("0000-01")
    assert refused.value.code == "bad_month"
