"""What residents see is what they pay, in every tariff configuration.

A real controller (its SQLite store, its uplink and command poller over real
HTTP) reports to the real central API (PostgreSQL, the payment provider
simulator). The resident reads the posted price on the socket page, pays,
charges for two minutes at 600 W and stops; the bill of that session must be
the posted price for those minutes, and the receipt and the sticker sheet must
show the same price:

- the tariff only in the shed's config (as deploy/shed.example.toml has it);
- no tariff in the config, one pushed by the central API;
- both: the pushed one replaces the config's, on the shed and on every page.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from typer.testing import CliRunner

from controller.cli import app as cli
from controller.clock import SimClock
from controller.core.model import Session
from controller.service import ControllerService
from controller.settings import load_settings
from controller.uplink import CommandPoller, Uplink
from firmware_bridge.messages import BoardStatus, Telemetry
from tests.test_api_uplink import post, record
from tests.test_orders_harness import PHONE_A, PayEnv, eventually, pay_env
from tests.test_store_restart import RecordingBridge

if TYPE_CHECKING:
    from tests.api_db import Api

pytest_plugins = ["tests.api_db"]

THIRTY = {"id": "shed-own", "version": 1, "name": "30元/小时", "kind": "power_tier",
          "tiers": [{"max_w": 1100, "fen_per_hour": "3000"}]}  # fmt: skip
TWELVE = {"id": "central", "version": 2, "name": "12元/小时", "kind": "power_tier",
          "tiers": [{"max_w": 1100, "fen_per_hour": "1200"}]}  # fmt: skip
CONFIGS = {
    "shed_config_only": (THIRTY, None),
    "central_pushed": (None, TWELVE),
    "both": (THIRTY, TWELVE),
}


def words(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def fen_per_hour(posted: str) -> Decimal:
    """The rate a resident reads in a posted price: 1元/5分钟, 1元/4小时 or 12元/小时."""
    m = re.search(r"(\d+(?:\.\d+)?)元/(\d+(?:\.\d+)?)?(小时|分钟)", posted)
    assert m is not None, f"no time rate in {posted!r}"
    yuan, count, unit = Decimal(m[1]), Decimal(m[2] or 1), m[3]
    hours = count if unit == "小时" else count / 60
    return yuan * 100 / hours


def config_toml(tmp_path: Path, url: str, token: str, shed_id: str, tariff: Any) -> Path:
    lines = [
        "[shed]", f'id = "{shed_id}"', 'name = "1号车棚"', f'data_dir = "{tmp_path / "edge"}"',
        "[central]", f'url = "{url}"', f'token = "{token}"', 'public_url = "https://charge.example.com"',
        "[[boards]]", 'id = "b1"', "ports = [1, 2, 3, 4]",
    ]  # fmt: skip
    if tariff is not None:
        rate = tariff["tiers"][0]["fen_per_hour"]
        lines += ["[tariff]", f'id = "{tariff["id"]}"', f"version = {tariff['version']}",
                  f'name = "{tariff["name"]}"', 'kind = "power_tier"',
                  f'tiers = [{{ max_w = 1100, fen_per_hour = "{rate}" }}]']  # fmt: skip
    path = tmp_path / "shed.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Edge:
    """The shed's controller, its boards answering like healthy ones."""

    def __init__(self, config: Path, env: PayEnv, token: str) -> None:
        self.clock = SimClock(env.clock.now)
        self.service = ControllerService(load_settings(config), self.clock)
        self.bridge = RecordingBridge()
        self.bridge.service, self.service.bridge = self.service, self.bridge
        self.bridge.on_change = lambda port: self.sample(port, 0.0)
        self.wh = dict.fromkeys((1, 2, 3, 4), 1000)
        self.seq = 0
        self.service.on_message(BoardStatus("b1", True))
        for port in (1, 2, 3, 4):
            self.sample(port, 0.0)
        self.http = httpx.AsyncClient(base_url=env.url,
                                      headers={"Authorization": f"Bearer {token}"})  # fmt: skip

    def sample(self, port: int, w: float, seconds: float = 0.0) -> None:
        self.wh[port] += round(w * seconds / 3600)
        self.seq += 1
        relay = self.bridge.relay.get(port, False)
        self.service.on_message(Telemetry(port, self.clock.now_ms(), self.seq, 230.0, w / 230,
                                          w if relay else 0.0, self.wh[port], relay))  # fmt: skip

    async def sync(self) -> None:
        """Carry out the central API's commands and send every record."""
        await CommandPoller(self.service, self.http, self.clock).poll_once(wait_s=0)
        self.service.tick()
        uplink = Uplink(self.service, self.http, self.clock)
        while await uplink.send_once():
            pass

    def charge(self, port: int, w: float, seconds: int) -> None:
        for _ in range(seconds // 10):
            self.clock.advance_to(self.clock.now_ms() + 10_000)
            self.sample(port, w, 10)
            self.service.tick()


def sticker_price(config: Path, tmp_path: Path) -> str:
    out = tmp_path / "stickers.pdf"
    result = CliRunner().invoke(cli, ["qr-sheet", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext is needed to read the sticker sheet: apt-get install poppler-utils")
    text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    return " ".join(text.split())


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
async def test_the_posted_price_is_the_billed_price(
    db_url: str, tmp_path: Path, config_name: str
) -> None:
    in_config, pushed = CONFIGS[config_name]
    billed_tariff = pushed or in_config
    async with pay_env(db_url, pay_workers=True, pay_worker_interval_ms=100) as env:
        shed = await env.shed(hello=False)
        token = shed.headers["Authorization"].removeprefix("Bearer ")
        config = config_toml(tmp_path, env.url, token, shed.shed_id, in_config)
        edge = Edge(config, env, token)
        try:
            await edge.sync()  # the shed starts: its sockets, and the tariff it bills
            if pushed is not None:
                r = await env.http.post(f"/api/v1/admin/sheds/{shed.shed_id}/commands",
                                        json={"kind": "tariff", "data": pushed},
                                        headers=env.admin)  # fmt: skip
                assert r.status_code == 201, r.text
                await edge.sync()
            assert edge.service.core.tariff.id == billed_tariff["id"]  # type: ignore[index]

            # The QR page and the sticker sheet post one price.
            page = await env.http.get(f"/s/{shed.shed_id}/1")
            assert page.status_code == 200, page.text
            price_html = page.text.split('<ul class="price">', 1)[1].split("</ul>", 1)[0]
            posted = words(price_html).strip()
            rate = fen_per_hour(posted)
            assert posted in sticker_price(config, tmp_path)

            # Pay, charge two minutes at 600 W, stop.
            created = await env.new_order(shed, 1, mode="until_full", phone=PHONE_A)
            no = created["out_trade_no"]
            await env.pay_on_page(created)
            await env.status_becomes(no, "starting")

            async def started() -> bool:
                await edge.sync()
                return edge.service.core.ports[1].session is not None

            await eventually(started, what="the start on the shed")
            await env.status_becomes(no, "charging")
            edge.charge(1, 600.0, 120)
            assert (await env.http.post(f"/api/v1/orders/{no}/stop")).status_code == 202

            async def closed() -> bool:
                await edge.sync()
                return bool(edge.service.closed)

            await eventually(closed, what="the stop on the shed")
            session: Session = edge.service.closed[0]
            view = await env.status_becomes(no, "refunded")

            minutes = -(-((session.stop_ms or 0) - session.started_ms) // 60_000)
            expected = int((rate * minutes / 60).quantize(Decimal(1), ROUND_HALF_UP))
            assert session.charged_fen == expected > 0, (posted, minutes, session.charged_fen)
            assert view["receipt"]["billed_fen"] == expected

            receipt = words((await env.http.get(f"/o/{no}")).text)
            assert f"合计 {expected / 100:.2f} 元" in receipt, receipt
            assert posted in receipt, receipt  # the bill line names the posted rate
        finally:
            await edge.http.aclose()


async def test_a_tariff_record_that_does_not_validate_changes_nothing(api: Api) -> None:
    shed_id, headers = await api.register_shed(ports=[1])

    async def posted() -> str:
        r = await api.client.get(f"/api/v1/public/sheds/{shed_id}/sockets/1")
        return str(r.json()["price"]["summary_zh"])

    assert await posted() == "1元/4小时"  # nothing reported yet: the default
    answer = await post(api, shed_id, headers, [record("tariff", "current", 2, {"tariff": THIRTY})])
    assert answer["applied"] and await posted() == "1元/2分钟"
    bad = {**THIRTY, "tiers": [{"max_w": 1100, "fen_per_hour": "-1"}]}
    answer = await post(api, shed_id, headers, [
        record("tariff", "current", 3, {"tariff": bad}),
        record("tariff", "other", 4, {"tariff": TWELVE}),
        record("tariff", "current", 5, {"tariff": 12}),
        record("tariff", "current", 1, {"tariff": TWELVE}),  # older than the one applied
    ])  # fmt: skip
    assert [r["code"] for r in answer["rejected"]] == ["bad_tariff", "key_mismatch", "bad_record"]
    assert len(answer["duplicates"]) == 1
    assert await posted() == "1元/2分钟"  # still what the shed said it bills
