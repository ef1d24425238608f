"""Admin: users with a password and their grants (the admin token, or a logged-in
admin of every compound: api/deps.py `require_admin`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from api.access import admin_token_principal, current_principal
from api.deps import AdminDep, CtxDep, DbDep
from api.models import User
from api.schemas.accounts import GrantView, UserIn, UserPatch, UserView
from api.services import accounts, audit

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminDep])
UserIdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]  # users.id is an INTEGER


def _view(db: DbDep, user: User) -> UserView:
    grants = [GrantView(role=g.role, compound_id=g.compound_id)  # type: ignore[arg-type]
              for g in accounts.grants_of(db, user.id)]  # fmt: skip
    return UserView(id=user.id, login=user.login, name=user.name, disabled=user.disabled,
                    created_ms=user.created_ms, grants=grants)  # fmt: skip


@router.post("/users", status_code=201)
def create_user(body: UserIn, request: Request, db: DbDep, ctx: CtxDep) -> UserView:
    """A staff, office or admin user (`409 login_exists` if the login is taken)."""
    now = ctx.now_ms()
    with db.begin():
        user = accounts.create_user(
            db, login=body.login, name=body.name, password=body.password, now_ms=now,
            grants=[accounts.GrantSpec(g.role, g.compound_id) for g in body.grants],
        )  # fmt: skip
        by = current_principal(request) or admin_token_principal()
        roles = ", ".join(f"{g.role}@{g.compound_id or '*'}" for g in body.grants)
        audit.record(db, by, action="user_add", target=f"user {user.login}", now_ms=now,
                     data={"grants": roles})  # fmt: skip
        return _view(db, user)


@router.get("/users")
def list_users(db: DbDep) -> list[UserView]:
    """Users who log in with a password (residents are not listed)."""
    return [_view(db, u) for u in accounts.list_users(db)]


@router.patch("/users/{user_id}")
def change_user(
    user_id: UserIdPath, body: UserPatch, request: Request, db: DbDep, ctx: CtxDep
) -> UserView:
    """New password (ends the user's logins), disable or enable, add or remove grants."""
    now = ctx.now_ms()
    with db.begin():
        user = accounts.get_user(db, user_id)
        if body.password is not None:
            accounts.set_password(db, user, body.password)
        if body.disabled is not None:
            accounts.set_disabled(db, user, body.disabled)
        for g in body.add_grants:
            accounts.add_grant(db, user, accounts.GrantSpec(g.role, g.compound_id), now_ms=now)
        for g in body.remove_grants:
            accounts.remove_grant(db, user, accounts.GrantSpec(g.role, g.compound_id))
        by = current_principal(request) or admin_token_principal()
        audit.record(db, by, action="user_change", target=f"user {user.login or user.id}",
                     now_ms=now, data=body.model_dump(exclude={"password"}) | {
                         "password": body.password is not None})  # fmt: skip
        return _view(db, user)
