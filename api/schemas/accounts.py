"""Bodies of password login and of user management (admin)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.schemas.common import PlainId

Role = Literal["resident", "staff", "office", "admin"]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]
Login = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class PasswordLoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # unknown fields are refused, not dropped
    login: Login
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class GrantView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    role: Role
    compound_id: PlainId | None = Field(default=None, description="null: every compound")


class WhoAmI(BaseModel):
    user_id: int | None
    login: str | None
    name: str
    grants: list[GrantView]
    home: str = Field(description="where the login page sends this user: /board, /reports, /me")


class PasswordLoginAnswer(WhoAmI):
    token: str
    expires_ms: int


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # unknown fields are refused, not dropped
    login: Login
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] = ""
    password: Password
    grants: list[GrantView] = Field(min_length=1)


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")  # unknown fields are refused, not dropped
    password: Password | None = None
    disabled: bool | None = None
    add_grants: list[GrantView] = []
    remove_grants: list[GrantView] = []


class UserView(BaseModel):
    id: int
    login: str | None
    name: str
    disabled: bool
    created_ms: int
    grants: list[GrantView]
