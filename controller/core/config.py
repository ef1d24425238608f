"""Per-shed rule settings of the pure core, with the defaults from field practice.

Every threshold the core applies lives here, so a shed can be tuned from its
config file and tests can set any value. Durations are seconds, powers watts.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ConfigError(ValueError):
    """A shed configuration that cannot work. `code` is stable for scripts."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class RuleConfig:
    # Sockets and the shed.
    socket_max_w: int = 1100  # readings above max * (1 + tolerance) are faults
    overpower_tolerance: float = 0.10
    overpower_hold_s: int = 4  # sustained this long before a trip (one spike is noise)
    budget_w: int = 8700  # whole shed
    budget_start_fraction: float = 0.90  # no new session above this share of the budget
    budget_hold_s: int = 10  # over budget this long -> stop the newest sessions
    # Charge end.
    load_threshold_w: float = 3.0  # a load is present above this
    authorize_timeout_s: int = 300  # paid/tapped but nothing drew power
    full_threshold_w: float = 30.0  # 20..45
    full_hold_s: int = 300
    float_s: int = 45 * 60
    plan_float_s: int = 90 * 60  # monthly-plan sessions float longer
    unplug_threshold_w: float = 3.0
    unplug_window_s: int = 300
    unplug_grace_s: int = 600
    session_cap_s: int = 12 * 3600
    hard_cap_s: int = 24 * 3600
    # Safety.
    overtemp_c: float = 65.0
    overtemp_hold_s: int = 4  # two readings: one bad sample is no fire
    relay_fault_w: float = 10.0  # power this high while the relay is commanded off
    relay_fault_hold_s: int = 6
    # Leases and liveness.
    lease_s: int = 300
    renew_every_s: int = 60
    heartbeat_s: int = 90
    offline_after_heartbeats: int = 3
    # A session whose board went silent waits this long for the board's register
    # before it closes on the last reading (flagged closed_without_board).
    offline_settle_s: int = 1800
    state_publish_every_s: int = 30  # retained port state refresh (changes go at once)
    # Parking.
    bay_idle_alert_s: int = 2 * 3600  # occupied this long while its socket is not charging
    # Card sessions.
    card_min_balance_fen: int = 1
    # Charge-curve anomalies (controller/core/anomaly.py): alerts, never a stop.
    anomaly_flat_s: int = 6 * 3600  # power flat this long: a charger that never tapers
    anomaly_flat_band: float = 0.15  # "flat": within this share of the highest power
    anomaly_jump_w: float = 80.0  # a jump between two samples
    anomaly_jump_count: int = 6  # this many jumps ...
    anomaly_jump_window_s: int = 600  # ... within this window
    anomaly_pack_hours: float = 6.0  # pack suggested by a charger: sustained power x hours
    anomaly_energy_factor: float = 1.3  # energy above factor x that pack
    anomaly_temp_rise_c: float = 8.0  # socket temperature rise ...
    anomaly_temp_window_s: int = 600  # ... within this window
    anomaly_no_load_s: int = 600  # drawing this long without reaching the full threshold

    def validate(self) -> None:
        checks: list[tuple[bool, str, str]] = [
            (20 <= self.full_threshold_w <= 45, "full_threshold_w", "must be within 20..45 W"),
            (self.socket_max_w > 0, "socket_max_w", "must be positive"),
            (self.budget_w > 0, "budget_w", "must be positive"),
            (0 < self.budget_start_fraction <= 1, "budget_start_fraction", "must be in (0, 1]"),
            (
                self.renew_every_s * 2 <= self.lease_s,
                "renew_every_s",
                "renew at least twice per lease",
            ),
            (self.session_cap_s <= self.hard_cap_s, "session_cap_s", "cannot exceed hard_cap_s"),
            (self.hard_cap_s <= 24 * 3600, "hard_cap_s", "24 h at most, whatever was paid"),
            (self.heartbeat_s > 0, "heartbeat_s", "must be positive"),
            (self.anomaly_flat_s > 0, "anomaly_flat_s", "must be positive"),
            (0 < self.anomaly_flat_band < 1, "anomaly_flat_band", "must be in (0, 1)"),
            (self.anomaly_jump_w > 0, "anomaly_jump_w", "must be positive"),
            (self.anomaly_jump_count > 0, "anomaly_jump_count", "must be positive"),
            (self.anomaly_jump_window_s >= 60, "anomaly_jump_window_s", "must be 60 s or more"),
            (self.anomaly_pack_hours > 0, "anomaly_pack_hours", "must be positive"),
            (self.anomaly_energy_factor >= 1, "anomaly_energy_factor", "must be 1 or more"),
            (self.anomaly_temp_rise_c > 0, "anomaly_temp_rise_c", "must be positive"),
            (self.anomaly_temp_window_s >= 60, "anomaly_temp_window_s", "must be 60 s or more"),
            (self.anomaly_no_load_s > 0, "anomaly_no_load_s", "must be positive"),
        ]
        for ok, key, msg in checks:
            if not ok:
                raise ConfigError("bad_rule", f"{key} {msg}")


@dataclass(frozen=True, slots=True)
class ShedLayout:
    shed_id: str
    boards: dict[str, tuple[int, ...]]  # board id -> its ports
    bays: dict[int, int | None] = field(default_factory=dict)  # bay -> socket port (or None)

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(sorted(p for ports in self.boards.values() for p in ports))

    def board_of(self) -> dict[int, str]:
        return {p: b for b, ports in self.boards.items() for p in ports}

    def validate(self) -> None:
        seen: set[int] = set()
        for board, ports in self.boards.items():
            for p in ports:
                if not 1 <= p <= 999:
                    raise ConfigError("bad_port", f"board {board}: port {p} outside 1..999")
                if p in seen:
                    raise ConfigError("duplicate_port", f"port {p} is on two boards")
                seen.add(p)
        for bay, port in self.bays.items():
            if bay < 1:
                raise ConfigError("bad_bay", f"bay {bay} must be >= 1")
            if port is not None and port not in seen:
                raise ConfigError("bad_bay", f"bay {bay} refers to unknown port {port}")
