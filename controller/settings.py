"""Shed configuration: a TOML file validated into typed settings at start-up.

See deploy/shed.example.toml for a commented example. Every error names the
key that is wrong; nothing starts with a half-valid configuration.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from controller.core.config import ConfigError, RuleConfig, ShedLayout
from controller.core.tariffs import Tariff, TariffError, default_tariff, tariff_from_dict

SHED_ID_PATTERN = r"^[a-z0-9-]{1,32}$"


class MqttSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    keepalive: int = Field(default=30, ge=5, le=600)
    client_id: str | None = None


class BoardSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=SHED_ID_PATTERN)
    ports: list[int] = Field(min_length=1)
    transport: str = "mqtt"


class ShedSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=SHED_ID_PATTERN)
    name: str = ""
    data_dir: str = "./ebshed-data"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shed: ShedSettings
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    boards: list[BoardSettings] = Field(min_length=1)
    bays: dict[str, int | None] = {}
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


def load_settings(path: Path) -> Settings:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError("unreadable_config", f"{path}: {err}") from err
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
    except TariffError as err:
        raise ConfigError("invalid_tariff", f"{source}: tariff: {err}") from err
    return settings
