"""The shed's link to the central API (docs/uplink-contract.md).

- `controller/uplink_records.py` turns the core's actions into outbox records.
- `Uplink` delivers the outbox in batches, oldest first, with backoff and
  jitter; what the API has applied (or already had) is deleted. The outbox is
  in SQLite, so an outage of days is buffered and drained afterwards.
- `CommandPoller` long-polls the API for commands (start a paid session, stop,
  disable, enable, new tariff, card list, acknowledge an alarm), carries each
  out once through the service, and reports the result, again after a
  restart if need be.
- `LiveSender` posts the live readings of every socket and bay every few
  seconds for the staff board; a lost one is replaced by the next.

Both only move data; what a command does is decided by the core.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from typing import Any

import httpx

from controller.clock import Clock
from controller.core.model import Authorization, Card, Refusal
from controller.core.tariffs import TariffError, tariff_from_dict, tariff_to_dict
from controller.live_snapshot import live_snapshot
from controller.service import ControllerService
from controller.shed_tariff import META_KEY as TARIFF_META

log = logging.getLogger("ebshed.uplink")
BATCH = 500


class Backoff:
    """1 s doubling to 5 min, with +-20 % jitter (an injected random source)."""

    def __init__(self, rng: random.Random, first_s: float = 1.0, max_s: float = 300.0) -> None:
        self.rng, self.first_s, self.max_s = rng, first_s, max_s
        self.delay_s = 0.0

    def failed(self) -> float:
        self.delay_s = self.first_s if not self.delay_s else min(self.delay_s * 2, self.max_s)
        return self.delay_s * self.rng.uniform(0.8, 1.2)

    def ok(self) -> None:
        self.delay_s = 0.0


class _CentralLink:
    """What both directions of the link share: the service, an HTTP client, backoff."""

    def __init__(
        self,
        service: ControllerService,
        client: httpx.AsyncClient,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self.service = service
        self.client = client
        self.clock = clock
        self.backoff = Backoff(rng or random.Random())


class Uplink(_CentralLink):
    def __init__(
        self,
        service: ControllerService,
        client: httpx.AsyncClient,
        clock: Clock,
        rng: random.Random | None = None,
        idle_s: float = 1.0,
    ) -> None:
        super().__init__(service, client, clock, rng)
        self.idle_s = idle_s
        self.counts = {"sent": 0, "applied": 0, "duplicates": 0, "rejected": 0, "errors": 0}
        self.wake = asyncio.Event()

    @property
    def path(self) -> str:
        return f"/api/v1/sheds/{self.service.settings.shed.id}/uplink"

    async def send_once(self) -> int:
        """Send one batch; returns how many records left the outbox (0: nothing to do)."""
        store = self.service.store
        batch = store.outbox_batch(BATCH)
        if not batch:
            return 0
        resp = await self.client.post(self.path, json={"records": batch})
        if resp.status_code != 200:
            raise httpx.HTTPStatusError(
                f"uplink answered {resp.status_code}: {resp.text[:200]}",
                request=resp.request,
                response=resp,
            )
        body = resp.json()
        done = [*body.get("applied", []), *body.get("duplicates", [])]
        rejected = body.get("rejected", [])
        for r in rejected:
            log.error(
                "central API rejected record %s: %s %s",
                r.get("id"),
                r.get("code"),
                r.get("message"),
            )
        store.outbox_delete([*done, *(r["id"] for r in rejected)])
        self.counts["sent"] += len(batch)
        self.counts["applied"] += len(body.get("applied", []))
        self.counts["duplicates"] += len(body.get("duplicates", []))
        self.counts["rejected"] += len(rejected)
        return len(done) + len(rejected)

    async def run(self) -> None:
        while True:
            try:
                moved = await self.send_once()
                self.backoff.ok()
            except (httpx.HTTPError, ValueError, KeyError) as err:
                self.counts["errors"] += 1
                delay = self.backoff.failed()
                log.warning(
                    "uplink failed (%s); %d record(s) kept, retrying in %.1f s",
                    err,
                    self.service.store.outbox_depth(),
                    delay,
                )
                await self.clock.sleep(delay)
                continue
            if moved == 0:
                self.wake.clear()
                waiter = asyncio.ensure_future(self.wake.wait())
                try:
                    await asyncio.wait(
                        {waiter, asyncio.ensure_future(self.clock.sleep(self.idle_s))},
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    waiter.cancel()


class CommandPoller(_CentralLink):
    CURSOR = "central_command_cursor"

    def __init__(
        self,
        service: ControllerService,
        client: httpx.AsyncClient,
        clock: Clock,
        rng: random.Random | None = None,
        wait_s: int = 25,
    ) -> None:
        super().__init__(service, client, clock, rng)
        self.wait_s = wait_s
        self.handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "start_session": self._start,
            "stop_session": self._stop,
            "disable": self._disable,
            "enable": self._enable,
            "tariff": self._tariff,
            "cards": self._cards,
            "ack_alarm": self._ack_alarm,
        }

    @property
    def base(self) -> str:
        return f"/api/v1/sheds/{self.service.settings.shed.id}/commands"

    async def poll_once(self, wait_s: int | None = None) -> int:
        """One long poll; carries out and reports what arrived. Returns the count."""
        await self.report_pending()
        cursor = int(self.service.store.meta(self.CURSOR) or 0)
        wait = self.wait_s if wait_s is None else wait_s
        resp = await self.client.get(
            self.base, params={"after": cursor, "wait": wait}, timeout=wait + 10
        )
        resp.raise_for_status()
        commands = resp.json().get("commands", [])
        for cmd in commands:
            self.execute(cmd)
            self.service.store.set_meta(self.CURSOR, str(max(cursor, int(cmd["seq"]))))
            cursor = max(cursor, int(cmd["seq"]))
        await self.report_pending()
        return len(commands)

    def execute(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Carry out a command once; a repeated id returns the first result."""
        store = self.service.store
        done = store.command_done(str(cmd["id"]))
        if done is not None:
            return done.result
        handler = self.handlers.get(str(cmd.get("kind")))
        data = cmd.get("data") or {}
        if handler is None:
            result = _result(False, "unknown_command", f"unknown kind {cmd.get('kind')!r}")
        else:
            try:
                result = handler(data)
            except (KeyError, TypeError, ValueError, TariffError) as err:
                result = _result(False, "bad_command", str(err))
        store.save_command(
            str(cmd["id"]), int(cmd["seq"]), str(cmd.get("kind")), result, self.clock.now_ms()
        )
        return result

    async def report_pending(self) -> None:
        for row in self.service.store.unreported_commands():
            resp = await self.client.post(f"{self.base}/{row.id}/result", json=row.result)
            if resp.status_code in (200, 201, 409):  # 409: the API holds a result already
                self.service.store.command_reported(row.id)
            else:
                resp.raise_for_status()

    async def run(self) -> None:
        while True:
            try:
                await self.poll_once()
                self.backoff.ok()
            except (httpx.HTTPError, ValueError, KeyError) as err:
                delay = self.backoff.failed()
                log.warning("command poll failed (%s); retrying in %.1f s", err, delay)
                await self.clock.sleep(delay)

    # ---- command handlers: thin calls into the service ----------------------

    def _start(self, d: dict[str, Any]) -> dict[str, Any]:
        mode = d.get("mode", "until_full")
        if mode not in ("until_full", "amount"):
            raise ValueError(f"bad mode {mode!r}")
        prepaid = d["prepaid_fen"]
        if not isinstance(prepaid, int) or isinstance(prepaid, bool):
            raise TypeError("prepaid_fen must be an integer (fen)")
        auth = Authorization("order", str(d["order_no"]), prepaid, mode)
        result = self.service.start_session(int(d["port"]), auth)
        if isinstance(result, Refusal):
            return _result(False, result.code, result.message)
        return _result(True, data={"session_id": result.id})

    def _stop(self, d: dict[str, Any]) -> dict[str, Any]:
        def given(key: str) -> str | None:
            return None if d.get(key) is None else str(d[key])

        return _from(self.service.stop_session(int(d["port"]), str(d.get("reason", "central")),
                                               session_id=given("session_id"),
                                               auth_ref=given("order_no")))  # fmt: skip

    def _disable(self, d: dict[str, Any]) -> dict[str, Any]:
        return _from(self.service.disable(int(d["port"]), str(d.get("reason", "central"))))

    def _enable(self, d: dict[str, Any]) -> dict[str, Any]:
        return _from(self.service.enable(int(d["port"])))

    def _tariff(self, d: dict[str, Any]) -> dict[str, Any]:
        tariff = tariff_from_dict(d)
        self.service.core.tariff = tariff  # sessions keep the tariff they started with
        self.service.store.set_meta(
            TARIFF_META, json.dumps(tariff_to_dict(tariff), ensure_ascii=False)
        )
        self.service.report_tariff()  # the central API's pages show what the shed bills
        return _result(True, data={"tariff": tariff.id, "version": tariff.version})

    def _ack_alarm(self, d: dict[str, Any]) -> dict[str, Any]:
        """Staff acknowledged an alarm on the board: the same as at the shed (a
        smoke lockout ends only then); the alarm's record goes back acknowledged."""
        by, note = str(d["by"])[:64], str(d.get("note", ""))[:512]
        return _from(self.service.acknowledge(str(d["alarm_id"]), by, note))

    def _cards(self, d: dict[str, Any]) -> dict[str, Any]:
        """Cards to add or change. Per card: `balance_fen` sets the balance,
        `top_up_fen` adds to it (this command is carried out once, so a top-up
        counts once); a field left out or null keeps what the shed has."""
        known = {c.uid: c for c in self.service.store.cards()}
        cards = []
        for c in d["cards"]:
            uid = str(c["uid"]).upper()
            old = known.get(uid, Card(uid))
            balance = old.balance_fen
            if c.get("balance_fen") is not None:
                balance = int(c["balance_fen"])
            elif c.get("top_up_fen") is not None:
                balance += int(c["top_up_fen"])
            plan = c.get("plan_until_ms", old.plan_until_ms)
            blocked = old.blocked if c.get("blocked") is None else bool(c["blocked"])
            cards.append(Card(uid, balance, plan, blocked))
        now = self.clock.now_ms()
        for card in cards:
            self.service.store.upsert_card(card, now, note="central")
        self.service.core.set_cards(self.service.store.cards())
        return _result(True, data={"cards": len(cards)})


class LiveSender(_CentralLink):
    """Posts the live readings (controller/live_snapshot.py) every `every_s`.

    Not through the outbox: nothing is kept or retried, the next snapshot
    replaces a lost one. Failures are counted and logged once per outage."""

    def __init__(
        self,
        service: ControllerService,
        client: httpx.AsyncClient,
        clock: Clock,
        every_s: float = 5.0,
    ) -> None:
        super().__init__(service, client, clock)
        self.every_s = every_s
        self.counts = {"sent": 0, "stale": 0, "errors": 0}
        self._failing = False

    @property
    def path(self) -> str:
        return f"/api/v1/sheds/{self.service.settings.shed.id}/live"

    async def send_once(self) -> bool:
        """Post one snapshot; True when the API stored it (False: it had a newer one)."""
        body = live_snapshot(self.service.core, self.clock.now_ms())
        resp = await self.client.post(self.path, json=body)
        resp.raise_for_status()
        stored = bool(resp.json().get("stored"))
        self.counts["sent" if stored else "stale"] += 1
        return stored

    async def run(self) -> None:
        while True:
            try:
                await self.send_once()
                if self._failing:
                    log.info("live snapshots reach the central API again")
                self._failing = False
            except (httpx.HTTPError, ValueError) as err:
                self.counts["errors"] += 1
                if not self._failing:
                    log.warning("live snapshot not sent (%s); the next one replaces it", err)
                self._failing = True
            await self.clock.sleep(self.every_s)


def _result(
    ok: bool,
    code: str | None = None,
    message: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {"ok": ok, "code": code, "message": message, "data": data or {}}


def _from(refusal: Refusal | None) -> dict[str, Any]:
    return _result(True) if refusal is None else _result(False, refusal.code, refusal.message)
