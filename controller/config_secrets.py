"""Secrets of a shed config from the environment or systemd credentials, not the file.

| config key | environment | credential (`$CREDENTIALS_DIRECTORY/<name>`) |
|---|---|---|
| `mqtt.password` | `EBSHED_MQTT_PASSWORD` | `mqtt_password` |
| `central.token` | `EBSHED_CENTRAL_TOKEN` | `central_token` |
| `telemetry.token` | `EBSHED_TELEMETRY_TOKEN` | `telemetry_token` |
| `ocpp.password` | `EBSHED_OCPP_PASSWORD` | `ocpp_password` |

Either source overrides a value in the file; if both are given they must agree.
An empty variable counts as not given; a credential file's trailing newline is
dropped. `central.token`, `telemetry.token` and `ocpp.password` apply only when the config has
that section (they configure nothing by themselves); `mqtt.password` makes an
`[mqtt]` section if there is none. systemd's `LoadCredential=` puts the files
in `$CREDENTIALS_DIRECTORY`, readable by the service alone.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from controller.core.config import ConfigError

# (section, key, environment variable, credential name, section made when missing)
SECRETS: tuple[tuple[str, str, str, str, bool], ...] = (
    ("mqtt", "password", "EBSHED_MQTT_PASSWORD", "mqtt_password", True),
    ("central", "token", "EBSHED_CENTRAL_TOKEN", "central_token", False),
    ("telemetry", "token", "EBSHED_TELEMETRY_TOKEN", "telemetry_token", False),
    ("ocpp", "password", "EBSHED_OCPP_PASSWORD", "ocpp_password", False),
)

_TRAILING_NEWLINE = re.compile(r"\r?\n\Z")


def read_credential(environ: Mapping[str, str], name: str) -> str | None:
    """The systemd credential `name`, or None when there is no such file."""
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError("unreadable_secret", f"credential {name}: {err}") from err
    value = _TRAILING_NEWLINE.sub("", text)
    if not value:
        raise ConfigError("empty_secret", f"credential {name} ({path}) is empty")
    return value


def apply_secrets(
    raw: dict[str, Any], environ: Mapping[str, str], source: str = "config"
) -> dict[str, Any]:
    """A copy of the parsed config with the secrets the environment gives filled in."""
    out = copy.deepcopy(raw)
    for section, key, variable, credential, make_section in SECRETS:
        from_env = environ.get(variable) or None
        from_file = read_credential(environ, credential)
        if from_env is not None and from_file is not None and from_env != from_file:
            raise ConfigError(
                "conflicting_secret",
                f"{source}: {section}.{key}: {variable} and credential {credential} differ",
            )
        value = from_env if from_env is not None else from_file
        if value is None:
            continue
        table = out.get(section)
        if table is None and make_section:
            table = out[section] = {}
        if table is None:
            continue
        if not isinstance(table, dict):
            raise ConfigError("invalid_config", f"{source}: {section} must be a table")
        table[key] = value
    return out
