"""Crash points a test can arm, to prove that no crash loses a bill.

The store calls `crash_point(name)` at each step of its writes; nothing happens
unless the point is armed. `EBSHED_CRASH_AT=open:after_commit,...` arms points
for a whole process: the first one reached ends it at once with `os._exit(86)`,
as a kill -9 would (no cleanup, no flush). In-process tests arm a point with
`arm(name)` instead and get `InjectedCrash` raised there.

Points (docs/operations.md, "What survives what"):
- `open:before_commit`, `open:after_commit`: a session start, before and after
  its row is committed (before the relay-on command is sent);
- `close:before_commit`, `close:after_commit`: the one transaction that stores a
  session's close, bill, card debit and outbox record;
- `outbox:after_enqueue`: records written to the outbox, before the uplink is woken.
"""

from __future__ import annotations

import os

ENV = "EBSHED_CRASH_AT"
EXIT_CODE = 86
POINTS = frozenset(
    {
        "open:before_commit",
        "open:after_commit",
        "close:before_commit",
        "close:after_commit",
        "outbox:after_enqueue",
    }
)


class InjectedCrash(BaseException):
    """Raised at an armed point in-process (a BaseException: no handler swallows it)."""


_process_points = frozenset(p.strip() for p in os.environ.get(ENV, "").split(",") if p.strip())
_armed: set[str] = set()

unknown = _process_points - POINTS
if unknown:
    raise SystemExit(f"{ENV}: unknown crash point(s) {sorted(unknown)}; known: {sorted(POINTS)}")


def arm(name: str) -> None:
    if name not in POINTS:
        raise ValueError(f"unknown crash point {name!r}")
    _armed.add(name)


def disarm() -> None:
    _armed.clear()


def crash_point(name: str) -> None:
    if name in _process_points:
        os._exit(EXIT_CODE)
    if name in _armed:
        _armed.discard(name)
        raise InjectedCrash(name)
