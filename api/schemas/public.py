"""What residents see at the QR code, before paying (public, no login)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

NotPayable = Literal["busy", "fault", "offline", "disabled", "shed_offline"]


class PublicShed(BaseModel):
    shed: str = Field(description="shed id")
    name: str
    compound: str = Field(description="the compound's name")
    free_sockets: int = Field(description="sockets that can be paid for now (0 when offline)")
    total_sockets: int
    free_bays: int
    total_bays: int
    online: bool
    price: dict[str, Any] = Field(
        description="the posted price: controller.core.tariffs.describe(tariff)"
    )


class PublicSocket(BaseModel):
    shed: str
    shed_name: str
    port: int
    state: str = Field(description="the socket's state as the shed last reported it")
    payable: bool
    reason: NotPayable | None = Field(description="why it cannot be paid for; null if it can")
    price: dict[str, Any]
    deposit_fen: int = Field(description="what 'until full' prepays; the unused part is refunded")
    amounts_fen: list[int] = Field(description="amounts offered for mode 'amount'")
