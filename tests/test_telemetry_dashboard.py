"""deploy/grafana-dashboard.json: a valid dashboard whose every query names what the
controller really writes, and returns data from a real export to victoria-metrics."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from controller.telemetry_points import FIELDS, TAGS
from simulators import ebike
from tests.telemetry_shed import export_of, telemetry_shed, until
from tests.victoria import VictoriaMetrics

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana-dashboard.json"
CARD = "04A1B2C3"
PANEL_TYPES = {"row", "timeseries", "stat", "bargauge", "state-timeline"}
METRIC = re.compile(r"\bebshed_[a-z_]+\b")
MATCHERS = re.compile(r"\{([^}]*)\}")
BY = re.compile(r"\bby \(([^)]*)\)")


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text("utf-8"))
    return data


def targets() -> list[tuple[str, str]]:
    """(panel title, query) of every panel."""
    return [
        (p["title"], t["expr"])
        for p in dashboard()["panels"]
        if p["type"] != "row"
        for t in p["targets"]
    ]


def written_metrics() -> dict[str, str]:
    """What victoria-metrics makes of the points: `{measurement}_{field}` -> measurement."""
    return {f"{m}_{f}": m for m, fields in FIELDS.items() for f in fields}


def test_the_dashboard_is_a_grafana_dashboard_with_a_shed_variable() -> None:
    d = dashboard()
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    shed = variables["shed"]
    assert shed["type"] == "query" and shed["datasource"]["uid"] == "${datasource}"
    assert shed["definition"] == "label_values(ebshed_shed_power_w, shed)"
    panels = d["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        assert p["type"] in PANEL_TYPES, p["title"]
        assert {"h", "w", "x", "y"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"][
            "w"
        ] <= 24
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            refs = [t["refId"] for t in p["targets"]]
            assert refs and len(set(refs)) == len(refs)
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("power per socket", "shed power", "energy", "temperature", "bay", "alarm"):
        assert topic in titles


def test_every_query_names_a_measurement_and_field_the_controller_writes() -> None:
    written = written_metrics()
    for title, expr in targets():
        names = METRIC.findall(expr)
        assert names, f"{title}: no metric in {expr}"
        for name in names:
            assert name in written, f"{title}: {name} is not written by the controller"
            measurement = written[name]
            labels = set(TAGS[measurement])
            for group in MATCHERS.findall(expr):
                used = {m.split("=")[0].strip().rstrip("!~") for m in group.split(",") if m}
                assert used <= labels, f"{title}: {used - labels} not a tag of {measurement}"
            for group in BY.findall(expr):
                used = {g.strip() for g in group.split(",")}
                assert used <= labels, f"{title}: by {used - labels} not a tag of {measurement}"
        assert 'shed=~"$shed"' in expr, f"{title}: not filtered by the shed variable"


async def test_every_query_returns_data_from_a_real_export(tmp_path: Path) -> None:
    with VictoriaMetrics() as vm:
        telemetry = {"url": vm.url, "interval_s": 10, "flush_s": 0.1}
        async with telemetry_shed(tmp_path, telemetry, temp_sensor=True) as h:
            start = h.clock.now_ms()
            t = start
            await h.publish(h.board.plug(2, ebike.lithium(random.Random(8), soc=0.3), t))
            await h.publish(h.board.tap_card(2, CARD, t))
            await h.publish(h.bay.set_occupied(True, t), h.bay)
            await h.run(1800)
            await h.publish(h.smoke.set_smoke(True, h.clock.now_ms()), h.smoke)
            await h.run(60)
            end, shed = h.clock.now_ms(), h.shed
            export = export_of(h)
            await until(lambda: export.counters()["points_written"] == export.buffer.accepted)

        window_s = (end - start) // 1000
        for title, expr in targets():
            query = (
                expr.replace('shed=~"$shed"', f'shed=~"{shed}"')
                .replace("$__range", f"{window_s}s")
                .replace("$__interval", "10s")
            )
            result = vm.query_range(query, start, end, 10)
            assert result, f"{title}: no data for {query}"
            assert all(r["metric"].get("shed") == shed for r in result if "shed" in r["metric"])
        increase = f'increase(ebshed_socket_energy_wh{{shed="{shed}"}}[{window_s}s])'
        energy = vm.query_range(f"sum by (shed, port) ({increase})", end, end, 10)
        by_port = {r["metric"]["port"]: float(r["values"][-1][1]) for r in energy}
        assert by_port["2"] > 50 and by_port["1"] == 0  # the charging socket, and an idle one
