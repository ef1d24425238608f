"""Secrets of the shed config from the environment or systemd credentials, and TLS options."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from controller.core.config import ConfigError
from controller.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
BASE = '[shed]\nid = "demo-1"\n[[boards]]\nid = "b1"\nports = [1, 2]\n'
CENTRAL = '[central]\nurl = "https://central.example"\n'


def config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "shed.toml"
    path.write_text(BASE + extra, "utf-8")
    return path


def credentials(tmp_path: Path, **files: str) -> dict[str, str]:
    folder = tmp_path / "credentials"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, "utf-8")
    return {"CREDENTIALS_DIRECTORY": str(folder)}


def test_secrets_come_from_the_environment(tmp_path: Path) -> None:
    path = config(tmp_path, CENTRAL + '[mqtt]\nusername = "demo-1.controller"\n'
                  '[telemetry]\nurl = "http://127.0.0.1:8428"\n')  # fmt: skip
    env = {"EBSHED_MQTT_PASSWORD": "mqtt-secret", "EBSHED_CENTRAL_TOKEN": "central-token-1",
           "EBSHED_TELEMETRY_TOKEN": "influx-token"}  # fmt: skip
    s = load_settings(path, env)
    assert s.mqtt.username == "demo-1.controller"
    assert s.mqtt.password == "mqtt-secret"
    assert s.central is not None and s.central.token == "central-token-1"
    assert s.telemetry is not None and s.telemetry.token == "influx-token"


def test_secrets_come_from_systemd_credentials(tmp_path: Path) -> None:
    path = config(tmp_path, CENTRAL + 'token = "in-the-file-too"\n')
    env = credentials(tmp_path, mqtt_password="from-credential\n", central_token="tok-en-12345\n")
    s = load_settings(path, env)
    assert s.mqtt.password == "from-credential"  # no [mqtt] in the file: made for it
    assert s.central is not None and s.central.token == "tok-en-12345"  # overrides the file


def test_the_file_alone_still_works_and_empty_variables_do_not_count(tmp_path: Path) -> None:
    path = config(tmp_path, '[mqtt]\npassword = "file-pass"\n' + CENTRAL + 'token = "file-token"\n')
    s = load_settings(path, {"EBSHED_MQTT_PASSWORD": "", "CREDENTIALS_DIRECTORY": ""})
    assert s.mqtt.password == "file-pass"
    assert s.central is not None and s.central.token == "file-token"
    # A central token without a [central] section configures nothing.
    assert load_settings(config(tmp_path), {"EBSHED_CENTRAL_TOKEN": "x" * 12}).central is None


def test_a_central_section_without_a_token_anywhere_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"central\.token") as err:
        load_settings(config(tmp_path, CENTRAL), {})
    assert err.value.code == "invalid_config"


@pytest.mark.parametrize(
    ("files", "env", "code"),
    [
        ({"mqtt_password": "one"}, {"EBSHED_MQTT_PASSWORD": "two"}, "conflicting_secret"),
        ({"mqtt_password": "\n"}, {}, "empty_secret"),
        ({"central_token": ""}, {}, "empty_secret"),
    ],
)
def test_bad_secrets_are_clear_errors(
    tmp_path: Path, files: dict[str, str], env: dict[str, str], code: str
) -> None:
    path = config(tmp_path, CENTRAL + 'token = "file-token"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path, {**credentials(tmp_path, **files), **env})
    assert err.value.code == code
    assert "one" not in str(err.value) and "two" not in str(err.value)  # values never shown


def test_the_same_secret_twice_is_fine(tmp_path: Path) -> None:
    env = {**credentials(tmp_path, mqtt_password="same\n"), "EBSHED_MQTT_PASSWORD": "same"}
    assert load_settings(config(tmp_path), env).mqtt.password == "same"


def test_the_unit_file_loads_the_credentials_the_settings_read() -> None:
    lines = (ROOT / "deploy" / "ebshed-controller.service").read_text().splitlines()
    assert any(line.startswith("LoadCredential=mqtt_password:") for line in lines)
    assert any("LoadCredential=central_token:" in line for line in lines)  # for sheds with one


def test_tls_options(tmp_path: Path) -> None:
    subprocess.run([str(ROOT / "deploy" / "make-certs.sh"), "-o", str(tmp_path / "certs"),
                    "-n", "localhost", "-c", "demo-1.controller"],
                   check=True, capture_output=True)  # fmt: skip
    certs = tmp_path / "certs"
    s = load_settings(config(tmp_path, f'[mqtt]\ntls = true\nca_file = "{certs}/ca.crt"\n'
                             f'cert_file = "{certs}/demo-1.controller.crt"\n'
                             f'key_file = "{certs}/demo-1.controller.key"\n'), {})  # fmt: skip
    context = s.mqtt.tls_context()
    assert context is not None and context.check_hostname
    assert load_settings(config(tmp_path), {}).mqtt.tls_context() is None
    bad = [
        ('[mqtt]\nca_file = "/x.crt"\n', "invalid_config", "need tls = true"),
        ('[mqtt]\ntls = true\ncert_file = "/x.crt"\n', "invalid_config", "go together"),
        ('[mqtt]\ntls = true\nca_file = "/no/such/ca.crt"\n', "invalid_tls", "mqtt"),
        (f'[mqtt]\ntls = true\nca_file = "{certs}/ca.key"\n', "invalid_tls", "mqtt"),
    ]
    for extra, code, words in bad:
        with pytest.raises(ConfigError, match=words) as err:
            load_settings(config(tmp_path, extra), {})
        assert err.value.code == code, extra
