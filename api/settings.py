"""Settings of the central API, read from the environment (prefix `EBSHED_API_`).

Built once at start-up (`ApiSettings()` in `create_app_from_env`) and passed
down; nothing reads the environment at import time.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./ebshed-central.sqlite"


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EBSHED_API_", extra="ignore", frozen=True)

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
