"""The words of the login page and the staff board, Chinese first, English second."""

from __future__ import annotations

import re
from typing import Final

from api.web.i18n import Lang

TEXT: Final[dict[str, tuple[str, str]]] = {
    "board_name": ("车棚管理", "Shed board"),
    "login_title": ("工作人员登录", "Staff login"),
    "login_intro": (
        "物业工作人员和社区办公室人员用账号和密码登录。",
        "Property staff and community office users log in with their account.",
    ),
    "login_name": ("账号", "Login"),
    "password": ("密码", "Password"),
    "login": ("登录", "Log in"),
    "logout": ("退出", "Log out"),
    "bad_credentials": ("账号或密码不对", "Wrong login or password"),
    "too_many_attempts": (
        "失败次数太多，请稍后再试",
        "Too many failed logins; please try again later",
    ),
    "no_access": ("您的账号没有查看这个页面的权限", "Your account may not see this page"),
    "nav_board": ("看板", "Board"),
    "nav_alarms": ("告警记录", "Alarm history"),
    "nav_audit": ("操作记录", "Audit log"),
    "nav_tariff": ("收费标准", "Tariff"),
    "nav_cards": ("IC卡和包月", "Cards and plans"),
    "nav_refunds": ("退款", "Refunds"),
    "all_sheds": ("全部车棚", "All sheds"),
    "all_states": ("全部状态", "All states"),
    "filter": ("筛选", "Filter"),
    "online": ("在线", "Online"),
    "offline": ("离线", "Offline"),
    "live_stale": ("实时数据中断", "No live readings"),
    "power_total": ("总功率 {w}", "Total {w}"),
    "alarms": ("告警", "Alarms"),
    "open_alarms": ("待处理告警", "Open alarms"),
    "no_alarms": ("没有待处理的告警", "No open alarms"),
    "ack": ("确认", "Acknowledge"),
    "ack_note": ("处理说明", "Note"),
    "ack_pending": ("已发送到车棚，等待确认", "Sent to the shed, waiting for it"),
    "acked_by": ("{who} 已确认：{note}", "Acknowledged by {who}: {note}"),
    "cleared": ("已解除", "Cleared"),
    "active": ("持续中", "Active"),
    "bays": ("车位", "Bays"),
    "bay": ("{n}号车位", "Bay {n}"),
    "bay_free": ("空", "free"),
    "bay_taken": ("有车", "taken"),
    "bay_idle": ("占位未充电", "parked, not charging"),
    "socket": ("{port}号插座", "Socket {port}"),
    "state": ("状态", "State"),
    "since": ("自 {t}", "since {t}"),
    "power": ("功率", "Power"),
    "energy": ("本次电量", "Session energy"),
    "temp": ("温度", "Temperature"),
    "charging_time": ("充电时长", "Charging for"),
    "relay": ("继电器", "Relay"),
    "relay_on": ("通", "on"),
    "relay_off": ("断", "off"),
    "actions": ("操作", "Actions"),
    "stop": ("远程停止", "Stop remotely"),
    "stop_confirm": ("确定要停止这个插座的充电吗？", "Stop charging on this socket?"),
    "disable": ("停用", "Disable"),
    "disable_reason": ("停用原因（必填）", "Reason (required)"),
    "enable": ("恢复使用", "Enable"),
    "note": ("备注", "Note"),
    "back": ("返回看板", "Back to the board"),
    "when": ("时间", "When"),
    "who": ("操作人", "Who"),
    "what": ("操作", "What"),
    "target": ("对象", "Target"),
    "result": ("结果", "Result"),
    "no_entries": ("还没有记录", "Nothing yet"),
    "tariff_now": ("当前收费标准", "Current tariff"),
    "tariff_none": ("还没有设置，车棚使用默认价格", "None yet: sheds use their default"),
    "tariff_edit": ("新版本（JSON）", "New version (JSON)"),
    "tariff_hint": (
        "保存后生成新版本并发送到本小区所有车棚；只对新开始的充电生效。",
        "Saving makes a new version and sends it to every shed of the compound; "
        "it applies to sessions that start afterwards.",
    ),
    "save": ("保存", "Save"),
    "compound": ("小区", "Compound"),
    "card_uid": ("卡号", "Card number"),
    "balance": ("累计充值", "Topped up"),
    "plan_until": ("包月到期", "Plan until"),
    "blocked": ("已挂失", "Blocked"),
    "card_save": ("添加或充值", "Add or top up"),
    "top_up": ("充值金额（元）", "Top-up (yuan)"),
    "top_up_shed": ("充值到车棚", "Top up at shed"),
    "block": ("挂失", "Block"),
    "unblock": ("解除挂失", "Unblock"),
    "plan_add": ("开通包月", "Add a monthly plan"),
    "plan_days": ("天数", "Days"),
    "plan_price": ("价格（元）", "Price (yuan)"),
    "refunds_needed": ("需要处理的退款", "Refunds that need you"),
    "refund_manual": ("手动退款", "Manual refund"),
    "order_no": ("订单号", "Order no."),
    "amount_yuan": ("金额（元，空=全部）", "Amount (yuan, empty: all)"),
    "refund": ("退款", "Refund"),
    "done": ("已提交", "Done"),
    "live_note": ("页面实时更新，无需刷新", "Updates live; no need to reload"),
    "noscript": ("脚本未开启：请刷新页面查看最新状态。", "Scripts are off: reload for news."),
}

# Socket states (controller/core/fsm.py) as staff read them.
STATES: Final[dict[str, tuple[str, str]]] = {
    "idle": ("空闲", "Idle"),
    "authorized": ("等待插入", "Authorized"),
    "charging": ("充电中", "Charging"),
    "floating": ("已充满", "Full"),
    "finishing": ("正在结束", "Finishing"),
    "fault": ("故障", "Fault"),
    "offline": ("离线", "Offline"),
    "disabled": ("已停用", "Disabled"),
}

ALARM_KINDS: Final[dict[str, tuple[str, str]]] = {
    "smoke": ("烟雾报警", "Smoke"),
    "env_overtemp": ("环境高温", "Shed over-temperature"),
    "water": ("浸水", "Water"),
    "overpower": ("功率超限", "Over-power"),
    "overtemp": ("插座高温", "Socket over-temperature"),
    "relay_fault": ("继电器故障", "Relay fault"),
    "board_offline": ("主板离线", "Board offline"),
    "bay_idle": ("占位未充电", "Bay occupied, not charging"),
    "refund_failed": ("退款失败", "Refund failed"),
    "payment_conflict": ("支付冲突", "Payment conflict"),
    "shed_offline": ("车棚离线", "Shed offline"),
    "store_failed": ("车棚存储故障", "Shed storage failing"),
    "broker_unreachable": ("车棚控制器连不上消息服务器", "Shed controller cannot reach its broker"),
    # Charge-curve anomalies (controller/core/anomaly.py): a warning, the charge goes on.
    "anomaly_no_taper": ("充电器不降功率", "Charger never tapers"),
    "anomaly_unstable_power": ("充电功率异常波动", "Power jumps or oscillates"),
    "anomaly_energy_excess": ("用电量远超电池容量", "Far more energy than the pack size"),
    "anomaly_temp_rise": ("插座升温过快", "Socket heating fast"),
    "anomaly_no_load": ("充电器空载耗电", "Charger drawing power, no battery charging"),
}

# What the shed writes in an alarm's detail (controller/core/shed.py), as patterns,
# and how staff read it. An older shed's MQTT wording ("sent its last will") reads
# as the board going offline, whatever its transport.
_N = r"(-?\d+(?:\.\d+)?)"
ALARM_DETAILS: Final[list[tuple[re.Pattern[str], str, str]]] = [
    (re.compile(rf"^{_N} W above {_N} W$"), "功率 {0} W，超过上限 {1} W",
     "{0} W, above the {1} W limit"),
    (re.compile(rf"^socket at {_N} °C$"), "插座温度 {0} °C", "Socket at {0} °C"),
    (re.compile(rf"^{_N} W with relay off$"), "继电器已断开，仍有 {0} W",
     "{0} W with the relay off"),
    (re.compile(r"^board tripped on over-current$"), "主板过流保护已断电",
     "The board cut off on over-current"),
    (re.compile(r"^board tripped on over-temperature$"), "主板过温保护已断电",
     "The board cut off on over-temperature"),
    (re.compile(r"^board reported a relay fault$"), "主板报告继电器故障",
     "The board reported a relay fault"),
    (re.compile(r"^off not confirmed: timeout$"), "断电指令未确认（主板无应答）",
     "Switching off not confirmed (the board did not answer)"),
    (re.compile(r"^off not confirmed: (.+)$"), "断电指令未确认（{0}）",
     "Switching off not confirmed ({0})"),
    (re.compile(r"^board (\S+): board (?:sent its last will|went offline)$"), "主板 {0} 离线",
     "Board {0} went offline"),
    (re.compile(rf"^the controller has not reached its broker for {_N} s$"),
     "控制器已 {0} 秒连不上消息服务器（主板可能仍在工作）",
     "The controller has not reached its broker for {0} s (the boards may be fine)"),
    (re.compile(r"^\w+: .*database or disk is full.*$"), "存储空间已满，写入失败，正在重试",
     "The shed's disk is full: writes fail and are retried"),
    (re.compile(r"^(\w+Error): (.*)$"), "写入失败，正在重试（{0}）",
     "Writes fail and are retried ({0})"),
    (re.compile(rf"^board (\S+): silent for {_N} s$"), "主板 {0} 已 {1} 秒无响应",
     "Board {0} silent for {1} s"),
    (re.compile(r"^smoke alarm from (\S+) \((.*)\)$"), "烟雾传感器 {0} 报警（{1}）",
     "Smoke sensor {0} alarmed ({1})"),
    (re.compile(r"^temp alarm from (\S+) \((.*)\)$"), "温度传感器 {0} 报警（{1} °C）",
     "Temperature sensor {0} alarmed ({1} °C)"),
    (re.compile(r"^water alarm from (\S+) \((.*)\)$"), "浸水传感器 {0} 报警",
     "Water sensor {0} alarmed"),
    (re.compile(rf"^bay {_N} occupied {_N} min without charging$"),
     "{0}号车位已占用 {1} 分钟，没有充电", "Bay {0} occupied {1} min without charging"),
    (re.compile(rf"^power flat at {_N} W for {_N} min without tapering$"),
     "功率保持在 {0} W 已 {1} 分钟，没有下降", "Power flat at {0} W for {1} min, never tapering"),
    (re.compile(rf"^{_N} power jumps of {_N} W or more in {_N} min$"),
     "{2} 分钟内功率跳变 {0} 次（每次 {1} W 以上）",
     "{0} power jumps of {1} W or more in {2} min"),
    (re.compile(rf"^{_N} Wh taken, a {_N} W charger suggests a {_N} Wh pack$"),
     "已用电 {0} Wh，{1} W 的充电器对应的电池约 {2} Wh",
     "{0} Wh taken; a {1} W charger suggests a {2} Wh pack"),
    (re.compile(rf"^socket rose {_N} °C to {_N} °C in {_N} min$"),
     "插座 {2} 分钟内升温 {0} °C，达到 {1} °C", "Socket rose {0} °C to {1} °C in {2} min"),
    (re.compile(rf"^drawing {_N} W for {_N} min without charging a battery$"),
     "耗电 {0} W 已 {1} 分钟，没有给电池充电（可能未连接电池）",
     "Drawing {0} W for {1} min without charging a battery (none connected?)"),
]

_TARGETS: Final[list[tuple[re.Pattern[str], str, str]]] = [
    (re.compile(r"^port (\d+)$"), "{0}号插座", "socket {0}"),
    (re.compile(r"^shed$"), "整个车棚", "the whole shed"),
    (re.compile(r"^alarm \S+ \((\w+)\)$"), "告警：{kind}", "alarm: {kind}"),
    (re.compile(r"^card (\S+)$"), "卡 {0}", "card {0}"),
    (re.compile(r"^order (\S+)$"), "订单 {0}", "order {0}"),
    (re.compile(r"^tariff (\S+) v(\d+)$"), "价格 {0} 第{1}版", "tariff {0} version {1}"),
]


def _match(table: list[tuple[re.Pattern[str], str, str]], text: str, lang: Lang) -> str | None:
    for pattern, zh, en in table:
        m = pattern.match(text)
        if m is not None:
            groups = m.groups()
            kind = label(ALARM_KINDS, groups[0], lang) if groups else ""
            return (en if lang == "en" else zh).format(*groups, kind=kind)
    return None


def alarm_detail(detail: str | None, lang: Lang) -> str:
    """An alarm's detail as staff read it; an unknown one as it came."""
    text = (detail or "").strip()
    return _match(ALARM_DETAILS, text, lang) or text


def audit_target(target: str | None, lang: Lang) -> str:
    """What an audited action was about (`port 3` -> 3号插座); unknown as it came."""
    text = (target or "").strip()
    return _match(_TARGETS, text, lang) or text

RESULTS: Final[dict[str, tuple[str, str]]] = {
    "ok": ("成功", "done"),
    "pending": ("等待车棚", "waiting for the shed"),
    "failed": ("失败", "failed"),
}

ACTIONS: Final[dict[str, tuple[str, str]]] = {
    "stop": ("远程停止", "remote stop"),
    "disable": ("停用", "disable"),
    "enable": ("恢复", "enable"),
    "ack_alarm": ("确认告警", "acknowledge alarm"),
    "tariff": ("修改价格", "tariff"),
    "card_add": ("新卡", "new card"),
    "card_update": ("修改卡", "card change"),
    "card_top_up": ("充值", "top-up"),
    "card_plan": ("包月", "monthly plan"),
    "refund": ("手动退款", "manual refund"),
    "refund_retry": ("重新退款", "refund again"),
    "user_add": ("新用户", "new user"),
    "user_change": ("修改用户", "user change"),
}


def t(lang: Lang, key: str, **values: object) -> str:
    zh, en = TEXT[key]
    text = en if lang == "en" else zh
    return text.format(**values) if values else text


def label(table: dict[str, tuple[str, str]], code: str | None, lang: Lang) -> str:
    """A code's words; an unknown code as it came."""
    if code is None:
        return ""
    pair = table.get(code)
    if pair is None:
        return code
    return pair[1] if lang == "en" else pair[0]


# What an action came to (`?notice=` after a form), by code.
NOTICES: Final[dict[str, tuple[str, str]]] = {
    "sent": ("已发送到车棚，结果见操作记录", "Sent to the shed; the result shows in the log"),
    "done": ("已完成", "Done"),
    "reason_needed": ("请填写停用原因", "Please give a reason"),
    "note_needed": ("请填写处理说明", "Please write a note"),
    "already_acked": ("这条告警已经确认过了", "This alarm was acknowledged already"),
    "ack_pending": ("正在等待车棚确认", "Waiting for the shed to confirm"),
    "unknown_alarm": ("没有找到这条告警", "No such alarm"),
    "unknown_socket": ("没有找到这个插座", "No such socket"),
    "unknown_shed": ("没有找到这个车棚", "No such shed"),
    "not_your_compound": ("无权操作其他小区", "Not allowed in another compound"),
    "forbidden": ("无权操作", "Not allowed"),
    "bad_json": ("不是有效的JSON", "Not valid JSON"),
    "top_up_needs_shed": ("充值需要选择车棚", "A top-up needs a shed"),
    "not_refundable": ("这个订单不能退款", "This order cannot be refunded"),
    "refund_exists": ("这个订单已经退过款", "This order has a refund already"),
    "refund_too_large": ("退款金额超过支付金额", "More than was paid"),
    "unknown_order": ("没有找到这个订单", "No such order"),
    "bad_amount": ("金额不对", "Bad amount"),
}
