"""The central API down for a (compressed) day with thousands of records queued.

The central API runs as its own process (`uvicorn --factory
api.main:create_app_from_env`, SQLite). While it is down the shed goes on:
sessions (orders and cards) start and end, the bay sensors report bikes
coming and going, and the controller is killed and restarted once; every
record waits in the edge outbox. When the central API is back the outbox
drains: each record applied exactly once (no duplicate, none rejected, the
newest version of every key the last one queued), in the order it was
queued, and the central API's sessions say what the shed billed, with paid =
billed + refunded for every order.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from pathlib import Path

from tests.faults.harness import FaultShed, central_api, scaled, wait_for
from tests.faults.invariants import check

APPLIED = 'ebshed_controller_uplink_records_total{outcome="applied"}'
DUPLICATES = 'ebshed_controller_uplink_records_total{outcome="duplicates"}'
REJECTED = 'ebshed_controller_uplink_records_total{outcome="rejected"}'


def _depth(shed: FaultShed) -> int:
    return int(shed.query("SELECT count(*) FROM outbox")[0][0])


def test_central_down_for_a_day_then_drained_once_in_order(
    make_shed: Callable[..., FaultShed], tmp_path: Path
) -> None:
    records_wanted, sessions_wanted = scaled(2000), scaled(120)
    rng = random.Random(99)
    (tmp_path / "central").mkdir()
    with central_api(tmp_path / "central") as central:
        shed = make_shed(seed=9, central=central, bays={n: n for n in range(1, 13)})
        shed.plug_all()
        shed.start_controller()
        wait_for(lambda: _depth(shed) == 0, 30, "first records delivered")
        central.stop()  # down for the day

        t0 = time.monotonic()
        occupied = dict.fromkeys(shed.bays, False)
        started: dict[int, float] = {}
        killed = False
        while _depth(shed) < records_wanted or len(shed.started_ids) < sessions_wanted:
            assert shed.alive(), f"the controller ended by itself: {shed.log_tail()}"
            assert time.monotonic() - t0 < 120, (
                f"only {_depth(shed)} records queued in 120 s: {shed.log_tail()}"
            )
            for port in shed.ports:
                if port not in started and len(shed.started_ids) < sessions_wanted:
                    kind = "card" if rng.random() < 0.3 else "order"
                    if shed.start_session(port, kind=kind, prepaid_fen=rng.randint(100, 900)):
                        started[port] = time.monotonic()
                elif port in started and time.monotonic() - started[port] > 0.4:
                    shed.stop_session(port)
                    del started[port]
            for _ in range(20):  # bikes come and go on the bays
                bay = rng.choice(list(shed.bays))
                occupied[bay] = not occupied[bay]
                shed.sim_.set_bay(bay, occupied[bay])
            time.sleep(0.05)
            if not killed and len(shed.started_ids) >= sessions_wanted // 2:
                shed.kill()  # the queue survives a crash too
                shed.start_controller()
                started = {p["port"]: time.monotonic() for p in shed.status()["ports"]
                           if p["session"] is not None}  # fmt: skip
                killed = True
        shed.settle()
        time.sleep(1.5)  # the last bay and socket records reach the outbox
        queue = [dict(r) for r in shed.query(
            "SELECT seq, id, kind, key, version, ts_ms FROM outbox ORDER BY seq")]  # fmt: skip
        queued_s = time.monotonic() - t0

        central.start()  # back
        back = time.monotonic()
        try:
            wait_for(lambda: _depth(shed) == 0, 180, "outbox drained", step=0.2)
        except AssertionError as err:
            raise AssertionError(f"{err}; {_depth(shed)} left: {shed.log_tail()}") from None
        drain_s = time.monotonic() - back
        metrics = shed.metrics()
        bad: list[str] = []
        if metrics.get(DUPLICATES, 0) or metrics.get(REJECTED, 0):
            bad.append(f"duplicates {metrics.get(DUPLICATES)}, rejected {metrics.get(REJECTED)}")
        if metrics.get(APPLIED, 0) < len(queue):
            bad.append(f"{metrics.get(APPLIED)} records applied, {len(queue)} were queued")

        # The newest version of every key is the last record queued for it, and the
        # central API applied those in the order they were queued.
        final: dict[tuple[str, str], dict[str, object]] = {}
        for rec in queue:
            final[(rec["kind"], rec["key"])] = rec
        applied = {(r["kind"], r["key"]): dict(r) for r in central.query(
            "SELECT kind, key, version, record_id, applied_ms FROM record_versions "
            "WHERE shed_id = ?", shed.shed)}  # fmt: skip
        order: list[tuple[int, int]] = []
        for key, rec in final.items():
            got = applied.get(key)
            if got is None or got["record_id"] != rec["id"] or got["version"] != rec["version"]:
                bad.append(f"{key}: queued version {rec['version']} ({rec['id']}), central has "
                           f"{got and (got['version'], got['record_id'])}")  # fmt: skip
            else:
                order.append((int(str(rec["seq"])), int(got["applied_ms"])))
        order.sort()
        late = [(a, b) for a, b in itertools.pairwise(order) if b[1] < a[1]]
        if late:
            bad.append(f"{len(late)} records applied before one queued earlier, e.g. {late[0]}")

        # The central API's sessions say what the shed billed.
        edge = {r["id"]: dict(r) for r in shed.query("SELECT * FROM sessions")}
        at_central = {r["id"]: dict(r) for r in central.query(
            "SELECT * FROM charge_sessions WHERE shed_id = ?", shed.shed)}  # fmt: skip
        for sid, row in edge.items():
            c = at_central.get(sid)
            if c is None:
                bad.append(f"session {sid} never reached the central API")
                continue
            for col in ("ended_ms", "energy_wh", "billed_fen", "refund_fen", "end_reason"):
                if c[col] != row[col]:
                    bad.append(f"session {sid}: central {col}={c[col]}, shed {row[col]}")
            if c["auth_kind"] == "order" and c["billed_fen"] + c["refund_fen"] != c["prepaid_fen"]:
                bad.append(f"order {sid} at central: paid {c['prepaid_fen']}, billed "
                           f"{c['billed_fen']} + refunded {c['refund_fen']}")  # fmt: skip
        bays = {int(r["number"]): bool(r["occupied"]) for r in central.query(
            "SELECT number, occupied FROM bays WHERE shed_id = ?", shed.shed)}  # fmt: skip
        if bays != occupied:
            bad.append(f"bays at central {bays}, on site {occupied}")

        extra = {"queued": len(queue), "kinds": _count_kinds(queue), "queued_s": round(queued_s),
                 "drain_s": round(drain_s, 1), "applied": metrics.get(APPLIED, 0),
                 "central_sessions": len(at_central)}  # fmt: skip
        fig = check(shed, "central API down for a day", closing_records=False, extra=extra)
        assert not bad, f"{fig.line()}\n  " + "\n  ".join(bad[:40])
        assert len(queue) >= records_wanted


def _count_kinds(queue: list[dict[str, object]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for rec in queue:
        out[str(rec["kind"])] = out.get(str(rec["kind"]), 0) + 1
    return out
