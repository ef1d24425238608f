"""Broker logins of a shed: one per controller, socket board, bay sensor and env sensor.

Each login may publish only what its device publishes in the MQTT contract
(docs/mqtt-contract.md) and read only what it must read:

- `{shed}.controller` publishes `port/+/cmd`, `port/+/state` and
  `controller/status`, and reads `ebs/v1/{shed}/#`;
- `{shed}.board.{board}` publishes `board/{board}/status` and the
  `telemetry`, `event` and `cmd/ack` of its own ports, and reads their `cmd`;
- `{shed}.bay.{bay}` publishes `bay/{bay}/occupancy`, reads nothing;
- `{shed}.env.{sensor}` publishes `env/{sensor}`, reads nothing.

Ids are `[a-z0-9-]`, so the dots make every name unambiguous across sheds.
The broker's ACL (written by `ebshed deploy broker`) denies everything else,
another shed's topics included. Pure: no I/O except `read_credentials`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Role = Literal["controller", "board", "bay", "env"]
Access = Literal["read", "write"]

_ID = re.compile(r"^[a-z0-9-]{1,32}$")
_USERNAME = re.compile(r"^[a-z0-9-]{1,32}\.(controller|(board|bay|env)\.[a-z0-9-]{1,32})$")
# What a generated password looks like (secrets.token_urlsafe): safe in TOML, the
# password file and a shell without quoting.
PASSWORD_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


class CredentialsError(Exception):
    """A credentials file that cannot be used; `code` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Login:
    username: str
    role: Role
    shed: str
    device: str  # board id, bay number or sensor id; "" for the controller
    rules: tuple[tuple[Access, str], ...]


def login_name(shed: str, role: Role, device: str | int = "") -> str:
    """`demo-1.controller`, `demo-1.board.b1`, `demo-1.bay.3`, `demo-1.env.smoke-1`."""
    if not _ID.fullmatch(shed):
        raise ValueError(f"shed id must match [a-z0-9-]{{1,32}}: {shed!r}")
    if role == "controller":
        return f"{shed}.controller"
    if not _ID.fullmatch(str(device)):
        raise ValueError(f"{role} id must match [a-z0-9-]{{1,32}}: {device!r}")
    return f"{shed}.{role}.{device}"


def controller_login(shed: str) -> Login:
    p = f"ebs/v1/{shed}/"
    rules: tuple[tuple[Access, str], ...] = (
        ("read", f"{p}#"),
        ("write", f"{p}port/+/cmd"),
        ("write", f"{p}port/+/state"),
        ("write", f"{p}controller/status"),
    )
    return Login(login_name(shed, "controller"), "controller", shed, "", rules)


def board_login(shed: str, board: str, ports: Iterable[int]) -> Login:
    p = f"ebs/v1/{shed}/"
    rules: list[tuple[Access, str]] = [("write", f"{p}board/{board}/status")]
    numbers = sorted(set(ports))
    for port in numbers:
        rules += [
            ("write", f"{p}port/{port}/telemetry"),
            ("write", f"{p}port/{port}/event"),
            ("write", f"{p}port/{port}/cmd/ack"),
        ]
    rules += [("read", f"{p}port/{port}/cmd") for port in numbers]
    return Login(login_name(shed, "board", board), "board", shed, board, tuple(rules))


def bay_login(shed: str, bay: int) -> Login:
    rules: tuple[tuple[Access, str], ...] = (("write", f"ebs/v1/{shed}/bay/{bay}/occupancy"),)
    return Login(login_name(shed, "bay", bay), "bay", shed, str(bay), rules)


def env_login(shed: str, sensor: str) -> Login:
    rules: tuple[tuple[Access, str], ...] = (("write", f"ebs/v1/{shed}/env/{sensor}"),)
    return Login(login_name(shed, "env", sensor), "env", shed, sensor, rules)


def shed_logins(
    shed: str,
    boards: Mapping[str, Iterable[int]],
    bays: Iterable[int],
    sensors: Iterable[str],
) -> list[Login]:
    """Every login of one shed: its controller, MQTT boards, bay and env sensors."""
    logins = [controller_login(shed)]
    logins += [board_login(shed, board, ports) for board, ports in boards.items()]
    logins += [bay_login(shed, bay) for bay in sorted(set(bays))]
    logins += [env_login(shed, sensor) for sensor in sorted(set(sensors))]
    return logins


# --------------------------------------------------------------------------- credentials file


def read_credentials(path: Path) -> dict[str, str]:
    """Username -> password from a credentials file `ebshed deploy broker` wrote."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise CredentialsError("unreadable_credentials", f"{path}: {err}") from err
    logins = raw.get("logins", {})
    if not isinstance(logins, dict):
        raise CredentialsError("invalid_credentials", f"{path}: [logins] must be a table")
    out: dict[str, str] = {}
    for username, entry in logins.items():
        password = entry.get("password") if isinstance(entry, dict) else None
        if not _USERNAME.fullmatch(username):
            raise CredentialsError("invalid_credentials", f"{path}: bad login name {username!r}")
        if not isinstance(password, str) or not PASSWORD_RE.fullmatch(password):
            raise CredentialsError(
                "invalid_credentials",
                f"{path}: logins.{username}.password must be 16-128 of A-Z a-z 0-9 _ -",
            )
        out[username] = password
    return out


def format_credentials(logins: Iterable[Login], passwords: Mapping[str, str]) -> str:
    """The credentials file: every login with its role, device and password (TOML)."""
    lines = [
        "# MQTT logins written by `ebshed deploy broker`: the installer's copy of every",
        "# device password. Keep it secret (mode 0600); a re-run keeps these passwords.",
        "",
    ]
    for login in logins:
        lines += [
            f'[logins."{login.username}"]',
            f'role = "{login.role}"',
            f'shed = "{login.shed}"',
        ]
        if login.device:
            lines.append(f'device = "{login.device}"')
        lines += [f'password = "{passwords[login.username]}"', ""]
    return "\n".join(lines)
