"""Settings of the central API, read from the environment (prefix `EBSHED_API_`).

Built once at start-up (`ApiSettings()` in `create_app_from_env`) and passed
down; nothing reads the environment at import time.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./ebshed-central.sqlite"
MIN_TOKEN_LEN = 32


def _check_zone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown time zone {name!r} (an IANA name, e.g. Asia/Shanghai)") from err


def weak_token(token: str) -> bool:
    """Too short, or too few different characters to be a random secret."""
    return len(token) < MIN_TOKEN_LEN or len(set(token)) < 12


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EBSHED_API_", extra="ignore", frozen=True)

    # Production mode (EBSHED_API_PRODUCTION=true in a deployment): the API refuses
    # to start with a weak admin token, cookies without Secure, the dev endpoints,
    # the demo's payment credentials or a plain-HTTP public address.
    production: bool = False
    # SQLAlchemy URL. PostgreSQL in production: postgresql+psycopg://user:pw@host/db
    database_url: str = DEFAULT_DATABASE_URL
    # Bearer token for the /api/v1/admin endpoints until user login exists.
    # Unset: the admin endpoints answer 403 admin_disabled.
    admin_token: SecretStr | None = None
    # Run `alembic upgrade head` at start-up (safe with several workers: on
    # PostgreSQL the upgrade holds an advisory lock, on SQLite a write lock).
    auto_migrate: bool = True
    # While a shed's long poll waits, each worker checks the database this often
    # for commands enqueued by other workers (one query for all waiting sheds).
    command_poll_interval_ms: int = Field(default=200, ge=20, le=2000)
    # Upper bound for `wait` on the commands long poll (the contract says 30 s).
    long_poll_max_s: float = Field(default=30.0, gt=0, le=30.0)
    # A shed not heard from for this long shows as offline in /status.
    shed_offline_after_s: int = Field(default=120, ge=10, le=3600)
    # Database connections per worker: kept open, and extra ones under load.
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=20, ge=0, le=200)
    # Log every SQL statement (debugging only).
    sql_echo: bool = False
    # Request bodies larger than this are refused 413 too_large (api/boundary.py);
    # the sheds' own routes (/api/v1/sheds/..., uplink batches) may send more.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_uplink_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    # Strict-Transport-Security is sent on every response served over TLS (or
    # with X-Forwarded-Proto: https from the proxy); `hsts` sends it always.
    hsts: bool = False
    hsts_max_age_s: int = Field(default=31_536_000, ge=0, le=63_072_000)

    # ------------------------------------------------------------ scan-to-pay
    # (docs/scan-to-pay.md). Payments are on when `pay_base_url` is set (or a
    # gateway is handed to create_app); otherwise POST /api/v1/orders answers
    # 503 payments_disabled.
    # Where residents' phones and the provider reach this API from outside,
    # e.g. https://charge.example.com. The notify_url is built from it.
    public_base_url: str = "http://127.0.0.1:8000"
    # Demo only: a folder written by `python -m simulators.payment_provider
    # --credentials DIR` (provider.json and the PEM files); it fills in every
    # pay_* key below that is not set. Never in production (it holds the API v3 key).
    pay_credentials_dir: Path | None = None
    # The provider (payments-v1, WeChat Pay v3 scheme): its base URL, our ids.
    pay_base_url: str | None = None
    pay_mchid: str = ""
    pay_appid: str = ""
    # Serial of our merchant certificate, and the PEM file of its private key.
    pay_merchant_serial: str = ""
    pay_merchant_private_key_path: Path | None = None
    # The provider's platform keys: {"<serial>": "<PEM public key or cert path>"}
    # (JSON in the environment). Several while the provider rotates them.
    pay_platform_public_key_paths: dict[str, Path] = Field(default_factory=dict)
    # The 32-byte API v3 key that decrypts notification resources.
    pay_apiv3_key: SecretStr | None = None
    # Override of the notify_url sent with each order (default:
    # {public_base_url}/pay/notify/wechatpay).
    pay_notify_url: str | None = None
    # The page a phone opens to pay, "{out_trade_no}" replaced; default: the
    # code_url when it is an http(s) URL, else {pay_base_url}/pay/{out_trade_no}.
    pay_page_url: str | None = None
    # An unpaid order is closed this long after it was made (time_expire).
    order_expire_s: int = Field(default=600, ge=60, le=7200)
    # ...but it keeps the socket from other residents only this long: after the
    # hold another phone may take the socket (the unpaid order gives way, and a
    # payment that still arrives for it is refunded in full).
    order_hold_s: int = Field(default=90, ge=10, le=120)
    # Unpaid orders still in their hold that one client (phone, address or
    # device cookie) may have at once; one more is 429 too_many_unpaid.
    order_unpaid_per_client: int = Field(default=2, ge=1, le=20)
    # Count the client address as a client (and rate-limit per address). Off
    # only where every resident shares one address (the demo's simulated phones).
    limit_by_address: bool = True
    # Rate limits (429 rate_limited): order creations per minute per client
    # address, per phone and for the whole API.
    orders_per_address_per_min: int = Field(default=20, ge=1, le=100_000)
    orders_per_phone_per_min: int = Field(default=10, ge=1, le=100_000)
    orders_per_min: int = Field(default=600, ge=1, le=1_000_000)
    # What "until full" prepays; the unused part goes back to the payment.
    order_deposit_fen: int = Field(default=500, ge=1, le=100_000)
    # The amounts offered on the socket page; any amount 1..order_max_fen is accepted.
    order_amounts_fen: list[int] = Field(default_factory=lambda: [100, 200, 300, 500])
    order_max_fen: int = Field(default=10_000, ge=1, le=100_000)
    # A paid start with no result from the shed after this long is refunded in full.
    start_timeout_s: int = Field(default=30, ge=5, le=600)
    # Run the payment workers (refund sender, expiry and query, start timeout)
    # in the background, every interval and at once when there is work.
    pay_workers: bool = True
    pay_worker_interval_ms: int = Field(default=1000, ge=50, le=60_000)
    # A refund still PROCESSING after this long is queried at the provider.
    refund_query_after_s: int = Field(default=300, ge=5, le=86_400)
    # ------------------------------------------------------------ residents' login
    # Dev-only endpoints (GET /api/v1/dev/sms: the simulated SMS outbox). Never in production.
    dev_endpoints: bool = False
    sms_code_ttl_s: int = Field(default=300, ge=60, le=3600)
    sms_resend_after_s: int = Field(default=60, ge=0, le=3600)
    sms_codes_per_day: int = Field(default=10, ge=1, le=100)
    # SMS codes per hour per client address and for the whole API (429 rate_limited).
    sms_per_address_per_hour: int = Field(default=10, ge=1, le=100_000)
    sms_per_hour: int = Field(default=500, ge=1, le=1_000_000)
    # Login attempts (SMS code and password) per minute per client address and
    # for the whole API (429 rate_limited), whatever their outcome.
    logins_per_address_per_min: int = Field(default=30, ge=1, le=100_000)
    logins_per_min: int = Field(default=600, ge=1, le=1_000_000)
    login_max_attempts: int = Field(default=5, ge=1, le=20)
    login_session_days: int = Field(default=30, ge=1, le=365)
    # Send the session cookie over HTTPS only (the demo, on plain HTTP, turns it off).
    cookie_secure: bool = True
    # ------------------------------------------------------------ staff accounts and board
    # (docs/staff-board.md). A password login lasts this long.
    staff_session_hours: int = Field(default=12, ge=1, le=24 * 30)
    # Every time on the staff board and in the audit log is shown in its compound's
    # time zone (IANA name): `compound_timezones` per compound id, else `timezone`.
    timezone: str = "Asia/Shanghai"
    compound_timezones: dict[str, str] = Field(default_factory=dict)
    # Failed password logins are counted per (login name, client address)
    # within the window: after login_failures_per_name of them, each further
    # failure makes that pair wait login_backoff_ms, doubling, at most
    # login_lockout_s (429 too_many_attempts). Once an address has
    # login_failures_per_address failures (many names guessed from it), or a
    # name login_failures_per_name_total from all addresses, every failure of
    # theirs backs off at once. The right password from a pair that has not
    # failed still logs in: no address or name is locked out as a whole.
    login_failures_per_name: int = Field(default=5, ge=1, le=100)
    login_failures_per_address: int = Field(default=20, ge=1, le=1000)
    login_failures_per_name_total: int = Field(default=50, ge=1, le=100_000)
    login_failure_window_s: int = Field(default=900, ge=10, le=86_400)
    login_backoff_ms: int = Field(default=1000, ge=1, le=600_000)
    login_lockout_s: int = Field(default=900, ge=1, le=86_400)
    # Board streams in each worker check the database for changes this often
    # (changes made in the same worker are pushed at once).
    board_poll_interval_ms: int = Field(default=500, ge=20, le=10_000)
    # Live readings older than this show as stale on the board.
    board_live_stale_s: int = Field(default=30, ge=5, le=3600)
    # A board stream ends after this long; the browser reconnects by itself.
    board_stream_max_s: int = Field(default=600, ge=1, le=86_400)
    # How often the API looks for sheds that stopped reporting ("shed offline" alarms).
    api_alarm_interval_s: float = Field(default=10.0, gt=0, le=600)

    @model_validator(mode="after")
    def _production(self) -> ApiSettings:
        if not self.production:
            return self
        problems = []
        token = self.admin_token.get_secret_value() if self.admin_token is not None else None
        if token is not None and weak_token(token):
            problems.append(
                f"EBSHED_API_ADMIN_TOKEN is weak: at least {MIN_TOKEN_LEN} characters of a "
                "random secret (python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if not self.cookie_secure:
            problems.append("EBSHED_API_COOKIE_SECURE must be true")
        if self.dev_endpoints:
            problems.append("EBSHED_API_DEV_ENDPOINTS must be false")
        if self.pay_credentials_dir is not None:
            problems.append("EBSHED_API_PAY_CREDENTIALS_DIR is for the demo only")
        if not self.public_base_url.startswith("https://"):
            problems.append("EBSHED_API_PUBLIC_BASE_URL must be https://")
        if problems:
            raise ValueError("production mode refuses to start: " + "; ".join(problems))
        return self

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        _check_zone(value)
        return value

    @field_validator("compound_timezones")
    @classmethod
    def _zones(cls, value: dict[str, str]) -> dict[str, str]:
        for zone in value.values():
            _check_zone(zone)
        return value

    def zone_of(self, compound_id: str | None) -> ZoneInfo:
        """The time zone the staff pages show a compound's times in."""
        return ZoneInfo(self.compound_timezones.get(compound_id or "", self.timezone))

    @field_validator("order_amounts_fen")
    @classmethod
    def _amounts(cls, value: list[int]) -> list[int]:
        if not value or any(not 1 <= fen <= 100_000 for fen in value):
            raise ValueError("order_amounts_fen: one or more amounts of 1..100000 fen")
        return value
