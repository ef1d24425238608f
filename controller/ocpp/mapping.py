"""OCPP 1.6J as the shed's core sees it: plain tables and functions, no I/O.

The OCPP link (`controller/ocpp/link.py`) asks this module every question of
translation: which StatusNotification a socket state is, which StopTransaction
reason an end reason is, what meterStart and meterStop are, which
configuration keys exist and whether a change is valid, which connector a
RemoteStartTransaction without one takes. Values are OCPP's own strings
(`ocpp.v16.enums` spells the same ones); payloads are the library's keyword
arguments (snake_case). docs/ocpp.md has the tables in prose.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

U32 = 1 << 32

# ---- connector status -----------------------------------------------------

# socket state (controller/core/fsm.py) -> ChargePointStatus
STATUS_OF_STATE: dict[str, str] = {
    "idle": "Available",
    "authorized": "Preparing",  # relay on, waiting for the charger to draw
    "charging": "Charging",
    "floating": "SuspendedEV",  # battery full, float charge: the bike draws (almost) nothing
    "finishing": "Finishing",
    "fault": "Faulted",
    "disabled": "Unavailable",
    "offline": "Unavailable",  # its board does not answer
}

# alarm kind (controller/core/model.py) -> ChargePointErrorCode of a Faulted socket
ERROR_OF_ALARM: dict[str, str] = {
    "overpower": "OverCurrentFailure",
    "overtemp": "HighTemperature",
    "relay_fault": "PowerSwitchFailure",
}

# alarms that cut the whole shed: connector 0 is Faulted while one is open
SHED_ALARM_ERROR: dict[str, str] = {
    "smoke": "OtherError",
    "water": "OtherError",
    "env_overtemp": "HighTemperature",
}


@dataclass(frozen=True, slots=True)
class ConnectorStatus:
    connector_id: int
    status: str
    error_code: str = "NoError"
    info: str | None = None

    def kwargs(self, timestamp: str) -> dict[str, Any]:
        """Keyword arguments of `ocpp.v16.call.StatusNotification`."""
        out: dict[str, Any] = {
            "connector_id": self.connector_id,
            "error_code": self.error_code,
            "status": self.status,
            "timestamp": timestamp,
        }
        if self.info:
            out["info"] = self.info[:50]  # CiString50
        return out


def connector_status(
    port: int, state: str, fault_kind: str | None = None, offline: bool = False
) -> ConnectorStatus:
    """A socket's StatusNotification. `fault_kind`: the alarm that tripped it."""
    status = STATUS_OF_STATE.get(state)
    if status is None:
        raise ValueError(f"unknown socket state {state!r}")
    if status == "Faulted":
        code = ERROR_OF_ALARM.get(fault_kind or "", "OtherError")
        return ConnectorStatus(port, status, code, fault_kind)
    if state == "offline" or offline:
        return ConnectorStatus(port, "Unavailable", "NoError", "board offline")
    if state == "disabled":
        return ConnectorStatus(port, status, "NoError", "disabled")
    return ConnectorStatus(port, status)


def shed_status(lockout_kind: str | None) -> ConnectorStatus:
    """Connector 0, the whole shed: Faulted while a smoke, water or heat alarm
    keeps every socket off, else Available."""
    if lockout_kind is None:
        return ConnectorStatus(0, "Available")
    return ConnectorStatus(0, "Faulted", SHED_ALARM_ERROR.get(lockout_kind, "OtherError"),
                           lockout_kind)  # fmt: skip


# ---- stop reasons ---------------------------------------------------------

# session end reason (controller/core/shed.py) -> StopTransaction.reason
STOP_REASON: dict[str, str] = {
    # the resident or staff at the shed
    "button": "Local",
    "card_stop": "Local",
    "operator": "Local",
    "disabled": "Local",
    # ended by the shed's own rules
    "full": "Local",
    "money_used_up": "Local",
    "session_cap": "Local",
    "hard_cap": "Local",
    "no_load": "Local",
    "over_budget": "Local",
    "unplugged": "EVDisconnected",
    # a central system: this one (OCPP) or the project's own central API
    "remote": "Remote",
    "central": "Remote",
    "deauthorized": "DeAuthorized",
    "soft_reset": "SoftReset",
    # safety
    "overpower": "EmergencyStop",
    "overtemp": "EmergencyStop",
    "relay_fault": "EmergencyStop",
    "smoke": "EmergencyStop",
    "water": "EmergencyStop",
    "env_overtemp": "EmergencyStop",
    # power and links
    "board_offline": "PowerLoss",
    "lease_expired": "PowerLoss",
    "relay_off": "PowerLoss",
    "interrupted": "Reboot",  # the controller restarted and the lease had cut the relay
    "start_failed": "Other",  # the board never switched the relay on
}


def stop_reason(end_reason: str | None) -> str:
    """The StopTransaction reason of a session's end reason ("Other" if unknown)."""
    return STOP_REASON.get(end_reason or "", "Other")


# ---- meter registers ------------------------------------------------------


def meter_start(first_wh: int | None) -> int:
    """meterStart: the socket's register when the session started (Wh).

    It is 0 only when the register is 0: the core does not start a session on a
    socket that has not reported its meter (`no_meter_reading`)."""
    if first_wh is None:
        raise ValueError("a session without a first register reading has no meterStart")
    if not 0 <= first_wh < U32:
        raise ValueError(f"register {first_wh} outside 0..2^32-1")
    return first_wh


def meter_now(first_wh: int | None, energy_wh: int) -> int:
    """The register as the central system sees it during and at the end of a
    transaction: meterStart plus the energy billed so far.

    The board's 32-bit register wraps at 2^32 Wh; the OCPP value keeps
    counting past it, so meterStop - meterStart is always the billed energy
    (also when a jump of the register was refused as implausible and not billed)."""
    if energy_wh < 0:
        raise ValueError("billed energy cannot be negative")
    return meter_start(first_wh) + energy_wh


def iso(ms: int) -> str:
    """OCPP's dateTime: UTC, with milliseconds and a Z."""
    t = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def sampled_values(
    register_wh: int, w: float | None, temp_c: float | None, context: str
) -> list[dict[str, Any]]:
    """The sampled values of one MeterValue: energy register, power, temperature."""
    out: list[dict[str, Any]] = [
        {"value": str(register_wh), "context": context, "measurand":
         "Energy.Active.Import.Register", "unit": "Wh", "location": "Outlet"},
    ]  # fmt: skip
    if w is not None:
        out.append({"value": f"{w:.1f}", "context": context, "measurand": "Power.Active.Import",
                    "unit": "W", "location": "Outlet"})  # fmt: skip
    if temp_c is not None:
        out.append({"value": f"{temp_c:.1f}", "context": context, "measurand": "Temperature",
                    "unit": "Celsius", "location": "Body"})  # fmt: skip
    return out


def meter_value(ms: int, register_wh: int, w: float | None, temp_c: float | None,
                context: str = "Sample.Periodic") -> dict[str, Any]:  # fmt: skip
    return {"timestamp": iso(ms), "sampled_value": sampled_values(register_wh, w, temp_c, context)}


# ---- id tags ----------------------------------------------------------------

ID_TAG_LEN = 20  # CiString20
REMOTE_PREFIX = "ocpp:"  # Authorization.ref of a session started by RemoteStartTransaction


def id_tag(kind: str, ref: str) -> str:
    """The idTag a session is reported under: the card's UID for cards and plans,
    the central system's own tag for a remote start, and for a paid order (scan
    to pay, no tag) "O" and the order number's last 19 characters."""
    if ref.startswith(REMOTE_PREFIX):
        return ref[len(REMOTE_PREFIX):][:ID_TAG_LEN]
    if kind in ("card", "plan"):
        return ref[:ID_TAG_LEN]
    return ("O" + ref[-(ID_TAG_LEN - 1):])[:ID_TAG_LEN]


def needs_authorize(kind: str, ref: str) -> bool:
    """Sessions started by an IC card tap are authorized with the central system."""
    return kind in ("card", "plan") and not ref.startswith(REMOTE_PREFIX)


def tag_refused(status: str | None) -> bool:
    """True when an idTagInfo status says the tag may not charge."""
    return status is not None and status != "Accepted" and status != "ConcurrentTx"


def remote_start_connector(
    requested: int | None, states: Mapping[int, str]
) -> int | None:  # fmt: skip
    """The socket a RemoteStartTransaction uses: the one asked for if it is
    free, else (none asked for) the lowest free one; None: reject."""
    if requested is not None:
        return requested if states.get(requested) == "idle" else None
    free = sorted(p for p, s in states.items() if s == "idle")
    return free[0] if free else None


def availability_targets(connector_id: int, ports: Iterable[int]) -> list[int] | None:
    """The sockets a ChangeAvailability addresses (0: every one); None: unknown connector."""
    ports = sorted(ports)
    if connector_id == 0:
        return ports
    return [connector_id] if connector_id in ports else None


def availability_status(kind: str, outcomes: Iterable[tuple[bool, bool]]) -> str:
    """ChangeAvailability's answer from what each addressed socket did:
    (refused, had a running session). A socket taken out of service during a
    session ends it, and becomes Unavailable once its relay is off: Scheduled."""
    outcomes = list(outcomes)
    if not outcomes or any(refused for refused, _ in outcomes):
        return "Rejected"
    if kind == "Inoperative" and any(running for _, running in outcomes):
        return "Scheduled"
    return "Accepted"


# ---- configuration keys ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Key:
    readonly: bool
    kind: str  # int, bool, csl (comma-separated list)
    minimum: int = 0
    maximum: int = 86_400


KEYS: dict[str, Key] = {
    "HeartbeatInterval": Key(False, "int", 10, 86_400),
    "MeterValueSampleInterval": Key(False, "int", 0, 86_400),  # 0: no periodic samples
    "TransactionMessageAttempts": Key(False, "int", 1, 100),
    "TransactionMessageRetryInterval": Key(False, "int", 1, 86_400),
    "StopTransactionOnInvalidId": Key(False, "bool"),
    "ConnectionTimeOut": Key(True, "int"),  # no cable to wait for: informational
    # read-only: what this charge point is
    "NumberOfConnectors": Key(True, "int"),
    "SupportedFeatureProfiles": Key(True, "csl"),
    "MeterValuesSampledData": Key(True, "csl"),
    "StopTxnSampledData": Key(True, "csl"),
    "MeterValuesAlignedData": Key(True, "csl"),
    "StopTxnAlignedData": Key(True, "csl"),
    "ClockAlignedDataInterval": Key(True, "int"),
    "AuthorizeRemoteTxRequests": Key(True, "bool"),
    "LocalAuthorizeOffline": Key(True, "bool"),
    "LocalPreAuthorize": Key(True, "bool"),
    "StopTransactionOnEVSideDisconnect": Key(True, "bool"),
    "UnlockConnectorOnEVSideDisconnect": Key(True, "bool"),
    "ResetRetries": Key(True, "int"),
    "GetConfigurationMaxKeys": Key(True, "int"),
    "WebSocketPingInterval": Key(True, "int"),
}

SAMPLED = "Energy.Active.Import.Register,Power.Active.Import,Temperature"


def default_configuration(
    connectors: int, heartbeat_s: int, meter_interval_s: int
) -> dict[str, str]:
    return {
        "HeartbeatInterval": str(heartbeat_s),
        "MeterValueSampleInterval": str(meter_interval_s),
        "TransactionMessageAttempts": "3",
        "TransactionMessageRetryInterval": "60",
        "StopTransactionOnInvalidId": "true",
        "ConnectionTimeOut": "60",
        "NumberOfConnectors": str(connectors),
        "SupportedFeatureProfiles": "Core,RemoteTrigger",
        "MeterValuesSampledData": SAMPLED,
        "StopTxnSampledData": SAMPLED,
        "MeterValuesAlignedData": "",
        "StopTxnAlignedData": "",
        "ClockAlignedDataInterval": "0",
        "AuthorizeRemoteTxRequests": "false",
        "LocalAuthorizeOffline": "true",  # cards are checked by the shed itself
        "LocalPreAuthorize": "true",
        "StopTransactionOnEVSideDisconnect": "true",
        "UnlockConnectorOnEVSideDisconnect": "false",  # sockets have no lock
        "ResetRetries": "0",
        "GetConfigurationMaxKeys": str(len(KEYS)),
        "WebSocketPingInterval": "20",
    }


def get_configuration(
    config: Mapping[str, str], keys: Iterable[str] | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """GetConfiguration: (configurationKey entries, unknownKey)."""
    wanted = list(config) if keys is None or not list(keys) else list(keys)
    known = [
        {"key": k, "readonly": KEYS[k].readonly, "value": config[k]}
        for k in wanted
        if k in KEYS and k in config
    ]
    unknown = [k for k in wanted if k not in KEYS or k not in config]
    return known, unknown


def change_configuration(
    config: Mapping[str, str], key: str, value: str
) -> tuple[str, dict[str, str]]:
    """ChangeConfiguration: (status, the configuration after it). A refused
    change leaves the configuration as it was."""
    spec = KEYS.get(key)
    if spec is None or key not in config:
        return "NotSupported", dict(config)
    if spec.readonly:
        return "Rejected", dict(config)
    if spec.kind == "int":
        try:
            n = int(value.strip())
        except ValueError:
            return "Rejected", dict(config)
        if not spec.minimum <= n <= spec.maximum:
            return "Rejected", dict(config)
        value = str(n)
    elif spec.kind == "bool":
        if value.strip().lower() not in ("true", "false"):
            return "Rejected", dict(config)
        value = value.strip().lower()
    return "Accepted", {**config, key: value}


def int_key(config: Mapping[str, str], key: str) -> int:
    return int(config[key])


# ---- triggers and resets --------------------------------------------------

TRIGGERS: frozenset[str] = frozenset(
    ("BootNotification", "Heartbeat", "StatusNotification", "MeterValues")
)


def trigger_status(requested: str, connector_id: int | None, ports: Iterable[int]) -> str:
    """TriggerMessage: Accepted, Rejected (no such connector) or NotImplemented."""
    if requested not in TRIGGERS:
        return "NotImplemented"
    if connector_id is not None and connector_id != 0 and connector_id not in set(ports):
        return "Rejected"
    return "Accepted"


def reset_status(kind: str) -> str:
    """Soft resets stop every transaction and reconnect; a hard reset would
    reboot the shed's computer, which a central system may not do."""
    return "Accepted" if kind == "Soft" else "Rejected"


# ---- transaction message retries ---------------------------------------------


def retry_delay_s(attempt: int, interval_s: int) -> int:
    """After the `attempt`-th refused try of a transaction message, wait
    attempt x TransactionMessageRetryInterval (OCPP 1.6, 4.10)."""
    return max(1, attempt) * interval_s


def give_up(attempts: int, max_attempts: int) -> bool:
    return attempts >= max_attempts


# ---- boot -------------------------------------------------------------------


def boot_wait_s(status: str, interval: int, default_s: int) -> int:
    """How long to wait after a BootNotification answer before the next step:
    Accepted: the heartbeat interval; Pending or Rejected: the retry wait."""
    if interval > 0:
        return interval
    return default_s if status == "Accepted" else 60
