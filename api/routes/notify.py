"""The provider's notify_url (payments-v1): payments and refunds arrive here."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import CtxDep
from api.services.orders_payments import handle_notification

router = APIRouter(tags=["payments"])


@router.post(
    "/pay/notify/wechatpay",
    status_code=204,
    responses={
        204: {"description": "applied, or a duplicate (changes nothing)"},
        400: {"description": '{"code": "FAIL", "message": <why>}: refused, nothing changed'},
        503: {"description": "payments are not configured"},
    },
)
async def wechatpay_notify(request: Request, ctx: CtxDep) -> Response:
    """Verify the signature (and the time) with the provider's key, decrypt, check
    the order and the amount, and apply it exactly once. A 5xx makes the
    provider send it again later; a 4xx says it will never be good."""
    assert ctx.orders is not None
    gateway = ctx.orders.gateway  # 503 payments_disabled
    body = await request.body()
    answer = await run_in_threadpool(
        handle_notification,
        ctx.sessions,
        gateway,
        request.headers,
        body,
        now_ms=ctx.now_ms(),
        settings=ctx.settings,
    )
    if answer.status == 204:
        return Response(status_code=204)
    return JSONResponse(answer.problem(), status_code=answer.status)
