"""Headless Chromium for tests and benchmarks: open a local page, see what it logged and fetched.

Drives Debian's ``chromium`` through its ``chromium-driver`` with selenium. Both paths are
given to selenium explicitly, so Selenium Manager (which would try to download a driver)
never runs. Every real network request fails fast, but is still recorded: the proxy is a
closed local port, loopback included, and host names resolve to nothing.

Not part of the lmaudit package (the library does not depend on selenium). Tests import it
as ``chromium`` (pytest puts this folder on ``sys.path`` for its conftest); a benchmark
loads it by path::

    sys.path.insert(0, str(REPO / "tests" / "browser"))
    from chromium import Browser

    with Browser.start() as browser:
        page = browser.open(Path("report.html"))
        print(page.console, page.requests, page.js("document.title"))
        print(browser.open_time(Path("report.html")))
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INSTALL_HINT = "apt-get install -y chromium chromium-driver"

#: The browser window. With --headless=new the window includes (invisible) browser toolbars:
#: the page's viewport is 1280 x 857. Screenshots set their own width and full height.
WINDOW = (1280, 1000)

FLAGS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",  # small /dev/shm in containers crashes the renderer
    # No request may reach the network, and none may hang: a host name resolves to nothing,
    # and everything (loopback too, which Chromium otherwise sends direct) goes to a proxy
    # on a closed port, refused at once.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
)

#: Levels of the browser log kept in PageResult.console (console.error and uncaught errors
#: are SEVERE, console.warn is WARNING; console.log and .info are INFO, .debug is DEBUG).
CONSOLE_LEVELS = ("SEVERE", "WARNING")


class BrowserUnavailable(RuntimeError):
    """Chromium or its driver is missing or would not start; the message says how to fix it."""


@dataclass(frozen=True)
class ConsoleMessage:
    level: str  # "SEVERE" or "WARNING"
    source: str  # "console-api", "javascript" (uncaught error), "network" (failed load), ...
    text: str


@dataclass(frozen=True)
class Request:
    url: str
    resource_type: str  # "Image", "Script", "Fetch", "WebSocket", ...
    error: str | None = None  # "net::ERR_PROXY_CONNECTION_FAILED", "blocked: csp", ...; None if not seen to fail


@dataclass(frozen=True)
class OpenTime:
    """Seconds from navigation start (``performance.timeOrigin``) to each event."""

    load: float  # end of the load event
    first_paint: float | None  # None if the page painted nothing
    first_contentful_paint: float | None


@dataclass
class PageResult:
    """What one ``Browser.open`` saw. ``js`` runs in the browser's current page: the one
    opened, until the next ``open``."""

    url: str
    console: list[ConsoleMessage]
    requests: list[Request]
    _browser: Browser = field(repr=False)

    @property
    def request_urls(self) -> list[str]:
        return [r.url for r in self.requests]

    def js(self, expr: str) -> Any:
        """The value of a JavaScript expression (JSON-like values come back as Python ones)."""
        return self._browser.js(expr)

    def script(self, body: str) -> Any:
        """Run JavaScript statements in the page; the value of their ``return``, if any."""
        return self._browser.driver.execute_script(body)


def find_binaries() -> tuple[str, str]:
    """Paths of Chromium and chromedriver: ``$LMAUDIT_CHROMIUM`` and ``$LMAUDIT_CHROMEDRIVER``
    if set, else ``chromium`` and ``chromedriver`` on the PATH.

    Raises:
        BrowserUnavailable: either is missing.
    """
    found = {}
    for name, env in (("chromium", "LMAUDIT_CHROMIUM"), ("chromedriver", "LMAUDIT_CHROMEDRIVER")):
        path = os.environ.get(env) or shutil.which(name)
        if not path or not os.access(path, os.X_OK):
            where = f"${env}={os.environ[env]!r} is not executable" if os.environ.get(env) else f"no `{name}` on PATH"
            raise BrowserUnavailable(
                f"{where}. Browser tests need Chromium and its driver: `{INSTALL_HINT}` (Debian/Ubuntu), "
                f"or set {env} to the binary."
            )
        found[name] = path
    return found["chromium"], found["chromedriver"]


class Browser:
    """One headless Chromium, reused page after page (start it once: it takes about a second)."""

    def __init__(self, driver):
        self.driver = driver

    @classmethod
    def start(cls, *, chromium: str | None = None, chromedriver: str | None = None) -> Browser:
        """Start headless Chromium with the network cut off.

        Raises:
            BrowserUnavailable: a binary is missing or the session would not start (the message
                carries the driver's reason, e.g. a Chromium / chromedriver version mismatch).
        """
        if chromium is None or chromedriver is None:
            found = find_binaries()
            chromium, chromedriver = chromium or found[0], chromedriver or found[1]
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError as e:
            raise BrowserUnavailable(f"{e}; install the test extra: pip install -e '.[test]'") from e
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in FLAGS:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        try:
            # An explicit driver path is what keeps selenium from running Selenium Manager.
            driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
        except Exception as e:  # selenium's errors carry the driver's own reason (.msg, without the C++ stack)
            raise BrowserUnavailable(
                f"Chromium would not start ({chromium} with {chromedriver}): "
                f"{type(e).__name__}: {getattr(e, 'msg', None) or e}\n"
                f"Chromium and chromedriver must both be installed, at the same version: `{INSTALL_HINT}`."
            ) from e
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(30)
        return cls(driver)

    @property
    def version(self) -> str:
        return self.driver.capabilities.get("browserVersion", "?")

    def close(self) -> None:
        self.driver.quit()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def js(self, expr: str) -> Any:
        return self.driver.execute_script(f"return ({expr});")

    def open(self, path: Path, *, settle: float = 0.0) -> PageResult:
        """Load a local file and return its console errors and warnings and the requests it made.

        Returns after the load event and two animation frames, plus ``settle`` seconds for
        pages that log or fetch later (timers). Requests exclude the page's own URL and
        ``data:`` URLs; a failed one carries the network error.
        """
        url = Path(path).resolve().as_uri()
        self._drain()  # logs are read destructively: drop what earlier pages left
        self.driver.get(url)
        self.driver.execute_async_script(
            "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done()));"
        )
        if settle:
            time.sleep(settle)
        console = [
            ConsoleMessage(e["level"], e.get("source", ""), e["message"])
            for e in self.driver.get_log("browser")
            if e["level"] in CONSOLE_LEVELS
        ]
        return PageResult(url, console, self._requests(self.driver.get_log("performance"), url), self)

    def open_time(self, path: Path) -> OpenTime:
        """Load a local file and read the page's own timings (Navigation and Paint Timing)."""
        self.driver.get("about:blank")  # a fresh navigation even if this page is already open
        self.driver.get(Path(path).resolve().as_uri())
        deadline = time.monotonic() + 2
        while True:
            # Paint entries appear a frame after load; a page that paints nothing never gets one
            # (and a page of coloured boxes, no text or image, gets first-paint only).
            t = self.driver.execute_script(
                "const n = performance.getEntriesByType('navigation')[0];"
                "const p = Object.fromEntries(performance.getEntriesByType('paint').map(e => [e.name, e.startTime]));"
                "return {load: n.loadEventEnd, fp: p['first-paint'] ?? null, fcp: p['first-contentful-paint'] ?? null};"
            )
            if t["load"] and t["fp"] is not None:
                break
            if time.monotonic() > deadline:
                if not t["load"]:
                    raise RuntimeError(f"{path}: no load event within 2 s of navigating")
                break
            time.sleep(0.01)
        self._drain()
        return OpenTime(load=t["load"] / 1000, first_paint=_seconds(t["fp"]), first_contentful_paint=_seconds(t["fcp"]))

    def screenshot(self, path: Path, *, width: int = 1280) -> tuple[int, int]:
        """Save a PNG of the whole current page (not just the window) laid out ``width`` CSS
        pixels wide, at one device pixel per CSS pixel. Returns (width, height) in pixels."""
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False},
        )
        try:
            # Measured after the width is set, as the page reflows to it; never less than the viewport.
            height = math.ceil(self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]["height"])
            shot = self.driver.execute_cdp_cmd(
                "Page.captureScreenshot",
                {
                    "format": "png",
                    "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
                },
            )
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        Path(path).write_bytes(base64.b64decode(shot["data"]))
        return width, height

    def _drain(self) -> None:
        self.driver.get_log("browser")
        self.driver.get_log("performance")

    @staticmethod
    def _requests(entries: list[dict], page_url: str) -> list[Request]:
        """Requests from the performance log (DevTools Network events), in log order."""
        sent: list[tuple[str, Request]] = []  # (requestId, request); each hop of a redirect shares the id
        failed: dict[str, str] = {}
        for entry in entries:
            message = json.loads(entry["message"])["message"]
            method, params = message["method"], message["params"]
            if method == "Network.requestWillBeSent":
                sent.append((params["requestId"], Request(params["request"]["url"], params.get("type", ""))))
            elif method == "Network.webSocketCreated":
                sent.append((params["requestId"], Request(params["url"], "WebSocket")))
            elif method == "Network.loadingFailed":
                # A request blocked before it left (CSP, mixed content) has an empty errorText.
                reason = params.get("blockedReason")
                failed[params["requestId"]] = params["errorText"] or (f"blocked: {reason}" if reason else "failed")
        last = {rid: i for i, (rid, _) in enumerate(sent)}  # a failure belongs to a redirect's last hop
        return [
            Request(r.url, r.resource_type, failed.get(rid) if last[rid] == i else None)
            for i, (rid, r) in enumerate(sent)
            if r.url.split("#")[0] != page_url and not r.url.startswith("data:")
        ]


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000
