"""POST /api/v1/sheds/{shed_id}/uplink: idempotent, per-record, never half-applied."""

from __future__ import annotations

import copy
import uuid
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.models import Alarm, ChargeSession, RecordVersion
from api.repos.sessions import sessions_for_order
from api.services.events import ClosedSession
from api.services.hooks import Hooks
from api.services.session_closed import on_session_closed
from controller.core.chargeend import ChargeEndDetector
from controller.core.config import RuleConfig
from controller.core.model import Authorization
from controller.core.model import Session as CoreSession
from controller.core.tariffs import Usage, compute_bill, default_tariff
from controller.store import session_to_row

if TYPE_CHECKING:
    from tests.api_db import Api, ApiFactory

pytest_plugins = ["tests.api_db"]

T0 = 1_795_341_000_000


def record(kind: str, key: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"r-{uuid.uuid4().hex[:10]}",
        "kind": kind,
        "key": key,
        "version": version,
        "ts": T0 + version,
        "data": data,
    }


def socket_record(port: int, state: str, version: int) -> dict[str, Any]:
    return record("socket", str(port), version, {"port": port, "state": state, "since": T0})


def session_row(session_id: str, *, closed: bool, port: int = 2) -> dict[str, Any]:
    """A session exactly as the controller stores it (controller/store.py)."""
    rules = RuleConfig()
    tariff = default_tariff()
    s = CoreSession(
        id=session_id,
        port=port,
        auth=Authorization("order", "EBS20261122A0007", 300),
        tariff=tariff,
        started_ms=T0,
        usage=Usage(T0),
        detector=ChargeEndDetector(rules, rules.float_s),
        first_wh=1000,
    )
    for minute in range(1, 31):
        s.usage.add(T0 + minute * 60_000, 200.0, 3)
    s.last_wh, s.energy_wh, s.peak_w = 1090, 90, 210.5
    if closed:
        s.ended_ms, s.end_reason = T0 + 31 * 60_000, "full"
        s.bill = compute_bill(tariff, s.usage, s.ended_ms, prepaid_fen=300)
        s.charged_fen = s.bill.total_fen
        s.refund_fen = 300 - s.charged_fen
    return session_to_row(s, T0)


async def post(api: Api, shed_id: str, headers: dict[str, str], records: list[Any]) -> Any:
    response = await api.client.post(
        f"/api/v1/sheds/{shed_id}/uplink", json={"records": records}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def ids(records: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in records]


async def sockets_of(api: Api, shed_id: str) -> dict[int, str]:
    status = (await api.client.get(f"/api/v1/sheds/{shed_id}/status")).json()
    return {s["port"]: s["state"] for s in status["sockets"]}


async def test_records_apply_and_a_replay_changes_nothing(api: Api) -> None:
    shed_id, headers = await api.register_shed(ports=[1, 2])
    batch = [
        socket_record(1, "idle", 1),
        socket_record(2, "charging", 1),
        record("session", "s-1", 1, session_row("s-1", closed=False)),
        record("bay", "1", 1, {"bay": 1, "occupied": True, "since": T0, "port": 1}),
        record(
            "alarm",
            "a-1",
            1,
            {
                "id": "a-1",
                "kind": "overtemp",
                "raised_ms": T0,
                "detail": "67 °C",
                "port": 2,
                "active": True,
            },
        ),
    ]
    first = await post(api, shed_id, headers, batch)
    assert first == {"applied": ids(batch), "duplicates": [], "rejected": []}

    again = await post(api, shed_id, headers, batch)  # the same batch twice
    assert again == {"applied": [], "duplicates": ids(batch), "rejected": []}

    status = (await api.client.get(f"/api/v1/sheds/{shed_id}/status")).json()
    assert {s["port"]: s["state"] for s in status["sockets"]} == {1: "idle", 2: "charging"}
    assert status["free_sockets"] == 1
    assert status["free_bays"] == 0
    assert status["active_alarms"] == 1

    sessions = (
        await api.client.get(f"/api/v1/admin/sheds/{shed_id}/sessions", headers=api.admin)
    ).json()
    assert len(sessions) == 1
    assert sessions[0]["order_no"] == "EBS20261122A0007"
    assert sessions[0]["prepaid_fen"] == 300
    assert sessions[0]["ended_ms"] is None
    assert sessions[0]["tariff_id"] == "default"


async def test_a_newer_version_wins_and_an_older_one_arriving_later_is_a_duplicate(
    api: Api,
) -> None:
    shed_id, headers = await api.register_shed(ports=[3])
    v1, v2, v3 = (socket_record(3, s, v) for s, v in (("idle", 1), ("charging", 2), ("idle", 3)))

    assert (await post(api, shed_id, headers, [v2]))["applied"] == [v2["id"]]
    late = await post(api, shed_id, headers, [v1])  # reordered: v1 after v2
    assert late == {"applied": [], "duplicates": [v1["id"]], "rejected": []}
    assert (await sockets_of(api, shed_id))[3] == "charging"

    # Within one batch too: v3 then v2 applies v3 and skips v2.
    mixed = await post(api, shed_id, headers, [v3, v2])
    assert mixed == {"applied": [v3["id"]], "duplicates": [v2["id"]], "rejected": []}
    assert (await sockets_of(api, shed_id))[3] == "idle"

    # The same version with other content is a duplicate as well: versions decide.
    same_version = socket_record(3, "fault", 3)
    assert (await post(api, shed_id, headers, [same_version]))["duplicates"] == [same_version["id"]]
    assert (await sockets_of(api, shed_id))[3] == "idle"


async def test_versions_are_per_shed_kind_and_key(api: Api) -> None:
    shed_a, headers_a = await api.register_shed(ports=[1])
    shed_b, headers_b = await api.register_shed(ports=[1])
    assert (await post(api, shed_a, headers_a, [socket_record(1, "charging", 5)]))["applied"]
    # Another shed's port 1, and a bay with key "1", are other things.
    assert (await post(api, shed_b, headers_b, [socket_record(1, "idle", 1)]))["applied"]
    bay = record("bay", "1", 1, {"bay": 1, "occupied": False, "since": T0})
    assert (await post(api, shed_a, headers_a, [bay]))["applied"] == [bay["id"]]
    assert (await sockets_of(api, shed_a))[1] == "charging"
    assert (await sockets_of(api, shed_b))[1] == "idle"


async def test_bad_records_are_rejected_with_a_code_and_leave_no_trace(
    api: Api, db_url: str
) -> None:
    shed_id, headers = await api.register_shed(ports=[1, 2])
    good_before = socket_record(1, "charging", 1)
    good_after = socket_record(2, "idle", 1)
    bad_session = record("session", "s-bad", 1, session_row("s-bad", closed=True))
    bad_session["data"]["refund_fen"] = 301  # more than was prepaid
    string_amount = record("session", "s-str", 1, session_row("s-str", closed=True))
    string_amount["data"]["billed_fen"] = "13"  # money is an integer, never a string
    bad_tariff = record("session", "s-tar", 1, session_row("s-tar", closed=False))
    bad_tariff["data"]["tariff"]["tiers"] = []
    wrong_key = record("session", "s-key", 1, session_row("s-other", closed=False))
    unknown_state = socket_record(2, "exploded", 2)
    unknown_kind = record("weather", "k", 1, {})
    no_version = socket_record(2, "idle", 3)
    del no_version["version"]
    nul_byte = record(
        "alarm",
        "a-nul",
        1,
        {"id": "a-nul", "kind": "smoke", "raised_ms": T0, "detail": "bad\x00byte", "active": True},
    )
    batch = [
        good_before,
        bad_session,
        string_amount,
        bad_tariff,
        wrong_key,
        unknown_state,
        unknown_kind,
        no_version,
        "not an object",
        nul_byte,
        good_after,
    ]
    answer = await post(api, shed_id, headers, batch)

    # A NUL byte is rejected with the record (on PostgreSQL and SQLite alike),
    # before the database sees it; the rest of the batch is applied.
    assert answer["applied"] == [good_before["id"], good_after["id"]]
    assert answer["duplicates"] == []
    codes = {r["id"]: r["code"] for r in answer["rejected"]}
    messages = {r["id"]: r["message"] for r in answer["rejected"]}
    assert codes == {
        bad_session["id"]: "bad_record",
        string_amount["id"]: "bad_record",
        bad_tariff["id"]: "bad_tariff",
        wrong_key["id"]: "key_mismatch",
        unknown_state["id"]: "bad_record",
        unknown_kind["id"]: "unknown_kind",
        no_version["id"]: "bad_record",
        None: "bad_record",  # the record had no id to name
        nul_byte["id"]: "bad_record",
    }
    assert "refund_fen" in messages[bad_session["id"]]
    assert "billed_fen" in messages[string_amount["id"]]

    with api.app.state.ctx.sessions() as db:
        assert db.scalar(select(func.count()).select_from(ChargeSession)) == 0
        keys = set(db.scalars(select(RecordVersion.key).where(RecordVersion.shed_id == shed_id)))
        alarm = db.get(Alarm, (shed_id, "a-nul"))
    assert keys & {"s-bad", "s-str", "s-tar", "s-key", "k"} == set()
    assert alarm is None and "a-nul" not in keys
    assert (await sockets_of(api, shed_id)) == {1: "charging", 2: "idle"}

    # A rejected version was not recorded: the corrected record (same version) applies.
    fixed = record("session", "s-bad", 1, session_row("s-bad", closed=True))
    assert (await post(api, shed_id, headers, [fixed]))["applied"] == [fixed["id"]]


async def test_the_controllers_nested_auth_shape_is_accepted(api: Api) -> None:
    shed_id, headers = await api.register_shed()
    data = {
        "id": "s-9",
        "port": 4,
        "auth": {"kind": "card", "ref": "04A1B2C3", "prepaid_fen": 500, "mode": "amount"},
        "started_ms": T0,
        "energy_wh": 0,
    }
    assert (await post(api, shed_id, headers, [record("session", "s-9", 1, data)]))["applied"]
    with api.app.state.ctx.sessions() as db:
        row = db.get(ChargeSession, (shed_id, "s-9"))
    assert row is not None
    assert (row.auth_kind, row.auth_ref, row.auth_mode, row.order_no) == (
        "card",
        "04A1B2C3",
        "amount",
        None,
    )
    assert row.data == data


async def test_at_most_500_records_per_call(api: Api) -> None:
    shed_id, headers = await api.register_shed(ports=[1])
    url = f"/api/v1/sheds/{shed_id}/uplink"
    too_many = [socket_record(1, "idle", v) for v in range(1, 502)]
    response = await api.client.post(url, json={"records": too_many}, headers=headers)
    assert response.status_code == 413
    assert response.json()["code"] == "too_many_records"
    with api.app.state.ctx.sessions() as db:
        assert db.scalar(select(func.count()).select_from(RecordVersion)) == 0

    answer = await post(api, shed_id, headers, too_many[:500])
    assert len(answer["applied"]) == 500

    malformed = await api.client.post(url, json={"records": "nope"}, headers=headers)
    assert malformed.status_code == 422
    assert malformed.json()["code"] == "invalid_request"


async def test_a_session_closing_runs_the_hook_once(api_factory: ApiFactory) -> None:
    seen: list[tuple[str, str, int]] = []

    def settle(db: Session, closed: ClosedSession) -> None:
        seen.append((closed.shed_id, closed.session.id, closed.session.refund_fen))

    hooks = Hooks(session_closed=[on_session_closed, settle])
    async with api_factory(hooks=hooks) as api:
        shed_id, headers = await api.register_shed()
        opened = record("session", "s-1", 1, session_row("s-1", closed=False))
        checkpoint = record("session", "s-1", 2, session_row("s-1", closed=False))
        closed = record("session", "s-1", 3, session_row("s-1", closed=True))
        await post(api, shed_id, headers, [opened, checkpoint])
        assert seen == []
        await post(api, shed_id, headers, [closed])
        refund = closed["data"]["refund_fen"]
        assert refund > 0
        assert seen == [(shed_id, "s-1", refund)]

        # Replays, reorders and a later correction of a closed session: no second call.
        await post(api, shed_id, headers, [opened, closed, checkpoint])
        correction = copy.deepcopy(closed)
        correction["version"], correction["id"] = 4, "r-correction"
        await post(api, shed_id, headers, [correction])
        assert len(seen) == 1

        with api.app.state.ctx.sessions() as db:
            row = db.get(ChargeSession, (shed_id, "s-1"))
        assert row is not None
        assert row.version == 4
        assert row.closed_received_ms == api.clock.now  # recorded by on_session_closed
        assert row.tariff is not None and row.tariff["id"] == "default"
        with api.app.state.ctx.sessions() as db:
            by_order = sessions_for_order(db, "EBS20261122A0007")
        assert [(s.shed_id, s.id) for s in by_order] == [(shed_id, "s-1")]


async def test_a_failing_hook_leaves_the_record_for_a_retry(api_factory: ApiFactory) -> None:
    failing = True

    def flaky(db: Session, closed: ClosedSession) -> None:
        if failing:
            raise ConnectionError("payment provider unreachable")

    async with api_factory(hooks=Hooks(session_closed=[on_session_closed, flaky])) as api:
        shed_id, headers = await api.register_shed(ports=[1])
        before = socket_record(1, "idle", 1)
        closed = record("session", "s-1", 1, session_row("s-1", closed=True))
        url = f"/api/v1/sheds/{shed_id}/uplink"
        transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            response = await client.post(url, json={"records": [before, closed]}, headers=headers)
        assert response.status_code == 500
        assert response.json()["code"] == "internal_error"
        with api.app.state.ctx.sessions() as db:
            assert db.get(ChargeSession, (shed_id, "s-1")) is None  # not half-applied
            # one transaction per batch: nothing of it stays applied
            assert db.scalar(select(func.count()).select_from(RecordVersion)) == 0

        failing = False  # the shed retries the whole batch
        answer = await post(api, shed_id, headers, [before, closed])
        assert answer == {"applied": [before["id"], closed["id"]], "duplicates": [], "rejected": []}


async def test_a_batch_applies_as_if_record_by_record(api_factory: ApiFactory) -> None:
    """Several versions of one session in one batch, out of order and repeated:
    each answered as if applied one after the other, the newest one stored,
    its closing hook run once, the rollups counting the session once."""
    closings: list[str] = []

    def count(db: Session, closed: ClosedSession) -> None:
        closings.append(closed.session.id)

    async with api_factory(hooks=Hooks(session_closed=[on_session_closed, count])) as api:
        shed_id, headers = await api.register_shed(ports=[1, 2])
        opened = record("session", "s-b", 1, session_row("s-b", closed=False))
        closed = record("session", "s-b", 3, session_row("s-b", closed=True))
        stale = record("session", "s-b", 2, session_row("s-b", closed=False))
        socket = socket_record(2, "charging", 1)
        batch = [opened, closed, stale, {**closed}, socket]
        answer = await post(api, shed_id, headers, batch)
        assert answer == {
            "applied": [opened["id"], closed["id"], socket["id"]],
            "duplicates": [stale["id"], closed["id"]],
            "rejected": [],
        }
        with api.app.state.ctx.sessions() as db:
            row = db.get(ChargeSession, (shed_id, "s-b"))
            assert row is not None
            assert (row.version, row.end_reason) == (3, "full")
            assert row.closed_received_ms == api.clock.now
            versions = {
                (v.kind, v.key): (v.version, v.record_id) for v in db.scalars(select(RecordVersion))
            }
            assert versions == {
                ("session", "s-b"): (3, closed["id"]),
                ("socket", "2"): (1, socket["id"]),
            }
        assert closings == ["s-b"]
        assert (await sockets_of(api, shed_id))[2] == "charging"

        again = await post(api, shed_id, headers, batch)  # the whole batch replayed
        assert again == {"applied": [], "duplicates": ids(batch), "rejected": []}
        assert closings == ["s-b"]
        report = (
            await api.client.get(
                "/api/v1/reports/demo?period=month&value=2026-11", headers=api.admin
            )
        ).json()
        sessions = {row[0]: row[1] for row in report["tables"]["summary"]["rows"]}
        assert sessions["sessions"] == 1


async def test_a_value_the_database_refuses_rejects_that_record_only(api: Api) -> None:
    """A tariff id longer than its column (the tariff itself validates):
    PostgreSQL refuses the value, so the batch is applied again record by
    record and only that record is rejected. SQLite stores it."""
    shed_id, headers = await api.register_shed(ports=[1, 2])
    good = record("session", "s-ok", 1, session_row("s-ok", closed=True))
    long_id = session_row("s-long", closed=True)
    long_id["tariff"] = {**long_id["tariff"], "id": "t" * 80}
    bad = record("session", "s-long", 1, long_id)
    other = socket_record(2, "charging", 1)
    answer = await post(api, shed_id, headers, [good, bad, other])
    postgres = api.app.state.ctx.engine.dialect.name == "postgresql"
    assert answer["applied"] == ([good["id"], other["id"]] if postgres else ids([good, bad, other]))
    rejected = [(r["id"], r["code"]) for r in answer["rejected"]]
    assert rejected == ([(bad["id"], "bad_record")] if postgres else [])
    with api.app.state.ctx.sessions() as db:
        stored = set(db.scalars(select(ChargeSession.id).where(ChargeSession.shed_id == shed_id)))
        versions = set(
            db.scalars(select(RecordVersion.key).where(RecordVersion.shed_id == shed_id))
        )
    assert stored == ({"s-ok"} if postgres else {"s-ok", "s-long"})
    assert versions == stored | {"2"}
