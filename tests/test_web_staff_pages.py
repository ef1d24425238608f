"""The staff pages over HTTP (no browser): who gets in, and the tariff, card and
refund forms with their notices."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db"]

TARIFF = {"id": "demo-price", "name": "1元/4小时", "kind": "power_tier",
          "tiers": [{"max_w": 1100, "fen_per_hour": "25"}]}  # fmt: skip


async def test_who_gets_in(api: Api) -> None:
    await api.register_shed("sa", compound_id="demo", ports=[1])
    await api.register_shed("sb", compound_id="beta", ports=[1])
    nobody = await api.client.get("/board/tariff")
    assert (nobody.status_code, nobody.headers["location"]) == (
        303, "/login?next=%2Fboard%2Ftariff")  # fmt: skip
    office = await api.user("office", "demo")
    assert (await api.client.get("/board", headers=office)).status_code == 403
    other = await api.user("staff", "beta")
    assert (await api.client.get("/board/s/sa/1", headers=other)).status_code == 404
    board = await api.client.get("/board", headers=other)
    assert board.status_code == 200 and "tile-sb-1" in board.text and "tile-sa-1" not in board.text
    assert "Content-Security-Policy" in board.headers
    login = await api.client.get("/login?next=//evil.example/x")
    assert 'value=""' in login.text  # another site is never a next page


async def test_tariff_cards_and_refund_forms(api: Api) -> None:
    await api.register_shed("sa", compound_id="demo", ports=[1])
    staff = await api.user("staff", "demo")
    form = {"compound": "demo", "tariff": "{not json", "note": ""}
    bad = await api.client.post("/board/tariff", data=form, headers=staff)
    assert bad.headers["location"] == "/board/tariff?compound=demo&notice=bad_json"
    form["tariff"] = json.dumps(TARIFF, ensure_ascii=False)
    sent = await api.client.post("/board/tariff", data=form, headers=staff)
    assert sent.headers["location"].endswith("notice=sent")
    page = await api.client.get("/board/tariff?compound=demo", headers=staff)
    assert "demo-price v1" in page.text and "1元/4小时" in page.text

    card = {"compound": "demo", "uid": "0a0b0c0d", "top_up": "12.50", "shed": "sa"}
    saved = await api.client.post("/board/cards", data=card, headers=staff)
    assert saved.headers["location"].endswith("notice=sent")
    cards = await api.client.get("/board/cards?compound=demo", headers=staff)
    assert "0A0B0C0D" in cards.text and "12.50" in cards.text
    odd = await api.client.post("/board/cards", data={**card, "top_up": "1.005"}, headers=staff)
    assert odd.headers["location"].endswith("notice=bad_amount")

    refund = {"order": "EBSNONE00001", "note": "补偿"}
    missing = await api.client.post("/board/refunds", data=refund, headers=staff)
    assert missing.headers["location"].endswith("notice=unknown_order")
    no_note = await api.client.post("/board/refunds", data={**refund, "note": ""}, headers=staff)
    assert no_note.headers["location"].endswith("notice=note_needed")
    audit = await api.client.get("/board/audit", headers=staff)
    assert "card_top_up" not in audit.text and "充值" in audit.text  # labelled, in Chinese
