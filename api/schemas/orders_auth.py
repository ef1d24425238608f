"""Residents' SMS login (simulated SMS sender)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from api.schemas.orders import Phone

Code = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]


class SmsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # unknown fields are refused, not dropped

    phone: Phone


class SmsSent(BaseModel):
    sent: bool
    expires_in_s: int
    resend_after_s: int


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # unknown fields are refused, not dropped

    phone: Phone
    code: Code


class LoginAnswer(BaseModel):
    token: str
    phone: str
    expires_ms: int


class SmsView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    phone: str
    text: str
    created_ms: int
    code: str | None
