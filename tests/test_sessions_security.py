"""Sessions and transport (docs/security.md): Secure cookies by default, the
security headers on every response and HSTS over TLS, and a production mode
that refuses to start with a weak admin token."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from pydantic import ValidationError

from api.settings import ApiSettings

if TYPE_CHECKING:
    from tests.api_db import ApiFactory

pytest_plugins = ["tests.api_db"]

PASSWORD = "correct horse battery"
STRONG = "q8Vd1mZk3sXo-9T_aLw2Rb7NcYe4PfHu6JgE"


def test_cookies_are_secure_unless_turned_off() -> None:
    assert ApiSettings().cookie_secure is True


async def test_the_login_cookie_is_secure_by_default(api_factory: ApiFactory) -> None:
    async with api_factory(cookie_secure=True) as api:
        await api.user("staff", "demo", login="zhang")
        answer = await api.client.post(
            "/api/v1/auth/password", json={"login": "zhang", "password": PASSWORD}
        )
        cookie = answer.headers["set-cookie"]
        assert "ebshed_session=" in cookie
        assert "Secure" in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()


async def test_every_response_has_the_security_headers_and_hsts_over_tls(
    api_factory: ApiFactory,
) -> None:
    async with api_factory() as api:
        for url in ("/healthz", "/api/v1/public/sheds/nope", "/login", "/s/nope/1"):
            answer = await api.client.get(url)
            headers = answer.headers
            assert headers["X-Content-Type-Options"] == "nosniff", url
            assert headers["X-Frame-Options"] == "DENY", url
            assert headers["Referrer-Policy"] == "same-origin", url
            assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], url
            assert "Strict-Transport-Security" not in headers, url  # plain HTTP
        behind_tls = await api.client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
        assert behind_tls.headers["Strict-Transport-Security"] == "max-age=31536000"
    async with api_factory(hsts=True) as api:
        answer = await api.client.get("/api/v1/public/sheds/nope")
        assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"


@pytest.mark.parametrize(
    "token", ["test-admin-token", "a" * 40, "changeme-changeme-changeme-changeme"]
)
def test_production_refuses_a_weak_admin_token(token: str) -> None:
    with pytest.raises(ValidationError, match="EBSHED_API_ADMIN_TOKEN is weak"):
        ApiSettings(production=True, admin_token=token, public_base_url="https://c.example")


def test_production_refuses_demo_settings_and_accepts_a_real_one() -> None:
    with pytest.raises(ValidationError) as refused:
        ApiSettings(
            production=True, admin_token=STRONG, cookie_secure=False, dev_endpoints=True,
            public_base_url="http://c.example",
        )  # fmt: skip
    message = str(refused.value)
    assert "COOKIE_SECURE must be true" in message
    assert "DEV_ENDPOINTS must be false" in message
    assert "PUBLIC_BASE_URL must be https://" in message
    ok = ApiSettings(production=True, admin_token=STRONG, public_base_url="https://c.example")
    assert ok.cookie_secure and ok.production
    assert ApiSettings(production=True, public_base_url="https://c.example").admin_token is None
