"""`ebshed deploy broker`: the files it writes, re-runs that keep passwords, bad input.

The broker's behaviour with these files is tested against a real Mosquitto in
tests/test_broker_acl.py; here the files themselves.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.cli import app
from controller.deploy_broker import BrokerOptions, hash_password, render_conf
from controller.mqtt_logins import read_credentials

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / "shed.example.toml"

SECOND = """
[shed]
id = "demo-2"
[[buses]]
id = "line1"
device = "/dev/ttyUSB0"
[[boards]]
id = "b1"
ports = [1, 2]
[[boards]]
id = "m1"
ports = [3, 4]
transport = "modbus"
bus = "line1"
slave = 1
[bays]
7 = 1
"""


def deploy(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["deploy", "broker", *args])
    return result.exit_code, result.output


def acl_blocks(text: str) -> dict[str, list[str]]:
    blocks: dict[str, list[str]] = {}
    user = None
    for line in text.splitlines():
        if line.startswith("user "):
            user = line.split()[1]
            assert user not in blocks, f"{user} twice"
            blocks[user] = []
        elif line.startswith("topic "):
            assert user is not None, "a topic outside any user block applies to everyone"
            blocks[user].append(line)
        else:
            assert not line or line.startswith("#"), line
    return blocks


def check_hash(line_hash: str, password: str) -> bool:
    _, seven, iterations, salt, digest = line_hash.split("$")
    assert seven == "7"
    computed = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), base64.b64decode(salt), int(iterations)
    )
    return computed == base64.b64decode(digest)


def test_files_logins_and_modes(tmp_path: Path) -> None:
    second = tmp_path / "demo-2.toml"
    second.write_text(SECOND, "utf-8")
    out = tmp_path / "broker"
    code, output = deploy("--config", str(EXAMPLE), "--config", str(second), "--out", str(out))
    assert code == 0, output
    assert "11 logins: 11 new passwords, 0 kept, 0 dropped" in output
    names = {p.name for p in out.iterdir()}
    assert names == {"passwd", "ebshed.acl", "ebshed.conf", "credentials.toml",
                     "demo-1.mqtt_password", "demo-2.mqtt_password"}  # fmt: skip
    for secret in ("credentials.toml", "demo-1.mqtt_password", "demo-2.mqtt_password"):
        assert stat.S_IMODE((out / secret).stat().st_mode) == 0o600, secret
    assert stat.S_IMODE((out / "passwd").stat().st_mode) == 0o640

    passwords = read_credentials(out / "credentials.toml")
    assert sorted(passwords) == sorted([
        "demo-1.controller", "demo-1.board.b1", "demo-1.board.b2", "demo-1.bay.1",
        "demo-1.bay.2", "demo-1.bay.3", "demo-1.bay.4", "demo-1.env.smoke-1",
        "demo-2.controller", "demo-2.board.b1", "demo-2.bay.7",  # no login for Modbus board m1
    ])  # fmt: skip
    assert len(set(passwords.values())) == len(passwords)  # every device its own password
    assert all(len(p) >= 32 for p in passwords.values())
    assert (out / "demo-1.mqtt_password").read_text() == passwords["demo-1.controller"]

    hashes = dict(line.split(":", 1) for line in (out / "passwd").read_text().splitlines())
    assert set(hashes) == set(passwords)
    for name, password in passwords.items():
        assert check_hash(hashes[name], password), name
        assert not check_hash(hashes[name], password + "x")

    blocks = acl_blocks((out / "ebshed.acl").read_text())
    assert set(blocks) == set(passwords)
    b1 = blocks["demo-1.board.b1"]
    assert b1[0] == "topic write ebs/v1/demo-1/board/b1/status"
    assert len(b1) == 1 + 12 * 4  # status; telemetry, event, ack and cmd of 12 ports
    for port in range(1, 13):
        for leaf in ("telemetry", "event", "cmd/ack"):
            assert f"topic write ebs/v1/demo-1/port/{port}/{leaf}" in b1
        assert f"topic read ebs/v1/demo-1/port/{port}/cmd" in b1
    assert not any("/13/" in rule or "+" in rule or "#" in rule for rule in b1)
    assert blocks["demo-1.env.smoke-1"] == ["topic write ebs/v1/demo-1/env/smoke-1"]
    assert blocks["demo-2.bay.7"] == ["topic write ebs/v1/demo-2/bay/7/occupancy"]
    assert blocks["demo-2.controller"] == [
        "topic read ebs/v1/demo-2/#",
        "topic write ebs/v1/demo-2/port/+/cmd",
        "topic write ebs/v1/demo-2/port/+/state",
        "topic write ebs/v1/demo-2/controller/status",
    ]
    for user, rules in blocks.items():
        shed = user.split(".")[0]
        assert all(rule.split()[2].startswith(f"ebs/v1/{shed}/") for rule in rules), user

    conf = (out / "ebshed.conf").read_text()
    assert "allow_anonymous false" in conf
    assert f"password_file {out.absolute()}/passwd" in conf
    assert f"acl_file {out.absolute()}/ebshed.acl" in conf
    assert "listener 1883 127.0.0.1" in conf
    assert re.search(r"^listener 8883$", conf, re.M)
    assert conf.count("use_username_as_clientid true") == 2  # both listeners
    assert f"cafile {out.absolute()}/certs/ca.crt" in conf


def test_the_modbus_board_and_every_login(tmp_path: Path) -> None:
    second = tmp_path / "demo-2.toml"
    second.write_text(SECOND, "utf-8")
    code, output = deploy("--config", str(second), "--out", str(tmp_path / "o"))
    assert code == 0, output
    assert sorted(read_credentials(tmp_path / "o" / "credentials.toml")) == [
        "demo-2.bay.7", "demo-2.board.b1", "demo-2.controller",  # none for Modbus board m1
    ]  # fmt: skip


def test_a_rerun_keeps_passwords_and_rotates_only_what_it_is_told(tmp_path: Path) -> None:
    out = tmp_path / "broker"
    assert deploy("--config", str(EXAMPLE), "--out", str(out))[0] == 0
    first = read_credentials(out / "credentials.toml")
    first_hashes = (out / "passwd").read_text()
    code, output = deploy("--config", str(EXAMPLE), "--out", str(out))
    assert code == 0, output
    assert "0 new passwords, 8 kept" in output
    assert read_credentials(out / "credentials.toml") == first
    assert (out / "passwd").read_text() != first_hashes  # new salts, same passwords

    code, output = deploy(
        "--config", str(EXAMPLE), "--out", str(out), "--rotate", "demo-1.board.b1"
    )
    assert code == 0, output
    assert "1 new passwords, 7 kept" in output
    after = read_credentials(out / "credentials.toml")
    assert after["demo-1.board.b1"] != first["demo-1.board.b1"]
    assert {k: v for k, v in after.items() if k != "demo-1.board.b1"} == {
        k: v for k, v in first.items() if k != "demo-1.board.b1"
    }

    # A board taken out of the config loses its login.
    smaller = tmp_path / "smaller.toml"
    smaller.write_text(EXAMPLE.read_text("utf-8").replace('id = "b2"', 'id = "b3"'), "utf-8")
    code, output = deploy("--config", str(smaller), "--out", str(out))
    assert code == 0, output
    assert "1 new passwords, 7 kept, 1 dropped (demo-1.board.b2)" in output
    assert "demo-1.board.b2" not in (out / "passwd").read_text()
    assert "demo-1.board.b2" not in (out / "ebshed.acl").read_text()


def test_bad_input_changes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "broker"
    assert deploy("--config", str(EXAMPLE), "--out", str(out))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    code, output = deploy("--config", str(EXAMPLE), "--out", str(out), "--rotate", "demo-1.b1")
    assert code == 2
    assert "unknown_login" in output
    code, output = deploy("--config", str(EXAMPLE), "--config", str(EXAMPLE), "--out", str(out))
    assert code == 2
    assert "duplicate_shed" in output
    code, output = deploy("--config", str(EXAMPLE), "--out", str(out), "--tls-port", "1883")
    assert code == 2
    assert "bad_port" in output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    (out / "credentials.toml").write_text('[logins."demo-1.controller"]\npassword = "short"\n')
    code, output = deploy("--config", str(EXAMPLE), "--out", str(out))
    assert code == 2
    assert "invalid_credentials" in output
    assert (out / "passwd").read_bytes() == before["passwd"]


def test_hash_matches_mosquitto_passwd(tmp_path: Path) -> None:
    """The `$7$` line mosquitto_passwd writes, recomputed from its salt, is ours."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.fail("mosquitto_passwd not found (apt-get install mosquitto)")
    path = tmp_path / "pw"
    path.touch()
    subprocess.run([tool, "-b", str(path), "someone", "a-secret"], check=True)
    _name, theirs = path.read_text().strip().split(":", 1)
    _, _, iterations, salt, _ = theirs.split("$")
    assert hash_password("a-secret", base64.b64decode(salt), int(iterations)) == theirs


def test_the_shipped_mosquitto_conf_matches_what_the_command_writes() -> None:
    shipped = [
        line for line in (ROOT / "deploy" / "mosquitto.conf").read_text().splitlines()
        if line and not line.startswith("#")
    ]  # fmt: skip
    written = [
        line
        for line in render_conf(BrokerOptions(broker_dir=Path("/etc/mosquitto/ebshed")), ["x"])
        .splitlines()
        if line and not line.startswith("#")
    ]
    rest = iter(shipped)
    assert all(line in rest for line in written)  # every directive, in the same order
    assert "listener 1883 0.0.0.0" not in shipped

