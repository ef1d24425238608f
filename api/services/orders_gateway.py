"""The payment gateway from the settings (EBSHED_API_PAY_*), built at start-up."""

from __future__ import annotations

import json
from typing import Any

from pydantic import SecretStr

from api.clock import NowMs
from api.payments import WechatPaySettings, WechatPayV3Gateway
from api.services.hooks import Hooks
from api.services.orders_payments import on_session_closed, on_start_result
from api.settings import ApiSettings


def with_credentials_dir(settings: ApiSettings) -> ApiSettings:
    """Fill unset pay_* keys from `pay_credentials_dir` (the simulator's demo credentials:
    provider.json, merchant-private.pem, platform-public.pem)."""
    folder = settings.pay_credentials_dir
    if folder is None:
        return settings
    found = json.loads((folder / "provider.json").read_text(encoding="utf-8"))
    filled: dict[str, Any] = {
        "pay_base_url": settings.pay_base_url or found["base_url"],
        "pay_mchid": settings.pay_mchid or found["mchid"],
        "pay_appid": settings.pay_appid or found["appid"],
        "pay_merchant_serial": settings.pay_merchant_serial or found["merchant_serial"],
        "pay_merchant_private_key_path": settings.pay_merchant_private_key_path
        or folder / "merchant-private.pem",
        "pay_platform_public_key_paths": settings.pay_platform_public_key_paths
        or {found["platform_serial"]: folder / "platform-public.pem"},
        "pay_apiv3_key": settings.pay_apiv3_key or SecretStr(found["apiv3_key"]),
    }
    return settings.model_copy(update=filled)


def gateway_from_settings(settings: ApiSettings, now_ms: NowMs) -> WechatPayV3Gateway | None:
    """The payments-v1 adapter, or None when `pay_base_url` is not set.

    Its clock is the app's (signatures and the 300 s window use the same time
    as everything else). Missing keys are a start-up error that names them."""
    settings = with_credentials_dir(settings)
    if not settings.pay_base_url:
        return None
    missing = [
        name
        for name, value in (
            ("EBSHED_API_PAY_MCHID", settings.pay_mchid),
            ("EBSHED_API_PAY_APPID", settings.pay_appid),
            ("EBSHED_API_PAY_MERCHANT_SERIAL", settings.pay_merchant_serial),
            ("EBSHED_API_PAY_MERCHANT_PRIVATE_KEY_PATH", settings.pay_merchant_private_key_path),
            ("EBSHED_API_PAY_PLATFORM_PUBLIC_KEY_PATHS", settings.pay_platform_public_key_paths),
            ("EBSHED_API_PAY_APIV3_KEY", settings.pay_apiv3_key),
        )
        if not value
    ]
    if missing:
        raise ValueError(f"payments need {', '.join(missing)} (EBSHED_API_PAY_BASE_URL is set)")
    assert settings.pay_merchant_private_key_path is not None
    assert settings.pay_apiv3_key is not None
    pay = WechatPaySettings.from_files(
        base_url=settings.pay_base_url,
        mchid=settings.pay_mchid,
        appid=settings.pay_appid,
        merchant_serial=settings.pay_merchant_serial,
        merchant_private_key_path=settings.pay_merchant_private_key_path,
        platform_public_paths=settings.pay_platform_public_key_paths,
        apiv3_key=settings.pay_apiv3_key.get_secret_value(),
    )
    return WechatPayV3Gateway(pay, clock=lambda: now_ms() / 1000)


def with_order_hooks(hooks: Hooks) -> Hooks:
    """The caller's hooks plus the orders' own: bill a closed session, act on a start's result."""
    return Hooks(
        session_closed=[*hooks.session_closed, on_session_closed],
        command_result=[*hooks.command_result, on_start_result],
    )
