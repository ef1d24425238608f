"""One-time SMS login codes for residents, through a simulated SMS sender.

`OutboxSmsSender` stands in for an SMS gateway: it writes each message to
the `sms_messages` table, where tests and the demo read it
(`GET /api/v1/dev/sms?phone=`, only with `EBSHED_API_DEV_ENDPOINTS=true`).
A real sender implements `SmsSender` and is passed to `create_app` later.

Limits: one code per phone per `sms_resend_after_s`, `sms_codes_per_day` per
phone a day, `login_max_attempts` wrong tries per code (then it is burned);
codes live `sms_code_ttl_s`. Only a hash of each code is kept.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.models import LoginCode, SmsMessage
from api.settings import ApiSettings

DAY_MS: Final = 86_400_000
CODE_IN_TEXT: Final = re.compile(r"(?<![0-9])([0-9]{6})(?![0-9])")
CheckResult = Literal["ok", "wrong", "no_code", "too_many_attempts"]


class TooManyRequests(ApiError):
    status, code = 429, "too_many_requests"


class SmsSender(Protocol):
    def send(self, db: Session, phone: str, text: str, *, now_ms: int) -> None:
        """Send (or queue, in the caller's transaction) one text message."""
        ...


class OutboxSmsSender:
    """The simulated sender: messages land in `sms_messages`."""

    def send(self, db: Session, phone: str, text: str, *, now_ms: int) -> None:
        db.add(SmsMessage(phone=phone, text=text[:256], created_ms=now_ms))


def code_hash(phone: str, code: str) -> str:
    return hashlib.sha256(f"{phone}:{code}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CodeSent:
    expires_in_s: int
    resend_after_s: int


def send_login_code(
    db: Session, phone: str, *, now_ms: int, settings: ApiSettings, sender: SmsSender
) -> CodeSent:
    """Make a 6-digit code for `phone` and send it; 429 if asked too often."""
    last = db.scalar(
        select(LoginCode).where(LoginCode.phone == phone).order_by(LoginCode.created_ms.desc())
    )
    wait_ms = settings.sms_resend_after_s * 1000
    if last is not None and now_ms - last.created_ms < wait_ms:
        left = (wait_ms - (now_ms - last.created_ms) + 999) // 1000
        raise TooManyRequests(f"a code was just sent; ask again in {left} s", code="sms_too_soon")
    today = db.scalar(
        select(func.count())
        .select_from(LoginCode)
        .where(LoginCode.phone == phone, LoginCode.created_ms > now_ms - DAY_MS)
    )
    if int(today or 0) >= settings.sms_codes_per_day:
        raise TooManyRequests("too many codes for this phone today", code="sms_daily_limit")
    code = f"{secrets.randbelow(1_000_000):06d}"
    ttl_min = settings.sms_code_ttl_s // 60
    db.add(
        LoginCode(
            phone=phone,
            code_hash=code_hash(phone, code),
            created_ms=now_ms,
            expires_ms=now_ms + settings.sms_code_ttl_s * 1000,
            attempts=0,
        )
    )
    text = (
        f"【充电车棚】验证码 {code}，{ttl_min}分钟内有效，请勿告诉他人。"
        f"Your login code is {code} (valid {ttl_min} min)."
    )
    sender.send(db, phone, text, now_ms=now_ms)
    return CodeSent(settings.sms_code_ttl_s, settings.sms_resend_after_s)


def check_login_code(
    db: Session, phone: str, code: str, *, now_ms: int, settings: ApiSettings
) -> CheckResult:
    """Check a code against the phone's newest live one. A wrong try counts (the
    caller commits it); a right one is used up."""
    live = db.scalar(
        select(LoginCode)
        .where(
            LoginCode.phone == phone,
            LoginCode.used_ms.is_(None),
            LoginCode.expires_ms > now_ms,
        )
        .order_by(LoginCode.created_ms.desc())
        .limit(1)
        .with_for_update()
    )
    if live is None:
        return "no_code"
    if live.attempts >= settings.login_max_attempts:
        return "too_many_attempts"
    if not hmac.compare_digest(live.code_hash, code_hash(phone, code)):
        live.attempts += 1
        return "too_many_attempts" if live.attempts >= settings.login_max_attempts else "wrong"
    live.used_ms = now_ms
    return "ok"


def outbox(db: Session, phone: str | None, limit: int = 20) -> Sequence[SmsMessage]:
    query = select(SmsMessage)
    if phone is not None:
        query = query.where(SmsMessage.phone == phone)
    return db.scalars(query.order_by(SmsMessage.id.desc()).limit(limit)).all()


def code_in(text: str) -> str | None:
    found = CODE_IN_TEXT.search(text)
    return found.group(1) if found else None
