"""What hook handlers are given (see api/services/hooks.py)."""

from __future__ import annotations

from dataclasses import dataclass

from api.models import ChargeSession, Command


@dataclass(frozen=True, slots=True)
class ClosedSession:
    """A session whose closing record was just applied (`session.ended_ms` is set)."""

    shed_id: str
    session: ChargeSession
    now_ms: int


@dataclass(frozen=True, slots=True)
class CommandResulted:
    """A shed reported the result of a command, for the first time."""

    shed_id: str
    command: Command
    now_ms: int
