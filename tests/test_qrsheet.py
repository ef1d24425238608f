"""The QR sticker sheet: a valid A4 PDF, the right stickers on the right pages, and
QR codes that read back as the right URLs.

Two round trips: the squares drawn in the PDF are read back out of its page
streams and compared with the QR matrix of each sticker's URL (no tools
needed), and the pages are rendered with pdftoppm (poppler-utils) and decoded
with zbarimg (zbar-tools), as a phone would. The tools and a CJK TrueType font
(fonts-wqy-microhei) are skipped for here when missing and required in CI.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest
from PIL import Image

from controller import qrsheet
from controller.qrsheet import QrSheetError, qr_matrix, write_qr_sheet

BASE = "https://charge.example.com"
SHED = "tty-east-1"
NAME = "天通苑东区1号车棚"
PRICE = "1元/4小时"


def _need(what: str, ok: bool) -> None:
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs {what}")
    pytest.skip(f"{what} is not installed")


def _need_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    _need(f"{', '.join(missing)} (apt-get install poppler-utils zbar-tools)", not missing)


def _need_cjk_font() -> None:
    _need("a CJK TrueType font (apt-get install fonts-wqy-microhei)",
          any(p.is_file() for p in qrsheet.CJK_FONTS))  # fmt: skip


def page_streams(pdf: bytes) -> list[bytes]:
    """The decoded content stream of each page, in order (fonts and other streams left out)."""
    pages = []
    for m in re.finditer(rb"<<([^<>]*?)>>\s*stream\r?\n", pdf):
        head = m.group(1)
        length = re.search(rb"/Length (\d+)", head)
        assert length is not None
        data = pdf[m.end() : m.end() + int(length.group(1))]
        if b"/ASCII85Decode" in head:
            data = base64.a85decode(data.strip(), adobe=True)
        if b"/FlateDecode" in head:
            data = zlib.decompress(data)
        if b"/Length1" not in head and b" re" in data:  # /Length1: an embedded font file
            pages.append(data)
    return pages


def drawn_matrix(stream: bytes, box: tuple[float, float, float], n: int) -> list[list[bool]]:
    """The filled squares inside `box` of a page stream, as an n x n module grid."""
    x0, y0, size = box
    module = size / n
    grid = [[False] * n for _ in range(n)]
    number = rb"(-?[\d.]+)"
    for m in re.finditer(rb" ".join([number] * 4) + rb" re", stream):
        x, y, w, h = (float(v) for v in m.groups())
        inside = x0 - 0.01 <= x and x + w <= x0 + size + 0.01
        if not inside or not (y0 - 0.01 <= y and y + h <= y0 + size + 0.01):
            continue  # the cut lines, not a module
        row = round((y0 + size - y - h) / module)
        col = round((x - x0) / module)
        assert abs(h - module) < 0.01
        for c in range(col, col + round(w / module)):
            grid[row][c] = True
    return grid


@pytest.fixture
def sheet(tmp_path: Path) -> qrsheet.QrSheet:
    return write_qr_sheet(SHED, NAME, range(24, 0, -1), PRICE, BASE + "/", tmp_path / "s.pdf")


def test_a_valid_a4_pdf_with_one_sticker_per_socket_and_one_for_the_shed(
    sheet: qrsheet.QrSheet,
) -> None:
    pdf = sheet.path.read_bytes()
    assert pdf.startswith(b"%PDF-1.") and pdf.rstrip().endswith(b"%%EOF")
    assert len(re.findall(rb"/Type /Page\b", pdf)) == 3 == sheet.pages  # 25 stickers, 12 a page
    assert re.search(rb"/MediaBox \[ 0 0 595.2756 841.8898 \]", pdf)  # A4
    assert len(sheet.stickers) == 25
    shed, *sockets = sheet.stickers
    assert (shed.kind, shed.url, shed.page, shed.slot) == ("shed", f"{BASE}/s/{SHED}", 1, 0)
    assert [s.port for s in sockets] == list(range(1, 25))  # in order, whatever was given
    assert [s.url for s in sockets] == [f"{BASE}/s/{SHED}/{p}?src=qr" for p in range(1, 25)]
    assert [(s.page, s.slot) for s in sheet.stickers] == [(i // 12 + 1, i % 12) for i in range(25)]


@pytest.mark.parametrize(("ports", "pages"), [(1, 1), (11, 1), (12, 2), (23, 2), (24, 3)])
def test_pages_hold_twelve_stickers(tmp_path: Path, ports: int, pages: int) -> None:
    sheet = write_qr_sheet(SHED, NAME, range(1, ports + 1), PRICE, BASE, tmp_path / "s.pdf")
    assert sheet.pages == pages
    assert len(re.findall(rb"/Type /Page\b", sheet.path.read_bytes())) == pages


def test_the_drawn_squares_are_the_qr_code_of_each_url(sheet: qrsheet.QrSheet) -> None:
    streams = page_streams(sheet.path.read_bytes())
    assert len(streams) == sheet.pages
    for sticker in sheet.stickers:
        expected = qr_matrix(sticker.url)
        drawn = drawn_matrix(streams[sticker.page - 1], sticker.qr_box, len(expected))
        assert drawn == expected, sticker
    # and the matrix is a proper QR code: finder patterns in three corners, quiet zone around
    matrix = qr_matrix(sheet.stickers[1].url)
    n, q = len(matrix), qrsheet.QR_BORDER
    assert (n - 2 * q - 17) % 4 == 0  # 21, 25, 29, ... modules: version 1, 2, 3, ...
    assert not any(matrix[0]) and not any(row[0] for row in matrix)
    for top, left in ((q, q), (q, n - q - 7), (n - q - 7, q)):
        finder = [row[left : left + 7] for row in matrix[top : top + 7]]
        assert finder[0] == [True] * 7 and finder[3] == [True, False, True, True, True, False, True]


def test_the_qr_codes_decode_to_the_urls(sheet: qrsheet.QrSheet, tmp_path: Path) -> None:
    """Each sticker's code, cut from the printed page (150 dpi), reads as its own URL.

    (One crop per sticker: zbar scanning a whole page of codes side by side may miss one.)
    """
    _need_tools("pdftoppm", "zbarimg")
    dpi = 150
    subprocess.run(
        ["pdftoppm", "-r", str(dpi), "-png", str(sheet.path), str(tmp_path / "page")],
        check=True,
        timeout=60,
    )
    scale = dpi / 72
    for sticker in sheet.stickers:
        with Image.open(tmp_path / f"page-{sticker.page}.png") as page:
            x, y, size = sticker.qr_box
            top = page.height - (y + size) * scale  # PDF y grows upwards, pixels downwards
            left, right = round(x * scale), round((x + size) * scale)
            crop = tmp_path / f"qr-{sticker.page}-{sticker.slot}.png"
            page.crop((left, round(top), right, round(top + size * scale))).save(crop)
        read = subprocess.run(
            ["zbarimg", "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", str(crop)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert read.stdout.split() == [sticker.url], sticker


def test_the_chinese_text_is_embedded_and_readable(sheet: qrsheet.QrSheet) -> None:
    _need_cjk_font()
    assert sheet.font_embedded
    pdf = sheet.path.read_bytes()
    assert b"/FontFile2" in pdf  # the TrueType subset is in the file
    _need_tools("pdftotext", "pdffonts")
    text = subprocess.run(
        ["pdftotext", "-layout", str(sheet.path), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert NAME in text and "车棚空位" in text
    assert text.count("号插座") == 24 and text.count(NAME) == 25 and text.count(PRICE) == 25
    assert "Scan to charge · Socket 24" in text
    fonts = subprocess.run(
        ["pdffonts", str(sheet.path)], capture_output=True, text=True, check=True
    ).stdout
    cjk = [line for line in fonts.splitlines() if "WenQuanYi" in line or "ZenHei" in line]
    assert cjk and all(" yes yes yes " in line for line in cjk)  # embedded, subset, unicode


def test_long_names_and_prices_fit(tmp_path: Path) -> None:
    _need_tools("pdftotext")
    price = "0-200W 1元/4小时，200-400W 1元/3小时，400-1100W 1元/2小时，起步费 0.5元，每日封顶 5元"
    sheet = write_qr_sheet(SHED, NAME + "（北门外自行车棚旁）" * 3, [1, 200, 9999], price, BASE,
                           tmp_path / "s.pdf")  # fmt: skip
    text = subprocess.run(
        ["pdftotext", str(sheet.path), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "…" in text  # the name was cut to fit, not drawn past the sticker
    assert "每日封顶 5元" in text  # the price wrapped onto two lines instead
    assert "9999" in text


def test_same_input_same_bytes_and_an_ordinary_file(tmp_path: Path) -> None:
    a = write_qr_sheet(SHED, NAME, [1, 2], PRICE, BASE, tmp_path / "a.pdf")
    b = write_qr_sheet(SHED, NAME, [2, 1], PRICE, BASE, tmp_path / "b.pdf")
    assert a.path.read_bytes() == b.path.read_bytes()
    umask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(umask)
    assert a.path.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdf", "b.pdf"]  # no temp files


def test_a_write_that_fails_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_qr_sheet(SHED, NAME, [1], PRICE, BASE, tmp_path / "missing" / "s.pdf")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({"shed_id": "Bad Id"}, "bad_shed_id"),
        ({"ports": []}, "no_ports"),
        ({"ports": [1, 1]}, "duplicate_port"),
        ({"ports": [0]}, "bad_port"),
        ({"ports": [True]}, "bad_port"),
        ({"ports": [10_000]}, "bad_port"),
        ({"base_url": "charge.example.com"}, "bad_base_url"),
        ({"base_url": "ftp://charge.example.com"}, "bad_base_url"),
        ({"base_url": "https://charge.example.com/?a=1"}, "bad_base_url"),
        ({"base_url": "http://127.0.0.1:8000"}, "loopback_base_url"),
        ({"base_url": "http://localhost:8000"}, "loopback_base_url"),
        ({"base_url": "http://[::1]:8000"}, "loopback_base_url"),
        ({"base_url": "http://0.0.0.0"}, "loopback_base_url"),
        ({"font_path": "/nonexistent/font.ttf"}, "no_font"),
    ],
)
def test_unusable_input_is_refused_with_a_code(
    tmp_path: Path, args: dict[str, object], code: str
) -> None:
    kwargs: dict[str, object] = {
        "shed_id": SHED,
        "shed_name": NAME,
        "ports": [1, 2],
        "price_zh": PRICE,
        "base_url": BASE,
        "out_path": tmp_path / "s.pdf",
    } | args
    with pytest.raises(QrSheetError) as err:
        write_qr_sheet(**kwargs)  # type: ignore[arg-type]
    assert err.value.code == code
    assert not (tmp_path / "s.pdf").exists()


def test_base_url_may_have_a_path(tmp_path: Path) -> None:
    sheet = write_qr_sheet(SHED, NAME, [3], PRICE, "https://x.example/charge/", tmp_path / "s.pdf")
    assert sheet.stickers[1].url == "https://x.example/charge/s/tty-east-1/3?src=qr"


def test_without_a_truetype_cjk_font_the_builtin_cid_font_is_used_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(qrsheet, "CJK_FONTS", (tmp_path / "none.ttc",))
    with caplog.at_level(logging.WARNING, logger="controller.qrsheet"):
        sheet = write_qr_sheet(SHED, NAME, [1], PRICE, BASE, tmp_path / "s.pdf")
    assert (sheet.font, sheet.font_embedded) == ("STSong-Light", False)
    assert "fonts-wqy-microhei" in caplog.text
    assert b"/STSong-Light" in sheet.path.read_bytes()


def test_a_loopback_url_only_when_asked_for(tmp_path: Path) -> None:
    sheet = write_qr_sheet(SHED, NAME, [1], PRICE, "http://127.0.0.1:8000", tmp_path / "s.pdf",
                           allow_loopback=True)  # fmt: skip
    assert sheet.stickers[1].url == "http://127.0.0.1:8000/s/tty-east-1/1?src=qr"


def _config(tmp_path: Path, central: str = "") -> Path:
    path = tmp_path / "shed.toml"
    path.write_text(f"""[shed]\nid = "{SHED}"\nname = "{NAME}"\ndata_dir = "{tmp_path / 'data'}"
{central}
[[boards]]\nid = "b1"\nports = [1, 2]\n""", encoding="utf-8")
    return path


def _qr_sheet(*args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from controller.cli import app

    result = CliRunner().invoke(app, ["qr-sheet", *args], env={"EBSHED_PUBLIC_URL": None})
    return result.exit_code, result.output


def test_the_command_takes_the_public_url_from_the_config_or_an_option(tmp_path: Path) -> None:
    out = tmp_path / "s.pdf"
    bare = _config(tmp_path)
    code, text = _qr_sheet("--config", str(bare), "--out", str(out))
    assert code == 2 and "no public base URL" in text and "--base-url" in text
    assert "public_url" in text and not out.exists()

    code, text = _qr_sheet("--config", str(bare), "--out", str(out),
                           "--base-url", "http://127.0.0.1:8000")  # fmt: skip
    assert code == 2 and "loopback_base_url" in text and "no phone can open it" in text
    assert not out.exists() and not (tmp_path / "data").exists()  # nothing made

    code, text = _qr_sheet("--config", str(bare), "--out", str(out),
                           "--base-url", "http://127.0.0.1:8000", "--allow-loopback")  # fmt: skip
    assert code == 0 and out.exists(), text
    assert b"http://127.0.0.1:8000" in out.read_bytes()  # the sheet's subject names it

    central = '[central]\nurl = "http://10.0.0.2:8000"\ntoken = "shed-token-0123"\n' \
              'public_url = "https://charge.example.com"'  # fmt: skip
    code, text = _qr_sheet("--config", str(_config(tmp_path, central)), "--out", str(out))
    assert code == 0, text
    assert b"https://charge.example.com" in out.read_bytes()
    assert not (tmp_path / "data").exists()  # the shed's database is read, never made
