"""Headless Chromium (Debian's chromium package) driven over the DevTools protocol.

The protocol runs on a pipe (``--remote-debugging-pipe``: Chromium reads
commands on fd 3 and writes answers and events on fd 4, each a JSON text ended
by a NUL byte), so no WebDriver, no websocket library and no download is
needed. Used by the dashboard and report tests and by bench/dashboard_load.py.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class BrowserError(Exception):
    pass


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise BrowserError("no Chromium found: apt-get install chromium (Makefile DEB_PACKAGES has it)")


class Browser:
    """One headless Chromium; pages are its tabs."""

    def __init__(self, width: int = 1400, height: int = 1000):
        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="pgpm-chromium-")
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # Chromium's ends are moved to fds 3 and 4 by bash in the child: high numbers here
        # so that the redirections cannot clobber each other.
        child_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        child_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
        for fd in (to_chrome_r, from_chrome_w):
            os.close(fd)
        args = [chromium_path(), "--headless=new", "--no-sandbox", "--disable-gpu",
                "--remote-debugging-pipe", f"--user-data-dir={self.profile}", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update", "--mute-audio",
                "--hide-scrollbars", f"--window-size={width},{height}", "about:blank"]
        with open(os.path.join(self.profile, "chromium.log"), "wb") as log:
            self.proc = subprocess.Popen(
                ["bash", "-c", f'exec "$0" "$@" 3<&{child_r} 4>&{child_w}', *args],
                pass_fds=(child_r, child_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=log)
        os.close(child_r)
        os.close(child_w)
        self._out = os.fdopen(to_chrome_w, "wb", buffering=0)
        self._in = from_chrome_r
        self._next_id = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._responses: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        # The first start on a fresh machine builds font caches: give it time, and say why
        # it failed with Chromium's own words if it does.
        try:
            self.send("Target.setDiscoverTargets", timeout=120.0, discover=False)
        except BrowserError as exc:
            log = Path(self.profile, "chromium.log").read_text(errors="replace")[-2000:]
            self.close()
            raise BrowserError(f"{exc}; Chromium said: {log or '(nothing)'}") from exc

    # ------------------------------------------------------------------ protocol
    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._in, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._responses[-1] = {"error": {"message": "Chromium closed the pipe"}}
                    self._cond.notify_all()
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                with self._cond:
                    if "id" in message:
                        self._responses[message["id"]] = message
                    else:
                        self.events.append(message)
                    self._cond.notify_all()

    def send(self, method: str, session: str | None = None, timeout: float = 30.0,
             **params: Any) -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            message: dict[str, Any] = {"id": ident, "method": method, "params": params}
            if session:
                message["sessionId"] = session
            self._out.write(json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while ident not in self._responses:
                if -1 in self._responses:
                    raise BrowserError(f"{method}: Chromium closed the pipe")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"{method}: no answer in {timeout} s")
                self._cond.wait(left)
            answer = self._responses.pop(ident)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result", {})

    def wait_event(self, method: str, session: str | None, after: int,
                   timeout: float = 30.0) -> dict[str, Any]:
        """The first event `method` of the session received after index `after` of self.events."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[after:]:
                    if event.get("method") == method and event.get("sessionId") == session:
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"no {method} in {timeout} s")
                self._cond.wait(left)

    def new_page(self) -> Page:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        page = Page(self, session, target)
        page.send("Page.enable")
        page.send("Runtime.enable")
        page.send("Network.enable")
        page.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        return page

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except BrowserError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    def __init__(self, browser: Browser, session: str, target: str):
        self.browser, self.session, self.target = browser, session, target

    def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        return self.browser.send(method, session=self.session, timeout=timeout, **params)

    def goto(self, url: str, timeout: float = 30.0) -> float:
        """Navigate and wait for the load event; seconds from the command to the event."""
        mark = len(self.browser.events)
        start = time.perf_counter()
        answer = self.send("Page.navigate", url=url)
        if answer.get("errorText"):
            raise BrowserError(f"{url}: {answer['errorText']}")
        self.browser.wait_event("Page.loadEventFired", self.session, mark, timeout)
        return time.perf_counter() - start

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        answer = self.send("Runtime.evaluate", timeout=timeout, expression=expression,
                           returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise BrowserError(f"{expression[:80]}: {answer['exceptionDetails'].get('text')} "
                               f"{answer['exceptionDetails'].get('exception', {}).get('description')}")
        return answer["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0, interval: float = 0.1) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                return True
            time.sleep(interval)
        return bool(self.evaluate(expression))

    def requests(self, since: int = 0) -> list[str]:
        """URLs this page requested (Network.requestWillBeSent) after event index `since`."""
        return [e["params"]["request"]["url"] for e in self.browser.events[since:]
                if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == self.session]

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            self.send("Emulation.setDeviceMetricsOverride", width=self.browser.width,
                      height=min(int(size["height"]) + 1, 12000), deviceScaleFactor=1, mobile=False)
        data = self.send("Page.captureScreenshot", format="png")["data"]
        if full_page:
            self.send("Emulation.setDeviceMetricsOverride", width=self.browser.width,
                      height=self.browser.height, deviceScaleFactor=1, mobile=False)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self.browser.send("Target.closeTarget", targetId=self.target)


def poll(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
