"""The resident is told what the shed saw in the charge curve: an anomaly flag on
the shed's session record shows, in words, on the order's page and in the order's
JSON, on the REAL central API (tests/test_orders_harness.py), over HTTP."""

from __future__ import annotations

import re

import httpx

from tests.test_orders_harness import PHONE_A, pay_env

pytest_plugins = ["tests.api_db"]


def words(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_an_anomaly_on_the_session_is_shown_to_the_resident(db_url: str) -> None:
    async with (
        pay_env(db_url, pay_workers=True, pay_worker_interval_ms=100) as env,
        httpx.AsyncClient(base_url="") as phone,
    ):
        shed = await env.shed()
        site = env.url
        paid = await phone.post(
            f"{site}/s/{shed.shed_id}/1", data={"choice": "200", "phone": PHONE_A}
        )
        assert paid.status_code == 303, words(paid.text)
        pay_url = paid.headers["location"]
        no = pay_url.rsplit("/", 1)[1]
        assert (await phone.post(f"{pay_url}/confirm")).status_code == 200
        await env.status_becomes(no, "starting")
        run = await env.start(shed, {"out_trade_no": no})
        await env.status_becomes(no, "charging")

        await run.charge(20, 240.0)
        calm = words((await phone.get(f"{site}/o/{no}?part=live")).text)
        assert "正在充电" in calm and "插座升温过快" not in calm

        run.flags = ["anomaly_temp_rise", "restored"]  # as the shed raised it
        await run.charge(1, 240.0)
        live = await phone.get(f"{site}/o/{no}?part=live")
        assert "插座升温过快，请检查插头是否松动或损坏" in words(live.text)
        english = words((await phone.get(f"{site}/o/{no}?lang=en")).text)
        assert "The socket heated fast; please check the plug for damage" in english
        order = await env.http.get(f"/api/v1/orders/{no}")
        assert order.status_code == 200, order.text
        assert order.json()["session"]["warnings"] == ["anomaly_temp_rise"]  # not "restored"
