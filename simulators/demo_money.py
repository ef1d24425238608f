"""The demo compound's money page and consultation (docs/money-page.md):
the office's grid price and the margin's purpose, one expense line this
month, a short household list and an open consultation on a cheaper tariff.
Run once, when the demo's shed is first registered; the month's figures come
from the demo's own sessions."""

from __future__ import annotations

from typing import Final

from sqlalchemy.orm import Session

from api.access import admin_token_principal
from api.reports.periods import local_date
from api.services import consultations, money_page

GRID_FEN_PER_KWH: Final = 62
HOUSEHOLDS: Final = """building,unit,flat,phones
1,1,101,13800000001
1,1,102,13800000002
1,2,201,13800000003;13800000004
2,1,301,13800000005
2,1,302,13800000006
"""
CHEAPER: Final = {"id": "demo-night", "name": "1元/5小时", "kind": "power_tier",
                  "tiers": [{"max_w": 1100, "fen_per_hour": "20"}]}  # fmt: skip
WEEK_MS: Final = 7 * 86_400_000


def seed(db: Session, compound_id: str, *, now_ms: int) -> None:
    office = admin_token_principal()
    month = local_date(now_ms).strftime("%Y-%m")
    money_page.set_settings(db, office, compound_id, grid_fen_per_kwh=GRID_FEN_PER_KWH,
                            margin_for="维修基金 maintenance fund", now_ms=now_ms)  # fmt: skip
    money_page.add_expense(db, office, compound_id, month=month, amount_fen=4500,
                           note="灭火器年检 fire extinguisher check", now_ms=now_ms)  # fmt: skip
    consultations.import_households(db, office, compound_id, HOUSEHOLDS, now_ms=now_ms)
    consultations.open_consultation(
        db, office, compound_id, kind="tariff", title="夜间充电降价 Cheaper charging",
        text="拟调整为 1元/5小时 · 1 yuan per 5 hours",
        closes_ms=now_ms + WEEK_MS, threshold_pct=67, proposal=CHEAPER, now_ms=now_ms,
    )  # fmt: skip
