"""Shed configuration: a TOML file validated into typed settings at start-up.

See deploy/shed.example.toml for a commented example. Every error names the
key that is wrong; nothing starts with a half-valid configuration.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from controller.config_secrets import apply_secrets
from controller.core.config import ConfigError, RuleConfig, ShedLayout
from controller.core.tariffs import Tariff, TariffError, default_tariff, tariff_from_dict
from firmware_bridge.modbus_line import ModbusConfigError
from firmware_bridge.modbus_settings import ModbusBusSettings

SHED_ID_PATTERN = r"^[a-z0-9-]{1,32}$"


class MqttSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    keepalive: int = Field(default=30, ge=5, le=600)
    client_id: str | None = None
    # TLS to the broker (docs/configuration.md#mqtt-and-tls); off for the listener on 127.0.0.1.
    tls: bool = False
    ca_file: str | None = None  # the CA of the broker's certificate; default: the system's CAs
    cert_file: str | None = None  # a client certificate, for brokers that ask for one ...
    key_file: str | None = None  # ... and its key

    @model_validator(mode="after")
    def _tls_files(self) -> MqttSettings:
        if not self.tls and (self.ca_file or self.cert_file or self.key_file):
            raise ValueError("ca_file, cert_file and key_file need tls = true")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for the broker connection (hostname checked), or None without TLS."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


class CentralSettings(BaseModel):
    """The central API this shed reports to (docs/uplink-contract.md)."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^https?://")
    token: str = Field(min_length=8)
    poll_wait_s: int = Field(default=25, ge=1, le=30)
    # Live readings for the staff board (every port and bay) are posted this
    # often, outside the outbox: a lost one is replaced by the next. 0: off.
    live_every_s: float = Field(default=5.0, ge=0, le=300)
    # Where residents' phones reach the resident pages (the QR stickers point here),
    # e.g. https://charge.example.com; `url` may be an address only the shed reaches.
    public_url: str | None = Field(default=None, pattern=r"^https?://")


class TelemetrySettings(BaseModel):
    """Export to a time-series store over the InfluxDB v2 write API (docs/telemetry.md)."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^https?://")
    org: str = Field(default="ebshed", min_length=1)
    bucket: str = Field(default="ebshed", min_length=1)
    token: str = ""
    interval_s: int = Field(default=10, ge=1, le=3600)  # sockets, bays and the shed sampled
    buffer_points: int = Field(default=20_000, ge=100, le=1_000_000)  # then the oldest go
    batch_points: int = Field(default=5_000, ge=1, le=50_000)
    flush_s: float = Field(default=5.0, ge=0.1, le=300)
    timeout_s: float = Field(default=5.0, ge=0.1, le=60)
    retry_max_s: float = Field(default=60.0, ge=0.1, le=3600)

    @model_validator(mode="after")
    def _batch_fits(self) -> TelemetrySettings:
        if self.batch_points > self.buffer_points:
            raise ValueError("batch_points must not exceed buffer_points")
        return self


class OcppSettings(BaseModel):
    """The shed as an OCPP 1.6J charge point of a central system (docs/ocpp.md)."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^wss?://")  # the charge point id is appended: url/charge_point_id
    charge_point_id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,48}$")
    password: str | None = Field(default=None, min_length=1)  # HTTP basic auth (profile 1 or 2)
    heartbeat_s: int = Field(default=300, ge=10, le=86_400)  # until BootNotification says
    meter_interval_s: int = Field(default=60, ge=0, le=86_400)  # MeterValues; 0: only at the end


class BoardSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=SHED_ID_PATTERN)
    ports: list[int] = Field(min_length=1)
    transport: Literal["mqtt", "modbus"] = "mqtt"
    bus: str | None = None  # Modbus boards: the [[buses]] id ...
    slave: int | None = Field(default=None, ge=1, le=247)  # ... and the slave id on it

    @model_validator(mode="after")
    def _modbus_needs_bus(self) -> BoardSettings:
        if self.transport == "modbus" and (self.bus is None or self.slave is None):
            raise ValueError(f"board {self.id}: a modbus board needs bus and slave")
        if self.transport == "mqtt" and (self.bus is not None or self.slave is not None):
            raise ValueError(f"board {self.id}: bus and slave are for modbus boards")
        return self


class BusSettings(BaseModel):
    """One RS-485 line (see docs/modbus-contract.md)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=SHED_ID_PATTERN)
    device: str = Field(min_length=1)
    baud: Literal[9600, 19200, 115200] = 9600
    parity: Literal["E", "O", "N"] = "E"
    stopbits: Literal[1, 2] = 1
    timeout_s: float = 0.5
    retries: int = 2
    offline_after_cycles: int = 3
    poll_interval_s: float = 1.0
    probe_interval_s: float = 5.0
    info_every_cycles: int = 10
    card_every_cycles: int = 1
    realtime_priority: int = 0  # 1..99: the bus thread runs SCHED_FIFO (docs/modbus-contract.md)


class SensorSettings(BaseModel):
    """A smoke, temperature or water sensor publishing on `env/{id}`; it gets a broker login."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=SHED_ID_PATTERN)
    kind: Literal["smoke", "temp", "water"] = "smoke"


class ShedSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=SHED_ID_PATTERN)
    name: str = ""
    data_dir: str = "./ebshed-data"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shed: ShedSettings
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    central: CentralSettings | None = None
    telemetry: TelemetrySettings | None = None
    ocpp: OcppSettings | None = None
    boards: list[BoardSettings] = Field(min_length=1)
    buses: list[BusSettings] = []
    bays: dict[str, int | None] = {}
    sensors: list[SensorSettings] = []
    rules: dict[str, Any] = {}
    tariff: dict[str, Any] | None = None
    cards: list[dict[str, Any]] = []

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, v: dict[str, Any]) -> dict[str, Any]:
        known = {f.name for f in dataclasses.fields(RuleConfig)}
        unknown = set(v) - known
        if unknown:
            raise ValueError(f"unknown rule(s): {', '.join(sorted(unknown))}")
        return v

    @model_validator(mode="after")
    def _sensors_unique(self) -> Settings:
        if len({s.id for s in self.sensors}) != len(self.sensors):
            raise ValueError("two sensors with the same id")
        return self

    @model_validator(mode="after")
    def _buses_known(self) -> Settings:
        bus_ids = {b.id for b in self.buses}
        if len(bus_ids) != len(self.buses):
            raise ValueError("two buses with the same id")
        slaves: set[tuple[str, int]] = set()
        for board in self.boards:
            if board.transport != "modbus":
                continue
            if board.bus not in bus_ids:
                raise ValueError(f"board {board.id}: unknown bus {board.bus!r}")
            key = (str(board.bus), int(board.slave or 0))
            if key in slaves:
                raise ValueError(f"board {board.id}: slave {board.slave} is taken on {board.bus}")
            slaves.add(key)
        return self

    def mqtt_ports(self) -> set[int]:
        return {p for b in self.boards if b.transport == "mqtt" for p in b.ports}

    def modbus_buses(self) -> list[ModbusBusSettings]:
        """One bus master's settings per [[buses]] entry that has boards."""
        out = []
        for bus in self.buses:
            boards = {
                int(b.slave or 0): (b.id, tuple(b.ports))
                for b in self.boards
                if b.transport == "modbus" and b.bus == bus.id
            }
            if boards:
                fields = bus.model_dump(exclude={"id"})
                out.append(ModbusBusSettings(boards=boards, bus_id=bus.id, **fields))
        return out

    def layout(self) -> ShedLayout:
        bays = {int(k): v for k, v in self.bays.items()}
        return ShedLayout(self.shed.id, {b.id: tuple(b.ports) for b in self.boards}, bays)

    def rule_config(self) -> RuleConfig:
        return RuleConfig(**self.rules)

    def tariff_model(self) -> Tariff:
        return tariff_from_dict(self.tariff) if self.tariff else default_tariff()

    @property
    def db_path(self) -> Path:
        return Path(self.shed.data_dir) / f"{self.shed.id}.sqlite"


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Load a shed config; its secrets may come from the environment or systemd
    credentials instead of the file (`controller.config_secrets`)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError("unreadable_config", f"{path}: {err}") from err
    raw = apply_secrets(raw, os.environ if environ is None else environ, str(path))
    return settings_from_dict(raw, str(path))


def settings_from_dict(raw: dict[str, Any], source: str = "config") -> Settings:
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError("invalid_config", f"{source}: {where}: {first['msg']}") from err
    try:
        settings.layout().validate()
        settings.rule_config().validate()
        settings.tariff_model()
        settings.modbus_buses()
        settings.mqtt.tls_context()
    except (OSError, ssl.SSLError) as err:
        raise ConfigError("invalid_tls", f"{source}: mqtt: {err}") from err
    except TariffError as err:
        raise ConfigError("invalid_tariff", f"{source}: tariff: {err}") from err
    except ModbusConfigError as err:
        raise ConfigError("invalid_bus", f"{source}: buses: {err}") from err
    return settings
