"""`WechatPayV3Gateway`: the payments-v1 adapter over HTTP (httpx.AsyncClient).

All policy-free I/O: it signs each request with the merchant key, sends it,
checks the provider's signature on every 2xx answer, and turns the answer into
a value or a typed error. The clock, the nonce source and the sleep between
attempts are injected, so tests are deterministic.

Retries: a transport error, a timeout, a 429 or a 5xx is retried up to
`settings.max_attempts` times with a fresh timestamp, nonce and signature but
the same body. That is safe because every call is idempotent at the provider
(same `out_trade_no` with the same fields -> same `code_url`; same
`out_refund_no` -> the same refund). A 4xx is never retried.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

import httpx

from api.payments import crypto, messages
from api.payments.errors import (
    BadProviderResponse,
    NotificationRejected,
    OrderNotFound,
    ProviderRejected,
    ProviderUnavailable,
)
from api.payments.models import OrderQuery, PaymentNotification, RefundNotification, RefundResult
from api.payments.notifications import parse_notification, verify_signed_body
from api.payments.settings import WechatPaySettings

USER_AGENT: Final = "ebshed-payments/1 (payments-v1)"
NOT_FOUND_CODES: Final = frozenset({"ORDER_NOT_EXIST", "RESOURCE_NOT_EXISTS"})


def random_nonce() -> str:
    """32 upper-case hex characters, like the contract's vector."""
    return secrets.token_hex(16).upper()


class WechatPayV3Gateway:
    """Implements `PaymentGateway` for the payments-v1 (WeChat Pay API v3 Native) scheme."""

    def __init__(
        self,
        settings: WechatPaySettings,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = random_nonce,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=settings.timeout_s)
        self._clock = clock
        self._nonce = nonce
        self._sleep = sleep

    async def __aenter__(self) -> WechatPayV3Gateway:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this gateway made it."""
        if self._own_client:
            await self._client.aclose()

    # --- PaymentGateway -------------------------------------------------

    async def create_order(
        self,
        out_trade_no: str,
        description: str,
        amount_fen: int,
        time_expire: datetime,
        notify_url: str,
    ) -> str:
        body = messages.order_body(
            appid=self.settings.appid,
            mchid=self.settings.mchid,
            description=description,
            out_trade_no=out_trade_no,
            time_expire=time_expire,
            notify_url=notify_url,
            amount_fen=amount_fen,
        )
        response = await self._call("POST", "/v3/pay/transactions/native", body)
        return messages.read_code_url(response.content)

    async def query_order(self, out_trade_no: str) -> OrderQuery:
        no = messages.check_out_trade_no(out_trade_no)
        path = f"/v3/pay/transactions/out-trade-no/{no}?mchid={quote(self.settings.mchid)}"
        response = await self._call("GET", path, b"")
        return messages.read_order_query(response.content)

    async def close_order(self, out_trade_no: str) -> None:
        no = messages.check_out_trade_no(out_trade_no)
        path = f"/v3/pay/transactions/out-trade-no/{no}/close"
        await self._call("POST", path, messages.close_body(self.settings.mchid))

    async def refund(
        self, out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int
    ) -> RefundResult:
        body = messages.refund_body(out_trade_no, out_refund_no, refund_fen, total_fen)
        response = await self._call("POST", "/v3/refund/domestic/refunds", body)
        return messages.read_refund_result(response.content)

    def parse_notification(
        self, headers: Mapping[str, str], body: bytes, now_s: int
    ) -> PaymentNotification | RefundNotification:
        return parse_notification(
            headers,
            body,
            now_s,
            platform_keys=self.settings.platform_keys,
            apiv3_key=self.settings.apiv3_key,
            mchid=self.settings.mchid,
            window_s=self.settings.timestamp_window_s,
        )

    # --- beyond the Protocol ------------------------------------------------

    async def query_refund(self, out_refund_no: str) -> RefundResult:
        """The state of one refund (for when its notification does not arrive)."""
        no = messages.check_out_refund_no(out_refund_no)
        response = await self._call("GET", f"/v3/refund/domestic/refunds/{no}", b"")
        return messages.read_refund_result(response.content)

    def signed_headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        """The headers of one request; `url` is the path with its query, as sent."""
        timestamp = str(int(self._clock()))
        nonce = self._nonce()
        message = crypto.request_message(method, url, timestamp, nonce, body)
        signature = crypto.sign(self.settings.merchant_private_key, message)
        auth = crypto.authorization(
            self.settings.mchid, self.settings.merchant_serial, timestamp, nonce, signature
        )
        headers = {"Authorization": auth, "Accept": "application/json", "User-Agent": USER_AGENT}
        if method.upper() != "GET":
            headers["Content-Type"] = "application/json"
        return headers

    # --- I/O ------------------------------------------------------------------

    async def _call(self, method: str, path: str, body: bytes) -> httpx.Response:
        """Send one signed request, retrying transient failures; 2xx or a typed error."""
        failure = ""
        for attempt in range(self.settings.max_attempts):
            if attempt:
                await self._sleep(self.settings.retry_backoff_s * 2 ** (attempt - 1))
            request = self._client.build_request(
                method, self.settings.base_url + path, content=body or None
            )
            url = request.url.raw_path.decode("ascii")
            request.headers.update(self.signed_headers(method, url, body))
            try:
                response = await self._client.send(request)
            except httpx.TransportError as err:
                failure = f"{method} {path}: {type(err).__name__}: {err}"
                continue
            if response.status_code >= 500 or response.status_code == 429:
                failure = f"{method} {path}: HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                code, text = messages.read_error(response.content)
                if response.status_code == 404 and code in NOT_FOUND_CODES:
                    raise OrderNotFound(response.status_code, code, text)
                raise ProviderRejected(response.status_code, code, text)
            if not 200 <= response.status_code < 300:
                raise BadProviderResponse(
                    "bad_response", f"{method} {path}: HTTP {response.status_code}"
                )
            self._check_signature(response)
            return response
        raise ProviderUnavailable(f"{failure} (after {self.settings.max_attempts} attempts)")

    def _check_signature(self, response: httpx.Response) -> None:
        if not self.settings.verify_responses:
            return
        try:
            verify_signed_body(
                response.headers,
                response.content,
                int(self._clock()),
                self.settings.platform_keys,
                self.settings.timestamp_window_s,
            )
        except NotificationRejected as err:
            detail = f"{err.code}: {err.detail}"
            raise BadProviderResponse("bad_response_signature", detail) from err


if TYPE_CHECKING:
    from api.payments.gateway import PaymentGateway

    def _satisfies_protocol(gateway: WechatPayV3Gateway) -> PaymentGateway:
        return gateway  # mypy fails here if the adapter drifts from the Protocol
