"""Registering compounds and sheds; shed tokens and the admin token; problem responses."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from sqlalchemy import select

from api.models import Shed

if TYPE_CHECKING:
    from tests.api_db import Api, ApiFactory

pytest_plugins = ["tests.api_db"]


async def test_register_shed_returns_the_token_once_and_stores_only_its_hash(api: Api) -> None:
    shed_id, headers = await api.register_shed("shed-1", ports=[1, 2], bays=[])
    token = headers["Authorization"].removeprefix("Bearer ")
    assert len(token) >= 43

    with api.app.state.ctx.sessions() as db:
        row = db.scalar(select(Shed).where(Shed.id == shed_id))
    assert row is not None
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in (row.token_hash, row.name, row.id)

    got = await api.client.get(f"/api/v1/admin/sheds/{shed_id}", headers=api.admin)
    assert got.status_code == 200
    assert "token" not in got.json()
    assert got.json()["compound_id"] == "demo"

    status = (await api.client.get(f"/api/v1/sheds/{shed_id}/status")).json()
    assert [s["port"] for s in status["sockets"]] == [1, 2]
    assert {s["state"] for s in status["sockets"]} == {"offline"}


async def test_shed_token_authenticates_its_own_shed_only(api: Api) -> None:
    shed_a, headers_a = await api.register_shed("shed-a")
    shed_b, headers_b = await api.register_shed("shed-b")
    url = "/api/v1/sheds/{}/commands"

    assert (await api.client.get(url.format(shed_a), headers=headers_a)).status_code == 200
    assert (await api.client.get(url.format(shed_b), headers=headers_b)).status_code == 200

    wrong = await api.client.get(url.format(shed_b), headers=headers_a)
    assert wrong.status_code == 403
    assert wrong.json()["code"] == "wrong_shed"

    unknown = await api.client.get(url.format(shed_a), headers=api.bearer("not-a-token"))
    assert unknown.status_code == 401
    assert unknown.json() == {"code": "unauthorized", "message": "unknown shed token"}
    assert unknown.headers["www-authenticate"] == "Bearer"

    missing = await api.client.post(f"/api/v1/sheds/{shed_a}/uplink", json={"records": []})
    assert missing.status_code == 401
    assert missing.json()["code"] == "unauthorized"

    # An unknown token is 401 whatever the path, even a shed that does not exist.
    nowhere = await api.client.get(url.format("no-such-shed"), headers=api.bearer("x"))
    assert nowhere.status_code == 401


async def test_a_call_marks_the_shed_as_seen(api: Api) -> None:
    shed_id, headers = await api.register_shed()
    before = (await api.client.get(f"/api/v1/sheds/{shed_id}/status")).json()
    assert before["online"] is False
    assert before["free_sockets"] == 0  # an offline shed has nothing free

    api.clock.now += 5_000
    await api.client.get(f"/api/v1/sheds/{shed_id}/commands", headers=headers)
    after = (await api.client.get(f"/api/v1/sheds/{shed_id}/status")).json()
    assert after["online"] is True
    assert after["last_seen_ms"] == api.clock.now

    api.clock.now += api.settings.shed_offline_after_s * 1000 + 1
    later = (await api.client.get(f"/api/v1/sheds/{shed_id}/status")).json()
    assert later["online"] is False


async def test_rotating_the_token_retires_the_old_one(api: Api) -> None:
    shed_id, old = await api.register_shed()
    rotated = await api.client.post(f"/api/v1/admin/sheds/{shed_id}/token", headers=api.admin)
    assert rotated.status_code == 200
    new = api.bearer(rotated.json()["token"])
    url = f"/api/v1/sheds/{shed_id}/commands"
    assert (await api.client.get(url, headers=old)).status_code == 401
    assert (await api.client.get(url, headers=new)).status_code == 200


async def test_registration_conflicts_and_unknowns(api: Api) -> None:
    await api.register_shed("shed-1")
    again = await api.client.post(
        "/api/v1/admin/sheds",
        json={"id": "shed-1", "name": "again", "compound_id": "demo"},
        headers=api.admin,
    )
    assert again.status_code == 409
    assert again.json()["code"] == "shed_exists"

    compound_again = await api.client.post(
        "/api/v1/admin/compounds", json={"id": "demo", "name": "x"}, headers=api.admin
    )
    assert compound_again.status_code == 409
    assert compound_again.json()["code"] == "compound_exists"

    orphan = await api.client.post(
        "/api/v1/admin/sheds",
        json={"id": "shed-2", "name": "x", "compound_id": "nowhere"},
        headers=api.admin,
    )
    assert orphan.status_code == 404
    assert orphan.json()["code"] == "unknown_compound"

    bad_id = await api.client.post(
        "/api/v1/admin/sheds",
        json={"id": "Shed_1!", "name": "x", "compound_id": "demo"},
        headers=api.admin,
    )
    assert bad_id.status_code == 422
    assert bad_id.json()["code"] == "invalid_request"
    assert "id" in bad_id.json()["message"]


async def test_admin_endpoints_need_the_admin_token(api: Api) -> None:
    url = "/api/v1/admin/compounds"
    assert (await api.client.get(url)).status_code == 401
    assert (await api.client.get(url, headers=api.bearer("wrong"))).status_code == 401
    _shed_id, shed_headers = await api.register_shed()
    assert (await api.client.get(url, headers=shed_headers)).status_code == 401
    listed = await api.client.get(url, headers=api.admin)
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()] == ["demo"]


async def test_admin_endpoints_are_off_without_an_admin_token(api_factory: ApiFactory) -> None:
    async with api_factory(admin_token=None) as api:
        response = await api.client.get("/api/v1/admin/compounds", headers=api.bearer("anything"))
        assert response.status_code == 403
        assert response.json()["code"] == "admin_disabled"


async def test_errors_are_problem_responses(api: Api) -> None:
    missing = await api.client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert set(missing.json()) == {"code", "message"}
    assert missing.json()["code"] == "not_found"

    no_shed = await api.client.get("/api/v1/sheds/ghost/status")
    assert no_shed.status_code == 404
    assert no_shed.json()["code"] == "unknown_shed"

    method = await api.client.delete("/api/v1/sheds/ghost/status")
    assert method.status_code == 405
    assert method.json()["code"] == "method_not_allowed"


async def test_openapi_and_health(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    assert "/api/v1/sheds/{shed_id}/uplink" in spec["paths"]
    assert "/api/v1/sheds/{shed_id}/commands" in spec["paths"]
    assert (await api.client.get("/docs")).status_code == 200
    assert (await api.client.get("/healthz")).json() == {"ok": True}


async def test_tariff_versions_are_written_once(api: Api) -> None:
    await api.register_shed()  # makes the compound
    tariff = {
        "id": "tiers",
        "version": 1,
        "name": "功率分档",
        "kind": "power_tier",
        "tiers": [
            {"max_w": 200, "fen_per_hour": "25"},
            {"max_w": 400, "fen_per_hour": "33.34"},
            {"max_w": 1100, "fen_per_hour": "50"},
        ],
    }
    url = "/api/v1/admin/tariffs"
    body = {"compound_id": "demo", "tariff": tariff}
    first = await api.client.post(url, json=body, headers=api.admin)
    assert first.status_code == 201, first.text
    assert first.json()["body"]["tiers"][1] == {"max_w": 400, "fen_per_hour": "33.34"}
    assert (await api.client.post(url, json=body, headers=api.admin)).status_code == 201

    changed = {**tariff, "tiers": [{"max_w": 1100, "fen_per_hour": "20"}]}
    conflict = await api.client.post(
        url, json={"compound_id": "demo", "tariff": changed}, headers=api.admin
    )
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "tariff_version_exists"
    newer = await api.client.post(
        url, json={"compound_id": "demo", "tariff": {**changed, "version": 2}}, headers=api.admin
    )
    assert newer.status_code == 201

    floats = {**tariff, "version": 3, "tiers": [{"max_w": 1100, "fen_per_hour": 25.5}]}
    invalid = await api.client.post(url, json={"tariff": floats}, headers=api.admin)
    assert invalid.status_code == 422
    assert invalid.json()["code"].startswith("tariff_")
