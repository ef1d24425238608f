"""The words on the resident pages, Chinese first and English second.

Every text a resident reads is here, keyed, in both languages, so that a page
never mixes them by accident and a translator edits one file. Codes that come
from the API (socket states, not-payable reasons, order statuses, end
reasons, refund statuses) are looked up in their own tables; an unknown code
is shown as it came rather than hidden.
"""

from __future__ import annotations

from typing import Final, Literal

Lang = Literal["zh", "en"]
LANGS: Final[tuple[Lang, ...]] = ("zh", "en")


def pick_lang(value: str | None) -> Lang:
    """`?lang=en` is English; anything else (or nothing) is Chinese."""
    return "en" if value is not None and value.lower().startswith("en") else "zh"


LANG_COOKIE: Final = "ebshed_lang"  # the resident's choice, kept through the whole flow


def _lang_of(value: str | None) -> Lang | None:
    text = (value or "").strip().lower()
    if text.startswith("en"):
        return "en"
    if text.startswith("zh"):
        return "zh"
    return None


def choose_lang(explicit: str | None, cookie: str | None, accept_language: str | None) -> Lang:
    """The resident's language: asked for now (`?lang=`, a form's `lang`), else the
    choice kept in the cookie (so it survives the payment provider's page), else the
    browser's Accept-Language (its first English or Chinese entry by q), else Chinese."""
    chosen = _lang_of(explicit) or _lang_of(cookie)
    if chosen is not None:
        return chosen
    ranked: list[tuple[float, int, Lang]] = []
    for i, part in enumerate((accept_language or "").split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        lang = _lang_of(tag)
        if lang is None:
            continue
        q = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip() == "q":
            try:
                q = float(value)
            except ValueError:
                q = 0.0
        if q > 0:
            ranked.append((-q, i, lang))
    return min(ranked)[2] if ranked else "zh"


TEXT: Final[dict[str, tuple[str, str]]] = {
    # page frame
    "app_name": ("扫码充电", "Scan to charge"),
    "colon": ("：", ": "),
    "switch_to": ("English", "中文"),
    "switch_hint": ("Switch to English", "切换到中文"),
    "back_to_shed": ("查看本车棚空闲插座和车位", "Free sockets and bays in this shed"),
    "my_charges": ("我的充电记录", "My charges"),
    "updating": ("数据每2秒自动更新", "Updates every 2 seconds"),
    "network_trouble": ("网络不稳定，正在重试…", "Connection trouble, retrying…"),
    "noscript": (
        "您的浏览器未开启脚本，请下拉刷新查看最新状态。",
        "Scripts are off in your browser: pull down to refresh.",
    ),
    # shed page
    "shed_title": ("充电车棚", "Charging shed"),
    "free_sockets": ("空闲插座", "Free sockets"),
    "free_bays": ("空闲车位", "Free parking bays"),
    "of_total": ("共 {total} 个", "of {total}"),
    "shed_online": ("车棚在线，可以扫码充电", "The shed is online: scan a socket to charge"),
    "shed_offline": (
        "车棚网络中断，暂时不能扫码充电",
        "The shed is offline: scan-to-pay is unavailable right now",
    ),
    "how_to": (
        "找一个空闲插座，扫插座上的二维码即可充电。",
        "Find a free socket and scan the QR code on it to charge.",
    ),
    "no_such_shed": ("没有找到这个车棚", "No such shed"),
    # socket page
    "socket_title": ("{port}号插座", "Socket {port}"),
    "state": ("状态", "State"),
    "price": ("收费标准", "Price"),
    "price_note": (
        "按实际用时计费，不足1分钟按1分钟计；没用完的钱自动退回原支付方式。",
        "Billed by the minute actually used; unused money goes back to your "
        "original payment automatically.",
    ),
    "choose": ("选择充电方式", "Choose how to charge"),
    "until_full": ("充满为止（押金 {deposit}）", "Until full (deposit {deposit})"),
    "until_full_hint": (
        "充满自动停止，多余的钱自动退回",
        "Stops when full; the rest is refunded",
    ),
    "fixed_amount": ("充 {amount}", "Charge for {amount}"),
    "phone": ("手机号", "Mobile number"),
    "phone_hint": (
        "用于在“我的充电记录”里查看收据",
        "To find your receipts under “My charges”",
    ),
    "pay": ("去支付", "Pay"),
    "paying": ("正在创建订单…", "Creating your order…"),
    "no_such_socket": ("没有找到这个插座", "No such socket"),
    "bad_phone": ("请输入11位手机号", "Please enter your 11-digit mobile number"),
    "bad_choice": ("请选择一种充电方式", "Please choose how to charge"),
    # order page
    "order_title": ("充电订单", "Charging order"),
    "order_no": ("订单号", "Order no."),
    "where": ("{shed} · {port}号插座", "{shed} · socket {port}"),
    "mode_until_full": ("充满为止", "Until full"),
    "mode_amount": ("固定金额", "Fixed amount"),
    "paid": ("已支付", "Paid"),
    "deposit": ("押金", "Deposit"),
    "go_pay": ("去支付", "Go to payment"),
    "waiting_payment": (
        "等待支付。支付完成后本页会自动更新。",
        "Waiting for payment. This page updates by itself once you have paid.",
    ),
    "power": ("功率", "Power"),
    "energy": ("电量", "Energy"),
    "duration": ("时长", "Time"),
    "cost_so_far": ("已用金额", "Cost so far"),
    "cost_final": ("费用", "Cost"),
    "never_on": ("未通电", "Never switched on"),
    "left": ("剩余", "Left"),
    "stop": ("停止充电", "Stop charging"),
    "stop_confirm": (
        "确定要停止充电吗？没用完的钱会自动退回。",
        "Stop charging? Unused money is refunded.",
    ),
    "stop_failed": ("停止失败，请稍后再试", "Could not stop, please try again"),
    "ended": ("充电已结束", "Charging has ended"),
    "receipt": ("收据", "Receipt"),
    "item": ("项目", "Item"),
    "quantity": ("用量", "Used"),
    "amount": ("金额", "Amount"),
    "billed": ("合计", "Total"),
    "refund": ("退款", "Refund"),
    "refund_status": ("退款状态", "Refund status"),
    "no_such_order": ("没有找到这个订单", "No such order"),
    "hours_minutes": ("{h}小时{m}分钟", "{h} h {m} min"),
    "minutes_only": ("{m}分钟", "{m} min"),
    "started_at": ("开始时间", "Started"),
    # me page
    "me_title": ("我的充电记录", "My charges"),
    "login_intro": (
        "用手机号登录，查看您的充电记录和收据。",
        "Log in with your mobile number to see your charges and receipts.",
    ),
    "mobile": ("手机号", "Mobile number"),
    "send_code": ("获取验证码", "Send me a code"),
    "code": ("验证码", "Code"),
    "code_sent": ("验证码已发送到 {phone}", "A code was sent to {phone}"),
    "login": ("登录", "Log in"),
    "logout": ("退出登录", "Log out"),
    "no_sessions": ("还没有充电记录", "No charges yet"),
    "logged_in_as": ("已登录：{phone}", "Logged in: {phone}"),
    "details": ("查看详情", "Details"),
    # the shed's public money page (api/web/money_page.py)
    "money_title": ("车棚账目公开", "The shed's money, in the open"),
    "money_link": ("本车棚的收支账目", "This shed's money, month by month"),
    "money_intro": (
        "每月的充电次数、电量、收入、退款、电费和结余，与物业报表出自同一记录。",
        "Each month's sessions, energy, money taken, refunds, electricity and what is left,"
        " from the same records as the office's reports.",
    ),
    "money_grid_price": ("电网电价：{price}/度", "Grid price: {price} per kWh"),
    "money_grid_unset": ("物业尚未设置电网电价", "The office has not set the grid price yet"),
    "money_margin_for": ("结余用途：{purpose}", "What is left is for: {purpose}"),
    "money_private": (
        "本页只有合计，不含任何住户信息。",
        "Totals only: nothing here identifies a resident.",
    ),
    "money_month": ("月份", "Month"),
    "money_sessions": ("充电次数", "Sessions"),
    "money_energy": ("充电电量", "Energy delivered"),
    "money_taken": ("收入", "Money taken"),
    "money_refunds": ("退款", "Refunds"),
    "money_bought": ("购电量", "Electricity bought"),
    "money_losses": ("线损", "Losses"),
    "money_electricity": ("电费", "Electricity cost"),
    "money_expenses": ("其他支出", "Expenses"),
    "money_margin": ("结余", "Left (margin)"),
    "money_pdf": ("PDF", "PDF"),
    "money_total": ("合计", "Total"),
    "money_chart_taken": ("每月收入（元）", "Money taken per month (yuan)"),
    "money_chart_electricity": ("每月电费（元）", "Electricity cost per month (yuan)"),
    "money_expense_lines": ("支出明细", "Expense lines"),
    "money_metered": ("按车棚总电表", "by the shed's main meter"),
    "money_by_sockets": ("按各插座电表合计", "by the sum of the socket meters"),
    "no_such_compound": ("找不到这个小区", "No such compound"),
    # consultations (api/web/consultation_page.py)
    "consult_title": ("业主意见征询", "Residents' consultation"),
    "consult_list": ("意见征询", "Consultations"),
    "consult_closes": ("截止：{when}", "Closes: {when}"),
    "consult_threshold": (
        "作答户数中同意达到 {pct}% 即通过",
        "Passes if {pct} % of the households that answer agree",
    ),
    "consult_count": (
        "同意 {yes} 户，不同意 {no} 户（共登记 {households} 户）",
        "{yes} yes, {no} no ({households} households registered)",
    ),
    "consult_status_open": ("征询中", "Open"),
    "consult_status_passed": ("已通过", "Passed"),
    "consult_status_failed": ("未通过", "Not passed"),
    "consult_applied": ("新价格已执行", "The new price is in force"),
    "consult_old_price": ("现行价格", "Current price"),
    "consult_new_price": ("拟调整价格", "Proposed price"),
    "consult_overnight": (
        "典型夜间充电（22:00 起 {hours} 小时，约 {kwh} 度）",
        "A typical overnight charge (from 22:00, {hours} h, about {kwh} kWh)",
    ),
    "consult_sockets": ("在{shed}增加 {n} 个插座", "{n} more sockets in {shed}"),
    "consult_login": (
        "用登记的手机号获取验证码后作答（每户一票，截止前可修改）",
        "Answer with a code sent to your registered phone (one answer per"
        " household, changeable until the close)",
    ),
    "consult_yes": ("同意", "Yes"),
    "consult_no": ("不同意", "No"),
    "consult_your_answer": ("您家的意见：{answer}", "Your household's answer: {answer}"),
    "consult_not_registered": (
        "这个手机号没有登记在本小区的住户名单中，请联系物业",
        "This phone is not on the compound's household list: ask the office",
    ),
    "consult_closed": ("征询已截止", "The consultation has closed"),
    # errors
    "error_title": ("出错了", "Something went wrong"),
    "try_again": ("请稍后再试", "Please try again later"),
    "unavailable": ("暂时无法连接，请稍后再试", "Cannot connect right now, please try again later"),
}

# The socket's state as the public API reports it (controller/core/fsm.py SocketState).
SOCKET_STATES: Final[dict[str, tuple[str, str]]] = {
    "idle": ("空闲，可以使用", "Free"),
    "authorized": ("正在使用", "In use"),
    "charging": ("正在使用", "In use"),
    "floating": ("正在使用", "In use"),
    "finishing": ("正在使用", "In use"),
    "busy": ("正在使用", "In use"),
    "fault": ("故障", "Out of order"),
    "offline": ("离线", "Offline"),
    "disabled": ("停用维修中", "Out of service"),
}

# Why a socket cannot be paid for right now (`reason` of the socket answer, or a 409 code).
NOT_PAYABLE: Final[dict[str, tuple[str, str]]] = {
    "busy": (
        "这个插座正在使用中，请换一个空闲插座。",
        "This socket is in use. Please choose a free one.",
    ),
    "socket_taken": (
        "这个插座刚刚被别人占用了，请换一个空闲插座。",
        "Someone has just taken this socket. Please choose a free one.",
    ),
    "fault": (
        "这个插座有故障，暂停使用，请换一个插座。",
        "This socket is out of order. Please use another one.",
    ),
    "offline": (
        "这个插座暂时离线，不能充电，请换一个插座。",
        "This socket is offline right now. Please use another one.",
    ),
    "disabled": (
        "这个插座停用维修中，请换一个插座。",
        "This socket is out of service. Please use another one.",
    ),
    "shed_offline": (
        "车棚网络中断，暂时不能扫码充电，请稍后再试。",
        "The shed is offline, so scan-to-pay is unavailable. Please try later.",
    ),
}

# Other problem codes a resident may meet.
PROBLEMS: Final[dict[str, tuple[str, str]]] = {
    "not_found": ("没有找到", "Not found"),
    "too_many_requests": ("操作太频繁，请稍后再试", "Too many tries, please wait a moment"),
    "wrong_code": ("验证码不对，请重新输入", "That code is not right, please try again"),
    "bad_code": ("验证码不对，请重新输入", "That code is not right, please try again"),
    "no_code": ("验证码已过期或未获取，请重新获取", "No valid code: please ask for a new one"),
    "too_many_attempts": (
        "错误次数太多，请重新获取验证码",
        "Too many wrong codes: please ask for a new one",
    ),
    "sms_too_soon": (
        "验证码刚刚发过，请输入已收到的验证码，或一分钟后再获取",
        "A code was just sent: enter it, or ask for a new one in a minute",
    ),
    "sms_daily_limit": (
        "今天获取验证码次数太多，请明天再试",
        "Too many codes today: please try again tomorrow",
    ),
    "too_many_unpaid": (
        "您已有两笔未支付的订单，请先支付，或一两分钟后再试",
        "You already have two unpaid orders: pay one, or try again in a minute or two",
    ),
    "rate_limited": ("操作太频繁，请稍后再试", "Too many tries, please wait a moment"),
    "control_character": ("填写的内容有误，请检查", "Something in the form is not right"),
    "unknown_order": ("没有找到这个订单", "No such order"),
    "unknown_socket": ("没有找到这个插座", "No such socket"),
    "unknown_shed": ("没有找到这个车棚", "No such shed"),
    "unauthorized": ("请先登录", "Please log in first"),
    "invalid_request": ("填写的内容有误，请检查", "Something in the form is not right"),
    "api_unavailable": TEXT["unavailable"],
}

# Order statuses of the central API (api/models.py ORDER_STATUSES).
ORDER_STATUSES: Final[dict[str, tuple[str, str]]] = {
    "created": ("等待支付", "Waiting for payment"),
    "paid": ("已支付，正在通电", "Paid, switching on"),
    "starting": ("已支付，正在通电", "Paid, switching on"),
    "charging": ("正在充电", "Charging"),
    "closed": ("已结束", "Finished"),
    "refunding": ("已结束，正在退款", "Finished, refunding"),
    "refunded": ("已结束，已退款", "Finished, refunded"),
    "failed": (
        "退款遇到问题，已通知物业处理",
        "Refund problem: the property office has been alerted",
    ),
    "expired": ("订单已过期（未支付）", "Order expired (not paid)"),
}

# Why an order ended as it did (`problem`, the part before any ":").
ORDER_PROBLEMS: Final[dict[str, tuple[str, str]]] = {
    "start_refused": (
        "插座未能启动，已全额退款",
        "The socket could not start: your money is refunded in full",
    ),
    "start_timeout": (
        "插座没有响应，已全额退款",
        "The socket did not answer: your money is refunded in full",
    ),
    "shed_offline": (
        "车棚网络中断，已全额退款",
        "The shed went offline: your money is refunded in full",
    ),
    "expired": ("超时未支付，订单已关闭", "Not paid in time: the order is closed"),
    "superseded": ("您已重新下单，此订单作废", "You ordered again: this order was replaced"),
    "create_failed": ("订单创建失败，未扣款", "The order could not be made: nothing was charged"),
    "not_paid": ("未支付", "Not paid"),
}

# The session's state (socket states while it runs).
SESSION_STATES: Final[dict[str, tuple[str, str]]] = {
    "authorized": ("已通电，请插好充电器", "Power is on: plug in your charger"),
    "charging": ("正在充电", "Charging"),
    "floating": ("已充满，正在补电", "Full, topping up"),
    "finishing": ("正在停止", "Stopping"),
    "stopping": ("正在停止", "Stopping"),
    "ended": ("已结束", "Finished"),
    "closed": ("已结束", "Finished"),
}

# Charge-curve anomalies (controller/core/anomaly.py) as the resident reads them.
CHARGE_WARNINGS: Final[dict[str, tuple[str, str]]] = {
    "anomaly_no_taper": (
        "充电器一直满功率，没有降下来，请检查充电器",
        "The charger never eased off; please have it checked",
    ),
    "anomaly_unstable_power": (
        "充电功率忽高忽低，充电器可能有故障",
        "The charging power jumped up and down; the charger may be faulty",
    ),
    "anomaly_energy_excess": (
        "用电量远超电池容量，电池可能有故障",
        "Far more energy than the battery should take; it may be faulty",
    ),
    "anomaly_temp_rise": (
        "插座升温过快，请检查插头是否松动或损坏",
        "The socket heated fast; please check the plug for damage",
    ),
    "anomaly_no_load": (
        "充电器在耗电，但电池没有在充电，请检查是否接好电池",
        "The charger drew power but no battery charged; is it connected?",
    ),
}

END_REASONS: Final[dict[str, tuple[str, str]]] = {
    "full": ("已充满，自动停止", "Full: stopped automatically"),
    "unplugged": ("已拔下充电器", "Charger unplugged"),
    "button": ("您已停止充电", "You stopped it"),
    "app": ("您已停止充电", "You stopped it"),
    "remote": ("您已停止充电", "You stopped it"),
    "resident": ("您已停止充电", "You stopped it"),
    "user": ("您已停止充电", "You stopped it"),
    "user_stop": ("您已停止充电", "You stopped it"),
    "card_stop": ("刷卡停止", "Stopped by card"),
    "money_used_up": ("金额已用完", "The paid amount is used up"),
    "session_cap": ("已达到最长充电时间", "Maximum charging time reached"),
    "hard_cap": ("已达到最长充电时间", "Maximum charging time reached"),
    "no_load": ("没有检测到充电器", "No charger was detected"),
    "start_failed": ("插座未能启动，全额退款", "The socket did not start: full refund"),
    "board_offline": ("设备离线，已停止", "The device went offline"),
    "lease_expired": ("设备失联，已停止", "Lost contact with the device"),
    "relay_off": ("插座已断电", "The socket switched off"),
    "disabled": ("插座被停用", "The socket was taken out of service"),
    "operator": ("物业已停止", "Stopped by the property office"),
    "staff": ("物业已停止", "Stopped by the property office"),
    "fault": ("安全保护，已停止", "Stopped for safety"),
    "over_temperature": ("温度过高，安全停止", "Stopped for safety: too hot"),
    "over_current": ("电流过大，安全停止", "Stopped for safety: too much current"),
    "smoke": ("烟雾报警，安全停止", "Stopped for safety: smoke alarm"),
}

# Refund status of the receipt (payments-v1: PROCESSING, SUCCESS, ABNORMAL, CLOSED).
REFUND_STATUSES: Final[dict[str, tuple[str, str]]] = {
    "success": ("已退回原支付方式", "refunded to your original payment"),
    "refunded": ("已退回原支付方式", "refunded to your original payment"),
    "processing": ("正在退回原支付方式", "being refunded to your original payment"),
    "pending": ("正在退回原支付方式", "being refunded to your original payment"),
    "abnormal": (
        "退款遇到问题，请联系物业",
        "the refund ran into a problem: please contact the property office",
    ),
    "closed": (
        "退款已关闭，请联系物业",
        "the refund was closed: please contact the property office",
    ),
    "failed": (
        "退款遇到问题，已通知物业处理",
        "the refund ran into a problem: the property office has been alerted",
    ),
    "none": ("无需退款", "nothing to refund"),
}
# No further change to expect (abnormal, closed and failed wait for staff).
REFUND_SETTLED: Final = frozenset({"success", "refunded", "abnormal", "closed", "failed", "none"})

UNITS: Final[dict[str, tuple[str, str]]] = {
    "min": ("分钟", "min"),
    "minute": ("分钟", "min"),
    "minutes": ("分钟", "min"),
    "h": ("小时", "h"),
    "hour": ("小时", "h"),
    "kwh": ("度", "kWh"),
    "wh": ("瓦时", "Wh"),
    "time": ("次", "×"),
    "times": ("次", "×"),
    "day": ("天", "day"),
}


def t(lang: Lang, key: str, **values: object) -> str:
    """The text `key` in `lang`, with `{placeholders}` filled in."""
    zh, en = TEXT[key]
    text = en if lang == "en" else zh
    return text.format(**values) if values else text


def label(table: dict[str, tuple[str, str]], code: object, lang: Lang) -> str:
    """A code from the API in words; an unknown code as it came (never hidden)."""
    if not isinstance(code, str) or not code:
        return ""
    pair = table.get(code.lower())
    if pair is None:
        return code
    return pair[1] if lang == "en" else pair[0]
