"""Modbus RTU adapter: one RS-485 bus of socket boards (contract modbus-rtu-board-v1).

I/O and scheduling only, no policy. `ModbusBridge` is the bus master of one
serial line with several boards (slave ids) on it. It offers the controller
the same interface as `MqttBridge` (`send_command`, `publish_port_state`,
`counters`, `start`/`stop`/`async with`) and hands the sink the same typed
messages an MQTT board produces, so the controller does not know which
transport a port uses.

One worker task owns the line and does one exchange (request, answer) at a
time. It runs in the bridge's own thread, on that thread's event loop, so
the load of the controller's event loop does not stretch the exchanges: the
caller's loop only hands it commands, receives its messages (in order, from
one delivery task) and decides when a cycle is due by the injected clock
(one hand-over per cycle, not per exchange). `stop()` ends and joins the
thread.

- **Poll cycle.** For each board in slave-id order: its socket block in one
  FC 04 read (two for 16 sockets), then its card registers in one FC 03 read
  (every `card_every_cycles` cycles). The info block (registers 0..5: socket
  count, firmware, uptime) is read when a board is first probed, every
  `info_every_cycles` cycles, and at once when a relay read on is read off
  (so a reboot is known before that read's telemetry goes out). A new cycle
  starts `poll_interval_s` (on the injected clock) after the previous one
  started, or at once if the bus took longer than that.
- **Commands first.** Queued commands go before the next poll exchange, so a
  command waits at most for the exchange in flight (one frame and its answer,
  or one time-out), never for a cycle. An `off` also goes before queued
  `on`/`renew` commands, and withdraws those of the same port (they fail with
  `superseded`), so a safety stop cannot be overtaken by an older start.
- **Time-outs and retries.** A slave that does not start answering within
  `timeout_s` after the request has left the wire is retried at most
  `retries` times (queued commands go between the attempts). A board whose
  poll fails `offline_after_cycles` cycles in a row is offline: it is skipped
  and probed (one info read, no retry) every `probe_interval_s` of bus time,
  so a dead board costs the others one time-out per probe, not one per cycle.
- **Bad frames** (bad CRC, cut short, wrong length, wrong slave, wrong
  function) are counted under `dropped.<reason>` and never used; the exchange
  is retried like a time-out.
- **Timing.** The master keeps the 3.5-character silence between frames
  itself (it sends a request only that long after the last answer ended).

Commands are never lost silently. Each gets exactly one `CmdAck` through the
sink: `ok=True` once the board confirmed the write, else `ok=False` with
`error` one of `timeout` (no answer after the retries), `bad_frame` (only
unusable answers), `board_offline` (not sent: the board is offline),
`bus_down` (the serial port is not open), `superseded` (withdrawn by a later
`off` of the same port), `relay_off` (a `renew` of a relay that is off), or
the board's Modbus exception (`illegal_address`, `illegal_value`,
`device_failure`, `device_busy`, ...). As with MQTT, `relay` means nothing in
a failed ack. A repeated command id is answered again with the first ack and
not executed twice. Commands still queued when the bridge stops are dropped
and counted (`commands_dropped`); the boards' leases make that safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from firmware_bridge.messages import CmdAck, DeviceMessage, PortCommand, Telemetry
from firmware_bridge.modbus_board import BoardTracker
from firmware_bridge.modbus_codec import (
    Dropped,
    ExceptionReply,
    Outcome,
    Reply,
    Request,
    incomplete,
    parse_response,
)
from firmware_bridge.modbus_line import LineError, ModbusConfigError, SerialLine
from firmware_bridge.modbus_registers import (
    CARD_OFFSET,
    CMD_OFFSET,
    INFO_ADDRESS,
    INFO_COUNT,
    LEASE_OFFSET,
    BoardInfo,
    card_read,
    cards_from_read,
    check_u16,
    decode_sockets,
    holding,
    socket_reads,
)
from firmware_bridge.modbus_settings import ModbusBusSettings
from firmware_bridge.modbus_timing import sleep_until
from firmware_bridge.tasks import Clock, Sink, StartStop, cancel_and_wait

__all__ = ["CycleStats", "ModbusBridge", "ModbusBusSettings", "ModbusConfigError", "Sink"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_FRAME_MARGIN_S = 0.05  # USB adapters deliver in bursts; allowed on top of 1.5 x a frame's time


@dataclass(frozen=True, slots=True)
class CycleStats:
    """One poll cycle: when it started (monotonic s), how long it took, and its wire time."""

    started: float
    duration_s: float
    exchanges: int
    wire_s: float  # the theoretical bus time of the same frames (characters and gaps)


@dataclass(frozen=True, slots=True)
class _Progress:
    """A marker in the delivery order: every message before it has been handed over."""

    cycle: int  # the number (`cycle_no`) of the cycle that ended


@dataclass(frozen=True, slots=True)
class _Acked:
    """A command's ack, and the cycle it came in (0: between cycles)."""

    ack: CmdAck
    in_cycle: int


_Item = DeviceMessage | _Progress | _Acked


@dataclass(slots=True)
class _Job:
    cmd: PortCommand
    replay: CmdAck | None = None  # a repeated id: deliver this again, do not execute


class ModbusBridge(StartStop):
    """The master of one RS-485 bus. Use `async with bridge:` or `start()` / `await stop()`."""

    def __init__(self, bus: ModbusBusSettings, clock: Clock, sink: Sink) -> None:
        self.settings = bus
        self._clock = clock
        self._sink = sink
        self._timing = bus.timing
        self._line = SerialLine(bus.device, bus.baud, bus.parity, bus.stopbits)
        self._boards = {
            slave: BoardTracker(
                slave, board_id, ports, offline_after_cycles=bus.offline_after_cycles
            )
            for slave, (board_id, ports) in sorted(bus.boards.items())
        }
        self._port_map: dict[int, tuple[BoardTracker, int]] = {
            port: (tracker, k)
            for tracker in self._boards.values()
            for k, port in enumerate(tracker.ports)
        }
        # The queue, the command in flight and the recent acks are shared by the
        # caller's thread (send_command) and the bus thread: under `_lock`.
        self._lock = threading.Lock()
        self._queue: deque[_Job] = deque()
        self._inflight: str | None = None  # id of the command on the wire
        self._done: OrderedDict[str, CmdAck] = OrderedDict()  # acks of recent ids
        self._open_commands = 0  # sent and not yet acknowledged to the sink (caller's thread)
        self._probe_due: dict[int, float] = {}
        self._bus_free_at = 0.0  # monotonic time the next frame may start
        self._cycle_no = 0  # cycles begun: counted on the caller's loop
        self._cycles_seen = 0  # the number of the last cycle whose messages the sink has had
        self._running_cycle = 0  # the cycle the bus is in (0: between cycles; bus thread)
        self._acked_in_cycle = 0  # the cycle the latest ack handed over came in
        self._cycle_wire_s = 0.0
        self._cycle_exchanges = 0
        self.recent_cycles: deque[CycleStats] = deque(maxlen=64)
        self._progress = asyncio.Condition()
        self._wake = asyncio.Event()  # the bus loop's
        self._task: asyncio.Task[None] | None = None  # the worker, on the bus loop
        self._thread: threading.Thread | None = None
        self._bus_loop: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the caller's
        self._outbox: deque[_Item] = deque()  # bus thread -> caller, under `_lock`
        self._outbox_told = False  # the caller's loop has been woken for what is in it
        self._in_hand: deque[_Item] = deque()  # taken from the outbox, not yet handed over
        self._outbox_ready = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._stopped: asyncio.Future[None] | None = None
        self.realtime = False  # the bus thread runs at `realtime_priority` (SCHED_FIFO)
        self._last_open_error = ""
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "cycles",
                "exchanges",
                "frames_received",
                "timeouts",
                "retries",
                "exceptions",
                "stray_bytes",
                "probes",
                "telemetry",
                "events",
                "cards",
                "delivered",
                "sink_errors",
                "commands_sent",
                "commands_acked",
                "commands_failed",
                "commands_replayed",
                "commands_dropped",
                "line_failures",
                "open_failures",
                "errors",
            ),
            0,
        )
        self._drops: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle

    @property
    def ports(self) -> tuple[int, ...]:
        return self.settings.ports

    def start(self) -> None:
        """Open the port and start polling.

        Raises ModbusConfigError if the port cannot run the configured line
        settings. A port that is missing or fails is retried in the background.
        """
        if self._thread is not None:
            raise RuntimeError("bridge already started")
        loop = asyncio.get_running_loop()
        try:
            self._line.open(watch=False)  # the bus thread reads it
        except LineError as err:
            self._open_failed(err)
        name = f"modbus-{self.settings.bus_id}"
        self._loop = loop
        self._stopped = loop.create_future()
        self._outbox_ready = asyncio.Event()
        self._pump_task = loop.create_task(self._pump(), name=f"{name}-deliver")
        bus_loop = asyncio.new_event_loop()
        self._bus_loop = bus_loop
        self._wake = asyncio.Event()
        self._task = bus_loop.create_task(self._run(), name=name)  # runs once the thread does
        self._thread = threading.Thread(target=self._serve, args=(bus_loop,), name=name)
        self._thread.start()

    async def stop(self) -> None:
        """Stop polling, join the bus thread and close the port.

        Messages the bus produced before it stopped are still handed to the
        sink; commands still queued are dropped and counted.
        """
        thread, self._thread = self._thread, None
        if thread is not None:
            assert self._bus_loop is not None and self._stopped is not None
            self._bus_loop.call_soon_threadsafe(self._cancel_worker)
            await asyncio.shield(self._stopped)
            thread.join()
            self._bus_loop = None
            if self._pump_task is not None:
                await cancel_and_wait(self._pump_task)
                self._pump_task = None
            self._in_hand.extend(self._take_outbox())
            while self._in_hand:  # what the delivery task had not handed over yet, in order
                await self._hand_over(self._in_hand.popleft())
        self._line.close()
        with self._lock:
            dropped = len(self._queue) + (self._inflight is not None)
            self._queue.clear()
            self._inflight = None
        self._open_commands = 0
        if dropped:
            self._counts["commands_dropped"] += dropped
            log.warning(
                "bus %s stopped with %d command(s) unanswered", self.settings.bus_id, dropped
            )

    def _serve(self, bus_loop: asyncio.AbstractEventLoop) -> None:
        """The bus thread: run the worker on its own loop until stop() cancels it."""
        asyncio.set_event_loop(bus_loop)
        if self.settings.realtime_priority:
            self._raise_priority(self.settings.realtime_priority)
        try:
            assert self._task is not None
            with contextlib.suppress(asyncio.CancelledError):
                bus_loop.run_until_complete(self._task)
        finally:
            self._line.close()  # its reader is this loop's
            with contextlib.suppress(Exception):
                bus_loop.run_until_complete(bus_loop.shutdown_asyncgens())
            bus_loop.close()
            asyncio.set_event_loop(None)
            if self._loop is not None and self._stopped is not None:
                stopped = self._stopped
                self._loop.call_soon_threadsafe(_resolve, stopped)

    def _raise_priority(self, priority: int) -> None:
        """Run this (the bus) thread SCHED_FIFO; without the right, say so and run as before."""
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        except (OSError, AttributeError) as err:
            log.warning(
                "bus %s: cannot run the bus thread at real-time priority %d (%s); it runs "
                "at normal priority (allow it with LimitRTPRIO=%d in the service unit)",
                self.settings.bus_id,
                priority,
                err,
                priority,
            )
        else:
            self.realtime = True

    def _cancel_worker(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def board_online(self, board_id: str) -> bool | None:
        """True/False once known; None while the board was never heard from."""
        for tracker in self._boards.values():
            if tracker.board_id == board_id:
                return tracker.online
        raise KeyError(board_id)

    async def wait_cycles(self, n: int = 1) -> None:
        """Wait until `n` more poll cycles have ended (wrap in `asyncio.timeout`).

        A cycle during which a command acknowledged before this call ran does
        not count: the readings waited for show every acknowledged command.
        """
        target = max(self._cycles_seen, self._acked_in_cycle) + n
        async with self._progress:
            await self._progress.wait_for(lambda: self._cycles_seen >= target)

    @property
    def cycle_no(self) -> int:
        """The number of the last poll cycle begun."""
        return self._cycle_no

    async def barrier(self, after: int | None = None) -> None:
        """Wait for a whole poll cycle begun after this call (or after cycle
        number `after`, see `cycle_no`), then for every queued command.

        For simulated time stepped with a barrier: advance the clock, then
        `await bridge.barrier()`: every board has been read at the new time, and
        the commands the controller sent in answer have been carried out and
        acknowledged. (With a `SimClock` a cycle starts only once the clock has
        reached the poll interval: advance first.)
        """
        target = (self._cycle_no if after is None else after) + 1
        async with self._progress:
            await self._progress.wait_for(
                lambda: self._cycles_seen >= target and not self._open_commands
            )

    async def commands_done(self) -> None:
        """Wait until every queued command has been carried out and acknowledged
        (commands run between poll cycles: no new cycle is needed)."""
        async with self._progress:
            await self._progress.wait_for(lambda: not self._open_commands)

    def counters(self) -> dict[str, int]:
        """Snapshot for metrics. `dropped.<reason>` per kind of bad frame; `dropped` in total."""
        out = dict(self._counts)
        with self._lock:
            drops = dict(self._drops)
        out["dropped"] = sum(drops.values())
        out.update({f"dropped.{reason}": n for reason, n in sorted(drops.items())})
        out["reboots"] = sum(t.reboots for t in self._boards.values())
        out["boards_online"] = sum(t.online is True for t in self._boards.values())
        out["pending_commands"] = len(self._queue)
        last = self.recent_cycles[-1] if self.recent_cycles else None
        out["last_cycle_ms"] = round(last.duration_s * 1000) if last else 0
        return out

    # ------------------------------------------------------------------ controller API

    def send_command(self, cmd: PortCommand) -> None:
        """Queue a relay command; returns at once. Its outcome reaches the sink as a `CmdAck`.

        Raises ValueError for a port not on this bus, a command the registers
        cannot carry (lease_s and max_w are 1..65535), or an id already queued.
        """
        if cmd.port not in self._port_map:
            raise ValueError(f"port {cmd.port} is not on bus {self.settings.bus_id}")
        if not cmd.id:
            raise ValueError("command id must not be empty")
        if cmd.op in ("on", "renew"):
            check_u16("lease_s", _int("lease_s", cmd.lease_s))
        if cmd.op == "on":
            check_u16("max_w", _int("max_w", cmd.max_w))
        elif cmd.op not in ("off", "renew"):
            raise ValueError(f"unknown op {cmd.op!r}")
        with self._lock:
            if cmd.id == self._inflight or any(job.cmd.id == cmd.id for job in self._queue):
                raise ValueError(f"command id {cmd.id!r} is already pending")
            known = self._done.get(cmd.id)
            if known is not None:
                self._queue.append(_Job(cmd, replay=known))
            elif cmd.op == "off":
                self._queue_off(cmd)
            else:
                self._queue.append(_Job(cmd))
        self._open_commands += 1
        if self._bus_loop is not None:
            with contextlib.suppress(RuntimeError):  # the bus loop is closing: stop() counts it
                self._bus_loop.call_soon_threadsafe(self._wake.set)

    def _queue_off(self, cmd: PortCommand) -> None:
        """Before every queued on/renew; those of the same port are withdrawn. Under `_lock`."""
        kept: deque[_Job] = deque()
        offs: list[_Job] = []
        for job in self._queue:
            if job.replay is None and job.cmd.op == "off":
                offs.append(job)
            elif job.replay is None and job.cmd.port == cmd.port:
                withdrawn = CmdAck(job.cmd.port, job.cmd.id, False, False, "superseded")
                kept.append(_Job(job.cmd, replay=withdrawn))  # delivered in turn
            else:
                kept.append(job)
        self._queue = deque([*offs, _Job(cmd), *kept])

    def publish_port_state(
        self, port: int, state: str, session: str | None, w: float, session_wh: int, since: int
    ) -> None:
        """Nothing to do: RS-485 boards have no display register in contract v1."""

    # ------------------------------------------------------------------ delivery

    async def _deliver(self, msg: DeviceMessage) -> None:
        """Hand a message to the caller's loop, which gives it to the sink in order."""
        self._post(msg)

    def _post(self, item: _Item) -> None:
        with self._lock:
            self._outbox.append(item)
            tell, self._outbox_told = not self._outbox_told, True
        if tell and self._loop is not None:  # one wake-up of the caller's loop per batch
            with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody to tell
                self._loop.call_soon_threadsafe(self._outbox_ready.set)

    def _notify_progress(self) -> None:
        self._post(_Progress(self._cycle_no))  # the cycle just ended, by its number

    async def _pump(self) -> None:
        """On the caller's loop: the bus thread's messages to the sink, one at a time."""
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            self._in_hand.extend(self._take_outbox())
            while self._in_hand:
                await self._hand_over(self._in_hand.popleft())

    def _take_outbox(self) -> list[_Item]:
        with self._lock:
            items = list(self._outbox)
            self._outbox.clear()
            self._outbox_told = False
        return items

    async def _hand_over(self, item: _Item) -> None:
        if isinstance(item, _Progress):
            self._cycles_seen = item.cycle
            async with self._progress:
                self._progress.notify_all()
            return
        if isinstance(item, _Acked):  # every command gets exactly one
            self._open_commands = max(0, self._open_commands - 1)
            self._acked_in_cycle = max(self._acked_in_cycle, item.in_cycle)
            item = item.ack
        try:
            result = self._sink(item)
            if result is not None:
                await result
        except Exception:
            self._counts["sink_errors"] += 1
            log.exception("sink failed on %s", type(item).__name__)
        else:
            self._counts["delivered"] += 1
        if isinstance(item, CmdAck):
            async with self._progress:
                self._progress.notify_all()

    async def _on_caller(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run `coro` on the caller's loop (the clock is that loop's) and wait for it."""
        assert self._loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def _deliver_all(self, msgs: list[DeviceMessage]) -> None:
        for msg in msgs:
            await self._deliver(msg)

    # ------------------------------------------------------------------ worker

    async def _run(self) -> None:
        self._line.watch()
        delay = self.settings.reopen_min_s
        next_cycle_ms: int | None = None  # None: due at once
        while True:
            if not self._line.is_open:
                try:
                    self._line.open()
                except (LineError, ModbusConfigError) as err:
                    self._open_failed(err)
                    await self._fail_queued("bus_down")
                    await self._idle_real(delay)
                    delay = min(delay * 2, self.settings.reopen_max_s)
                    continue
                log.info("bus %s: %s open again", self.settings.bus_id, self.settings.device)
                delay = self.settings.reopen_min_s
            try:
                next_cycle_ms = await self._idle(next_cycle_ms)
                await self._cycle()
            except LineError as err:
                self._counts["line_failures"] += 1
                log.error("bus %s: %s; reopening", self.settings.bus_id, err)
                self._line.close()
                self._running_cycle = 0
                await self._line_down()
                next_cycle_ms = None
            except Exception:  # a bug must not end the polling for good
                self._counts["errors"] += 1
                log.exception("bus %s: poll cycle failed", self.settings.bus_id)
                self._running_cycle = 0
                await self._idle_real(self.settings.reopen_min_s)
                next_cycle_ms = None

    def _open_failed(self, err: Exception) -> None:
        self._counts["open_failures"] += 1
        if str(err) != self._last_open_error:  # once per distinct error, not every retry
            self._last_open_error = str(err)
            log.error("bus %s: cannot open: %s", self.settings.bus_id, err)

    async def _line_down(self) -> None:
        """The port failed: every board is out of reach until it is open again."""
        await self._fail_queued("bus_down")
        now = self._clock.now_ms()
        for tracker in self._boards.values():
            await self._deliver_all(tracker.unreachable(now))
            self._probe_due[tracker.slave] = 0.0  # probe as soon as the port is back

    async def _fail_queued(self, error: str) -> None:
        while (job := self._next_job(inflight=False)) is not None:
            await self._finish(job, CmdAck(job.cmd.port, job.cmd.id, False, False, error))

    def _next_job(self, *, inflight: bool) -> _Job | None:
        """The first queued job; with `inflight` a command to execute is marked on the wire."""
        with self._lock:
            if not self._queue:
                return None
            job = self._queue.popleft()
            if inflight and job.replay is None:
                self._inflight = job.cmd.id  # still set if stop() cancels us: counted as dropped
            return job

    async def _cycle(self) -> None:
        started = time.monotonic()
        self._running_cycle = self._cycle_no
        self._cycle_wire_s = 0.0
        self._cycle_exchanges = 0
        for tracker in self._boards.values():
            await self._run_commands()
            if tracker.online is False:
                if time.monotonic() >= self._probe_due.get(tracker.slave, 0.0):
                    await self._probe(tracker)
                continue
            await self._poll(tracker)
        self._counts["cycles"] += 1
        self._running_cycle = 0
        self.recent_cycles.append(
            CycleStats(
                started, time.monotonic() - started, self._cycle_exchanges, self._cycle_wire_s
            )
        )
        self._notify_progress()

    async def _idle(self, due_ms: int | None) -> int:
        """Run commands until the next cycle is due (and a probe, if nothing else is to
        do); begin it and return when the one after it is due."""
        not_before = 0.0
        if all(t.online is False for t in self._boards.values()):
            not_before = min(self._probe_due.values(), default=0.0)
        while True:
            await self._run_commands()
            real_left = not_before - time.monotonic()
            if real_left <= 0:
                begun = await self._on_caller(self._begin_cycle(due_ms))
                if begun is not None:
                    return begun
            self._wake.clear()
            waits: list[asyncio.Task[Any]] = [
                asyncio.create_task(self._wake.wait(), name="modbus-wake")
            ]
            if due_ms is not None:  # at once if the clock has moved past it meanwhile
                tick = self._on_caller(self._clock_reaches(due_ms))
                waits.append(asyncio.create_task(tick, name="modbus-tick"))
            try:
                await asyncio.wait(
                    waits,
                    timeout=real_left if real_left > 0 else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                await cancel_and_wait(*waits)

    async def _begin_cycle(self, due_ms: int | None) -> int | None:
        """On the caller's loop, so `cycle_no` moves only between its steps: begin a cycle
        if it is due by the clock, and return when the next one will be (else None)."""
        now = self._clock.now_ms()
        if due_ms is not None and now < due_ms:
            return None
        self._cycle_no += 1
        return now + round(self.settings.poll_interval_s * 1000)

    async def _clock_reaches(self, t_ms: int) -> None:
        # The time left is taken when the task runs: a SimClock may have moved meanwhile.
        left = (t_ms - self._clock.now_ms()) / 1000
        if left > 0:
            await self._clock.sleep(left)

    async def _idle_real(self, seconds: float) -> None:
        """Wait real time (reopening a port), waking early for a command to fail."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    # ------------------------------------------------------------------ polling

    async def _poll(self, tracker: BoardTracker) -> None:
        info_due = tracker.cycles_since_info >= self.settings.info_every_cycles
        if (tracker.info is None or info_due) and not await self._read_info(tracker):
            await self._cycle_failed(tracker)
            return
        tracker.cycles_since_info += 1
        states = []
        for _first, address, count in socket_reads(tracker.sockets):
            outcome = await self._transact(Request.read_input(tracker.slave, address, count))
            if not isinstance(outcome, Reply):
                self._log_failure(tracker, "socket read", outcome)
                await self._cycle_failed(tracker)
                return
            states.extend(decode_sockets(outcome.registers))
        if tracker.relay_dropped(states):
            await self._read_info(tracker)  # a reboot shows before this read's telemetry
        msgs = tracker.sockets_read(states, self._clock.now_ms())
        self._count_messages(msgs)
        await self._deliver_all(msgs)
        every = self.settings.card_every_cycles
        if every and self._cycle_no % every == 0:
            await self._read_cards(tracker)

    async def _read_info(self, tracker: BoardTracker, attempts: int | None = None) -> bool:
        outcome = await self._transact(
            Request.read_input(tracker.slave, INFO_ADDRESS, INFO_COUNT), attempts
        )
        if not isinstance(outcome, Reply):
            self._log_failure(tracker, "info read", outcome)
            return False
        info = BoardInfo.from_registers(outcome.registers)
        try:
            msgs = tracker.info_read(info, self._clock.now_ms())
        except ValueError as err:
            log.error("bus %s: %s", self.settings.bus_id, err)
            return False
        if info.sockets < len(tracker.ports) and msgs:
            log.error(
                "bus %s: board %s has %d sockets, %d ports configured; polling %d",
                self.settings.bus_id,
                tracker.board_id,
                info.sockets,
                len(tracker.ports),
                tracker.sockets,
            )
        await self._deliver_all(msgs)
        return True

    async def _read_cards(self, tracker: BoardTracker) -> None:
        address, count = card_read(tracker.sockets)
        outcome = await self._transact(Request.read_holding(tracker.slave, address, count))
        if not isinstance(outcome, Reply):
            self._log_failure(tracker, "card read", outcome)
            return  # the socket read of this cycle worked: the board is not failing
        taps = tracker.cards_read(
            cards_from_read(outcome.registers, tracker.sockets), self._clock.now_ms()
        )
        self._counts["cards"] += len(taps.events)
        await self._deliver_all(list(taps.events))
        for k in taps.clear:
            req = Request.write_single(tracker.slave, holding(k, CARD_OFFSET), 0)
            result = await self._transact(req)
            if isinstance(result, Reply):
                tracker.card_cleared(k)
            elif isinstance(result, ExceptionReply) and tracker.clears_cards:
                tracker.clears_cards = False
                log.warning(
                    "bus %s: board %s refuses clearing its card register (%s); "
                    "taps are read by change from now on",
                    self.settings.bus_id,
                    tracker.board_id,
                    result.error,
                )

    async def _probe(self, tracker: BoardTracker) -> None:
        self._probe_due[tracker.slave] = time.monotonic() + self.settings.probe_interval_s
        self._counts["probes"] += 1
        if await self._read_info(tracker, attempts=1):
            log.info("bus %s: board %s is back", self.settings.bus_id, tracker.board_id)
            await self._poll(tracker)

    async def _cycle_failed(self, tracker: BoardTracker) -> None:
        was_online = tracker.online
        msgs = tracker.cycle_failed(self._clock.now_ms())
        if tracker.online is False and was_online is not False:
            self._probe_due[tracker.slave] = time.monotonic() + self.settings.probe_interval_s
            log.warning(
                "bus %s: board %s (slave %d) offline after %d failed cycles",
                self.settings.bus_id,
                tracker.board_id,
                tracker.slave,
                tracker.failed_cycles,
            )
        await self._deliver_all(msgs)

    def _count_messages(self, msgs: list[DeviceMessage]) -> None:
        for msg in msgs:
            if isinstance(msg, Telemetry):
                self._counts["telemetry"] += 1
            else:
                self._counts["events"] += 1

    def _log_failure(self, tracker: BoardTracker, what: str, outcome: Outcome | None) -> None:
        why = "no answer" if outcome is None else _describe(outcome)
        bus = self.settings.bus_id
        log.debug("bus %s: board %s %s failed: %s", bus, tracker.board_id, what, why)

    # ------------------------------------------------------------------ commands

    async def _run_commands(self) -> None:
        while (job := self._next_job(inflight=True)) is not None:
            if job.replay is not None:
                if job.replay.error != "superseded":
                    self._counts["commands_replayed"] += 1
                await self._finish(job, job.replay)
                continue
            try:
                ack = await self._execute(job.cmd)
            except LineError:
                self._finish_sync(job, CmdAck(job.cmd.port, job.cmd.id, False, False, "bus_down"))
                raise
            self._finish_sync(job, ack)

    async def _execute(self, cmd: PortCommand) -> CmdAck:
        tracker, k = self._port_map[cmd.port]
        if tracker.online is False:
            return CmdAck(cmd.port, cmd.id, False, False, "board_offline")
        if cmd.op == "on":
            values = (1, _int("lease_s", cmd.lease_s), _int("max_w", cmd.max_w))
            req = Request.write_multiple(tracker.slave, holding(k, CMD_OFFSET), values)
        elif cmd.op == "off":
            req = Request.write_single(tracker.slave, holding(k, CMD_OFFSET), 0)
        else:
            lease = _int("lease_s", cmd.lease_s)
            req = Request.write_single(tracker.slave, holding(k, LEASE_OFFSET), lease)
        self._counts["commands_sent"] += 1
        outcome = await self._transact(req, poll=False)
        if isinstance(outcome, Reply):
            if cmd.op == "renew":
                relay = tracker.relay(k) is not False
                if not relay:
                    return CmdAck(cmd.port, cmd.id, False, False, "relay_off")
                return CmdAck(cmd.port, cmd.id, True, True)
            tracker.set_relay(k, cmd.op == "on")
            return CmdAck(cmd.port, cmd.id, True, cmd.op == "on")
        if isinstance(outcome, ExceptionReply):
            return CmdAck(cmd.port, cmd.id, False, False, outcome.error)
        return CmdAck(cmd.port, cmd.id, False, False, "timeout" if outcome is None else "bad_frame")

    async def _finish(self, job: _Job, ack: CmdAck) -> None:
        self._finish_sync(job, ack)

    def _finish_sync(self, job: _Job, ack: CmdAck) -> None:
        with self._lock:
            if job.replay is None:
                self._done[job.cmd.id] = ack
                while len(self._done) > self.settings.dedupe_size:
                    self._done.popitem(last=False)
            if self._inflight == job.cmd.id:
                self._inflight = None
        if ack.ok:
            self._counts["commands_acked"] += 1
        else:
            self._counts["commands_failed"] += 1
            log.warning("command %s to port %d failed: %s", ack.id, ack.port, ack.error)
        self._post(_Acked(ack, self._running_cycle))

    # ------------------------------------------------------------------ the wire

    async def _transact(
        self, req: Request, attempts: int | None = None, *, poll: bool = True
    ) -> Outcome | None:
        """Up to 1 + retries exchanges. Between the attempts of a poll, commands go first.

        Returns the reply or the slave's exception; the last unusable answer or
        None (no answer) when every attempt failed.
        """
        last: Outcome | None = None
        for attempt in range(attempts or 1 + self.settings.retries):
            if poll:
                await self._run_commands()
            if attempt:
                self._counts["retries"] += 1
            outcome = await self._exchange(req)
            if isinstance(outcome, Reply | ExceptionReply):
                if isinstance(outcome, ExceptionReply):
                    self._counts["exceptions"] += 1
                return outcome
            last = outcome
        return last

    async def _exchange(self, req: Request) -> Outcome | None:
        """One request and its answer: a reply, an exception, a dropped frame, or None (silence)."""
        line = self._line
        frame = req.frame()
        await sleep_until(self._bus_free_at)
        stray = line.clear()
        if stray:
            self._counts["stray_bytes"] += stray
        line.write(frame)
        sent = time.monotonic()
        self._counts["exchanges"] += 1
        self._cycle_exchanges += 1
        timing = self._timing
        first_byte_by = sent + timing.frame_s(len(frame)) + self.settings.timeout_s
        frame_time = 1.5 * timing.frame_s(req.response_length()) + _FRAME_MARGIN_S
        received = 0
        try:
            while True:
                if line.buffer:
                    used, outcome = parse_response(req, bytes(line.buffer))
                    if outcome is not None:
                        line.consume(used)
                        received += used
                        if isinstance(outcome, Dropped):
                            self._drop(req, outcome)
                            if outcome.reason == "wrong_slave":
                                continue  # not our answer: keep listening
                        else:
                            self._counts["frames_received"] += 1
                        return outcome
                first = line.first_byte_at
                deadline = first_byte_by if first is None else first + frame_time
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if line.buffer:
                        received += len(line.buffer)
                        dropped = incomplete(bytes(line.buffer))
                        line.clear()
                        self._drop(req, dropped)
                        return dropped
                    self._counts["timeouts"] += 1
                    return None
                await line.wait_data(remaining)
        finally:
            self._bus_free_at = time.monotonic() + timing.gap_s
            self._cycle_wire_s += timing.exchange_s(len(frame), received)

    def _drop(self, req: Request, dropped: Dropped) -> None:
        with self._lock:
            self._drops[dropped.reason] = self._drops.get(dropped.reason, 0) + 1
        log.debug(
            "bus %s: dropped a frame (%s) answering slave %d: %s",
            self.settings.bus_id,
            dropped.reason,
            req.slave,
            dropped.detail,
        )


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _int(name: str, value: int | None) -> int:
    if type(value) is not int:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


def _describe(outcome: Outcome) -> str:
    if isinstance(outcome, ExceptionReply):
        return f"exception {outcome.code:02x} ({outcome.error})"
    if isinstance(outcome, Dropped):
        return f"dropped ({outcome.reason})"
    return "reply"
