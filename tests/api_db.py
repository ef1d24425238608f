"""Databases and a client for the API tests, as a pytest plugin.

Test modules say `pytest_plugins = ["tests.api_db"]` and import from here only
under TYPE_CHECKING (so that pytest imports it first and rewrites its asserts).

Every API test runs twice, on SQLite and on PostgreSQL, against a schema
made by the Alembic migrations:

- SQLite: the migrations run once into a template file; each test gets a copy.
- PostgreSQL: a database `ebshed_test_<random>` is created once per test
  session (through the `EBSHED_TEST_POSTGRES` server, default
  postgresql://postgres@127.0.0.1:5432/test), migrated, emptied before each
  test, and dropped at the end. Without a server the PostgreSQL half is
  skipped with the reason, except in CI (`CI=true`), where it fails.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api.db import normalize_url, upgrade
from api.main import create_app
from api.models import Base
from api.services.hooks import Hooks
from api.settings import ApiSettings

PG_SERVER_URL = os.environ.get(
    "EBSHED_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
ADMIN_TOKEN = "test-admin-token"
USER_PASSWORD = "correct horse battery"
START_MS = 1_795_341_000_000
BACKENDS = ("sqlite", "postgresql")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; PostgreSQL is required in CI")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api-db") / "template.sqlite"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """URL of a fresh, migrated PostgreSQL database for this test session."""
    server_url = make_url(normalize_url(PG_SERVER_URL))
    name = f"ebshed_test_{uuid.uuid4().hex[:12]}"
    server = create_engine(
        server_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    try:
        with server.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as err:  # no server, no rights: the reason goes into the skip
        server.dispose()
        _unavailable(f"no PostgreSQL at {server_url.render_as_string()} ({type(err).__name__})")
    url = server_url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


def _empty_postgres(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of each backend."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "central.sqlite"
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database")
    _empty_postgres(url)
    return url


@dataclass
class FakeClock:
    """Timestamps in the API come from here; long polls still wait in real time."""

    now: int = START_MS

    def __call__(self) -> int:
        return self.now


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    clock: FakeClock
    settings: ApiSettings
    admin: dict[str, str] = field(default_factory=lambda: bearer(ADMIN_TOKEN))

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return bearer(token)

    async def register_shed(
        self,
        shed_id: str | None = None,
        *,
        compound_id: str = "demo",
        ports: list[int] | None = None,
        bays: list[dict[str, Any]] | None = None,
    ) -> tuple[str, dict[str, str]]:
        """Register (compound and) shed; the shed id and its auth headers."""
        shed_id = shed_id or f"shed-{uuid.uuid4().hex[:8]}"
        await self.client.post(
            "/api/v1/admin/compounds",
            json={"id": compound_id, "name": "演示小区"},
            headers=self.admin,
        )
        response = await self.client.post(
            "/api/v1/admin/sheds",
            json={
                "id": shed_id,
                "name": f"车棚 {shed_id}",
                "compound_id": compound_id,
                "ports": ports if ports is not None else [1, 2, 3, 4],
                "bays": bays if bays is not None else [{"number": 1, "port": 1}],
            },
            headers=self.admin,
        )
        assert response.status_code == 201, response.text
        return shed_id, bearer(response.json()["token"])

    async def user(
        self,
        role: str | None,
        compound_id: str | None = "demo",
        *,
        login: str | None = None,
        password: str = USER_PASSWORD,
        grants: list[tuple[str, str | None]] | None = None,
    ) -> dict[str, str]:
        """A user with a password and a grant of `role` in `compound_id` (None: every
        compound; `role` None: no grant at all, like a resident), logged in:
        the `Authorization` headers of their login token.

        `grants` gives several (role, compound) pairs instead. A compound that
        does not exist yet is made first."""
        from api.services.accounts import GrantSpec, create_user

        pairs = grants if grants is not None else [] if role is None else [(role, compound_id)]
        for _, compound in pairs:
            if compound is not None:
                await self.client.post(
                    "/api/v1/admin/compounds",
                    json={"id": compound, "name": f"小区 {compound}"},
                    headers=self.admin,
                )
        login = login or f"{role or 'nobody'}-{uuid.uuid4().hex[:8]}"
        with self.app.state.ctx.sessions() as db, db.begin():
            create_user(
                db,
                login=login,
                name=login,
                password=password,
                grants=[GrantSpec(r, c) for r, c in pairs],
                now_ms=self.clock.now,
            )
        response = await self.client.post(
            "/api/v1/auth/password", json={"login": login, "password": password}
        )
        assert response.status_code == 200, response.text
        self.client.cookies.clear()  # the headers say who calls, not a shared cookie jar
        return bearer(response.json()["token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_settings(db_url: str, **overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "admin_token": ADMIN_TOKEN,
        "auto_migrate": False,  # the fixtures migrated it; start-up only checks
        "command_poll_interval_ms": 100,
        "cookie_secure": False,  # the test servers speak plain HTTP
    }
    values.update(overrides)
    return ApiSettings(**values)


@asynccontextmanager
async def start_api(
    db_url: str, *, hooks: Hooks | None = None, **overrides: Any
) -> AsyncIterator[Api]:
    """An app with its lifespan running, and an in-process client."""
    settings = api_settings(db_url, **overrides)
    clock = FakeClock()
    app = create_app(settings, now_ms=clock, hooks=hooks)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api.test") as client,
    ):
        yield Api(app=app, client=client, clock=clock, settings=settings)


@asynccontextmanager
async def serve_api(db_url: str, **overrides: Any) -> AsyncIterator[Api]:
    """The real app behind a real HTTP server on a free port (the browser tests'),
    and a client for it."""
    from simulators.payment_server import LocalServer

    settings = api_settings(db_url, **overrides)
    clock = FakeClock()
    app = create_app(settings, now_ms=clock)
    server = LocalServer(app, lifespan=True)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            yield Api(app=app, client=client, clock=clock, settings=settings)
    finally:
        await server.stop()


ApiFactory = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    async with start_api(db_url) as harness:
        yield harness


@pytest.fixture
def api_factory(db_url: str) -> ApiFactory:
    """`async with api_factory(hooks=..., **settings) as api:` for a differently built app."""

    def factory(**overrides: Any) -> AbstractAsyncContextManager[Api]:
        return start_api(db_url, **overrides)

    return factory
