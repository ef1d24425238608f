"""FastAPI dependencies, as `Annotated` aliases for route signatures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, cast

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.access import current_principal
from api.context import AppContext
from api.errors import Forbidden, Unauthorized
from api.models import Shed
from api.repos import sheds as shed_repo
from api.schemas.common import ID_PATTERN
from api.security import hash_token, same_secret

LAST_SEEN_STEP_MS = 10_000  # write a shed's last_seen at most this often

_shed_bearer = HTTPBearer(
    scheme_name="shed token", description="The token issued at registration", auto_error=False
)
_admin_bearer = HTTPBearer(
    scheme_name="admin token", description="EBSHED_API_ADMIN_TOKEN", auto_error=False
)


def get_ctx(request: Request) -> AppContext:
    return cast(AppContext, request.app.state.ctx)


CtxDep = Annotated[AppContext, Depends(get_ctx)]


def client_address(request: Request) -> str:
    """The client's address, as the server saw it (behind a reverse proxy, run
    uvicorn with --proxy-headers and --forwarded-allow-ips so that this is the
    resident's address, not the proxy's)."""
    return request.client.host if request.client else "unknown"


AddressDep = Annotated[str, Depends(client_address)]


def get_db(ctx: CtxDep) -> Iterator[Session]:
    """A session for the request; routes open the transaction (`with db.begin():`)."""
    with ctx.sessions() as db:
        yield db


DbDep = Annotated[Session, Depends(get_db)]
ShedIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="shed id")]
Bearer = HTTPAuthorizationCredentials | None


def require_admin(
    request: Request, ctx: CtxDep, creds: Annotated[Bearer, Depends(_admin_bearer)]
) -> None:
    """The admin token (scripts), or a logged-in admin of every compound (api/access.py)."""
    principal = current_principal(request)
    if principal is not None:
        if principal.has("admin", None):
            return
        raise Forbidden("needs an admin of every compound", code="forbidden")
    expected = ctx.settings.admin_token
    if expected is None:
        raise Forbidden(
            "admin endpoints are off: set EBSHED_API_ADMIN_TOKEN", code="admin_disabled"
        )
    if creds is None or not same_secret(creds.credentials, expected.get_secret_value()):
        raise Unauthorized("admin token missing or wrong")


def authenticated_shed(
    ctx: CtxDep, shed_id: ShedIdPath, creds: Annotated[Bearer, Depends(_shed_bearer)]
) -> Shed:
    """The shed whose token is presented: 401 unknown, 403 for another shed's path."""
    if creds is None:
        raise Unauthorized("shed token missing (Authorization: Bearer <token>)")
    token_hash = hash_token(creds.credentials)
    with ctx.sessions() as db, db.begin():
        shed = shed_repo.get_shed_by_token_hash(db, token_hash)
        if shed is None or not same_secret(shed.token_hash, token_hash):
            raise Unauthorized("unknown shed token")
        if shed.id != shed_id:
            raise Forbidden(f"this token belongs to another shed, not {shed_id}", code="wrong_shed")
        shed_repo.touch_last_seen(db, shed.id, ctx.now_ms(), min_step_ms=LAST_SEEN_STEP_MS)
    return shed


AdminDep = Depends(require_admin)
ShedDep = Annotated[Shed, Depends(authenticated_shed)]
