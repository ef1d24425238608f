"""The resident pages on the REAL central API: `create_app` with the orders, public
and auth routers, the real payment gateway, the provider simulator and a fake
shed on the real shed endpoints (tests/test_orders_harness.py), all over HTTP.

The resident's phone is an HTTP client that only follows the pages: scan,
pay on the provider's page, watch, stop, receipt, log in by SMS code.
(The browser version is tests/test_web_browser.py.)
"""

from __future__ import annotations

import re

import httpx

from tests.test_orders_harness import PHONE_A, pay_env

pytest_plugins = ["tests.api_db"]


def words(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_scan_pay_charge_stop_receipt_and_my_charges(db_url: str) -> None:
    async with (
        pay_env(db_url, pay_workers=True, pay_worker_interval_ms=100) as env,
        httpx.AsyncClient(base_url="") as phone,
    ):
        shed = await env.shed()
        await shed.socket(2, "charging")
        await shed.socket(3, "fault")
        site = env.url

        # The sticker on socket 1: shed, socket, state and the price before paying.
        page = await phone.get(f"{site}/s/{shed.shed_id}/1")
        assert page.status_code == 200, page.text
        text = words(page.text)
        assert "1号插座" in text and "1号车棚" in text and "空闲，可以使用" in text
        assert "1元/4小时" in text and "充满为止（押金 5.00 元）" in text
        assert "充 2.00 元" in text and 'id="pay"' in page.text

        busy = words((await phone.get(f"{site}/s/{shed.shed_id}/2")).text)
        assert "这个插座正在使用中" in busy and "去支付" not in busy
        fault = words((await phone.get(f"{site}/s/{shed.shed_id}/3?lang=en")).text)
        assert "Out of order" in fault and "This socket is out of order" in fault

        # The language chosen is kept (a cookie): the resident switches back to Chinese.
        free = words((await phone.get(f"{site}/s/{shed.shed_id}?lang=zh")).text)
        assert re.search(r"2 空闲插座 共 4 个", free), free  # sockets 1 and 4
        assert "演示小区" in free and "车棚在线" in free

        # Pay 2 yuan: the browser is sent to the provider's pay page.
        paid = await phone.post(
            f"{site}/s/{shed.shed_id}/1", data={"choice": "200", "phone": PHONE_A}
        )
        assert paid.status_code == 303, words(paid.text)
        pay_url = paid.headers["location"]
        no = pay_url.rsplit("/", 1)[1]
        assert pay_url == f"{env.sim.url}/pay/{no}"
        waiting = words((await phone.get(f"{site}/o/{no}")).text)
        assert "等待支付" in waiting and "去支付" in waiting  # the way back to the pay page
        assert "确认支付" in (await phone.get(pay_url)).text
        assert (await phone.post(f"{pay_url}/confirm")).status_code == 200

        # The socket switches on; progress comes from the shed's checkpoints.
        await env.status_becomes(no, "starting")
        run = await env.start(shed, {"out_trade_no": no})
        await env.status_becomes(no, "charging")
        await run.charge(45, 240.0)
        live = await phone.get(f"{site}/o/{no}?part=live")
        text = words(live.text)
        assert "正在充电" in text and "240 W" in text and "45分钟" in text
        assert "0.18 度" in text and "已用金额 0.19 元" in text and "剩余 1.81 元" in text
        assert 'id="stop-button"' in live.text and 'data-final="0"' in live.text

        # Stop from the phone: the shed gets stop_session, bills, the rest goes back.
        stop = await phone.post(f"{site}/o/{no}/stop")
        assert stop.status_code == 303
        command = await shed.next_command()
        assert command["kind"] == "stop_session" and command["data"]["port"] == 1
        await shed.answer(command, True)
        closed = await run.close("resident")
        await env.status_becomes(no, "refunded")
        billed, refund = closed["billed_fen"], 200 - closed["billed_fen"]
        assert (billed, refund) == (19, 181)
        final = await phone.get(f"{site}/o/{no}")
        text = words(final.text)
        assert "1号车棚 · 1号插座" in text and "已结束，已退款" in text
        assert "充电已结束：您已停止充电" in text
        assert "充电时长（1元/4小时） 45 分钟 0.19 元" in text
        assert "合计 0.19 元" in text and "已支付 2.00 元" in text and "退款 1.81 元" in text
        assert "退款状态：已退回原支付方式" in text
        assert 'data-final="1"' in final.text and 'id="stop-button"' not in final.text
        english = words((await phone.get(f"{site}/o/{no}?lang=en")).text)
        assert "Refund ¥1.81" in english and "refunded to your original payment" in english
        await env.money_conserved(no)

        # My charges: log in by SMS code (the simulated outbox), see the receipt.
        assert "获取验证码" in (await phone.get(f"{site}/me?lang=zh")).text  # back from English
        sent = await phone.post(f"{site}/me/sms", data={"phone": PHONE_A})
        assert sent.status_code == 200 and 'id="login-form"' in sent.text, words(sent.text)
        wrong = await phone.post(f"{site}/me/login", data={"phone": PHONE_A, "code": "000000"})
        assert wrong.status_code == 400 and "验证码不对" in wrong.text
        outbox = (await env.http.get("/api/v1/dev/sms", params={"phone": PHONE_A})).json()
        login = await phone.post(
            f"{site}/me/login", data={"phone": PHONE_A, "code": outbox[0]["code"]}
        )
        assert login.status_code == 303 and login.headers["location"] == "/me"
        mine = await phone.get(f"{site}/me")  # the client keeps the API's cookie
        text = words(mine.text)
        assert "已登录：138****8000" in text and "1号车棚 · 1号插座" in text
        assert "合计 0.19 元 · 退款 1.81 元" in text and "已退回原支付方式" in text
        assert f'href="/o/{no}"' in mine.text
        assert f'value="{PHONE_A}"' in (await phone.get(f"{site}/s/{shed.shed_id}/4")).text

        # A logged-in page's forms carry the session's token (api/boundary.py).
        token = re.search(r'name="csrf" value="([0-9a-f]{40})"', mine.text)
        assert token is not None
        assert (await phone.post(f"{site}/me/logout")).status_code == 403
        out = await phone.post(f"{site}/me/logout", data={"csrf": token.group(1)})
        assert out.status_code == 303
        assert "获取验证码" in (await phone.get(f"{site}/me?lang=zh")).text  # back from English


async def test_socket_taken_and_offline_shed_on_the_real_api(db_url: str) -> None:
    async with pay_env(db_url) as env, httpx.AsyncClient() as phone:
        shed = await env.shed()
        site = env.url
        assert 'id="pay"' in (await phone.get(f"{site}/s/{shed.shed_id}/1")).text
        await env.new_order(shed, 1, phone="13900139000")  # someone else was quicker
        taken = await phone.post(
            f"{site}/s/{shed.shed_id}/1", data={"choice": "until_full", "phone": PHONE_A}
        )
        assert taken.status_code == 409
        assert "刚刚被别人占用" in words(taken.text) or "正在使用" in words(taken.text)

        assert (await phone.get(f"{site}/s/nope-shed/1")).status_code == 404
        assert (await phone.get(f"{site}/s/{shed.shed_id}/99")).status_code == 404
        assert (await phone.get(f"{site}/o/EBSNOSUCHORDER")).status_code == 404
