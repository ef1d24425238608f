"""Consultations over HTTP on SQLite and PostgreSQL (docs/money-page.md): the
office imports its households from CSV and opens a tariff proposal with the
old and new price and a typical overnight charge under each; residents log in
by SMS code and answer once per household (changeable until the close, a
second phone of the same flat replaces the first's answer); the count is
live; the result is on the money page; a passed tariff is applied by staff
once, audited, and a failed or open one cannot be."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from api.models import AuditEntry, Command, Household
from api.services.consultations import overnight_fen
from tests.test_orders_auth import sms_code

if TYPE_CHECKING:
    from tests.api_db import Api, ApiFactory

pytest_plugins = ["tests.api_db"]

HOUSEHOLDS = """building,unit,flat,phones
1,1,101,13800000001;13800000002
1,1,102,13800000003
2,3,501,13800000004 13800000005
"""
NEW_TARIFF = {"id": "demo-price", "name": "1元/5小时", "kind": "power_tier",
              "tiers": [{"max_w": 1100, "fen_per_hour": "20"}]}  # fmt: skip
DAY = 86_400_000


async def resident(api: Api, phone: str) -> dict[str, str]:
    sent = await api.client.post("/api/v1/auth/sms", json={"phone": phone})
    assert sent.status_code == 202, sent.text
    login = await api.client.post(
        "/api/v1/auth/login", json={"phone": phone, "code": await sms_code(api, phone)}
    )
    assert login.status_code == 200, login.text
    api.client.cookies.clear()
    return api.bearer(login.json()["token"])


async def open_tariff(api: Api, office: dict[str, str], threshold: int = 67) -> dict[str, Any]:
    opened = await api.client.post(
        "/api/v1/consultations/demo",
        json={"kind": "tariff", "title": "夜间充电降价", "text": "每小时 0.20 元",
              "closes_ms": api.clock.now + 7 * DAY, "threshold_pct": threshold,
              "proposal": NEW_TARIFF},
        headers=office,
    )  # fmt: skip
    assert opened.status_code == 201, opened.text
    body: dict[str, Any] = opened.json()
    return body


async def answer(api: Api, cid: int, who: dict[str, str], choice: str) -> Any:
    return await api.client.put(
        f"/api/v1/consultations/{cid}/answer", json={"answer": choice}, headers=who
    )


async def test_households_vote_once_and_a_passed_tariff_is_applied(
    api_factory: ApiFactory,
) -> None:
    async with api_factory(dev_endpoints=True) as api:
        await api.register_shed("east-1", ports=[1, 2])
        office = await api.user("office", "demo")
        staff = await api.user("staff", "demo")
        bad = await api.client.post(
            "/api/v1/households/demo/import",
            content="building,unit,flat,phones\n1,1,101,12345\n1,1,102,13800000003\n",
            headers=office,
        )
        assert bad.status_code == 422 and "line 2" in bad.json()["message"]
        imported = await api.client.post(
            "/api/v1/households/demo/import", content=HOUSEHOLDS.encode(), headers=office
        )
        assert imported.json() == {"added": 3, "updated": 0, "households": 3}
        listed = await api.client.get("/api/v1/households/demo", headers=office)
        assert [h["flat"] for h in listed.json()] == ["101", "102", "501"]

        c = await open_tariff(api, office)
        cid = c["id"]
        old, new = c["proposal"]["old"], c["proposal"]["new"]
        assert new["price"]["zh"] == "1元/5小时"
        assert new["overnight_fen"] == overnight_fen({**NEW_TARIFF, "version": 1}, api.clock.now)
        assert new["overnight_fen"] == 160  # 8 h at 0.20 yuan an hour
        assert old["overnight_fen"] != new["overnight_fen"]
        assert "body" not in new  # residents see prices, not the stored tariff
        assert c["status"] == "open" and c["count"] == {
            "yes": 0, "no": 0, "answered": 0, "households": 3}  # fmt: skip

        a1 = await resident(api, "13800000001")
        a2 = await resident(api, "13800000002")  # the same flat
        b = await resident(api, "13800000003")
        stranger = await resident(api, "13900000009")
        assert (await answer(api, cid, a1, "no")).status_code == 200
        assert (await answer(api, cid, a2, "yes")).status_code == 200  # replaces 101's answer
        assert (await answer(api, cid, b, "no")).status_code == 200
        assert (await answer(api, cid, b, "yes")).json()["count"]["yes"] == 2  # changed
        refused = await answer(api, cid, stranger, "no")
        assert refused.status_code == 403 and refused.json()["code"] == "not_a_household"
        assert (await answer(api, cid, a1, "maybe")).status_code == 422
        anonymous = await api.client.put(
            f"/api/v1/consultations/{cid}/answer", json={"answer": "yes"}
        )
        assert anonymous.status_code == 401
        mine = await api.client.get(f"/api/v1/consultations/{cid}/mine", headers=a1)
        assert mine.json() == {"registered": True, "answer": "yes"}
        live = (await api.client.get(f"/api/v1/consultations/{cid}")).json()
        assert live["count"] == {"yes": 2, "no": 0, "answered": 2, "households": 3}
        early = await api.client.post(f"/api/v1/consultations/{cid}/apply", headers=staff)
        assert early.status_code == 409 and early.json()["code"] == "consultation_open"

        api.clock.now += 7 * DAY
        office, staff = await api.user("office", "demo"), await api.user("staff", "demo")
        a1 = await resident(api, "13800000001")  # logins of a week ago have expired
        late = await answer(api, cid, a1, "no")
        assert late.status_code == 409 and late.json()["code"] == "consultation_closed"
        money = (await api.client.get("/api/v1/money/demo")).json()
        assert [(x["id"], x["status"]) for x in money["consultations"]] == [(cid, "passed")]
        assert (
            await api.client.post(f"/api/v1/consultations/{cid}/apply", headers=office)
        ).status_code == 403  # office opens it; staff apply it
        applied = await api.client.post(f"/api/v1/consultations/{cid}/apply", headers=staff)
        assert applied.status_code == 200, applied.text
        assert applied.json() == {"tariff": "demo-price", "version": 1}
        again = await api.client.post(f"/api/v1/consultations/{cid}/apply", headers=staff)
        assert again.status_code == 409 and again.json()["code"] == "already_applied"
        with api.app.state.ctx.sessions() as db, db.begin():
            sent = db.scalars(select(Command).where(Command.kind == "tariff")).all()
            actions = db.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
            assert len(db.scalars(select(Household)).all()) == 3
        assert [s.shed_id for s in sent] == ["east-1"]
        assert actions[-2:] == ["tariff", "consultation_apply"]
        assert {"households_import", "consultation_open"} <= set(actions)


async def test_a_failed_tariff_cannot_be_applied(api_factory: ApiFactory) -> None:
    async with api_factory(dev_endpoints=True) as api:
        await api.register_shed("east-1", ports=[1, 2])
        office = await api.user("office", "demo")
        staff = await api.user("staff", "demo")
        await api.client.post("/api/v1/households/demo/import", content=HOUSEHOLDS, headers=office)
        c = await open_tariff(api, office, threshold=70)
        yes, no = await resident(api, "13800000001"), await resident(api, "13800000003")
        await answer(api, c["id"], yes, "yes")
        await answer(api, c["id"], no, "no")  # 50 % < 70 %
        api.clock.now += 7 * DAY
        staff = await api.user("staff", "demo")
        office = await api.user("office", "demo")
        shown = (await api.client.get(f"/api/v1/consultations/{c['id']}")).json()
        assert shown["status"] == "failed"
        refused = await api.client.post(f"/api/v1/consultations/{c['id']}/apply", headers=staff)
        assert refused.status_code == 409 and refused.json()["code"] == "consultation_failed"
        with api.app.state.ctx.sessions() as db, db.begin():
            assert not db.scalars(select(Command).where(Command.kind == "tariff")).all()
        bad = await api.client.post(
            "/api/v1/consultations/demo",
            json={"kind": "sockets", "title": "x", "closes_ms": api.clock.now + DAY,
                  "threshold_pct": 67, "proposal": {"shed_id": "nowhere", "sockets": 4}},
            headers=office,
        )  # fmt: skip
        assert bad.status_code == 422 and bad.json()["code"] == "unknown_shed"
        no = await resident(api, "13800000003")
        given = [(await answer(api, c["id"], no, "no")).status_code for _ in range(25)]
        assert given.count(409) == 20 and given.count(429) == 5  # closed, then rate limited
        past = await api.client.post(
            "/api/v1/consultations/demo",
            json={"kind": "text", "title": "x", "closes_ms": api.clock.now - 1,
                  "threshold_pct": 67},
            headers=office,
        )  # fmt: skip
        assert past.status_code == 422
