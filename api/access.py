"""Who is calling, and what they may see and do.

A `Principal` is built once per request from the login cookie
(`ebshed_session`) or `Authorization: Bearer <login token>`, and the user's
`RoleGrant`s. The admin token (`EBSHED_API_ADMIN_TOKEN`, for scripts) stands
for a global admin.

Rules (docs/api.md, "Accounts and roles"):

- A grant is a role in one compound, or with compound NULL in every compound.
- `admin` counts as every role: `has("staff", c)` is true for an admin of c
  (or of every compound). Staff manage their compounds' sheds; office users
  read their compounds' reports; residents see only their own sessions (they
  are matched by user, not by grants); admins also manage users and compounds.
- Routes ask `require_compound(principal, compound_id, "staff")` (403
  `not_your_compound`), or filter lists with `principal.compounds("staff")`
  (None: every compound).

    @router.get("/things/{compound_id}")
    def things(compound_id: str, principal: PrincipalDep) -> ...:
        require_compound(principal, compound_id, "office")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Final

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.errors import Forbidden, NotFound, Unauthorized
from api.models import ROLES, Shed
from api.repos import sheds as shed_repo
from api.security import same_secret
from api.services.accounts import grants_of, session_user
from api.services.sms_login import COOKIE_NAME

if TYPE_CHECKING:
    from api.context import AppContext

ADMIN_TOKEN_ACTOR: Final = "admin-token"
_STATE_KEY: Final = "ebshed_principal"


@dataclass(frozen=True, slots=True)
class Grant:
    role: str  # resident, staff, office, admin
    compound_id: str | None  # None: every compound


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int | None  # None: the admin token
    name: str
    login: str | None
    grants: frozenset[Grant]

    @property
    def actor(self) -> str:
        """How the audit log names them: the login, or `admin-token`."""
        return self.login or (ADMIN_TOKEN_ACTOR if self.user_id is None else f"user-{self.user_id}")

    def has(self, role: str, compound_id: str | None) -> bool:
        """May act as `role` in `compound_id` (None: in every compound)."""
        return any(
            g.role in (role, "admin") and (g.compound_id is None or g.compound_id == compound_id)
            for g in self.grants
        )

    def compounds(self, *roles: str) -> frozenset[str] | None:
        """The compounds where any of `roles` (or admin) is granted; None: every one."""
        wanted = {*roles, "admin"}
        found: set[str] = set()
        for g in self.grants:
            if g.role in wanted:
                if g.compound_id is None:
                    return None
                found.add(g.compound_id)
        return frozenset(found)

    def has_any(self, *roles: str) -> bool:
        """Holds any of `roles` (or admin) somewhere."""
        compounds = self.compounds(*roles)
        return compounds is None or bool(compounds)

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(g.role for g in self.grants)

    def home(self) -> str:
        """Where the login page sends them: the board for staff and admins,
        the reports for office users, their own charges for residents."""
        if self.has_any("staff"):
            return "/board"
        if self.has_any("office"):
            return "/reports"
        return "/me"


def admin_token_principal() -> Principal:
    return Principal(None, ADMIN_TOKEN_ACTOR, None, frozenset({Grant("admin", None)}))


def principal_for_user(db: Session, token: str, *, now_ms: int) -> Principal | None:
    user = session_user(db, token, now_ms=now_ms)
    if user is None:
        return None
    grants = frozenset(Grant(g.role, g.compound_id) for g in grants_of(db, user.id))
    return Principal(user.id, user.name, user.login, grants)


def _presented_tokens(request: Request) -> list[str]:
    tokens = []
    cookie = request.cookies.get(COOKIE_NAME)
    if cookie:
        tokens.append(cookie)
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        tokens.append(value.strip())
    return tokens


def current_principal(request: Request) -> Principal | None:
    """The caller, or None when nobody is logged in (cached on the request)."""
    if hasattr(request.state, _STATE_KEY):
        cached: Principal | None = getattr(request.state, _STATE_KEY)
        return cached
    ctx: AppContext = request.app.state.ctx
    principal = None
    admin_token = ctx.settings.admin_token
    for token in _presented_tokens(request):
        if admin_token is not None and same_secret(token, admin_token.get_secret_value()):
            principal = admin_token_principal()
            break
        with ctx.sessions() as db:
            principal = principal_for_user(db, token, now_ms=ctx.now_ms())
        if principal is not None:
            break
    setattr(request.state, _STATE_KEY, principal)
    return principal


def require_principal(request: Request) -> Principal:
    principal = current_principal(request)
    if principal is None:
        raise Unauthorized("log in first (POST /api/v1/auth/password)")
    return principal


PrincipalDep = Annotated[Principal, Depends(require_principal)]
OptionalPrincipalDep = Annotated[Principal | None, Depends(current_principal)]


def require_compound(principal: Principal, compound_id: str, *roles: str) -> None:
    """403 `not_your_compound` unless the principal holds one of `roles` there
    (with no roles: any role)."""
    if not any(principal.has(role, compound_id) for role in roles or ROLES):
        raise Forbidden(f"not allowed in compound {compound_id}", code="not_your_compound")


def require_role(principal: Principal, *roles: str) -> None:
    """403 `forbidden` unless the principal holds one of `roles` somewhere."""
    if not principal.has_any(*roles):
        raise Forbidden(f"needs the role {' or '.join(roles)}", code="forbidden")


def require_shed(db: Session, principal: Principal, shed_id: str, *roles: str) -> Shed:
    """The shed, if the principal holds one of `roles` in its compound."""
    require_role(principal, *roles)
    shed = shed_repo.get_shed(db, shed_id)
    if shed is None:
        raise NotFound(f"no shed {shed_id}", code="unknown_shed")
    require_compound(principal, shed.compound_id, *roles)
    return shed
