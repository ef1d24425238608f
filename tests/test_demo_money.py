"""The demo's money page and consultation (simulators/demo_money.py) on a
fresh database: the grid price, the expense line, the households and the
open tariff consultation are there, and the page and the PDF render."""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulators import demo_money

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db"]


async def test_the_demo_compound_has_a_money_page_and_a_consultation(api: Api) -> None:
    await api.register_shed("demo-shed")
    with api.app.state.ctx.sessions.begin() as db:
        demo_money.seed(db, "demo", now_ms=api.clock.now)
    data = (await api.client.get("/api/v1/money/demo")).json()
    assert data["grid_fen_per_kwh"] == demo_money.GRID_FEN_PER_KWH
    month = data["months"][-1]
    assert month["month"] == "2026-11"
    assert month["expenses_fen"] == 4500
    assert month["margin_fen"] == -4500  # no sessions yet: the expense alone
    [asked] = data["consultations"]
    assert asked["kind"] == "tariff" and asked["status"] == "open"
    assert asked["count"] == {"yes": 0, "no": 0, "answered": 0, "households": 5}
    assert asked["proposal"]["new"]["overnight_fen"] == 160
    assert (await api.client.get("/money/demo")).status_code == 200
    assert (await api.client.get(f"/c/{asked['id']}")).status_code == 200
    pdf = await api.client.get("/money/demo/month/2026-11.pdf")
    assert pdf.content.startswith(b"%PDF")
