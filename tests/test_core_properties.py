"""Properties of the shed core under random days of events (hypothesis)."""

from __future__ import annotations

from collections import Counter, deque

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.chargeend import WindowAverage
from controller.core.model import Authorization, Card, SessionClosed, SessionOpened
from firmware_bridge.messages import BoardStatus, EnvReading, PortEvent
from tests.core_helpers import make_rig

PORTS = (1, 2, 3)

op = st.one_of(
    st.tuples(st.just("run"), st.integers(1, 90), st.floats(0, 1500), st.sampled_from(PORTS)),
    st.tuples(st.just("auth"), st.sampled_from(PORTS), st.integers(-5, 800)),
    st.tuples(st.just("stop"), st.sampled_from(PORTS)),
    st.tuples(st.just("card"), st.sampled_from(PORTS)),
    st.tuples(st.just("smoke"), st.booleans()),
    st.tuples(st.just("board"), st.booleans()),
    st.tuples(st.just("event"), st.sampled_from(PORTS),
              st.sampled_from(["overcurrent", "lease_expired", "button", "relay_fault"])),
    st.tuples(st.just("ack_all"), st.just(0)),
    st.tuples(st.just("wait"), st.integers(1, 3600)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(op, min_size=1, max_size=40))
def test_invariants_hold_whatever_happens(ops: list[tuple]) -> None:
    rig = make_rig(ports=3)
    rig.core.set_cards([Card("04A1B2C3", 500)])
    last_cost: dict[str, int] = {}
    for step in ops:
        kind = step[0]
        if kind == "run":
            _, seconds, w, port = step
            rig.run(seconds * 10, {p: (w if p == port else 120.0) for p in PORTS})
        elif kind == "auth":
            _, out = rig.core.authorize(step[1], Authorization("order", "o", step[2]), rig.now)
            rig._record(out)
        elif kind == "stop":
            rig._record(rig.core.stop(step[1], "operator", rig.now)[1])
        elif kind == "card":
            rig.feed(PortEvent(step[1], rig.now, "card", card_uid="04A1B2C3"))
        elif kind == "smoke":
            rig.feed(EnvReading("smoke-1", rig.now, "smoke", 1.0 if step[1] else 0.0, step[1]))
            for alarm in list(rig.core.alarms.values()):
                rig._record(rig.core.acknowledge(alarm.id, "staff", "", rig.now)[1])
        elif kind == "board":
            rig.feed(BoardStatus("b1", step[1]))
        elif kind == "event":
            rig.feed(PortEvent(step[1], rig.now, step[2]))
        elif kind == "wait":
            rig.now += step[1] * 1000
            rig.tick()
        for port in rig.core.ports.values():
            if port.state.value == "fault":
                rig._record(rig.core.clear_fault(port.number, rig.now)[1])
        # -- invariants -------------------------------------------------------
        opened = Counter(a.session.port for a in rig.actions if isinstance(a, SessionOpened))
        closed = Counter(a.session.port for a in rig.actions if isinstance(a, SessionClosed))
        for p in PORTS:
            assert opened[p] - closed[p] in (0, 1), "two open sessions on one socket"
            assert (opened[p] - closed[p] == 1) == (rig.core.ports[p].session is not None)
        for s in rig.core.open_sessions():
            assert s.energy_wh >= 0
            cost = s.usage.cost_so_far_fen(s.tariff, max(rig.now, s.usage.last_ms))
            assert cost >= last_cost.get(s.id, 0), "a bill went down as time passed"
            # While its board is unreachable the cost is provisional: the session is
            # billed up to its lease's end, when the board cut the relay by itself.
            if rig.core.ports[s.port].state.value != "offline":
                last_cost[s.id] = cost
    for a in rig.actions:
        if isinstance(a, SessionClosed):
            s = a.session
            assert s.energy_wh >= 0
            assert s.charged_fen >= 0 and s.refund_fen >= 0
            if s.auth.prepaid_fen is not None and s.auth.kind == "order":
                assert s.charged_fen + s.refund_fen == s.auth.prepaid_fen
            assert s.charged_fen >= last_cost.get(s.id, 0) or s.energy_wh == 0 or (
                s.auth.prepaid_fen is not None and s.charged_fen == s.auth.prepaid_fen
            )


class _SumEveryBucket:
    """The unplug window as first written: every read sums over all its buckets."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms, self.bucket_ms = window_ms, max(1, window_ms // 10)
        self.buckets: deque[list[float]] = deque()  # [start, area, span]
        self.last: tuple[int, float] | None = None

    def add(self, ts: int, w: float) -> None:
        last, self.last = self.last, (ts, w)
        if last is None or ts <= last[0]:
            return
        start = ts - ts % self.bucket_ms
        if not self.buckets or self.buckets[-1][0] != start:
            self.buckets.append([start, 0.0, 0])
        self.buckets[-1][1] += last[1] * (ts - last[0])
        self.buckets[-1][2] += ts - last[0]
        while self.buckets and self.buckets[0][0] + self.bucket_ms <= ts - self.window_ms:
            self.buckets.popleft()

    def span_ms(self) -> int:
        return int(sum(b[2] for b in self.buckets))

    def average(self) -> float | None:
        span = self.span_ms()
        return None if span < self.window_ms else float(sum(b[1] for b in self.buckets)) / span


@settings(max_examples=300, deadline=None)
@given(
    window_s=st.sampled_from([1, 10, 300]),
    steps=st.lists(st.tuples(st.integers(-3_000, 200_000), st.floats(0, 5000)), max_size=150),
)
def test_unplug_window_average_is_the_sum_over_every_bucket(
    window_s: int, steps: list[tuple[int, float]]
) -> None:
    window, reference = WindowAverage(window_s * 1000), _SumEveryBucket(window_s * 1000)
    ts = 1_795_341_000_000
    for dt, w in steps:
        ts += dt
        window.add(ts, w)
        reference.add(ts, w)
        assert window.span_ms() == reference.span_ms()
        assert window.average() == reference.average()  # the same floats, added in order
