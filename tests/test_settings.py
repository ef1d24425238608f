"""Shed configuration: the example file loads; bad files give clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.core.config import ConfigError
from controller.settings import load_settings, settings_from_dict

ROOT = Path(__file__).resolve().parents[1]
BASE = {"shed": {"id": "demo-1"}, "boards": [{"id": "b1", "ports": [1, 2]}]}


def test_example_config_loads() -> None:
    s = load_settings(ROOT / "deploy" / "shed.example.toml")
    assert s.layout().ports == tuple(range(1, 25))
    assert s.rule_config().lease_s == 300
    assert len(s.tariff_model().tiers) == 3


@pytest.mark.parametrize(
    ("patch", "code", "where"),
    [
        ({"shed": {"id": "Bad Id"}}, "invalid_config", "shed.id"),
        ({"boards": [{"id": "b1", "ports": [1, 1000]}]}, "bad_port", "1000"),
        (
            {"boards": [{"id": "b1", "ports": [1]}, {"id": "b2", "ports": [1]}]},
            "duplicate_port",
            "port 1",
        ),
        ({"rules": {"full_threshold_w": 60}}, "bad_rule", "full_threshold_w"),
        ({"rules": {"no_such_rule": 1}}, "invalid_config", "no_such_rule"),
        ({"rules": {"lease_s": 60, "renew_every_s": 60}}, "bad_rule", "renew_every_s"),
        ({"bays": {"1": 9}}, "bad_bay", "unknown port 9"),
        (
            {
                "tariff": {
                    "id": "t",
                    "version": 1,
                    "name": "x",
                    "kind": "power_tier",
                    "tiers": [{"max_w": 200, "fen_per_hour": 0.25}],
                }
            },
            "invalid_tariff",
            "",
        ),
    ],
)
def test_bad_config_is_refused_with_its_key(patch: dict, code: str, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_dict({**BASE, **patch})
    assert err.value.code == code
    assert where in str(err.value)


def test_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "shed.toml"
    bad.write_text("[shed\nid=", "utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(bad)
    assert err.value.code == "unreadable_config"


BUS = {"id": "rs485-1", "device": "/dev/ttyUSB0", "baud": 9600}


def test_mixed_shed_config_gives_one_bus_master_per_bus() -> None:
    s = settings_from_dict({
        "shed": {"id": "demo-1"},
        "buses": [BUS],
        "boards": [
            {"id": "b1", "ports": [1, 2]},
            {"id": "b2", "ports": [3, 4], "transport": "modbus", "bus": "rs485-1", "slave": 1},
            {"id": "b3", "ports": [5], "transport": "modbus", "bus": "rs485-1", "slave": 2},
        ],
    })
    assert s.mqtt_ports() == {1, 2}
    (bus,) = s.modbus_buses()
    assert bus.device == "/dev/ttyUSB0" and bus.parity == "E" and bus.baud == 9600
    assert dict(bus.boards) == {1: ("b2", (3, 4)), 2: ("b3", (5,))}
    assert s.layout().ports == (1, 2, 3, 4, 5)


@pytest.mark.parametrize(
    ("boards", "buses", "where"),
    [
        ([{"id": "b2", "ports": [3], "transport": "modbus"}], [BUS], "needs bus and slave"),
        ([{"id": "b2", "ports": [3], "transport": "modbus", "bus": "nope", "slave": 1}], [BUS],
         "unknown bus"),
        ([{"id": "b2", "ports": [3], "transport": "modbus", "bus": "rs485-1", "slave": 1},
          {"id": "b3", "ports": [4], "transport": "modbus", "bus": "rs485-1", "slave": 1}], [BUS],
         "slave 1 is taken"),
        ([{"id": "b2", "ports": [3], "bus": "rs485-1", "slave": 1}], [BUS], "for modbus boards"),
        ([{"id": "b2", "ports": [3], "transport": "modbus", "bus": "rs485-1", "slave": 1}],
         [{**BUS, "baud": 4800}], "baud"),
        ([{"id": "b2", "ports": [3], "transport": "canbus"}], [], "transport"),
    ],
)
def test_bad_bus_config_is_refused(boards: list, buses: list, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_dict({"shed": {"id": "demo-1"}, "boards": boards, "buses": buses})
    assert where in str(err.value)
