"""Serve an ASGI app with uvicorn inside the running event loop, on a free port.

Used by the payment provider simulator and by tests that need a small HTTP
receiver. It binds the socket itself (port 0 -> a free port, no race), leaves
the process's signal handlers alone, and `stop()` waits for the server task.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from types import TracebackType
from typing import Any, Literal

import uvicorn


class _InProcessServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The host process owns SIGINT/SIGTERM; several servers may run at once.
        yield


class LateApp:
    """An ASGI app whose target is set once the server listens, so that an app
    can be built knowing its own URL (the API's notify_url, say)."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class LocalServer:
    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, lifespan: bool = False
    ) -> None:
        self._app = app
        # on: the app's start-up and shutdown (migrations, workers) run
        self._lifespan: Literal["on", "off"] = "on" if lifespan else "off"
        self._host = host
        self._port = port
        self._server: _InProcessServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._bound_port = 0

    @property
    def url(self) -> str:
        """`http://host:port`; known from `start()` on (and still after `stop()`)."""
        if not self._bound_port:
            raise RuntimeError("the server is not started")
        return f"http://{self._host}:{self._bound_port}"

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
        except OSError:
            sock.close()
            raise
        self._bound_port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            log_config=None,  # its records go to the process's handlers (the demo: a file)
            access_log=False,
            lifespan=self._lifespan,
            timeout_graceful_shutdown=2,
        )
        self._server = _InProcessServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="local-http")
        for _ in range(500):
            if self._server.started or self._task.done():
                break
            await asyncio.sleep(0.01)
        if not self._server.started:
            await self.stop()
            raise RuntimeError("the HTTP server did not start")

    async def stop(self) -> None:
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def __aenter__(self) -> LocalServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
