"""SimBoard, the pure socket-board model: called directly, time passed in, no sleeping."""

from __future__ import annotations

import itertools
import json
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.board import SimBoard
from simulators.ebike import EBike, lead_acid, lithium, no_taper_charger, overdraw_charger
from simulators.wire import Outgoing, encode

T0 = 1_795_341_000_000
SHED = "demo-1"
U32 = 2**32
HOUR_MS = 3_600_000


def make_board(
    seed: int = 1, ports: range = range(1, 13), *, settle: bool = True, **kw: Any
) -> SimBoard:
    """A board at T0; with `settle`, its power-on samples are already taken."""
    board = SimBoard(SHED, "b1", ports, rng=random.Random(seed), start_ms=T0, **kw)
    if settle:
        board.tick(T0)
    return board


def cmd(op: str, cmd_id: str, **fields: Any) -> bytes:
    return json.dumps({"id": cmd_id, "op": op, **fields}).encode()


def on(board: SimBoard, port: int, t: int, cmd_id: str = "c-on", **kw: Any) -> list[Outgoing]:
    fields = {"lease_s": 900, "max_w": 1000, **kw}
    return board.handle(port, cmd("on", cmd_id, **fields), t)


def run(board: SimBoard, until_ms: int, every_ms: int = 1000) -> list[Outgoing]:
    out: list[Outgoing] = []
    t = board.now_ms
    while t < until_ms:
        t = min(until_ms, t + every_ms)
        out += board.tick(t)
    return out


def of(out: list[Outgoing], port: int, kind: str) -> list[dict[str, Any]]:
    suffix = f"/port/{port}/{kind}"
    return [o.json() for o in out if o.topic.endswith(suffix)]


def events(out: list[Outgoing], port: int, kind: str | None = None) -> list[dict[str, Any]]:
    return [e for e in of(out, port, "event") if kind is None or e["type"] == kind]


def bike(seed: int = 2, soc: float = 0.1) -> EBike:
    return lead_acid(random.Random(seed), soc=soc)


# ------------------------------------------------------------------ start-up and status


def test_first_tick_publishes_one_sample_per_port_with_seq_0() -> None:
    board = make_board(settle=False)
    out = board.tick(T0)
    assert [o.topic for o in out] == [f"ebs/v1/demo-1/port/{n}/telemetry" for n in range(1, 13)]
    for o in out:
        sample = o.json()
        assert (sample["ts"], sample["seq"], sample["relay"], sample["w"]) == (T0, 0, False, 0.0)
        assert 215.0 < sample["v"] < 240.0
        assert (o.qos, o.retain) == (0, False)
    assert board.tick(T0) == []


def test_status_and_last_will() -> None:
    board = make_board(fw="2.0.1")
    board.tick(T0 + 5000)
    status = board.status_message()
    assert status.topic == "ebs/v1/demo-1/board/b1/status"
    assert (status.qos, status.retain) == (1, True)
    assert status.json() == {
        "online": True,
        "fw": "2.0.1",
        "ports": list(range(1, 13)),
        "ts": T0 + 5000,
    }
    will = board.last_will()
    assert (will.topic, will.json(), will.qos, will.retain) == (
        status.topic,
        {"online": False},
        1,
        True,
    )
    assert board.status_message(online=False) == will
    assert board.cmd_topics()[0] == "ebs/v1/demo-1/port/1/cmd"


def test_constructor_checks_ids_ports_and_intervals() -> None:
    with pytest.raises(ValueError, match="shed"):
        SimBoard("Demo 1", "b1", [1], rng=random.Random(1), start_ms=T0)
    with pytest.raises(ValueError, match="board"):
        SimBoard(SHED, "B_1", [1], rng=random.Random(1), start_ms=T0)
    with pytest.raises(ValueError, match="distinct"):
        make_board(ports=range(0))
    with pytest.raises(ValueError, match=r"1\.\.999"):
        make_board(ports=range(3))
    with pytest.raises(ValueError, match="10"):
        make_board(interval_on_s=11)
    with pytest.raises(ValueError, match="60"):
        make_board(interval_off_s=61)
    with pytest.raises(ValueError, match="u32"):
        make_board(wh_start=U32)


# ------------------------------------------------------------------ commands


def test_on_is_acked_once_and_switches_the_relay_with_a_fresh_sample() -> None:
    board = make_board()
    board.plug(3, bike(), T0)
    out = on(board, 3, T0 + 1000, cmd_id="c1")
    acks = of(out, 3, "cmd/ack")
    assert acks == [{"id": "c1", "ok": True, "relay": True, "error": None}]
    ack = next(o for o in out if o.topic.endswith("/cmd/ack"))
    assert (ack.topic, ack.qos, ack.retain) == ("ebs/v1/demo-1/port/3/cmd/ack", 1, False)
    assert board.relay(3)
    assert board.lease_deadline_ms(3) == T0 + 1000 + 900_000
    sample = of(out, 3, "telemetry")[-1]
    assert sample["relay"] is True
    assert 150.0 < sample["w"] < 350.0
    assert sample["a"] > 0.5


def test_repeated_id_is_acked_again_and_not_executed_twice() -> None:
    board = make_board()
    board.plug(1, bike(), T0)
    first = of(on(board, 1, T0, cmd_id="c1"), 1, "cmd/ack")
    board.handle(1, cmd("off", "c2"), T0 + 10_000)
    assert not board.relay(1)
    again = board.handle(1, cmd("on", "c1", lease_s=900, max_w=1000), T0 + 20_000)
    assert of(again, 1, "cmd/ack") == first
    assert not board.relay(1)  # the retry did not switch it back on
    assert of(again, 1, "telemetry") == []
    assert (board.commands_executed, board.duplicate_commands) == (2, 1)


def test_ids_are_remembered_per_port_within_a_bounded_memory() -> None:
    board = make_board(dedupe_size=4)
    for i in range(5):
        board.handle(2, cmd("off", f"id-{i}"), T0)
    assert board.commands_executed == 5
    board.handle(2, cmd("off", "id-4"), T0)  # recent: remembered
    assert board.duplicate_commands == 1
    board.handle(2, cmd("off", "id-0"), T0)  # evicted: runs again
    assert board.commands_executed == 6
    board.handle(3, cmd("off", "id-4"), T0)  # another port's id space
    assert board.commands_executed == 7


def test_handle_accepts_a_port_a_full_topic_or_a_suffix() -> None:
    board = make_board()
    for target in (4, "ebs/v1/demo-1/port/4/cmd", "port/4/cmd"):
        out = board.handle(target, cmd("off", f"x-{target}"), T0)
        assert len(of(out, 4, "cmd/ack")) == 1
    assert board.handle("port/13/cmd", cmd("off", "y"), T0) == board.tick(T0) == []
    assert board.handle("nonsense", cmd("off", "z"), T0) == []


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (cmd("blink", "e1"), "bad_op"),
        ({"id": "e2", "lease_s": 900}, "bad_op"),
        (cmd("on", "e3"), "bad_lease"),
        (cmd("on", "e4", lease_s="900"), "bad_lease"),
        (cmd("on", "e5", lease_s=True), "bad_lease"),
        (cmd("on", "e6", lease_s=0), "bad_lease"),
        (cmd("on", "e7", lease_s=-5), "bad_lease"),
        (cmd("on", "e8", lease_s=10**400), "bad_lease"),
        (cmd("on", "e9", lease_s=900, max_w="1000"), "bad_max_w"),
        (cmd("on", "e10", lease_s=900, max_w=0), "bad_max_w"),
        (cmd("renew", "e11", lease_s=900), "relay_off"),
    ],
)
def test_invalid_commands_are_refused_with_an_ack(
    payload: bytes | dict[str, Any], error: str
) -> None:
    board = make_board()
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    out = board.handle(1, raw, T0)
    (ack,) = of(out, 1, "cmd/ack")
    assert ack == {"id": json.loads(raw)["id"], "ok": False, "relay": False, "error": error}
    assert not board.relay(1)


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"",
        b"\xff\xfe",
        b"[1]",
        b'{"op": "on", "lease_s": 9}',
        b'{"id": 5}',
        b'{"id": ""}',
    ],
)
def test_commands_without_an_id_cannot_be_acked_and_are_counted(raw: bytes) -> None:
    board = make_board()
    assert board.handle(1, raw, T0) == board.tick(T0) == []
    assert board.bad_commands == 1


def test_on_without_max_w_uses_the_board_default() -> None:
    board = make_board(default_max_w=500.0)
    board.plug(1, overdraw_charger(random.Random(1)), T0)
    board.handle(1, cmd("on", "a", lease_s=60), T0)
    out = board.tick(T0 + 2000)
    assert events(out, 1, "overcurrent")


# ------------------------------------------------------------------ leases


def test_lease_runs_out_the_board_switches_off_and_says_so() -> None:
    board = make_board()
    board.plug(5, bike(), T0)
    on(board, 5, T0 + 500, lease_s=60)
    out = run(board, T0 + 500 + 59_999)
    assert board.relay(5)
    assert events(out, 5) == []
    out = run(board, T0 + 70_000)
    assert not board.relay(5)
    assert events(out, 5) == [{"ts": T0 + 60_500, "type": "lease_expired"}]
    after = [s for s in of(out, 5, "telemetry") if s["ts"] >= T0 + 60_500]
    assert after[0]["ts"] == T0 + 60_500
    assert after[0]["relay"] is False
    assert after[0]["w"] == 0.0
    energy_then = board.true_wh(5)
    run(board, T0 + 600_000, every_ms=10_000)
    assert board.true_wh(5) == energy_then


def test_lease_expiry_is_exact_even_with_coarse_ticks() -> None:
    board = make_board()
    board.plug(5, bike(), T0)
    on(board, 5, T0, lease_s=90)
    out = board.tick(T0 + 3 * HOUR_MS)
    assert events(out, 5) == [{"ts": T0 + 90_000, "type": "lease_expired"}]
    assert board.true_wh(5) == pytest.approx(90 / 3600 * 200, rel=0.15)


def test_renew_extends_the_lease() -> None:
    board = make_board()
    board.plug(2, bike(), T0)
    on(board, 2, T0, lease_s=60)
    out = board.handle(2, cmd("renew", "r1", lease_s=60), T0 + 50_000)
    assert of(out, 2, "cmd/ack") == [{"id": "r1", "ok": True, "relay": True, "error": None}]
    assert board.lease_deadline_ms(2) == T0 + 110_000
    out = run(board, T0 + 109_000)
    assert board.relay(2)
    assert events(out, 2) == []
    out = run(board, T0 + 111_000)
    assert events(out, 2, "lease_expired") == [{"ts": T0 + 110_000, "type": "lease_expired"}]


def test_on_while_on_refreshes_lease_and_max_w_without_a_new_sample() -> None:
    board = make_board()
    board.plug(2, bike(), T0)
    on(board, 2, T0, lease_s=60)
    out = on(board, 2, T0 + 30_000, cmd_id="c2", lease_s=60)
    assert of(out, 2, "cmd/ack")[0]["ok"] is True
    assert board.lease_deadline_ms(2) == T0 + 90_000


# ------------------------------------------------------------------ max_w


def test_power_above_max_w_trips_the_port_and_reports_overcurrent() -> None:
    board = make_board()
    board.plug(7, overdraw_charger(random.Random(3)), T0)
    on(board, 7, T0 + 1000, max_w=1000)
    out = board.tick(T0 + 5000)
    assert not board.relay(7)
    assert events(out, 7) == [{"ts": T0 + 1100, "type": "overcurrent"}]
    assert of(out, 7, "telemetry")[0] == {**of(out, 7, "telemetry")[0], "relay": False, "w": 0.0}
    # only the trip latency (0.1 s at <= 1800 W) flowed
    assert 0.0 < board.true_wh(7) < 0.1 * 1800 / 3600 + 1e-9
    assert board.lease_deadline_ms(7) is None


def test_a_normal_charger_never_trips() -> None:
    board = make_board()
    board.plug(7, no_taper_charger(random.Random(3)), T0)
    on(board, 7, T0, max_w=1000, lease_s=3600)
    out = run(board, T0 + 3_599_000, every_ms=2000)
    assert events(out, 7) == []
    assert board.relay(7)


# ------------------------------------------------------------------ meter register


def test_register_wraps_to_zero_past_u32() -> None:
    board = make_board(wh_start=4_294_967_000)
    board.plug(1, lead_acid(random.Random(4), soc=0.1), T0)
    on(board, 1, T0, lease_s=86_400)
    out = run(board, T0 + 3 * HOUR_MS, every_ms=2000)
    whs = [s["wh"] for s in of(out, 1, "telemetry")]
    assert whs[0] == 4_294_967_000
    assert all(0 <= wh < U32 for wh in whs)
    assert max(whs) > 4_294_967_200
    assert whs[-1] < 1000  # wrapped
    steps = [(b - a) % U32 for a, b in itertools.pairwise(whs)]
    assert all(0 <= s <= 1 for s in steps)
    assert (whs[-1] - whs[0]) % U32 == math.floor(board.true_wh(1)) or (
        abs((whs[-1] - whs[0]) % U32 - board.true_wh(1)) < 1.0
    )


def test_register_difference_equals_ground_truth_over_an_8_hour_charge() -> None:
    board = make_board(wh_start=4_294_967_000)
    rider = lead_acid(random.Random(11), soc=0.1)
    board.plug(3, rider, T0)
    out = on(board, 3, T0 + 2000, lease_s=900)
    truth_at: dict[int, float] = {}
    t = T0 + 2000
    while t < T0 + 2000 + 8 * HOUR_MS:
        t += 2000
        if (t - T0) % 300_000 == 2000:
            out += board.handle(3, cmd("renew", f"r{t}", lease_s=900), t)
        out += board.tick(t)
        truth_at[t] = board.true_wh(3)
    out += board.handle(3, cmd("off", "stop"), t)
    samples = of(out, 3, "telemetry")
    on_samples = [s for s in samples if s["relay"]]
    first, last = on_samples[0], samples[-1]
    assert first["ts"] == T0 + 2000
    assert first["wh"] == 4_294_967_000
    session_wh = (last["wh"] - first["wh"]) % U32
    assert 900 <= session_wh <= 1100
    assert abs(session_wh - board.true_wh(3)) < 1.0
    # at every sample, register difference == ground truth to within 1 Wh
    for s in on_samples[1:]:
        assert abs((s["wh"] - first["wh"]) % U32 - truth_at[s["ts"]]) < 1.0
    assert rider.delivered_wh == board.true_wh(3) == board.plug_record(3).delivered_wh  # type: ignore[union-attr]
    assert events(out, 3) == []
    assert 20 < on_samples[-1]["w"] < 30 or on_samples[-1]["w"] < 16  # full: floating


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    start=st.integers(U32 - 2000, U32 - 1),
    script=st.lists(
        st.tuples(st.integers(1, 600_000), st.sampled_from(["tick", "on", "off", "renew"])),
        min_size=1,
        max_size=40,
    ),
)
def test_register_tracks_true_energy_for_any_script(
    seed: int, start: int, script: list[tuple[int, str]]
) -> None:
    board = make_board(seed=seed, ports=range(1, 3), wh_start=start)
    board.plug(1, no_taper_charger(random.Random(seed)), T0)
    t = T0
    out: list[Outgoing] = []
    for i, (dt, action) in enumerate(script):
        t += dt
        if action == "tick":
            out += board.tick(t)
        elif action == "off":
            out += board.handle(1, cmd("off", f"o{i}"), t)
        else:
            out += board.handle(1, cmd(action, f"c{i}", lease_s=300, max_w=1000), t)
        assert (board.register(1) - start) % U32 == math.floor(board.true_wh(1))
    samples = of(out, 1, "telemetry")
    for a, b in itertools.pairwise(samples):
        assert b["ts"] >= a["ts"]
        assert b["seq"] == a["seq"] + 1
        assert (b["wh"] - a["wh"]) % U32 < 2**31  # never backwards
    assert board.true_wh(2) == 0.0


def test_frozen_meter_and_register_overwrite() -> None:
    board = make_board()
    board.plug(1, no_taper_charger(random.Random(1)), T0)
    on(board, 1, T0, lease_s=7200)
    run(board, T0 + HOUR_MS, every_ms=10_000)
    reg = board.register(1)
    board.freeze_meter(1)
    run(board, T0 + 2 * HOUR_MS - 1000, every_ms=10_000)
    assert board.register(1) == reg
    assert board.true_wh(1) > reg + 100
    board.freeze_meter(1, False)
    board.set_register(1, 0)
    assert board.register(1) == 0
    with pytest.raises(ValueError, match="u32"):
        board.set_register(1, -1)


# ------------------------------------------------------------------ seq, reboot, power


def test_seq_resets_on_reboot_and_relays_drop_but_the_meter_persists() -> None:
    board = make_board(wh_start=1000)
    board.plug(1, bike(), T0)
    on(board, 1, T0, lease_s=900, cmd_id="c1")
    out = run(board, T0 + 600_000, every_ms=2000)
    assert of(out, 1, "telemetry")[-1]["seq"] > 250
    reg = board.register(1)
    out = board.reboot(T0 + 600_500)
    assert out[0] == board.status_message()
    assert out[0].json()["ts"] == T0 + 600_500
    samples = [o.json() for o in out[1:]]
    assert [s["seq"] for s in samples] == [0] * 12
    assert all(s["ts"] == T0 + 600_500 and s["relay"] is False for s in samples)
    assert samples[0]["wh"] == reg
    assert not board.relay(1)
    assert board.boots == 2
    # command memory is RAM: a retried id after a reboot runs again
    board.handle(1, cmd("on", "c1", lease_s=900), T0 + 601_000)
    assert board.relay(1)
    assert board.commands_executed == 2


def test_power_cut_silences_the_board_and_stops_the_energy() -> None:
    board = make_board()
    board.plug(1, bike(), T0)
    on(board, 1, T0, lease_s=900)
    run(board, T0 + 60_000)
    energy = board.true_wh(1)
    assert board.power_cut(T0 + 60_000) == []
    assert not board.powered
    assert run(board, T0 + 600_000, every_ms=5000) == []
    assert board.handle(1, cmd("on", "x", lease_s=900), T0 + 600_000) == []
    assert board.tap_card(1, "04A1B2C3", T0 + 600_000) == []
    assert board.true_wh(1) == energy
    out = board.power_restore(T0 + 700_000)
    assert out[0].json()["online"] is True
    assert [o.json()["seq"] for o in out[1:]] == [0] * 12
    assert not board.relay(1)
    assert board.power_restore(T0 + 700_000) == []  # already on


def test_reboot_of_an_unpowered_board_does_nothing() -> None:
    board = make_board()
    board.power_cut(T0)
    assert board.reboot(T0 + 1000) == []


# ------------------------------------------------------------------ telemetry schedule


@pytest.mark.parametrize(("on_s", "off_s"), [(2.0, 30.0), (5.0, 60.0), (10.0, 10.0)])
def test_telemetry_every_interval_on_and_off(on_s: float, off_s: float) -> None:
    board = make_board(interval_on_s=on_s, interval_off_s=off_s)
    board.plug(4, bike(), T0)
    out = run(board, T0 + 600_000, every_ms=700)
    off_ts = [s["ts"] for s in of(out, 4, "telemetry")]
    assert {b - a for a, b in itertools.pairwise(off_ts)} == {round(off_s * 1000)}
    t_on = T0 + 600_000
    on(board, 4, t_on, lease_s=3600)
    out = run(board, t_on + 300_000, every_ms=700)
    on_ts = [s["ts"] for s in of(out, 4, "telemetry")]
    assert {b - a for a, b in itertools.pairwise(on_ts)} == {round(on_s * 1000)}
    assert on_ts[0] == t_on + round(on_s * 1000)  # the sample at t_on came with the ack


def test_no_sample_on_change_when_disabled() -> None:
    board = make_board(telemetry_on_change=False)
    board.plug(1, bike(), T0)
    out = on(board, 1, T0 + 1000)
    assert of(out, 1, "telemetry") == []
    out = board.tick(T0 + 3000)
    assert [s["ts"] for s in of(out, 1, "telemetry")] == [T0 + 3000]


def test_lost_samples_leave_seq_gaps() -> None:
    board = make_board(ports=range(1, 2))
    board.telemetry_loss = 0.3
    out = run(board, T0 + 3_000_000, every_ms=30_000)
    seqs = [s["seq"] for s in of(out, 1, "telemetry")]
    assert 40 < len(seqs) < 90
    assert seqs == sorted(seqs)
    assert len(seqs) < seqs[-1]  # gaps: the controller counts lost samples
    assert board.seq(1) == 101


def test_device_clock_offset_shows_in_ts() -> None:
    board = make_board(ports=range(1, 2), settle=False)
    board.clock_offset_ms = 400_000
    (sample,) = board.tick(T0)
    assert sample.json()["ts"] == T0 + 400_000


def test_readings_are_plausible() -> None:
    board = make_board(mains_v=230.0)
    board.plug(1, lithium(random.Random(5), soc=0.2), T0)
    on(board, 1, T0, lease_s=3600)
    out = run(board, T0 + 600_000, every_ms=2000)
    for s in of(out, 1, "telemetry")[1:]:
        assert 220.0 < s["v"] < 240.0
        pf = s["w"] / (s["v"] * s["a"])
        assert 0.5 < pf <= 1.0  # chargers are not resistive: w <= v * a
        assert 20.0 < s["temp_c"] < 35.0


# ------------------------------------------------------------------ faults and local inputs


def test_welded_relay_keeps_power_on_and_is_reported() -> None:
    board = make_board()
    board.plug(6, bike(), T0)
    board.set_relay_fault(6, "welded")
    on(board, 6, T0)
    out = board.handle(6, cmd("off", "c-off"), T0 + 10_000)
    energy = board.true_wh(6)
    out += run(board, T0 + 20_000)
    assert events(out, 6) == [{"ts": T0 + 13_000, "type": "relay_fault"}]
    last = of(out, 6, "telemetry")[-1]
    assert last["relay"] is False
    assert last["w"] > 100.0
    assert board.true_wh(6) > energy
    out = run(board, T0 + 60_000)
    assert events(out, 6) == []  # reported once per episode


def test_open_relay_passes_no_power_and_is_reported() -> None:
    board = make_board()
    board.plug(6, bike(), T0)
    board.set_relay_fault(6, "open")
    on(board, 6, T0)
    out = run(board, T0 + 10_000)
    assert events(out, 6, "relay_fault") == [{"ts": T0 + 3000, "type": "relay_fault"}]
    assert all(s["w"] == 0.0 for s in of(out, 6, "telemetry"))
    assert board.true_wh(6) == 0.0


def test_forced_overtemperature_is_reported_once() -> None:
    board = make_board()
    board.force_temp(8, 80.0)
    out = run(board, T0 + 10_000)
    assert events(out, 8) == [{"ts": T0 + 1000, "type": "overtemp"}]
    assert board.temp_c(8) == 80.0
    out = run(board, T0 + 70_000)
    assert events(out, 8) == []
    assert of(out, 8, "telemetry")[-1]["temp_c"] == 80.0
    board.force_temp(8, 50.0)  # cools below the hysteresis band: re-armed
    run(board, T0 + 72_000)
    board.force_temp(8, 70.0)
    out = run(board, T0 + 75_000)
    assert len(events(out, 8, "overtemp")) == 1


def test_overtemperature_can_trip_the_port_when_configured() -> None:
    board = make_board(overtemp_trips=True)
    board.plug(8, bike(), T0)
    on(board, 8, T0)
    board.force_temp(8, 90.0)
    out = run(board, T0 + 5000)
    assert not board.relay(8)
    assert [e["type"] for e in events(out, 8)] == ["overtemp"]
    out = on(board, 8, T0 + 6000, cmd_id="again")
    assert of(out, 8, "cmd/ack")[0]["error"] == "overtemp"


def test_socket_warms_with_load_and_cools_after() -> None:
    board = make_board(ambient_c=30.0)
    board.plug(1, no_taper_charger(random.Random(8)), T0)
    on(board, 1, T0, lease_s=7200)
    run(board, T0 + 2 * HOUR_MS - 1000, every_ms=10_000)
    hot = board.temp_c(1)
    assert 31.0 < hot < 36.0
    board.handle(1, cmd("off", "off"), T0 + 2 * HOUR_MS)
    out = run(board, T0 + 4 * HOUR_MS, every_ms=60_000)
    assert of(out, 1, "telemetry")[-1]["temp_c"] < 30.5


def test_card_tap_and_stop_button_are_events() -> None:
    board = make_board()
    out = board.tap_card(9, "04a1b2c3", T0 + 100)
    assert events(out, 9) == [{"ts": T0 + 100, "type": "card", "card_uid": "04A1B2C3"}]
    out = board.press_stop(9, T0 + 200)
    assert events(out, 9) == [{"ts": T0 + 200, "type": "button", "action": "stop"}]
    ev = next(o for o in out if o.topic.endswith("/event"))
    assert (ev.topic, ev.qos, ev.retain) == ("ebs/v1/demo-1/port/9/event", 1, False)
    for bad in ("04A", "zz'; DROP TABLE", "0" * 21):
        with pytest.raises(ValueError, match="hex"):
            board.tap_card(9, bad, T0 + 300)
    with pytest.raises(ValueError, match="port 13"):
        board.press_stop(13, T0 + 300)


def test_unplug_stops_the_flow_and_closes_the_plug_record() -> None:
    board = make_board()
    first = bike(3)
    board.plug(2, first, T0)
    on(board, 2, T0, lease_s=3600)
    run(board, T0 + 600_000)
    board.unplug(2, T0 + 600_000)
    record = board.plug_record(2)
    assert record is not None
    assert record.bike is first
    assert (record.plugged_ms, record.unplugged_ms) == (T0, T0 + 600_000)
    assert record.delivered_wh == first.delivered_wh == board.true_wh(2)
    out = run(board, T0 + 700_000)
    assert all(s["w"] == 0.0 for s in of(out, 2, "telemetry"))
    assert board.relay(2)  # the board does not know the bike left; the controller does
    second = bike(4)
    board.plug(2, second, T0 + 700_000)
    run(board, T0 + 800_000)
    assert [r.bike for r in board.plug_history(2)] == [first, second]
    assert board.plug_record(2).delivered_wh == pytest.approx(  # type: ignore[union-attr]
        board.true_wh(2) - first.delivered_wh
    )
    with pytest.raises(ValueError, match="already"):
        board.plug(2, bike(5), T0 + 800_000)
    with pytest.raises(ValueError, match="another port"):
        board.plug(3, second, T0 + 800_000)


def test_time_never_goes_backwards() -> None:
    board = make_board()
    board.tick(T0 + 10_000)
    assert board.tick(T0) == []
    out = board.handle(1, cmd("off", "late"), T0)
    assert board.now_ms == T0 + 10_000
    assert len(out) == 1


def test_same_seed_same_script_same_bytes() -> None:
    def script() -> list[Outgoing]:
        board = make_board(seed=5)
        board.plug(1, lead_acid(random.Random(6)), T0)
        out = on(board, 1, T0 + 1000)
        out += run(board, T0 + 900_000, every_ms=3000)
        out += board.tap_card(2, "DEADBEEF", T0 + 900_000)
        return out

    assert script() == script()


def test_telemetry_bytes_are_compact_json_in_contract_order() -> None:
    board = make_board(wh_start=U32 - 1)
    board.plug(1, overdraw_charger(random.Random(2)), T0)
    out = on(board, 1, T0, max_w=5000) + run(board, T0 + 60_000)
    samples = [o for o in out if o.topic.endswith("/telemetry")]
    assert samples
    for o in samples:
        assert o.payload == encode(o.json())
        assert list(o.json()) == ["ts", "seq", "v", "a", "w", "wh", "relay", "temp_c"]
