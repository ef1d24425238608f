"""The resident pages over HTTP, without a browser: what they say, in both languages.

The JSON API behind them here is the STAND-IN of tests/test_web_standin.py
(quick and deterministic; see that file). The same pages on the real API:
tests/test_web_real_api.py and tests/test_web_browser.py.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from api.web.client import Problem
from api.web.i18n import pick_lang
from api.web.money import money, yuan
from api.web.views import duration_text, masked_phone, order_view, sessions_of, socket_view
from tests.test_web_standin import (
    COOKIE,
    SHED,
    SHED_NAME,
    SMS_CODE,
    ManualClock,
    StandInApi,
)

PHONE = "13800138000"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def api(clock: ManualClock) -> StandInApi:
    return StandInApi(clock)


@pytest.fixture
def client(api: StandInApi) -> TestClient:
    return TestClient(api.app(), follow_redirects=False)


def text_of(html: str) -> str:
    """The visible words of a page, roughly: tags out, whitespace folded."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def order_no(client: TestClient, port: int = 3, choice: str = "200") -> str:
    resp = client.post(f"/s/{SHED}/{port}", data={"choice": choice, "phone": PHONE})
    assert resp.status_code == 303, resp.text
    location: str = resp.headers["location"]
    return location.rsplit("/", 1)[1]


# --------------------------------------------------------------------------- money


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (0, "0.00"),
        (5, "0.05"),
        (10, "0.10"),
        (99, "0.99"),
        (100, "1.00"),
        (1234, "12.34"),
        (-150, "-1.50"),
        (-5, "-0.05"),
        (10**12 + 1, "10000000000.01"),
        (None, "—"),
        (1.5, "—"),
        ("300", "—"),
        (True, "—"),
    ],
)
def test_yuan_from_integer_fen(fen: object, text: str) -> None:
    assert yuan(fen) == text


def test_money_has_its_unit_in_each_language() -> None:
    assert money(500, "zh") == "5.00 元"
    assert money(500, "en") == "¥5.00"
    assert money(-150, "en") == "-¥1.50"
    assert money(None, "zh") == "—"


def test_language_choice() -> None:
    assert pick_lang(None) == "zh"
    assert pick_lang("en") == "en"
    assert pick_lang("EN-us") == "en"
    assert pick_lang("fr") == "zh"


def test_problems_in_both_shapes() -> None:
    assert Problem.of(409, {"code": "socket_taken", "message": "taken"}) == Problem(
        409, "socket_taken", "taken"
    )
    assert Problem.of(404, {"detail": "Not Found"}).code == "not_found"
    assert Problem.of(409, {"detail": "busy"}).code == "busy"
    assert Problem.of(409, {"detail": {"code": "fault", "message": "x"}}).code == "fault"
    invalid = Problem.of(422, {"detail": [{"msg": "field required"}, {"msg": "bad phone"}]})
    assert (invalid.code, invalid.message) == ("invalid_request", "field required; bad phone")
    assert Problem.of(502, None).code == "error"
    assert Problem.of(503, "gateway").code == "api_unavailable"


def test_views_read_the_api_tolerantly() -> None:
    socket = socket_view({"payable": True, "price": None, "amounts_fen": [100, 1.5, -3]}, "zh",
                         shed_id="x", port=3)  # fmt: skip
    assert [c.value for c in socket.choices] == ["100"]  # no deposit: no "until full"
    order = order_view({"status": "charging", "session": {"state": "charging", "w": "a"}}, "en")
    assert order.session is not None
    assert (order.session.power, order.session.cost, order.session.energy) == ("—", "—", "—")
    assert order.can_stop and not order.final
    assert duration_text(125, "zh") == "2小时5分钟"
    assert duration_text(59.9, "en") == "59 min"
    assert masked_phone(PHONE) == "138****8000"
    assert sessions_of({"phone": PHONE, "orders": [{"a": 1}, 3]}) == [{"a": 1}]
    assert sessions_of([{"a": 1}]) == [{"a": 1}]
    assert sessions_of(None) == []


# --------------------------------------------------------------------------- socket page


def test_socket_page_shows_price_and_choices_before_paying(client: TestClient) -> None:
    resp = client.get(f"/s/{SHED}/7")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    page = text_of(resp.text)
    assert '<html lang="zh-CN">' in resp.text
    assert "7号插座" in page and SHED_NAME in page
    assert "空闲，可以使用" in page
    assert "1元/4小时" in page  # the posted price, before any payment
    assert "充满为止（押金 5.00 元）" in page
    for amount in ("充 1.00 元", "充 2.00 元", "充 3.00 元", "充 5.00 元"):
        assert amount in page
    assert 'id="pay"' in resp.text and "去支付" in page
    assert 'href="/s/demo-1"' in resp.text  # the shed page
    assert 'href="/s/demo-1/7?lang=en"' in resp.text and ">English<" in resp.text
    assert resp.headers["cache-control"] == "no-store"


def test_socket_page_in_english(client: TestClient) -> None:
    resp = client.get(f"/s/{SHED}/7?lang=en")
    assert resp.status_code == 200
    page = text_of(resp.text)
    assert '<html lang="en">' in resp.text
    assert "Socket 7" in page and "Free" in page
    assert "1 yuan per 4 h" in page
    assert "Until full (deposit ¥5.00)" in page and "Charge for ¥2.00" in page
    assert "Pay" in page
    assert 'href="/s/demo-1/7?lang=zh"' in resp.text and ">中文<" in resp.text
    assert 'href="/s/demo-1?lang=en"' in resp.text
    assert "插座" not in page  # no Chinese left on the English page but the switch


@pytest.mark.parametrize(
    ("port", "state", "reason"),
    [
        (8, "正在使用", "这个插座正在使用中"),
        (9, "故障", "这个插座有故障"),
        (10, "离线", "这个插座暂时离线"),
        (11, "停用维修中", "这个插座停用维修中"),
    ],
)
def test_socket_that_cannot_be_used_says_so_without_a_pay_button(
    client: TestClient, port: int, state: str, reason: str
) -> None:
    resp = client.get(f"/s/{SHED}/{port}")
    assert resp.status_code == 200
    page = text_of(resp.text)
    assert state in page and reason in page
    assert 'id="pay"' not in resp.text and "去支付" not in page
    assert "1元/4小时" in page  # the price is still posted
    assert 'href="/s/demo-1"' in resp.text


def test_offline_shed_says_so(client: TestClient, api: StandInApi) -> None:
    api.online = False
    page = text_of(client.get(f"/s/{SHED}/7").text)
    assert "车棚网络中断" in page and "去支付" not in page


@pytest.mark.parametrize("path", [f"/s/{SHED}/99", "/s/nope/1", "/s/BAD_ID/1", f"/s/{SHED}/x"])
def test_unknown_socket_is_a_404_page(client: TestClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404
    assert "没有找到这个插座" in resp.text or "没有找到这个车棚" in resp.text
    assert resp.headers["content-type"].startswith("text/html")


def test_api_failure_is_a_friendly_page(client: TestClient, api: StandInApi) -> None:
    api.fail_next[f"GET /api/v1/public/sheds/{SHED}/sockets/7"] = 500
    resp = client.get(f"/s/{SHED}/7")
    assert resp.status_code == 503
    assert "暂时无法连接" in resp.text


def test_socket_live_fragment(client: TestClient, api: StandInApi) -> None:
    resp = client.get(f"/s/{SHED}/7?part=live")
    assert resp.status_code == 200
    assert "<html" not in resp.text and 'data-payable="1"' in resp.text
    api.states[7] = "charging"
    resp = client.get(f"/s/{SHED}/7?part=live&lang=en")
    assert 'data-payable="0"' in resp.text and "In use" in resp.text


# --------------------------------------------------------------------------- paying


def test_pay_creates_the_order_and_goes_to_the_pay_page(
    client: TestClient, api: StandInApi
) -> None:
    resp = client.post(f"/s/{SHED}/7", data={"choice": "300", "phone": "138 0013 8000"})
    assert resp.status_code == 303
    assert resp.headers["location"].startswith("http://testserver/standin-pay/EBS")
    (order,) = api.orders.values()
    assert (order.port, order.mode, order.amount_fen, order.phone) == (7, "amount", 300, PHONE)


def test_pay_until_full_prepays_the_deposit(client: TestClient, api: StandInApi) -> None:
    resp = client.post(f"/s/{SHED}/7?lang=en", data={"choice": "until_full", "phone": PHONE})
    assert resp.status_code == 303
    (order,) = api.orders.values()
    assert (order.mode, order.amount_fen) == ("until_full", 500)


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"choice": "200", "phone": ""}, "请输入11位手机号"),
        ({"choice": "200", "phone": "12345"}, "请输入11位手机号"),
        ({"choice": "777", "phone": PHONE}, "请选择一种充电方式"),  # not an offered amount
        ({"phone": PHONE}, "请选择一种充电方式"),
    ],
)
def test_pay_form_mistakes_are_shown_on_the_page(
    client: TestClient, api: StandInApi, form: dict[str, str], message: str
) -> None:
    resp = client.post(f"/s/{SHED}/7", data=form)
    assert resp.status_code == 422
    assert message in resp.text and 'id="pay"' in resp.text
    assert not api.orders


def test_socket_taken_between_scan_and_pay(client: TestClient, api: StandInApi) -> None:
    assert 'id="pay"' in client.get(f"/s/{SHED}/7").text
    api.states[7] = "charging"  # someone else was quicker
    resp = client.post(f"/s/{SHED}/7", data={"choice": "200", "phone": PHONE})
    assert resp.status_code == 409
    assert "这个插座正在使用中" in resp.text and 'id="pay"' not in resp.text
    assert not api.orders


def test_api_refusal_of_the_order_is_shown(client: TestClient, api: StandInApi) -> None:
    api.fail_next["POST /api/v1/orders"] = 409  # {"code": "internal_error"}: an unknown code
    resp = client.post(f"/s/{SHED}/7", data={"choice": "200", "phone": PHONE})
    assert resp.status_code == 409
    assert "请稍后再试" in resp.text


# --------------------------------------------------------------------------- order page


def test_order_page_from_payment_to_receipt(
    client: TestClient, api: StandInApi, clock: ManualClock
) -> None:
    no = order_no(client)
    page = text_of(client.get(f"/o/{no}").text)
    assert "等待支付" in page and SHED_NAME in page and "3号插座" in page

    api.pay(no)  # the resident confirms on the provider's page
    page = text_of(client.get(f"/o/{no}").text)
    assert "正在充电" in page and "240 W" in page and "停止充电" in page
    assert "已支付 2.00 元" in page

    clock.advance(45)
    live = client.get(f"/o/{no}?part=live")
    assert "<html" not in live.text and 'data-final="0"' in live.text
    page = text_of(live.text)
    assert "45分钟" in page and "0.18 度" in page  # 240 W for 45 min
    assert "已用金额 0.19 元" in page  # 45 started minutes at 25 fen/h, rounded once
    assert "剩余 1.81 元" in page

    stop = client.post(f"/o/{no}/stop")
    assert stop.status_code == 303 and stop.headers["location"] == f"/o/{no}"
    assert "正在停止" in text_of(client.get(f"/o/{no}").text)
    html = client.get(f"/o/{no}").text
    assert 'id="stop-button"' not in html
    page = text_of(html)
    assert "充电已结束：您已停止充电" in page
    assert "收据" in page and "充电时长（1元/4小时）" in page and "45 分钟" in page
    assert "合计 0.19 元" in page and "退款 1.81 元" in page
    assert "退款状态：正在退回原支付方式" in page

    client.get(f"/o/{no}")
    final = client.get(f"/o/{no}?part=live")
    assert "已退回原支付方式" in text_of(final.text)
    assert 'data-final="1"' in final.text


def test_order_page_in_english_with_receipt(
    client: TestClient, api: StandInApi, clock: ManualClock
) -> None:
    no = order_no(client, choice="until_full")
    api.pay(no)
    client.get(f"/o/{no}")
    clock.advance(130)
    live = client.post(f"/o/{no}/stop?lang=en&part=live")  # as the script does
    assert live.status_code == 200 and "<html" not in live.text
    assert "Stopping" in live.text
    for _ in range(3):
        client.get(f"/o/{no}")
    page = text_of(client.get(f"/o/{no}?lang=en").text)
    assert "Until full" in page and "Deposit ¥5.00" in page
    assert "Charging time (1 yuan per 4 h)" in page and "130 min" in page
    assert "Total ¥0.54" in page and "Refund ¥4.46" in page
    assert "refunded to your original payment" in page
    assert "You stopped it" in page and "2 h 10 min" in page


def test_stop_when_not_running_says_so(client: TestClient, api: StandInApi) -> None:
    no = order_no(client)
    resp = client.post(f"/o/{no}/stop")
    assert resp.status_code == 200 and "停止失败" in resp.text


def test_unknown_order_is_a_404_page(client: TestClient) -> None:
    assert client.get("/o/EBS99999999").status_code == 404
    assert client.get("/o/x").status_code == 404  # not even an order number


# --------------------------------------------------------------------------- shed page


def test_shed_page_shows_what_is_free_now(client: TestClient, api: StandInApi) -> None:
    resp = client.get(f"/s/{SHED}")
    assert resp.status_code == 200
    page = text_of(resp.text)
    assert SHED_NAME in page and "天通苑小区" in page
    assert re.search(r"8 空闲插座 共 12 个", page)  # 12 minus busy, fault, offline, disabled
    assert re.search(r"4 空闲车位 共 6 个", page)
    assert "1元/4小时" in page and "车棚在线" in page
    api.states[1] = "charging"
    live = client.get(f"/s/{SHED}?part=live&lang=en").text
    assert 'id="free-sockets">7<' in live and "Free sockets" in live


def test_shed_page_in_english_and_unknown_shed(client: TestClient) -> None:
    page = text_of(client.get(f"/s/{SHED}?lang=en").text)
    assert "Free sockets" in page and "Free parking bays" in page and "of 12" in page
    assert client.get("/s/unknown-shed").status_code == 404


# --------------------------------------------------------------------------- my charges


def test_me_login_by_sms_code_then_own_charges(client: TestClient, api: StandInApi) -> None:
    no = order_no(client)
    api.pay(no)
    client.get(f"/o/{no}")

    page = client.get("/me")
    assert page.status_code == 200 and "获取验证码" in page.text and "login-form" not in page.text
    assert client.post("/me/sms", data={"phone": "123"}).status_code == 422
    sent = client.post("/me/sms", data={"phone": PHONE})
    assert sent.status_code == 200 and "验证码已发送到 13800138000" in sent.text
    assert 'id="login-form"' in sent.text

    wrong = client.post("/me/login", data={"phone": PHONE, "code": "000000"})
    assert wrong.status_code == 400 and "验证码不对" in wrong.text
    ok = client.post("/me/login", data={"phone": PHONE, "code": SMS_CODE})
    assert ok.status_code == 303 and ok.headers["location"] == "/me"
    assert ok.headers["set-cookie"].startswith(f"{COOKIE}=")  # the API's cookie, passed on

    mine = client.get("/me")  # TestClient keeps the cookie, as a browser does
    page_text = text_of(mine.text)
    assert "已登录：138****8000" in page_text
    assert f"{SHED_NAME} · 3号插座" in page_text and "正在充电" in page_text
    assert f'href="/o/{no}"' in mine.text

    # Logged in, the socket page fills in the number.
    assert f'value="{PHONE}"' in client.get(f"/s/{SHED}/7").text

    out = client.post("/me/logout")
    assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]
    assert "获取验证码" in client.get("/me").text


def test_me_in_english_switch_leads_back_to_me(client: TestClient) -> None:
    resp = client.post("/me/sms?lang=en", data={"phone": PHONE, "lang": "en"})
    assert "A code was sent to 13800138000" in resp.text
    assert 'href="/me?lang=zh"' in resp.text  # the switch, not to the POST-only /me/sms


# --------------------------------------------------------------------------- static, headers


def test_static_files_and_headers(client: TestClient) -> None:
    page = client.get(f"/s/{SHED}/7")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    css_url = re.search(r'href="(/web/static/web\.css\?v=[0-9a-f]+)"', page.text)
    js_url = re.search(r'src="(/web/static/web\.js\?v=[0-9a-f]+)"', page.text)
    assert css_url and js_url
    css, js = client.get(css_url.group(1)), client.get(js_url.group(1))
    assert css.status_code == js.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert js.headers["content-type"].startswith("text/javascript")
    assert client.get("/web/static/../routes.py").status_code == 404
    assert client.get("/web/static/nope.js").status_code == 404


def test_no_inline_script_or_style_and_nothing_from_elsewhere(client: TestClient) -> None:
    no = order_no(client)
    for path in (f"/s/{SHED}/7", f"/s/{SHED}", f"/o/{no}", "/me"):
        html = client.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert "<style" not in html and " style=" not in html and " onclick" not in html, path
        assert not re.search(r'(src|href)="(https?:)?//', html), path
