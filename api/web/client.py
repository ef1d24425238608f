"""How the resident pages reach the JSON API: over HTTP, in the same process.

The pages use only the public HTTP contract (docs/resident-pages.md lists the
paths), never the services behind it, so they cannot drift from what a phone
or another client sees. `ApiClient` calls the app that serves the page
through `httpx.ASGITransport`: no socket, no second server, the same
middleware and error handlers. The resident's cookie, address and user agent
go along, so login and rate limits see the resident, not the page server.

Errors come back in two shapes, `{"detail": ...}` (FastAPI) and
`{"code", "message"}` (our problem responses); `Problem.of` reads both.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import Request

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
_FORWARD_HEADERS = ("cookie", "user-agent", "accept-language", "x-forwarded-for", "x-real-ip")
_CODE = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "invalid_request",
    429: "too_many_requests",
    503: "api_unavailable",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """An error answer of the API, whichever shape it came in."""

    status: int
    code: str
    message: str

    @classmethod
    def of(cls, status: int, body: Any) -> Problem:
        code = _STATUS_CODES.get(status, "error")
        message = ""
        if isinstance(body, dict):
            if isinstance(body.get("code"), str):
                code = body["code"]
                message = str(body.get("message") or "")
            detail = body.get("detail")
            if isinstance(detail, dict):
                code = str(detail.get("code") or code)
                message = str(detail.get("message") or detail.get("msg") or "")
            elif isinstance(detail, str):
                # A bare code ({"detail": "busy"}) or a sentence.
                if _CODE.match(detail):
                    code = detail
                else:
                    message = detail
            elif isinstance(detail, list):
                message = "; ".join(
                    str(item.get("msg", item)) if isinstance(item, dict) else str(item)
                    for item in detail
                )
        return cls(status, code, message)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: Any
    set_cookies: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def problem(self) -> Problem:
        return Problem.of(self.status, self.body)

    def json_dict(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}


class ApiClient:
    """The JSON API of `app`, called as the resident whose request this is."""

    def __init__(self, request: Request) -> None:
        client = request.client
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(
                app=request.app,
                raise_app_exceptions=False,
                client=(client.host, client.port) if client else ("127.0.0.1", 0),
            ),
            base_url=str(request.base_url).rstrip("/"),
            headers={k: v for k in _FORWARD_HEADERS if (v := request.headers.get(k))},
            timeout=TIMEOUT_S,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get(self, path: str) -> Answer:
        return await self._send("GET", path, None)

    async def post(self, path: str, body: dict[str, Any] | None = None) -> Answer:
        return await self._send("POST", path, body)

    async def put(self, path: str, body: dict[str, Any] | None = None) -> Answer:
        return await self._send("PUT", path, body)

    async def _send(self, method: str, path: str, body: dict[str, Any] | None) -> Answer:
        try:
            resp = await self._client.request(method, path, json=body)
        except httpx.HTTPError as err:
            log.warning("JSON API %s %s failed: %s", method, path, err)
            return Answer(503, {"code": "api_unavailable", "message": str(err)})
        try:
            data: Any = resp.json()
        except ValueError:
            data = None
        if resp.status_code >= 500:
            log.warning("JSON API %s %s answered %s", method, path, resp.status_code)
        return Answer(resp.status_code, data, tuple(resp.headers.get_list("set-cookie")))


async def api_client(request: Request) -> AsyncIterator[ApiClient]:
    """FastAPI dependency: one client per page request, closed after it."""
    api = ApiClient(request)
    try:
        yield api
    finally:
        await api.aclose()
