"""The socket state machine, written as a transition table.

A socket is in exactly one state. Triggers move it along the table below; a
trigger that has no row for the current state is refused (the caller gets
`None` and nothing changes). Every accepted transition is recorded with its
reason on the socket's session, if it has one.
"""

from __future__ import annotations

from enum import Enum


class SocketState(str, Enum):
    OFFLINE = "offline"  # its board is not reachable
    IDLE = "idle"  # free to use
    AUTHORIZED = "authorized"  # paid or card accepted, relay on, waiting for a load
    CHARGING = "charging"
    FLOATING = "floating"  # battery full, float charge time running
    FINISHING = "finishing"  # off commanded, waiting for the board to confirm
    FAULT = "fault"  # tripped by a safety rule, needs staff
    DISABLED = "disabled"  # taken out of service by staff


class Trigger(str, Enum):
    BOARD_ONLINE = "board_online"
    BOARD_OFFLINE = "board_offline"
    AUTHORIZE = "authorize"
    LOAD_DETECTED = "load_detected"
    FULL_DETECTED = "full_detected"
    RECHARGE = "recharge"  # power rose again during float
    STOP = "stop"  # any end of a session: off commanded
    OFF_CONFIRMED = "off_confirmed"
    TRIP = "trip"  # safety rule fired
    CLEAR_FAULT = "clear_fault"
    DISABLE = "disable"
    ENABLE = "enable"
    RESUME = "resume"  # restart: an open session found running on its socket
    UNDO_START = "undo_start"  # the store could not record the start: undone, relay never on


S = SocketState
T = Trigger

TRANSITIONS: dict[tuple[SocketState, Trigger], SocketState] = {
    (S.OFFLINE, T.BOARD_ONLINE): S.IDLE,
    (S.OFFLINE, T.RESUME): S.CHARGING,
    (S.OFFLINE, T.DISABLE): S.DISABLED,
    (S.IDLE, T.AUTHORIZE): S.AUTHORIZED,
    (S.IDLE, T.RESUME): S.CHARGING,
    (S.AUTHORIZED, T.LOAD_DETECTED): S.CHARGING,
    (S.AUTHORIZED, T.UNDO_START): S.IDLE,
    (S.CHARGING, T.FULL_DETECTED): S.FLOATING,
    (S.FLOATING, T.RECHARGE): S.CHARGING,
    (S.FINISHING, T.OFF_CONFIRMED): S.IDLE,
    (S.FAULT, T.CLEAR_FAULT): S.IDLE,
    (S.DISABLED, T.ENABLE): S.IDLE,
}
for _state in (S.AUTHORIZED, S.CHARGING, S.FLOATING):
    TRANSITIONS[(_state, T.STOP)] = S.FINISHING
for _state in (S.IDLE, S.AUTHORIZED, S.CHARGING, S.FLOATING, S.FINISHING):
    TRANSITIONS[(_state, T.TRIP)] = S.FAULT
for _state in (S.IDLE, S.AUTHORIZED, S.CHARGING, S.FLOATING, S.FINISHING, S.FAULT):
    TRANSITIONS[(_state, T.BOARD_OFFLINE)] = S.OFFLINE
for _state in (S.IDLE, S.FAULT):
    TRANSITIONS[(_state, T.DISABLE)] = S.DISABLED

SESSION_STATES: frozenset[SocketState] = frozenset((S.AUTHORIZED, S.CHARGING, S.FLOATING))


def next_state(state: SocketState, trigger: Trigger) -> SocketState | None:
    """The state after `trigger`, or None when the table has no such move."""
    return TRANSITIONS.get((state, trigger))
