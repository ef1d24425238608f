"""Extension points: code that runs when something happens to a shed's records.

Handlers run inside the transaction that applies the change, so what they
write commits together with it, exactly once: a session's closing record is
applied once (a replay is a duplicate), a command's result is recorded once.

A handler that raises undoes the change and the shed gets a 500, then retries
(the record is still in its outbox): raise only when retrying can succeed,
e.g. a database hiccup. Expected outcomes (an order already refunded, ...)
are for the handler to record, not to raise.

Wire more handlers in when building the app:

    hooks = Hooks(session_closed=[on_session_closed, settle_order])
    app = create_app(settings, hooks=hooks)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from api.services.events import ClosedSession, CommandResulted
from api.services.session_closed import on_session_closed

SessionClosedHandler = Callable[[Session, ClosedSession], None]
CommandResultHandler = Callable[[Session, CommandResulted], None]


def _default_session_closed() -> list[SessionClosedHandler]:
    return [on_session_closed]


@dataclass(slots=True)
class Hooks:
    session_closed: list[SessionClosedHandler] = field(default_factory=_default_session_closed)
    command_result: list[CommandResultHandler] = field(default_factory=list)

    def run_session_closed(self, db: Session, event: ClosedSession) -> None:
        for handler in self.session_closed:
            handler(db, event)

    def run_command_result(self, db: Session, event: CommandResulted) -> None:
        for handler in self.command_result:
            handler(db, event)
