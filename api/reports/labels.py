"""The words of the reports, Chinese first and English second (page, CSV, XLSX)."""

from __future__ import annotations

from typing import Final, Literal

Lang = Literal["zh", "en"]

TEXT: Final[dict[str, tuple[str, str]]] = {
    # tables
    "summary": ("汇总", "Summary"),
    "days": ("每日", "By day"),
    "sheds": ("按车棚", "By shed"),
    "sockets": ("按插座", "By socket"),
    "end_reasons": ("结束原因", "End reasons"),
    "hours": ("按小时", "By hour of day"),
    "heatmap": ("高峰时段（开始充电次数）", "Peak hours (sessions started)"),
    "capacity": ("扩容测算", "Capacity planning"),
    "extra_sockets": ("增加插座数", "More sockets"),
    "turned_away": ("无空闲插座（人次）", "Turned away"),
    "served": ("可服务（人次）", "Would be served"),
    "served_pct": ("可服务比例（%）", "Served (%)"),
    "chart_capacity": (
        "{shed}：增加 N 个插座可服务的无空闲插座人次（%）",
        "{shed}: turned-away residents served with N more sockets (%)",
    ),
    "capacity_note": (
        "按记录的到达时间重放（本期）：原有充电不变，被拒的居民使用新增插座，先到先得。",
        "Replays the period's recorded arrivals: recorded sessions keep their "
        "sockets, turned-away residents take the new ones, first come first served.",
    ),
    # columns
    "metric": ("指标", "Metric"),
    "value": ("数值", "Value"),
    "date": ("日期", "Date"),
    "shed": ("车棚", "Shed"),
    "shed_name": ("车棚名称", "Shed name"),
    "port": ("插座", "Socket"),
    "socket_count": ("插座数", "Sockets"),
    "sessions": ("充电次数", "Sessions"),
    "energy_kwh": ("电量（千瓦时）", "Energy (kWh)"),
    "revenue_yuan": ("收入（元）", "Revenue (yuan)"),
    "refunds_yuan": ("退款（元）", "Refunds (yuan)"),
    "avg_session_min": ("平均时长（分钟）", "Average session (min)"),
    "utilisation_pct": ("利用率（%）", "Utilisation (%)"),
    "incidents": ("安全事件", "Safety incidents"),
    "unserved": ("无空闲插座（人次）", "Unserved demand"),
    "end_reason": ("结束原因", "End reason"),
    "share_pct": ("占比（%）", "Share (%)"),
    "hour": ("时段", "Hour"),
    "weekday": ("星期", "Weekday"),
    # the page
    "reports_title": ("社区充电报表", "Community charging reports"),
    "choose_compound": ("选择小区", "Choose a compound"),
    "no_compounds": ("您没有可查看的小区报表。", "You have no compound reports to read."),
    "period_day": ("日报", "Day"),
    "period_week": ("周报", "Week"),
    "period_month": ("月报", "Month"),
    "period_year": ("年报", "Year"),
    "show": ("查看", "Show"),
    "previous": ("上一期", "Previous"),
    "next": ("下一期", "Next"),
    "download_xlsx": ("下载 Excel（全部表格）", "Download XLSX (every table)"),
    "download_csv": ("下载 CSV", "Download CSV"),
    "download_all_csv": ("下载 CSV（全部表格）", "Download CSV (every table)"),
    "chart_sessions": ("每日充电次数", "Sessions per day"),
    "chart_energy": ("每日电量（千瓦时）", "Energy per day (kWh)"),
    "chart_utilisation": ("各时段插座利用率（%）", "Socket utilisation by hour (%)"),
    "chart_heatmap": (
        "高峰时段：开始充电次数（星期 × 小时）",
        "Peak hours: sessions started (weekday x hour)",
    ),
    "chart_ends": ("结束原因（次）", "End reasons (sessions)"),
    "chart_unserved": ("各时段无空闲插座人次", "Unserved demand by hour"),
    "forbidden": ("您无权查看这个小区的报表", "You may not read this compound's reports"),
    "not_found": ("没有找到这个小区", "No such compound"),
    "bad_period": ("日期格式不对", "That period cannot be read"),
    "unavailable": ("服务暂时不可用，请稍后再试", "The service is unavailable; try again later"),
    "switch_to": ("English", "中文"),
    "sockets_in_report": ("共 {n} 个插座", "{n} sockets"),
    "period_range": ("{start} 至 {end}（北京时间）", "{start} to {end} (China time)"),
    # end groups
    "end_full": ("充满自停", "Full"),
    "end_unplugged": ("拔下充电器", "Unplugged"),
    "end_money": ("金额用完", "Money used up"),
    "end_safety": ("安全保护", "Safety trip"),
    "end_stopped": ("居民或物业停止", "Stopped by resident or staff"),
    "end_other": ("其他", "Other"),
}

WEEKDAYS: Final[tuple[tuple[str, str], ...]] = (
    ("周一", "Mon"),
    ("周二", "Tue"),
    ("周三", "Wed"),
    ("周四", "Thu"),
    ("周五", "Fri"),
    ("周六", "Sat"),
    ("周日", "Sun"),
)


def label(key: str, lang: Lang) -> str:
    pair = TEXT.get(key)
    if pair is None:
        return key
    return pair[1] if lang == "en" else pair[0]


def weekday(index: int, lang: Lang) -> str:
    zh, en = WEEKDAYS[index]
    return en if lang == "en" else zh
