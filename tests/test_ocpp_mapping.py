"""The OCPP mapping on its own: plain tables and functions, no I/O."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ocpp.v16 import enums

from controller.core.fsm import SocketState
from controller.ocpp import mapping as m

CORE = Path(__file__).resolve().parent.parent / "controller" / "core" / "shed.py"


def test_every_socket_state_has_a_status_of_ocpp() -> None:
    statuses = {e.value for e in enums.ChargePointStatus}
    assert set(m.STATUS_OF_STATE) == {s.value for s in SocketState}
    assert set(m.STATUS_OF_STATE.values()) <= statuses
    got = {s.value: m.connector_status(1, s.value).status for s in SocketState}
    assert got == {"offline": "Unavailable", "idle": "Available", "authorized": "Preparing",
                   "charging": "Charging", "floating": "SuspendedEV", "finishing": "Finishing",
                   "fault": "Faulted", "disabled": "Unavailable"}  # fmt: skip
    with pytest.raises(ValueError, match="unknown socket state"):
        m.connector_status(1, "asleep")


def test_a_faulted_socket_names_what_tripped_it() -> None:
    codes = {e.value for e in enums.ChargePointErrorCode}
    assert set(m.ERROR_OF_ALARM.values()) | set(m.SHED_ALARM_ERROR.values()) <= codes
    assert m.connector_status(2, "fault", "overtemp") == m.ConnectorStatus(
        2, "Faulted", "HighTemperature", "overtemp")  # fmt: skip
    assert m.connector_status(2, "fault", None).error_code == "OtherError"
    assert m.connector_status(2, "offline").info == "board offline"
    assert m.shed_status(None) == m.ConnectorStatus(0, "Available")
    assert m.shed_status("smoke").status == "Faulted"
    kwargs = m.ConnectorStatus(3, "Faulted", "OtherError", "x" * 80).kwargs("T")
    assert kwargs == {"connector_id": 3, "error_code": "OtherError", "status": "Faulted",
                      "timestamp": "T", "info": "x" * 50}  # fmt: skip


def test_every_end_reason_the_core_gives_has_a_stop_reason() -> None:
    reasons = {e.value for e in enums.Reason}
    assert set(m.STOP_REASON.values()) <= reasons
    source = CORE.read_text(encoding="utf-8")
    literal = set(re.findall(r'_end\(\w+, "(\w+)"', source))
    literal |= set(re.findall(r'self\._end\(p, "full" if .* else "(\w+)"', source))
    literal |= {"interrupted", "full"}  # set outside _end()
    assert literal, "the core's end reasons were not found"
    assert literal <= set(m.STOP_REASON), literal - set(m.STOP_REASON)
    assert m.stop_reason("card_stop") == "Local"
    assert m.stop_reason("remote") == "Remote"
    assert m.stop_reason("overpower") == "EmergencyStop"
    assert m.stop_reason("board_offline") == "PowerLoss"
    assert m.stop_reason("something new") == m.stop_reason(None) == "Other"


def test_meter_start_and_stop_come_from_the_register_and_count_past_the_wrap() -> None:
    assert m.meter_start(123_456) == 123_456
    assert m.meter_start(0) == 0  # only when the register is 0
    assert m.meter_now(123_456, 789) == 124_245
    top = (1 << 32) - 10
    assert m.meter_now(top, 25) == (1 << 32) + 15  # the register wrapped to 15
    assert m.meter_now(top, 25) - m.meter_start(top) == 25
    for bad in (None, -1, 1 << 32):
        with pytest.raises(ValueError, match="register"):
            m.meter_start(bad)
    with pytest.raises(ValueError, match="negative"):
        m.meter_now(5, -1)


def test_meter_values_carry_energy_power_and_temperature() -> None:
    assert m.iso(1_795_341_000_123) == "2026-11-22T09:50:00.123Z"
    mv = m.meter_value(1_795_341_000_000, 5000, 512.34, 30.06)
    assert mv["timestamp"] == "2026-11-22T09:50:00.000Z"
    assert [(v["measurand"], v["value"], v["unit"]) for v in mv["sampled_value"]] == [
        ("Energy.Active.Import.Register", "5000", "Wh"),
        ("Power.Active.Import", "512.3", "W"),
        ("Temperature", "30.1", "Celsius")]  # fmt: skip
    bare = m.sampled_values(7, None, None, "Transaction.Begin")
    assert bare == [{"value": "7", "context": "Transaction.Begin", "unit": "Wh", "location":
                     "Outlet", "measurand": "Energy.Active.Import.Register"}]  # fmt: skip
    measurands = {e.value for e in enums.Measurand}
    assert set(m.SAMPLED.split(",")) <= measurands


def test_id_tags_fit_ocpp() -> None:
    assert m.id_tag("card", "04A1B2C3") == "04A1B2C3"
    assert m.id_tag("plan", "04A1B2C3") == "04A1B2C3"
    assert m.id_tag("order", "ocpp:APP-USER-7") == "APP-USER-7"
    order = m.id_tag("order", "E20261204153012345678901")
    assert order == "O" + "E20261204153012345678901"[-19:] and len(order) == 20
    assert m.needs_authorize("card", "04A1B2C3") and m.needs_authorize("plan", "04A1B2C3")
    assert not m.needs_authorize("order", "E1") and not m.needs_authorize("order", "ocpp:X")
    assert not m.tag_refused("Accepted") and not m.tag_refused(None)
    assert all(m.tag_refused(s) for s in ("Blocked", "Expired", "Invalid"))


def test_remote_start_and_availability_choose_sockets() -> None:
    states = {1: "charging", 2: "idle", 3: "idle", 4: "fault"}
    assert m.remote_start_connector(None, states) == 2
    assert m.remote_start_connector(3, states) == 3
    assert m.remote_start_connector(1, states) is None
    assert m.remote_start_connector(9, states) is None
    assert m.remote_start_connector(None, {1: "charging"}) is None
    assert m.availability_targets(0, [3, 1, 2]) == [1, 2, 3]
    assert m.availability_targets(2, [1, 2]) == [2]
    assert m.availability_targets(5, [1, 2]) is None
    assert m.availability_status("Inoperative", [(False, False)]) == "Accepted"
    assert m.availability_status("Inoperative", [(False, True), (False, False)]) == "Scheduled"
    assert m.availability_status("Operative", [(False, True)]) == "Accepted"
    assert m.availability_status("Inoperative", [(True, False), (False, False)]) == "Rejected"
    assert m.availability_status("Operative", []) == "Rejected"


def test_configuration_keys_change_only_when_valid() -> None:
    config = m.default_configuration(4, 300, 60)
    assert set(config) == set(m.KEYS)
    known, unknown = m.get_configuration(config, ["HeartbeatInterval", "Colour"])
    assert known == [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]
    assert unknown == ["Colour"]
    assert len(m.get_configuration(config, None)[0]) == len(m.KEYS)
    assert m.get_configuration(config, [])[1] == []
    cases = {
        ("HeartbeatInterval", "120"): "Accepted",
        ("HeartbeatInterval", " 90 "): "Accepted",
        ("HeartbeatInterval", "5"): "Rejected",  # below the minimum
        ("HeartbeatInterval", "soon"): "Rejected",
        ("MeterValueSampleInterval", "0"): "Accepted",
        ("StopTransactionOnInvalidId", "FALSE"): "Accepted",
        ("StopTransactionOnInvalidId", "maybe"): "Rejected",
        ("NumberOfConnectors", "8"): "Rejected",  # read-only
        ("Colour", "red"): "NotSupported",
    }
    for (key, value), want in cases.items():
        status, after = m.change_configuration(config, key, value)
        assert status == want, (key, value)
        if status == "Accepted":
            assert after[key] == value.strip().lower()
        else:
            assert after == config  # a refused change changes nothing
    assert config["HeartbeatInterval"] == "300"  # the input is never modified


def test_triggers_resets_retries_and_boot_waits() -> None:
    ports = [1, 2, 3, 4]
    for message in ("BootNotification", "Heartbeat", "StatusNotification", "MeterValues"):
        assert m.trigger_status(message, None, ports) == "Accepted"
    assert m.trigger_status("StatusNotification", 0, ports) == "Accepted"
    assert m.trigger_status("StatusNotification", 7, ports) == "Rejected"
    assert m.trigger_status("FirmwareStatusNotification", None, ports) == "NotImplemented"
    assert m.reset_status("Soft") == "Accepted" and m.reset_status("Hard") == "Rejected"
    assert [m.retry_delay_s(a, 60) for a in (1, 2, 3)] == [60, 120, 180]
    assert not m.give_up(2, 3) and m.give_up(3, 3)
    assert m.boot_wait_s("Pending", 30, 300) == 30
    assert m.boot_wait_s("Rejected", 0, 300) == 60
    assert m.boot_wait_s("Accepted", 0, 300) == 300
