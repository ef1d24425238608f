"""`ebshed deploy broker`: Mosquitto's password file, ACL and listeners from shed configs.

Every device gets a login of its own (`controller.mqtt_logins`), so a board
can publish only its own status and its own ports' telemetry, events and
acks, and read only its own ports' commands; a sensor only its own topic; a
controller only its own shed. Files written to the output folder:

- `passwd`: the Mosquitto password file, hashed as `mosquitto_passwd` does
  (PBKDF2-SHA512, `$7$` format);
- `ebshed.acl`: the ACL, one `user` block per login, nothing else allowed;
- `ebshed.conf`: the include for mosquitto.conf (no anonymous clients, the
  plain listener on 127.0.0.1 for the controller on the same box, the TLS
  listener for the shed network, the client id tied to the login);
- `credentials.toml` (mode 0600): every login's password, for the installer.
  A re-run keeps the passwords in it and makes new ones only for new
  devices (or those named with `--rotate`);
- `{shed}.mqtt_password` (mode 0600): the controller's password alone, for
  systemd's `LoadCredential=mqtt_password:...`.

The rendering functions are pure; `deploy_broker` does the file I/O.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controller.mqtt_logins import (
    CredentialsError,
    Login,
    format_credentials,
    read_credentials,
    shed_logins,
)
from controller.settings import Settings

PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default (Mosquitto 2.0)
SALT_BYTES = 12  # as mosquitto_passwd
PASSWORD_BYTES = 24  # 32 characters of token_urlsafe, 192 bits

PASSWD_FILE = "passwd"
ACL_FILE = "ebshed.acl"
CONF_FILE = "ebshed.conf"
CREDENTIALS_FILE = "credentials.toml"


class DeployError(Exception):
    """The broker files cannot be written as asked; nothing was changed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    broker_dir: Path  # where the files live on the broker: the paths in ebshed.conf
    plain_port: int = 1883  # on 127.0.0.1 only; 0: no plain listener
    tls_port: int = 8883  # 0: no TLS listener
    tls_bind: str | None = None  # None: every interface
    certs_dir: Path | None = None  # ca.crt, server.crt, server.key; default broker_dir/certs
    require_certificate: bool = False  # clients must also show a certificate of the CA


@dataclass(slots=True)
class DeployResult:
    files: list[Path] = field(default_factory=list)
    logins: int = 0
    created: list[str] = field(default_factory=list)  # new passwords (new devices, rotated)
    kept: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # in the old credentials, not configured


# --------------------------------------------------------------------------- pure rendering


def logins_of(settings: Settings) -> list[Login]:
    """The logins of one shed config: controller, MQTT boards (not RS-485 ones), sensors."""
    boards = {b.id: b.ports for b in settings.boards if b.transport == "mqtt"}
    bays = [int(b) for b in settings.bays]
    return shed_logins(settings.shed.id, boards, bays, [s.id for s in settings.sensors])


def hash_password(password: str, salt: bytes, iterations: int = PBKDF2_ITERATIONS) -> str:
    """`$7$iterations$salt$hash` (base64), the PBKDF2-SHA512 format of mosquitto_passwd."""
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def render_passwd(
    logins: Iterable[Login], passwords: Mapping[str, str], salt: Callable[[], bytes]
) -> str:
    return "".join(
        f"{login.username}:{hash_password(passwords[login.username], salt())}\n"
        for login in logins
    )


def render_acl(logins: Sequence[Login]) -> str:
    sheds = sorted({login.shed for login in logins})
    lines = [
        f"# Mosquitto ACL written by `ebshed deploy broker` for shed(s) {', '.join(sheds)}.",
        "# Each login may use only the topics listed under it; everything else is denied.",
        "",
    ]
    for login in logins:
        what = f"{login.role} {login.device}".strip()
        lines += [f"# {login.shed}: {what}", f"user {login.username}"]
        lines += [f"topic {access} {topic}" for access, topic in login.rules]
        lines.append("")
    return "\n".join(lines)


def render_conf(options: BrokerOptions, sheds: Iterable[str]) -> str:
    base = options.broker_dir
    certs = options.certs_dir or base / "certs"
    lines = [
        f"# Mosquitto settings written by `ebshed deploy broker` for shed(s) {', '.join(sheds)}.",
        "# Include it from mosquitto.conf (Debian: /etc/mosquitto/conf.d/ebshed.conf).",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {base / PASSWD_FILE}",
        f"acl_file {base / ACL_FILE}",
    ]
    if options.plain_port:
        lines += [
            "",
            "# The controller on this box: plain MQTT on the loopback address only.",
            f"listener {options.plain_port} 127.0.0.1",
            "use_username_as_clientid true",
        ]
    if options.tls_port:
        bind = f" {options.tls_bind}" if options.tls_bind else ""
        require = "true" if options.require_certificate else "false"
        lines += [
            "",
            "# Boards and sensors on the shed network: TLS (certificates: deploy/make-certs.sh).",
            f"listener {options.tls_port}{bind}",
            "use_username_as_clientid true",
            f"cafile {certs / 'ca.crt'}",
            f"certfile {certs / 'server.crt'}",
            f"keyfile {certs / 'server.key'}",
            "tls_version tlsv1.2",
            f"require_certificate {require}",
        ]
    return "\n".join(lines) + "\n"


def choose_passwords(
    logins: Sequence[Login],
    old: Mapping[str, str],
    rotate: Iterable[str],
    new_password: Callable[[], str],
) -> tuple[dict[str, str], DeployResult]:
    """Keep the old password of every configured login except those to rotate."""
    names = {login.username for login in logins}
    rotate = set(rotate)
    unknown = sorted(rotate - names)
    if unknown:
        raise DeployError("unknown_login", f"--rotate: no such login: {', '.join(unknown)}")
    result = DeployResult(logins=len(logins))
    passwords: dict[str, str] = {}
    for login in logins:
        name = login.username
        if name in old and name not in rotate:
            passwords[name] = old[name]
            result.kept.append(name)
        else:
            passwords[name] = new_password()
            result.created.append(name)
    result.dropped = sorted(set(old) - names)
    return passwords, result


# --------------------------------------------------------------------------- file I/O


def _write(path: Path, text: str, mode: int) -> None:
    """Write atomically (a temporary file renamed over the old one) with `mode`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def deploy_broker(
    configs: Sequence[Settings],
    out: Path,
    options: BrokerOptions,
    *,
    rotate: Iterable[str] = (),
    new_password: Callable[[], str] = lambda: secrets.token_urlsafe(PASSWORD_BYTES),
    salt: Callable[[], bytes] = lambda: secrets.token_bytes(SALT_BYTES),
) -> DeployResult:
    """Write the broker files for one or more sheds into `out` (see the module doc)."""
    sheds = [s.shed.id for s in configs]
    if not sheds:
        raise DeployError("no_config", "at least one shed config is needed")
    twice = sorted({s for s in sheds if sheds.count(s) > 1})
    if twice:
        raise DeployError("duplicate_shed", f"shed {', '.join(twice)} given more than once")
    for port, name in ((options.plain_port, "plain"), (options.tls_port, "tls")):
        if not 0 <= port <= 65535:
            raise DeployError("bad_port", f"{name} port {port} is not 0..65535")
    if options.plain_port and options.plain_port == options.tls_port:
        raise DeployError("bad_port", "the plain and TLS listeners need two ports")
    if out.exists() and not out.is_dir():
        raise DeployError("bad_out", f"{out} is not a folder")
    logins = [login for settings in configs for login in logins_of(settings)]
    credentials_path = out / CREDENTIALS_FILE
    old: dict[str, str] = {}
    if credentials_path.exists():
        try:
            old = read_credentials(credentials_path)
        except CredentialsError as err:
            raise DeployError(err.code, f"{err.message} (nothing written)") from err
    passwords, result = choose_passwords(logins, old, rotate, new_password)
    out.mkdir(parents=True, exist_ok=True)
    files: list[tuple[Path, str, int]] = [
        (credentials_path, format_credentials(logins, passwords), 0o600),
        (out / PASSWD_FILE, render_passwd(logins, passwords, salt), 0o640),
        (out / ACL_FILE, render_acl(logins), 0o640),
        (out / CONF_FILE, render_conf(options, sheds), 0o644),
    ]
    for login in logins:
        if login.role == "controller":
            files.append((out / f"{login.shed}.mqtt_password", passwords[login.username], 0o600))
    for path, text, mode in files:  # the credentials first: the passwords are never lost
        _write(path, text, mode)
        result.files.append(path)
    return result
