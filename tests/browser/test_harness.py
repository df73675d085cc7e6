"""The browser harness itself, on tiny hand-written pages: what it reports must be what happened."""

import struct
import zlib

import numpy as np
import pytest


def page(tmp_path, body, name="page.html"):
    path = tmp_path / name
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>t</title></head><body>{body}</body></html>")
    return path


def test_clean_page_reports_nothing(browser, tmp_path):
    result = browser.open(page(tmp_path, "<p>nothing to see</p><img src='data:image/gif;base64,R0lGODlhAQABAAAAACw='>"))
    assert result.console == []
    assert result.requests == []


def test_console_error_and_warning_are_reported(browser, tmp_path):
    result = browser.open(page(tmp_path, "<script>console.error('x'); console.warn('careful'); console.log('ok')</script>"))
    assert [(m.level, m.source) for m in result.console] == [("SEVERE", "console-api"), ("WARNING", "console-api")]
    assert result.console[0].text.endswith('"x"')
    assert result.console[1].text.endswith('"careful"')


def test_uncaught_exception_is_reported(browser, tmp_path):
    result = browser.open(page(tmp_path, "<script>notDefined()</script>"))
    assert [m.source for m in result.console] == ["javascript"]
    assert "notDefined is not defined" in result.console[0].text


def test_network_request_is_reported_and_fails_fast(browser, tmp_path):
    result = browser.open(page(tmp_path, '<img src="http://example.com/a.png">'))
    assert result.request_urls == ["http://example.com/a.png"]
    request = result.requests[0]
    assert request.resource_type == "Image"
    assert request.error is not None  # never reached the network
    # Chromium also logs the failed load to the console.
    assert any(m.source == "network" and "http://example.com/a.png" in m.text for m in result.console)


@pytest.mark.parametrize(
    "body, url, settle",
    [
        ("<script>fetch('https://api.example.org/x').catch(() => {})</script>", "https://api.example.org/x", 0.2),
        ("<link rel='stylesheet' href='https://fonts.example.org/f.css'>", "https://fonts.example.org/f.css", 0),
        ("<script>new WebSocket('ws://127.0.0.1:8765/')</script>", "ws://127.0.0.1:8765/", 0.2),
        ("<script>setTimeout(() => new Image().src = 'https://late.example.org/p.gif', 50)</script>",
         "https://late.example.org/p.gif", 0.3),
    ],
    ids=["fetch", "stylesheet", "websocket-loopback", "after-load"],
)
def test_other_kinds_of_request_are_reported(browser, tmp_path, body, url, settle):
    assert browser.open(page(tmp_path, body), settle=settle).request_urls == [url]


def test_local_file_requests_are_reported_but_not_the_page_itself(browser, tmp_path):
    (tmp_path / "style.css").write_text("p { color: red }")
    result = browser.open(page(tmp_path, "<link rel='stylesheet' href='style.css'><a href='#x'>x</a>"))
    assert result.request_urls == [(tmp_path / "style.css").as_uri()]
    assert result.requests[0].error is None
    assert result.console == []


def test_each_open_sees_only_its_own_page(browser, tmp_path):
    browser.open(page(tmp_path, "<script>console.error('first')</script><img src='http://a.example/x.png'>", "a.html"))
    result = browser.open(page(tmp_path, "<p>second</p>", "b.html"))
    assert result.console == [] and result.requests == []


def test_js_returns_values(browser, tmp_path):
    result = browser.open(page(tmp_path, "<p id='p'>hello</p>"))
    assert result.js("1+1") == 2
    assert result.js("document.getElementById('p').textContent") == "hello"
    assert result.js("({a: [1, 'b', null]})") == {"a": [1, "b", None]}


def read_png(path):
    """Pixels of an 8-bit, non-interlaced RGB(A) PNG as Chromium writes it: (height, width, 3) uint8.

    Hand-written to keep image libraries out of the test dependencies. Chromium filters
    nearly every row with Up, which numpy undoes at once; Sub, Average and Paeth rows (a
    handful per image) go byte by byte.
    """
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * bpp)
    out, prev = np.empty((height, width * bpp), np.uint8), np.zeros(width * bpp, np.uint8)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:]
        if kind == 0:
            out[y] = line
        elif kind == 2:  # Up
            out[y] = line + prev
        elif kind == 1:  # Sub: a running sum along each channel
            out[y] = np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint8).reshape(-1)
        else:
            row = [int(v) for v in line]
            for i in range(len(row)):
                a, b = (row[i - bpp] if i >= bpp else 0), int(prev[i])
                c = int(prev[i - bpp]) if i >= bpp else 0
                row[i] = (row[i] + ((a + b) // 2 if kind == 3 else _paeth(a, b, c))) & 0xFF
            out[y] = row
        prev = out[y]
    return out.reshape(height, width, bpp)[:, :, :3]


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def test_screenshot_is_the_full_page(browser, tmp_path):
    # Three window heights tall, with a red band at the very bottom: a screenshot of the
    # window only, or one blank beyond it, would miss the band.
    body = ("<style>body { margin: 0 } .band { height: 100px; background: rgb(255, 0, 0) }</style>"
            "<div style='height: 3000px; background: rgb(0, 0, 255)'></div><div class='band'></div>")
    result = browser.open(page(tmp_path, body))
    scroll_height = result.js("document.documentElement.scrollHeight")
    assert scroll_height == 3100
    out = tmp_path / "shot.png"
    assert browser.screenshot(out, width=1280) == (1280, scroll_height)
    pixels = read_png(out)  # (H, W, 3)
    height, width = pixels.shape[:2]
    assert width == 1280 and height >= scroll_height
    assert (pixels[:3000] == (0, 0, 255)).all()
    assert (pixels[3000:] == (255, 0, 0)).all()
    # The override is gone afterwards: the window is as before.
    assert result.js("window.innerWidth") == 1280


def test_open_time(browser, tmp_path):
    t = browser.open_time(page(tmp_path, "<h1>title</h1><p>text</p>"))
    assert 0 < t.load < 10
    assert t.first_paint is not None and t.first_contentful_paint is not None
    assert 0 < t.first_paint <= t.first_contentful_paint < 10
