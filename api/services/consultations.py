"""Consultations: the office puts a proposal to the compound's households,
each registered household answers once (changeable until the close), and the
result is published on the money page (docs/money-page.md).

- households: the office's list (building, unit, flat, phones), imported
  from CSV; a resident logged in by SMS code answers for the household whose
  phones include theirs;
- a proposal: a new tariff (the current and the proposed price side by side,
  with what a typical overnight charge costs under each), N more sockets in a
  shed, or free text; a closing time and a threshold: the share of the
  households that answer who must say yes;
- a tariff proposal that passed can be applied once, by staff, through the
  staff tariff action (api/services/staff_tariffs.py, audited); one that
  failed or is still open cannot.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.access import Principal
from api.models import Consultation, ConsultationAnswer, Household, Shed, User
from api.repos import orders as order_repo
from api.services import audit, staff_tariffs
from controller.core.tariffs import (
    MS_PER_MINUTE,
    TariffError,
    Usage,
    default_tariff,
    describe,
    tariff_from_dict,
    tariff_to_dict,
)

PHONE: Final = re.compile(r"^1[3-9]\d{9}$")
PART: Final = re.compile(r"^[0-9A-Za-z\u4e00-\u9fff-]{1,16}$")
MAX_HOUSEHOLDS: Final = 5000
ANSWERS: Final = ("yes", "no")
# A typical overnight charge: plugged in at 22:00 local, 8 hours at 200 W (1.6 kWh).
OVERNIGHT_START_MIN: Final = 22 * 60
OVERNIGHT_MINUTES: Final = 480
OVERNIGHT_W: Final = 200.0
OVERNIGHT_WH: Final = 1600
DAY_MS: Final = 86_400_000
LOCAL_OFFSET_MS: Final = 8 * 3_600_000


class ConsultationError(ValueError):
    def __init__(self, code: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


# ------------------------------------------------------------------ households


def parse_households(text: str) -> list[tuple[str, str, str, list[str]]]:
    """CSV with a header `building,unit,flat,phones` (phones separated by `;`
    or spaces). Every bad row is reported by its line number; none is taken."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    rows = list(reader)
    if not rows or [c.strip().lower() for c in rows[0][:4]] != [
        "building",
        "unit",
        "flat",
        "phones",
    ]:
        raise ConsultationError("bad_csv", "the first line must be: building,unit,flat,phones")
    out: list[tuple[str, str, str, list[str]]] = []
    problems: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 4:
            problems.append(f"line {line}: 4 fields expected")
            continue
        building, unit, flat = (c.strip() for c in row[:3])
        phones = [p for p in re.split(r"[;\s]+", row[3].strip()) if p]
        if not all(PART.match(v) for v in (building, unit, flat)):
            problems.append(f"line {line}: building, unit and flat are 1-16 letters or digits")
        elif not phones or not all(PHONE.match(p) for p in phones):
            problems.append(f"line {line}: phones must be mainland mobile numbers")
        elif (building, unit, flat) in seen:
            problems.append(f"line {line}: {building}-{unit}-{flat} twice")
        else:
            seen.add((building, unit, flat))
            out.append((building, unit, flat, sorted(set(phones))))
    if problems:
        raise ConsultationError("bad_csv", "; ".join(problems[:20]))
    if len(out) > MAX_HOUSEHOLDS:
        raise ConsultationError("bad_csv", f"at most {MAX_HOUSEHOLDS} households")
    return out


def import_households(
    db: Session, principal: Principal, compound_id: str, text: str, *, now_ms: int
) -> dict[str, int]:
    """Add the CSV's households and update those already listed (by building,
    unit and flat). Households not in the file stay."""
    rows = parse_households(text)
    existing = {
        (h.building, h.unit, h.flat): h
        for h in db.scalars(select(Household).where(Household.compound_id == compound_id))
    }
    added = updated = 0
    for building, unit, flat, phones in rows:
        row = existing.get((building, unit, flat))
        if row is None:
            db.add(Household(compound_id=compound_id, building=building, unit=unit, flat=flat,
                             phones=phones, updated_ms=now_ms))  # fmt: skip
            added += 1
        elif row.phones != phones:
            row.phones, row.updated_ms = phones, now_ms
            updated += 1
    audit.record(
        db, principal, action="households_import", target=f"compound {compound_id}",
        now_ms=now_ms, compound_id=compound_id, data={"added": added, "updated": updated},
    )  # fmt: skip
    total = len(existing) + added
    return {"added": added, "updated": updated, "households": total}


def household_of(db: Session, compound_id: str, phone: str) -> Household | None:
    for row in db.scalars(select(Household).where(Household.compound_id == compound_id)):
        if phone in row.phones:
            return row
    return None


# ------------------------------------------------------------------ proposals


def overnight_fen(body: Mapping[str, Any], day_ms: int) -> int:
    """What the typical overnight charge costs under the tariff `body`."""
    tariff = tariff_from_dict(body)
    local_day = (day_ms + LOCAL_OFFSET_MS) // DAY_MS * DAY_MS - LOCAL_OFFSET_MS
    start = local_day + OVERNIGHT_START_MIN * MS_PER_MINUTE
    usage = Usage(start)
    for minute in range(1, OVERNIGHT_MINUTES + 1):
        wh = minute * OVERNIGHT_WH // OVERNIGHT_MINUTES
        wh -= (minute - 1) * OVERNIGHT_WH // OVERNIGHT_MINUTES
        usage.add(start + minute * MS_PER_MINUTE, OVERNIGHT_W, wh)
    return usage.cost_so_far_fen(tariff)


def _tariff_data(db: Session, compound_id: str, proposal: Any, now_ms: int) -> dict[str, Any]:
    if not isinstance(proposal, Mapping):
        raise ConsultationError("bad_tariff", "a tariff proposal needs the new tariff")
    current = order_repo.newest_compound_tariff(db, compound_id)
    old_body = dict(current.body) if current is not None else tariff_to_dict(default_tariff())
    new_body = {**proposal, "version": 1}
    try:
        old, new = tariff_from_dict(old_body), tariff_from_dict(new_body)
        old_fen, new_fen = overnight_fen(old_body, now_ms), overnight_fen(new_body, now_ms)
    except (TariffError, ValueError, TypeError, KeyError) as err:
        raise ConsultationError("bad_tariff", str(err)) from err
    return {
        "old": {"body": old_body, "price": _price(describe(old)), "overnight_fen": old_fen},
        "new": {"body": dict(proposal), "price": _price(describe(new)), "overnight_fen": new_fen},
        "overnight": {"start": "22:00", "hours": OVERNIGHT_MINUTES // 60,
                      "watts": int(OVERNIGHT_W), "energy_wh": OVERNIGHT_WH},
    }  # fmt: skip


def _price(summary: Mapping[str, Any]) -> dict[str, str]:
    return {"zh": str(summary["summary_zh"]), "en": str(summary["summary_en"])}


def open_consultation(
    db: Session,
    principal: Principal,
    compound_id: str,
    *,
    kind: str,
    title: str,
    text: str,
    closes_ms: int,
    threshold_pct: int,
    proposal: Any,
    now_ms: int,
) -> Consultation:
    if kind not in ("tariff", "sockets", "text"):
        raise ConsultationError("bad_kind", "kind must be tariff, sockets or text")
    if not 50 <= threshold_pct <= 100:
        raise ConsultationError("bad_threshold", "threshold must be 50..100 % of the answers")
    if closes_ms <= now_ms:
        raise ConsultationError("bad_close", "the closing time must be in the future")
    title = title.strip()
    if not 1 <= len(title) <= 120 or len(text) > 2000:
        raise ConsultationError("bad_text", "a title of 1-120 characters, a text of at most 2000")
    data: dict[str, Any]
    if kind == "tariff":
        data = _tariff_data(db, compound_id, proposal, now_ms)
    elif kind == "sockets":
        shed_id = proposal.get("shed_id") if isinstance(proposal, Mapping) else None
        sockets = proposal.get("sockets") if isinstance(proposal, Mapping) else None
        shed = db.get(Shed, shed_id) if isinstance(shed_id, str) else None
        if shed is None or shed.compound_id != compound_id:
            raise ConsultationError("unknown_shed", "the shed must be one of this compound's")
        if not isinstance(sockets, int) or isinstance(sockets, bool) or not 1 <= sockets <= 100:
            raise ConsultationError("bad_sockets", "sockets must be 1..100")
        data = {"shed_id": shed.id, "shed_name": shed.name, "sockets": sockets}
    else:
        data = {}
    row = Consultation(compound_id=compound_id, kind=kind, title=title, text=text, data=data,
                       threshold_pct=threshold_pct, opened_ms=now_ms, closes_ms=closes_ms,
                       applied_ms=None)  # fmt: skip
    db.add(row)
    db.flush()
    audit.record(
        db, principal, action="consultation_open", target=f"consultation {row.id}",
        now_ms=now_ms, compound_id=compound_id, note=title,
        data={"kind": kind, "threshold_pct": threshold_pct, "closes_ms": closes_ms},
    )  # fmt: skip
    return row


# ------------------------------------------------------------------ answers and results


@dataclass(frozen=True, slots=True)
class Count:
    yes: int
    no: int
    households: int

    @property
    def answered(self) -> int:
        return self.yes + self.no


def count(db: Session, consultation: Consultation) -> Count:
    a = ConsultationAnswer
    rows = dict(
        db.execute(
            select(a.answer, func.count())
            .where(a.consultation_id == consultation.id)
            .group_by(a.answer)
        ).all()
    )
    households = db.scalar(
        select(func.count()).select_from(Household)
        .where(Household.compound_id == consultation.compound_id)
    )  # fmt: skip
    return Count(int(rows.get("yes", 0)), int(rows.get("no", 0)), int(households or 0))


def passed(consultation: Consultation, c: Count) -> bool:
    return c.answered > 0 and c.yes * 100 >= consultation.threshold_pct * c.answered


def status(consultation: Consultation, c: Count, now_ms: int) -> str:
    if now_ms < consultation.closes_ms:
        return "open"
    return "passed" if passed(consultation, c) else "failed"


def answer(
    db: Session, consultation: Consultation, user_id: int, choice: str, *, now_ms: int
) -> Household:
    if choice not in ANSWERS:
        raise ConsultationError("bad_answer", "answer yes or no")
    if now_ms >= consultation.closes_ms:
        raise ConsultationError("consultation_closed", "the consultation has closed", 409)
    household = household_for_user(db, consultation.compound_id, user_id)
    if household is None:
        raise ConsultationError(
            "not_a_household", "this phone is not registered for a household here", 403
        )
    row = db.get(ConsultationAnswer, (consultation.id, household.id))
    if row is None:
        db.add(ConsultationAnswer(consultation_id=consultation.id, household_id=household.id,
                                  answer=choice, user_id=user_id, at_ms=now_ms))  # fmt: skip
    else:
        row.answer, row.user_id, row.at_ms = choice, user_id, now_ms
    return household


def household_for_user(db: Session, compound_id: str, user_id: int) -> Household | None:
    user = db.get(User, user_id)
    if user is None or not user.phone:
        return None
    return household_of(db, compound_id, user.phone)


def my_answer(db: Session, consultation: Consultation, user_id: int) -> str | None:
    household = household_for_user(db, consultation.compound_id, user_id)
    if household is None:
        return None
    row = db.get(ConsultationAnswer, (consultation.id, household.id))
    return row.answer if row is not None else None


def apply_tariff(
    db: Session, principal: Principal, consultation: Consultation, *, now_ms: int
) -> dict[str, Any]:
    """Publish the passed tariff proposal to the compound's sheds (once)."""
    if consultation.kind != "tariff":
        raise ConsultationError("not_a_tariff", "only a tariff proposal can be applied", 409)
    if consultation.applied_ms is not None:
        raise ConsultationError("already_applied", "this proposal was applied already", 409)
    c = count(db, consultation)
    state = status(consultation, c, now_ms)
    if state != "passed":
        raise ConsultationError(f"consultation_{state}", f"the consultation is {state}", 409)
    body = consultation.data["new"]["body"]
    tariff, _rows = staff_tariffs.publish_tariff(
        db, principal, consultation.compound_id, body,
        f"consultation {consultation.id}: {c.yes} of {c.answered} households said yes",
        now_ms=now_ms,
    )  # fmt: skip
    consultation.applied_ms = now_ms
    audit.record(
        db, principal, action="consultation_apply", target=f"consultation {consultation.id}",
        now_ms=now_ms, compound_id=consultation.compound_id,
        data={"tariff": tariff.id, "version": tariff.version, "yes": c.yes, "no": c.no},
    )  # fmt: skip
    return {"tariff": tariff.id, "version": tariff.version}


def public_view(db: Session, consultation: Consultation, now_ms: int) -> dict[str, Any]:
    c = count(db, consultation)
    data = dict(consultation.data)
    if consultation.kind == "tariff":  # the bodies are for staff; residents see the prices
        data = {k: {kk: vv for kk, vv in v.items() if kk != "body"} if isinstance(v, dict) else v
                for k, v in data.items()}  # fmt: skip
    return {
        "id": consultation.id,
        "compound_id": consultation.compound_id,
        "kind": consultation.kind,
        "title": consultation.title,
        "text": consultation.text,
        "proposal": data,
        "threshold_pct": consultation.threshold_pct,
        "opened_ms": consultation.opened_ms,
        "closes_ms": consultation.closes_ms,
        "applied": consultation.applied_ms is not None,
        "status": status(consultation, c, now_ms),
        "count": {"yes": c.yes, "no": c.no, "answered": c.answered, "households": c.households},
    }


def of_compound(db: Session, compound_id: str) -> list[Consultation]:
    return list(
        db.scalars(
            select(Consultation)
            .where(Consultation.compound_id == compound_id)
            .order_by(Consultation.id.desc())
        )
    )
