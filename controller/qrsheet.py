"""The printable QR sticker sheet of a shed: one sticker per socket, one for the entrance.

`write_qr_sheet` writes an A4 PDF, 3 x 4 stickers a page with dashed cut
lines. A socket's sticker shows its number large, the shed's name, the QR
code of `{base_url}/s/{shed_id}/{port}?src=qr` (the socket page, docs/resident-pages.md)
and the posted price, so the price is on the socket before anyone scans
(complaint 7). The first sticker is the shed's: `{base_url}/s/{shed_id}`,
free sockets and bays right now.

QR codes come from the `qrcode` library (error correction M, the 4-module
quiet zone kept) and are drawn as vector squares, sharp at any print
resolution. The PDF is made with reportlab. Chinese needs a font with CJK
glyphs: a TrueType one is embedded (subset), WenQuanYi Micro Hei
(`apt-get install fonts-wqy-microhei`) or Zen Hei by default, or `font_path`.
Without one the sheet falls back to reportlab's built-in STSong-Light, which
is not embedded: Acrobat and WPS show it, but viewers without a Chinese font
of their own (poppler on a bare Linux box) show boxes, so a warning is logged
and `QrSheet.font_embedded` is False.

The output is deterministic (same input, same bytes) and written atomically.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

import qrcode
from qrcode.constants import ERROR_CORRECT_M
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

log = logging.getLogger(__name__)

COLUMNS: Final = 3
ROWS: Final = 4
PER_PAGE: Final = COLUMNS * ROWS
PAGE_W, PAGE_H = A4
MARGIN: Final = 10 * mm
CELL_W: Final = (PAGE_W - 2 * MARGIN) / COLUMNS  # 63.3 mm
CELL_H: Final = (PAGE_H - 2 * MARGIN) / ROWS  # 69.2 mm
PAD: Final = 2.5 * mm
QR_SIZE: Final = 36 * mm  # quiet zone included
QR_BORDER: Final = 4  # modules: the quiet zone the standard asks for
HEADER_H: Final = 20.5 * mm  # above the QR code: number (or title) and shed name
MAX_PORT: Final = 9999
SHED_ID: Final = re.compile(r"^[a-z0-9-]{1,32}$")

CJK_FONTS: Final[tuple[Path, ...]] = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),  # fonts-wqy-microhei
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),  # fonts-wqy-zenhei
)
BUILTIN_CJK: Final = "STSong-Light"  # reportlab's CID font: no file, not embedded

INK: Final = (0.07, 0.07, 0.07)
MUTED: Final = (0.3, 0.3, 0.3)
PRICE_INK: Final = (0.49, 0.18, 0.07)
CUT: Final = (0.7, 0.7, 0.7)


class QrSheetError(ValueError):
    """Input the sheet cannot be made from. `code` is stable (CLI messages, tests)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Sticker:
    kind: Literal["shed", "socket"]
    port: int | None
    url: str
    page: int  # 1-based
    slot: int  # 0..11 on its page, row by row from the top left
    qr_box: tuple[float, float, float]  # x, y (bottom left), size: PDF points, quiet zone in


@dataclass(frozen=True, slots=True)
class QrSheet:
    path: Path
    pages: int
    stickers: tuple[Sticker, ...]
    font: str
    font_embedded: bool


def socket_url(base_url: str, shed_id: str, port: int) -> str:
    """`?src=qr` tells a scan from a page reload: a scan that finds the shed
    full counts as unserved demand (docs/reports.md)."""
    return f"{base_url}/s/{shed_id}/{port}?src=qr"


def shed_url(base_url: str, shed_id: str) -> str:
    return f"{base_url}/s/{shed_id}"


def qr_matrix(url: str) -> list[list[bool]]:
    """The QR code of `url` as rows of dark (True) modules, the quiet zone included."""
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=QR_BORDER)
    code.add_data(url)
    code.make(fit=True)
    return [[bool(cell) for cell in row] for row in code.get_matrix()]


def write_qr_sheet(
    shed_id: str,
    shed_name: str,
    ports: Iterable[int],
    price_zh: str,
    base_url: str,
    out_path: str | os.PathLike[str],
    *,
    font_path: str | os.PathLike[str] | None = None,
    allow_loopback: bool = False,
) -> QrSheet:
    """Write the sticker sheet of one shed to `out_path` (PDF, A4) and describe it.

    `ports` in any order (printed in ascending order), `price_zh` the posted
    price as residents read it (`describe(tariff)["summary_zh"]`, e.g.
    "1元/4小时"), `base_url` where phones reach the resident pages
    (`https://charge.example.com`, no trailing slash needed); a loopback address
    (127.0.0.1, localhost), which no phone reaches, only with `allow_loopback`.
    Raises `QrSheetError` for unusable input, `OSError` if the file cannot be written.
    """
    base = _check_base_url(base_url, allow_loopback=allow_loopback)
    if not isinstance(shed_id, str) or not SHED_ID.match(shed_id):
        raise QrSheetError("bad_shed_id", f"a shed id is [a-z0-9-]{{1,32}}, not {shed_id!r}")
    port_list = _check_ports(ports)
    name = " ".join(str(shed_name).split()) or shed_id
    price = " ".join(str(price_zh).split())
    font, embedded = _font(font_path)

    stickers = [Sticker("shed", None, shed_url(base, shed_id), 1, 0, qr_box(0))]
    for i, port in enumerate(port_list, start=1):
        page, slot = divmod(i, PER_PAGE)
        url = socket_url(base, shed_id, port)
        stickers.append(Sticker("socket", port, url, page + 1, slot, qr_box(slot)))
    pages = stickers[-1].page

    out = Path(out_path)
    # Beside the target (same file system, so the rename is atomic), with the usual mode.
    tmp_name = str(out.with_name(f".{out.name}.{os.getpid()}.tmp"))
    try:
        canvas = Canvas(tmp_name, pagesize=A4, invariant=True, pageCompression=True)
        canvas.setTitle(f"{name} 充电插座二维码贴纸")
        canvas.setAuthor("ebshed")
        canvas.setSubject(f"{shed_id}: {len(port_list)} sockets, {base}")
        for page in range(1, pages + 1):
            for sticker in stickers:
                if sticker.page == page:
                    _draw_sticker(canvas, sticker, name, price, font)
            canvas.showPage()
        canvas.save()
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return QrSheet(out, pages, tuple(stickers), font, embedded)


# --------------------------------------------------------------------------- input


def _check_base_url(base_url: str, *, allow_loopback: bool = False) -> str:
    parts = urlsplit(str(base_url).strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise QrSheetError("bad_base_url", f"need an http(s) address, not {base_url!r}")
    if parts.query or parts.fragment:
        raise QrSheetError("bad_base_url", "the base URL takes no query or fragment")
    if not allow_loopback and is_loopback_host(parts.hostname or ""):
        raise QrSheetError(
            "loopback_base_url",
            f"{base_url} is this computer's own address: no phone can open it. Give the "
            "address phones reach the resident pages at (or allow a loopback URL explicitly)",
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8, ::1 or the unspecified address (0.0.0.0, ::)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _check_ports(ports: Iterable[int]) -> list[int]:
    seen: set[int] = set()
    for port in ports:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port <= MAX_PORT:
            raise QrSheetError("bad_port", f"a socket number is 1..{MAX_PORT}, not {port!r}")
        if port in seen:
            raise QrSheetError("duplicate_port", f"socket {port} is listed twice")
        seen.add(port)
    if not seen:
        raise QrSheetError("no_ports", "a sheet needs at least one socket")
    return sorted(seen)


def _font(font_path: str | os.PathLike[str] | None) -> tuple[str, bool]:
    """(registered font name, embedded?): the given or a known TrueType CJK font, else CID."""
    candidates = [Path(font_path)] if font_path is not None else list(CJK_FONTS)
    for path in candidates:
        if path.is_file():
            name = "EbsCJK-" + hashlib.sha256(str(path).encode()).hexdigest()[:8]
            if name not in pdfmetrics.getRegisteredFontNames():
                pdfmetrics.registerFont(TTFont(name, str(path), subfontIndex=0))
            return name, True
    if font_path is not None:
        raise QrSheetError("no_font", f"font file not found: {font_path}")
    log.warning(
        "no TrueType CJK font found (apt-get install fonts-wqy-microhei); using %s, "
        "which is not embedded: viewers without a Chinese font show boxes",
        BUILTIN_CJK,
    )
    if BUILTIN_CJK not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(BUILTIN_CJK))
    return BUILTIN_CJK, False


# --------------------------------------------------------------------------- drawing


def _cell(slot: int) -> tuple[float, float]:
    """(left, top) of a sticker's cell."""
    col, row = slot % COLUMNS, slot // COLUMNS
    return MARGIN + col * CELL_W, PAGE_H - MARGIN - row * CELL_H


def qr_box(slot: int) -> tuple[float, float, float]:
    """Where the QR code of the sticker in `slot` goes: the same height on every sticker."""
    x0, top = _cell(slot)
    return x0 + (CELL_W - QR_SIZE) / 2, top - HEADER_H - QR_SIZE, QR_SIZE


def _draw_sticker(canvas: Canvas, sticker: Sticker, shed_name: str, price: str, font: str) -> None:
    x0, top = _cell(sticker.slot)
    cx = x0 + CELL_W / 2
    width = CELL_W - 2 * PAD

    canvas.saveState()
    canvas.setStrokeColorRGB(*CUT)
    canvas.setLineWidth(0.5)
    canvas.setDash(3, 3)
    canvas.rect(x0, top - CELL_H, CELL_W, CELL_H, stroke=1, fill=0)
    canvas.restoreState()

    y = top - PAD
    if sticker.kind == "socket":
        y = _headline(canvas, font, cx, y, str(sticker.port), "号插座", width)
        y = _centered(canvas, font, cx, y - 1, shed_name, 10, width, min_size=6.5)
        scan = f"扫码充电  Scan to charge · Socket {sticker.port}"
    else:
        y = _centered(canvas, font, cx, y - 4, "车棚空位", 22, width, bold=True)
        y = _centered(canvas, font, cx, y - 3, shed_name, 10, width, min_size=6.5)
        scan = "扫码查看空闲插座和车位  Free sockets & bays"

    qx, qy, size = sticker.qr_box  # the header above fits in HEADER_H (fonts shrink to fit)
    _draw_qr(canvas, qr_matrix(sticker.url), qx, qy, size)
    y = _centered(canvas, font, cx, qy + 1, scan, 7, width, color=MUTED)
    if price:
        _wrapped(canvas, font, cx, y - 1.5, price, 11, width, max_lines=2, color=PRICE_INK)


def _draw_qr(
    canvas: Canvas, matrix: Sequence[Sequence[bool]], x: float, y: float, size: float
) -> None:
    """Dark modules as one filled path of row runs (no seams between squares)."""
    n = len(matrix)
    module = size / n
    path = canvas.beginPath()
    for r, row in enumerate(matrix):
        c = 0
        while c < n:
            if not row[c]:
                c += 1
                continue
            start = c
            while c < n and row[c]:
                c += 1
            path.rect(x + start * module, y + size - (r + 1) * module, (c - start) * module, module)
    canvas.saveState()
    canvas.setFillColorRGB(0, 0, 0)
    canvas.drawPath(path, stroke=0, fill=1)
    canvas.restoreState()


def _text(
    canvas: Canvas,
    font: str,
    x: float,
    baseline: float,
    text: str,
    size: float,
    *,
    bold: bool = False,
    color: tuple[float, float, float] = INK,
) -> None:
    canvas.saveState()
    obj = canvas.beginText(x, baseline)
    obj.setFont(font, size)
    obj.setFillColorRGB(*color)
    if bold:  # the CJK fonts have no bold face: fill and stroke the outline
        obj.setTextRenderMode(2)
        canvas.setStrokeColorRGB(*color)
        canvas.setLineWidth(size / 30)
    obj.textOut(text)
    canvas.drawText(obj)
    canvas.restoreState()


def _fit(text: str, font: str, size: float, width: float, min_size: float) -> tuple[str, float]:
    """Shrink to fit `width`, down to `min_size`; then cut with an ellipsis."""
    while size > min_size and pdfmetrics.stringWidth(text, font, size) > width:
        size = max(min_size, size - 0.5)
    while len(text) > 1 and pdfmetrics.stringWidth(text, font, size) > width:
        text = text[:-2] + "…"
    return text, size


def _centered(
    canvas: Canvas,
    font: str,
    cx: float,
    top: float,
    text: str,
    size: float,
    width: float,
    *,
    min_size: float | None = None,
    bold: bool = False,
    color: tuple[float, float, float] = INK,
) -> float:
    """One centred line whose top is at `top`; returns the y below it."""
    text, size = _fit(text, font, size, width, min_size or size * 0.7)
    baseline = top - size * 0.88
    w = pdfmetrics.stringWidth(text, font, size)
    _text(canvas, font, cx - w / 2, baseline, text, size, bold=bold, color=color)
    return baseline - size * 0.25


def _headline(
    canvas: Canvas, font: str, cx: float, top: float, number: str, word: str, width: float
) -> float:
    """The socket number, large, followed by "号插座" on the same baseline."""
    big, small = 40.0, 15.0
    while big > 20 and (
        pdfmetrics.stringWidth(number, font, big) + pdfmetrics.stringWidth(word, font, small)
        > width
    ):
        big -= 2
    w_num = pdfmetrics.stringWidth(number, font, big)
    w_word = pdfmetrics.stringWidth(word, font, small)
    x = cx - (w_num + w_word) / 2
    baseline = top - big * 0.82
    _text(canvas, font, x, baseline, number, big, bold=True)
    _text(canvas, font, x + w_num + 1, baseline, word, small, bold=True)
    return baseline - big * 0.12


_BREAK_AFTER: Final = frozenset(" ，；、。,;/")


def _wrap(text: str, font: str, size: float, width: float) -> list[str]:
    """Greedy lines: break after a space or Chinese punctuation if one is near, else anywhere."""
    lines: list[str] = []
    line = ""
    for char in text:
        if pdfmetrics.stringWidth(line + char, font, size) <= width or not line:
            line += char
            continue
        cut = max((i + 1 for i, ch in enumerate(line) if ch in _BREAK_AFTER), default=0)
        if cut > len(line) // 2:
            lines.append(line[:cut].rstrip())
            line = line[cut:].lstrip() + char
        else:
            lines.append(line)
            line = char
    if line.strip():
        lines.append(line.strip())
    return lines


def _wrapped(
    canvas: Canvas,
    font: str,
    cx: float,
    top: float,
    text: str,
    size: float,
    width: float,
    *,
    max_lines: int,
    color: tuple[float, float, float],
) -> float:
    """Centred lines, the font shrunk until they fit in `max_lines` (cut at 6 pt)."""
    lines = _wrap(text, font, size, width)
    while len(lines) > max_lines and size > 6:
        size -= 0.5
        lines = _wrap(text, font, size, width)
    if len(lines) > max_lines:
        lines = [
            *lines[: max_lines - 1],
            _fit(" ".join(lines[max_lines - 1 :]), font, size, width, size)[0],
        ]
    y = top
    for line in lines:
        y = _centered(canvas, font, cx, y, line, size, width, min_size=size, color=color)
    return y
