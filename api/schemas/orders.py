"""Scan-to-pay orders as residents see them (docs/scan-to-pay.md)."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.schemas.common import PlainId, Port

PHONE_PATTERN: Final = r"^1[3-9][0-9]{9}$"  # a mainland mobile number
Phone = Annotated[str, StringConstraints(pattern=PHONE_PATTERN)]
OrderMode = Literal["until_full", "amount"]


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # unknown fields are refused, not dropped

    shed_id: PlainId
    port: Port
    mode: OrderMode
    amount_fen: Annotated[int, Field(strict=True, ge=1)] | None = Field(
        None, description="for mode 'amount'; 'until_full' prepays the deposit"
    )
    phone: Phone | None = Field(None, description="required unless logged in")


class OrderCreated(BaseModel):
    out_trade_no: str
    status: str
    amount_fen: int
    code_url: str | None = Field(description="what the provider's QR code encodes")
    pay_url: str | None = Field(description="the provider's pay page for this order")
    expires_ms: int | None


class SessionProgress(BaseModel):
    state: Literal["charging", "stopping", "ended"]
    w: float | None = Field(description="power at the last checkpoint")
    energy_wh: int
    minutes: int = Field(description="started minutes so far (billing is per started minute)")
    cost_fen: int = Field(description="cost so far; the billed amount once ended")
    started_ms: int
    ended_ms: int | None
    end_reason: str | None
    warnings: list[str] = Field(
        default_factory=list,
        description="charge-curve anomalies the shed saw (anomaly_* kinds, docs/configuration.md)",
    )


class Receipt(BaseModel):
    lines: list[dict[str, Any]] = Field(description="the shed's bill lines")
    billed_fen: int
    refund_fen: int
    refund_status: str | None = Field(
        description="null (nothing to refund), pending, processing, success; "
        "abnormal, closed or failed need staff"
    )


class OrderView(BaseModel):
    out_trade_no: str
    status: str
    shed: str
    port: int
    mode: str
    amount_fen: int
    paid_fen: int
    session: SessionProgress | None
    receipt: Receipt | None
    problem: str | None = Field(
        description="why it ended as it did: start_refused:<code>, start_timeout, "
        "shed_offline, expired, superseded, create_failed, not_paid"
    )
    pay_url: str | None
    expires_ms: int | None
    created_ms: int


class StopAnswer(BaseModel):
    out_trade_no: str
    command_id: str


class MySessions(BaseModel):
    phone: str
    orders: list[OrderView]


class RefundView(BaseModel):
    """A refund (staff view)."""

    model_config = ConfigDict(from_attributes=True)

    out_refund_no: str
    out_trade_no: str
    amount_fen: int
    status: str
    reason: str
    refund_id: str | None
    attempts: int
    last_error: str | None
    created_ms: int
    done_ms: int | None


class RefusedNotificationView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    received_ms: int
    code: str
    detail: str
    notification_id: str | None
    event_type: str | None
    out_trade_no: str | None
