"""A compound's shed money in the open (docs/money-page.md).

Month by month: sessions, energy delivered, money taken, refunds, the
electricity bought for it and what is left. Every count comes from the
month rollups the office reports read (`report_shed_months`, the same rows
as `api/reports/district.py` and the sums of the monthly report's
socket-days), so the page and the reports cannot differ. Money is integer
fen throughout; nothing here is per session or per resident.

- money taken: what the sessions billed (`billed_fen`); refunds: what went
  back to residents out of their prepayments (`refund_fen`, shown, not
  subtracted again: it was never taken);
- electricity bought: energy x the compound's grid price per kWh, the energy
  being the shed's own main meter reading for the month where the office
  entered one, else the sum of the socket registers; losses: meter minus
  sockets, for the sheds with a reading;
- margin: money taken - electricity bought - the month's expense lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.access import Principal
from api.models import (
    Compound,
    MoneyExpense,
    MoneyMeterReading,
    MoneySettings,
    ReportShedMonth,
    Shed,
)
from api.reports.periods import local_date, local_midnight_ms
from api.services import audit

MONTH: Final = re.compile(r"^([1-9]\d{3})-(0[1-9]|1[0-2])$")  # no year 0000 in a date
MAX_MONTHS: Final = 24
MAX_GRID_FEN_PER_KWH: Final = 1000  # 10 yuan per kWh: anything above is a typing error
MAX_EXPENSE_FEN: Final = 100_000_000  # one million yuan
MAX_METER_WH: Final = 10_000_000_000
EDITORS: Final = ("office",)  # admin counts as every role


class MoneyError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Expense:
    amount_fen: int
    note: str


@dataclass(slots=True)
class MonthMoney:
    month: str  # 2026-11
    sessions: int = 0
    energy_wh: int = 0  # delivered, by the socket registers
    billed_fen: int = 0  # money taken
    refund_fen: int = 0
    metered_wh: int | None = None  # the main meters' sum, sheds with a reading only
    bought_wh: int = 0  # meter where there is one, else sockets
    losses_wh: int | None = None  # metered - those sheds' sockets
    electricity_fen: int | None = None  # None: no grid price set
    expenses_fen: int = 0
    margin_fen: int | None = None
    expenses: list[Expense] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MoneyPage:
    compound_id: str
    compound_name: str
    grid_fen_per_kwh: int | None
    margin_for: str
    months: list[MonthMoney]  # oldest first

    def to_json(self) -> dict[str, Any]:
        return {
            "compound": {"id": self.compound_id, "name": self.compound_name},
            "grid_fen_per_kwh": self.grid_fen_per_kwh,
            "margin_for": self.margin_for,
            "months": [asdict(m) for m in self.months],
        }


# ------------------------------------------------------------------ months


def parse_month(value: str) -> date:
    m = MONTH.match(value)
    if m is None:
        raise MoneyError("bad_month", f"month must look like 2026-11, not {value!r}")
    return date(int(m[1]), int(m[2]), 1)


def month_label(at: date) -> str:
    return f"{at.year:04d}-{at.month:02d}"


def _next(at: date) -> date:
    return date(at.year + at.month // 12, at.month % 12 + 1, 1)


def months_ending(last: date, count: int) -> list[date]:
    """`count` local months ending with `last`'s, oldest first."""
    out = [date(last.year, last.month, 1)]
    while len(out) < count:
        first = out[0]
        out.insert(0, date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1))
    return out


def electricity_fen(energy_wh: int, grid_fen_per_kwh: int) -> int:
    """Energy x price, rounded half up to a fen."""
    return (energy_wh * grid_fen_per_kwh + 500) // 1000


# ------------------------------------------------------------------ the page


def money_page(db: Session, compound_id: str, *, now_ms: int, months: int = 12) -> MoneyPage:
    compound = db.get(Compound, compound_id)
    if compound is None:
        raise MoneyError("unknown_compound", f"no compound {compound_id!r}")
    if not 1 <= months <= MAX_MONTHS:
        raise MoneyError("bad_months", f"months must be 1..{MAX_MONTHS}")
    wanted = months_ending(local_date(now_ms), months)
    start_ms = local_midnight_ms(wanted[0])
    end_ms = local_midnight_ms(_next(wanted[-1]))
    labels = [month_label(m) for m in wanted]
    by_label = {label: MonthMoney(label) for label in labels}
    shed_socket_wh: dict[tuple[str, str], int] = {}

    r = ReportShedMonth
    rows = db.execute(
        select(r.shed_id, r.month_ms, r.sessions, r.energy_wh, r.billed_fen, r.refund_fen).where(
            r.compound_id == compound_id, r.month_ms >= start_ms, r.month_ms < end_ms
        )
    ).all()
    for shed_id, month_ms, sessions, energy_wh, billed_fen, refund_fen in rows:
        label = month_label(local_date(month_ms))
        m = by_label.get(label)
        if m is None:
            continue
        m.sessions += int(sessions)
        m.energy_wh += int(energy_wh)
        m.billed_fen += int(billed_fen)
        m.refund_fen += int(refund_fen)
        shed_socket_wh[(shed_id, label)] = int(energy_wh)

    meters = db.execute(
        select(MoneyMeterReading.shed_id, MoneyMeterReading.month, MoneyMeterReading.energy_wh)
        .join(Shed, Shed.id == MoneyMeterReading.shed_id)
        .where(Shed.compound_id == compound_id, MoneyMeterReading.month.in_(labels))
    ).all()
    metered: dict[str, tuple[int, int]] = {}  # month: (meters, those sheds' sockets)
    for shed_id, label, energy_wh in meters:
        meter_sum, socket_sum = metered.get(label, (0, 0))
        metered[label] = (
            meter_sum + int(energy_wh),
            socket_sum + shed_socket_wh.get((shed_id, label), 0),
        )

    expenses = db.execute(
        select(MoneyExpense.month, MoneyExpense.amount_fen, MoneyExpense.note)
        .where(MoneyExpense.compound_id == compound_id, MoneyExpense.month.in_(labels))
        .order_by(MoneyExpense.id)
    ).all()
    for label, amount_fen, note in expenses:
        m = by_label[label]
        m.expenses.append(Expense(int(amount_fen), note))
        m.expenses_fen += int(amount_fen)

    settings = db.get(MoneySettings, compound_id)
    price = settings.grid_fen_per_kwh if settings is not None else None
    for label, m in by_label.items():
        m.bought_wh = m.energy_wh
        if label in metered:
            meter_sum, socket_sum = metered[label]
            m.metered_wh = meter_sum
            m.losses_wh = meter_sum - socket_sum
            m.bought_wh = m.energy_wh + m.losses_wh
        if price is not None:
            m.electricity_fen = electricity_fen(m.bought_wh, price)
            m.margin_fen = m.billed_fen - m.electricity_fen - m.expenses_fen
    return MoneyPage(
        compound.id,
        compound.name,
        price,
        settings.margin_for if settings is not None else "",
        [by_label[label] for label in labels],
    )


def compound_of_shed(db: Session, shed_id: str) -> str | None:
    return db.scalar(select(Shed.compound_id).where(Shed.id == shed_id))


# ------------------------------------------------------------------ what the office sets


def _note(value: str | None, limit: int = 200) -> str:
    text = (value or "").strip()
    if len(text) > limit:
        raise MoneyError("too_long", f"at most {limit} characters")
    return text


def set_settings(
    db: Session,
    principal: Principal,
    compound_id: str,
    *,
    grid_fen_per_kwh: int,
    margin_for: str,
    now_ms: int,
) -> MoneySettings:
    if not 1 <= grid_fen_per_kwh <= MAX_GRID_FEN_PER_KWH:
        raise MoneyError("bad_price", f"grid price must be 1..{MAX_GRID_FEN_PER_KWH} fen per kWh")
    purpose = _note(margin_for)
    row = db.get(MoneySettings, compound_id)
    before = None if row is None else {"grid_fen_per_kwh": row.grid_fen_per_kwh,
                                       "margin_for": row.margin_for}  # fmt: skip
    if row is None:
        row = MoneySettings(compound_id=compound_id, grid_fen_per_kwh=grid_fen_per_kwh,
                            margin_for=purpose, updated_ms=now_ms)  # fmt: skip
        db.add(row)
    else:
        row.grid_fen_per_kwh, row.margin_for, row.updated_ms = grid_fen_per_kwh, purpose, now_ms
    audit.record(
        db, principal, action="money_settings", target=f"compound {compound_id}", now_ms=now_ms,
        compound_id=compound_id,
        data={"before": before, "grid_fen_per_kwh": grid_fen_per_kwh, "margin_for": purpose},
    )  # fmt: skip
    return row


def add_expense(
    db: Session,
    principal: Principal,
    compound_id: str,
    *,
    month: str,
    amount_fen: int,
    note: str,
    now_ms: int,
) -> MoneyExpense:
    parse_month(month)
    if not 1 <= amount_fen <= MAX_EXPENSE_FEN:
        raise MoneyError("bad_amount", f"amount must be 1..{MAX_EXPENSE_FEN} fen")
    text = _note(note)
    if not text:
        raise MoneyError("note_required", "an expense line needs a note saying what it was")
    row = MoneyExpense(compound_id=compound_id, month=month, amount_fen=amount_fen, note=text,
                       created_ms=now_ms)  # fmt: skip
    db.add(row)
    db.flush()
    audit.record(
        db, principal, action="money_expense", target=f"expense {row.id}", now_ms=now_ms,
        compound_id=compound_id, note=text, data={"month": month, "amount_fen": amount_fen},
    )  # fmt: skip
    return row


def set_meter(
    db: Session,
    principal: Principal,
    shed_id: str,
    *,
    month: str,
    energy_wh: int,
    now_ms: int,
) -> MoneyMeterReading:
    parse_month(month)
    if not 0 <= energy_wh <= MAX_METER_WH:
        raise MoneyError("bad_energy", f"energy must be 0..{MAX_METER_WH} Wh")
    row = db.get(MoneyMeterReading, (shed_id, month))
    before = None if row is None else row.energy_wh
    if row is None:
        row = MoneyMeterReading(shed_id=shed_id, month=month, energy_wh=energy_wh,
                                updated_ms=now_ms)  # fmt: skip
        db.add(row)
    else:
        row.energy_wh, row.updated_ms = energy_wh, now_ms
    compound_id = compound_of_shed(db, shed_id)
    audit.record(
        db, principal, action="money_meter", target=f"meter {month}", now_ms=now_ms,
        compound_id=compound_id, shed_id=shed_id,
        data={"month": month, "energy_wh": energy_wh, "before": before},
    )  # fmt: skip
    return row


def totals(months: Sequence[MonthMoney]) -> dict[str, int | None]:
    """The sums of the months shown (a money figure is None if any month's is)."""
    out: dict[str, int | None] = {}
    for name in ("sessions", "energy_wh", "billed_fen", "refund_fen", "bought_wh",
                 "expenses_fen", "electricity_fen", "margin_fen"):  # fmt: skip
        values = [getattr(m, name) for m in months]
        out[name] = None if any(v is None for v in values) else sum(values)
    return out
