"""The staff board's JSON API: live snapshots, the board, actions with their audit,
alarm acknowledgement through the shed, the API's own alarms."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from api.models import Alarm, Order, Refund

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db"]


class Shed:
    """A shed on the real shed endpoints: records, live snapshots, commands."""

    def __init__(self, api: Api, shed_id: str, headers: dict[str, str]) -> None:
        self.api, self.id, self.headers = api, shed_id, headers
        self.versions: dict[tuple[str, str], int] = {}
        self.after = 0

    async def record(self, kind: str, key: str, data: dict[str, Any]) -> None:
        version = self.versions.get((kind, key), 0) + 1
        self.versions[(kind, key)] = version
        body = {
            "records": [
                {
                    "id": f"{kind}-{key}-{version}",
                    "kind": kind,
                    "key": key,
                    "version": version,
                    "ts": self.api.clock.now,
                    "data": data,
                }
            ]
        }
        answer = await self.api.client.post(
            f"/api/v1/sheds/{self.id}/uplink", json=body, headers=self.headers
        )
        assert answer.status_code == 200 and not answer.json()["rejected"], answer.text

    async def live(
        self,
        ports: list[dict[str, Any]],
        bays: list[dict[str, Any]] | None = None,
        taken_ms: int | None = None,
    ) -> bool:
        body = {"taken_ms": taken_ms or self.api.clock.now, "ports": ports, "bays": bays or []}
        answer = await self.api.client.post(
            f"/api/v1/sheds/{self.id}/live", json=body, headers=self.headers
        )
        assert answer.status_code == 200, answer.text
        stored: bool = answer.json()["stored"]
        return stored

    async def commands(self) -> list[dict[str, Any]]:
        answer = await self.api.client.get(
            f"/api/v1/sheds/{self.id}/commands", params={"after": self.after}, headers=self.headers
        )
        found: list[dict[str, Any]] = answer.json()["commands"]
        if found:
            self.after = found[-1]["seq"]
        return found

    async def result(self, command: dict[str, Any], ok: bool, code: str | None = None) -> None:
        answer = await self.api.client.post(
            f"/api/v1/sheds/{self.id}/commands/{command['id']}/result",
            json={"ok": ok, "code": code, "message": code, "data": {}},
            headers=self.headers,
        )
        assert answer.status_code == 200, answer.text


async def shed(api: Api, shed_id: str = "shed-1", compound: str = "demo") -> Shed:
    sid, headers = await api.register_shed(
        shed_id, compound_id=compound, ports=[1, 2, 3], bays=[{"number": 1, "port": 1}]
    )
    return Shed(api, sid, headers)


def port(n: int, state: str, **extra: Any) -> dict[str, Any]:
    return {"port": n, "state": state, "since": 1, **extra}


TARIFF = {"id": "demo-price", "name": "1元/4小时", "kind": "power_tier",
          "tiers": [{"max_w": 1100, "fen_per_hour": "25"}]}  # fmt: skip


async def test_live_snapshots_are_kept_newest_first_and_checked(api: Api) -> None:
    s = await shed(api)
    assert await s.live([port(1, "idle")]) is True
    assert await s.live([port(1, "charging")], taken_ms=api.clock.now - 1) is False
    bad = [
        {"taken_ms": 1, "ports": [port(1, "idle", w=-1)]},
        {"taken_ms": 1, "ports": [port(1, "idle", temp_c=999)]},
        {"taken_ms": 1.5, "ports": []},
        {"taken_ms": 1, "ports": [port(0, "idle")]},
        {"taken_ms": 1, "ports": [port(1, "idle", session_wh=1.5)]},
    ]
    for body in bad:
        answer = await api.client.post(f"/api/v1/sheds/{s.id}/live", json=body, headers=s.headers)
        assert (answer.status_code, answer.json()["code"]) == (422, "invalid_request"), body
    other, _ = await api.register_shed("shed-2")
    wrong = await api.client.post(f"/api/v1/sheds/{other}/live",
                                  json={"taken_ms": 1, "ports": []}, headers=s.headers)  # fmt: skip
    assert (wrong.status_code, wrong.json()["code"]) == (403, "wrong_shed")


async def test_the_board_merges_records_and_snapshots(api: Api) -> None:
    s = await shed(api)
    staff = await api.user("staff", "demo")
    await s.live([port(1, "charging", w=240.5, session="s1", session_wh=120, temp_c=31.0,
                       session_started_ms=api.clock.now - 600_000, relay=True),
                  port(2, "idle", w=0.0)], [{"bay": 1, "occupied": True, "since": 5}])  # fmt: skip
    api.clock.now += 1_000  # a state change after the snapshot: the record wins
    await s.record("socket", "2", {"port": 2, "state": "fault", "since": api.clock.now})
    board = (await api.client.get("/api/v1/staff/board", headers=staff)).json()
    tiles = {t["port"]: t for t in board["sheds"][0]["sockets"]}
    assert (tiles[1]["state"], tiles[1]["w"], tiles[1]["session_wh"]) == ("charging", 240.5, 120)
    assert (tiles[1]["bay"], tiles[1]["bay_occupied"]) == (1, True)
    assert tiles[2]["state"] == "fault" and tiles[3]["state"] == "offline"
    assert board["sheds"][0]["states"] == {"charging": 1, "fault": 1, "offline": 1}
    assert board["sheds"][0]["bays"][0]["idle_occupied"] is False  # its socket charges
    only = (await api.client.get("/api/v1/staff/board?state=fault", headers=staff)).json()
    assert [t["port"] for t in only["sheds"][0]["sockets"]] == [2]

    api.clock.now += api.settings.board_live_stale_s * 1000 + 1  # the snapshot goes stale
    stale = (await api.client.get("/api/v1/staff/board", headers=staff)).json()["sheds"][0]
    assert stale["live_fresh"] is False and stale["power_w"] == 0
    assert all(t["w"] is None for t in stale["sockets"])  # never old numbers shown as live


async def test_socket_actions_send_commands_and_are_audited(api: Api) -> None:
    s = await shed(api)
    staff = await api.user("staff", "demo", login="zhang")
    await s.record("socket", "1", {"port": 1, "state": "charging", "since": api.clock.now,
                                   "session": "s-17"})  # fmt: skip
    url = f"/api/v1/staff/sheds/{s.id}/sockets"
    stop = await api.client.post(f"{url}/1/stop", json={"note": "居民电话要求"}, headers=staff)
    disable = await api.client.post(f"{url}/2/disable", json={"reason": "插座松动"},
                                    headers=staff)  # fmt: skip
    enable = await api.client.post(f"{url}/3/enable", json={}, headers=staff)
    for answer in (stop, disable, enable):
        assert answer.status_code == 200, answer.text
        assert answer.json()["audit"]["result"] == "pending"
    commands = await s.commands()
    assert [(c["kind"], c["data"]) for c in commands] == [
        # the session staff saw: a stop that arrives late must not end the next one
        ("stop_session", {"port": 1, "reason": "staff", "session_id": "s-17"}),
        ("disable", {"port": 2, "reason": "插座松动"}),
        ("enable", {"port": 3, "reason": ""}),
    ]
    await s.result(commands[0], True)
    await s.result(commands[1], False, "bad_state")
    audit = (await api.client.get("/api/v1/staff/audit", headers=staff)).json()
    assert [(e["action"], e["actor"], e["target"], e["note"], e["result"], e["result_code"])
            for e in audit] == [
        ("enable", "zhang", "port 3", None, "pending", None),
        ("disable", "zhang", "port 2", "插座松动", "failed", "bad_state"),
        ("stop", "zhang", "port 1", "居民电话要求", "ok", None),
    ]  # fmt: skip

    no_reason = await api.client.post(f"{url}/2/disable", json={"reason": ""}, headers=staff)
    assert (no_reason.status_code, no_reason.json()["code"]) == (422, "invalid_request")
    nowhere = await api.client.post(f"{url}/9/stop", json={}, headers=staff)
    assert (nowhere.status_code, nowhere.json()["code"]) == (404, "unknown_socket")
    assert await s.commands() == []  # the refused requests sent nothing
    assert len((await api.client.get("/api/v1/staff/audit", headers=staff)).json()) == 3


async def test_the_apis_own_alarms(api: Api) -> None:
    s = await shed(api)
    staff = await api.user("staff", "demo", login="zhang")
    runtime = api.app.state.staff
    await s.record("socket", "1", {"port": 1, "state": "idle", "since": api.clock.now})
    assert runtime.sweep_once() == []  # heard from just now
    api.clock.now += api.settings.shed_offline_after_s * 1000 + 1
    assert runtime.sweep_once() == [s.id]
    assert runtime.sweep_once() == []  # one alarm per silence
    alarms = (await api.client.get("/api/v1/staff/alarms", headers=staff)).json()
    assert [(a["kind"], a["source"], a["active"]) for a in alarms] == [
        ("shed_offline", "api", True)]  # fmt: skip
    ack = await api.client.post(f"/api/v1/staff/sheds/{s.id}/alarms/{alarms[0]['id']}/ack",
                                json={"note": "网络故障，已报修"}, headers=staff)  # fmt: skip
    assert ack.json()["audit"]["result"] == "ok"  # at once: no shed to ask
    assert await s.commands() == []
    await s.record("socket", "1", {"port": 1, "state": "idle", "since": api.clock.now})
    assert runtime.sweep_once() == [s.id]  # back: cleared
    history = (await api.client.get("/api/v1/staff/alarms?status=all", headers=staff)).json()
    assert [(a["active"], a["acked_by"], a["note"]) for a in history] == [
        (False, "zhang", "网络故障，已报修")]  # fmt: skip
    assert (await api.client.get("/api/v1/staff/alarms", headers=staff)).json() == []
    twice = await api.client.post(f"/api/v1/staff/sheds/{s.id}/alarms/{alarms[0]['id']}/ack",
                                  json={"note": "x"}, headers=staff)  # fmt: skip
    assert (twice.status_code, twice.json()["code"]) == (409, "already_acked")
    ghost = await api.client.post(f"/api/v1/staff/sheds/{s.id}/alarms/nope/ack",
                                  json={"note": "x"}, headers=staff)  # fmt: skip
    assert (ghost.status_code, ghost.json()["code"]) == (404, "unknown_alarm")
    empty = await api.client.post(f"/api/v1/staff/sheds/{s.id}/alarms/nope/ack",
                                  json={"note": ""}, headers=staff)  # fmt: skip
    assert empty.status_code == 422


async def test_a_refused_acknowledgement_can_be_sent_again(api: Api) -> None:
    s = await shed(api)
    staff = await api.user("staff", "demo")
    await s.record("alarm", "a1", {"id": "a1", "kind": "overtemp", "raised_ms": 1, "active": True,
                                   "detail": "socket 2 at 71 °C", "port": 2})  # fmt: skip
    url = f"/api/v1/staff/sheds/{s.id}/alarms/a1/ack"
    assert (await api.client.post(url, json={"note": "换插座"}, headers=staff)).status_code == 200
    command = (await s.commands())[0]
    assert command["kind"] == "ack_alarm" and command["data"]["note"] == "换插座"
    await s.result(command, False, "unknown_alarm")
    alarm = (await api.client.get("/api/v1/staff/alarms", headers=staff)).json()[0]
    assert alarm["ack_pending"] is False
    assert (await api.client.post(url, json={"note": "再试"}, headers=staff)).status_code == 200


async def test_tariffs_are_new_versions_sent_to_every_shed_of_the_compound(api: Api) -> None:
    one, two = await shed(api, "shed-1"), await shed(api, "shed-2")
    staff = await api.user("staff", "demo")
    url = "/api/v1/staff/compounds/demo/tariff"
    assert (await api.client.get(url, headers=staff)).json() == {}
    first = await api.client.post(url, json={"tariff": TARIFF, "note": "新价格"}, headers=staff)
    assert first.status_code == 201, first.text
    assert first.json()["tariff"]["version"] == 1
    cheaper = {**TARIFF, "tiers": [{"max_w": 1100, "fen_per_hour": "20"}]}
    second = await api.client.post(url, json={"tariff": cheaper}, headers=staff)
    assert second.json()["tariff"]["version"] == 2
    assert (await api.client.get(url, headers=staff)).json()["version"] == 2
    for s in (one, two):
        sent = await s.commands()
        assert [(c["kind"], c["data"]["version"]) for c in sent] == [("tariff", 1), ("tariff", 2)]
    bad = await api.client.post(url, json={"tariff": {**TARIFF, "kind": "free"}}, headers=staff)
    assert bad.status_code == 422 and bad.json()["code"].startswith("tariff_")
    await api.client.post("/api/v1/admin/compounds", json={"id": "other", "name": "x"},
                          headers=api.admin)  # fmt: skip
    await api.client.post("/api/v1/admin/tariffs", headers=api.admin,
                          json={"compound_id": "other", "tariff": {**TARIFF, "id": "theirs",
                                                                   "version": 1}})  # fmt: skip
    taken = await api.client.post(url, json={"tariff": {**TARIFF, "id": "theirs"}}, headers=staff)
    assert (taken.status_code, taken.json()["code"]) == (409, "tariff_taken")


async def test_cards_top_ups_and_plans(api: Api) -> None:
    one, two = await shed(api, "shed-1"), await shed(api, "shed-2")
    staff = await api.user("staff", "demo")
    url = "/api/v1/staff/compounds/demo/cards"
    no_shed = await api.client.post(url, json={"uid": "0a0b", "top_up_fen": 500}, headers=staff)
    assert (no_shed.status_code, no_shed.json()["code"]) == (422, "top_up_needs_shed")
    body = {"uid": "0a0b", "top_up_fen": 500, "shed_id": one.id}
    added = await api.client.post(url, headers=staff, json=body)
    assert added.status_code == 200, added.text
    assert added.json()["card"]["balance_fen"] == 500
    one_got, two_got = await one.commands(), await two.commands()
    assert [c["data"]["cards"][0].get("top_up_fen") for c in one_got] == [None, 500]
    assert [c["data"]["cards"][0]["uid"] for c in two_got] == ["0A0B"]  # no money there
    body = {"starts_ms": 1, "ends_ms": 2_000, "price_fen": 3000}
    plan = await api.client.post(f"{url}/0A0B/plans", headers=staff, json=body)
    assert plan.json()["card"]["plan_until_ms"] == 2_000
    body = {"starts_ms": 5, "ends_ms": 5, "price_fen": 0}
    backwards = await api.client.post(f"{url}/0A0B/plans", headers=staff, json=body)
    assert (backwards.status_code, backwards.json()["code"]) == (422, "bad_plan")
    bad_uid = await api.client.post(url, json={"uid": "xyz!"}, headers=staff)
    assert bad_uid.status_code == 422
    listed = (await api.client.get(url, headers=staff)).json()
    assert [(c["uid"], c["balance_fen"], c["plan_until_ms"]) for c in listed] == [
        ("0A0B", 500, 2_000)]  # fmt: skip


async def test_manual_refund_of_a_settled_order(api: Api) -> None:
    s = await shed(api)
    staff = await api.user("staff", "demo")
    now = api.clock.now
    with api.app.state.ctx.sessions() as db, db.begin():
        db.add(Order(out_trade_no="EBSDEMO00001", shed_id=s.id, port=1, amount_fen=300,
                     mode="amount", status="closed", created_ms=now, updated_ms=now,
                     paid_fen=300, billed_fen=300, refund_fen=0))  # fmt: skip
    url = "/api/v1/staff/orders/EBSDEMO00001/refund"
    big = await api.client.post(url, json={"note": "x", "amount_fen": 301}, headers=staff)
    assert (big.status_code, big.json()["code"]) == (409, "refund_too_large")
    done = await api.client.post(url, json={"note": "插座故障补偿", "amount_fen": 120},
                                 headers=staff)  # fmt: skip
    assert done.status_code == 200 and done.json()["audit"]["action"] == "refund"
    again = await api.client.post(url, json={"note": "x"}, headers=staff)
    assert (again.status_code, again.json()["code"]) == (409, "refund_exists")
    with api.app.state.ctx.sessions() as db:
        refund = db.scalars(select(Refund)).one()
        order = db.get(Order, "EBSDEMO00001")
        assert (refund.amount_fen, refund.status) == (120, "pending")
        assert order is not None and (order.billed_fen, order.refund_fen) == (180, 120)
        assert db.scalars(select(Alarm)).all() == []
