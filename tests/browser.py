"""Headless Chromium driven over the DevTools protocol, for the dashboard's end-to-end test.

Debian's ``chromium`` package (no browser download) and ``websocket-client``. The protocol rather
than ``--dump-dom`` / ``--screenshot``: Streamlit draws its pages over a websocket after load,
which ``--virtual-time-budget`` does not wait for, so the test polls the live DOM until the
charts are there and then takes the screenshot.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-port=0")  # 0: any free port, written to DevToolsActivePort

# plotly figures that finished drawing (a figure gets its .main-svg once plotted)
PLOTTED = "[...document.querySelectorAll('.js-plotly-plot')].filter(e => e.querySelector('.main-svg')).length"
EXCEPTIONS = "document.querySelectorAll('[data-testid=\"stException\"]').length"
RUNNING = "!!document.querySelector('[data-testid=\"stStatusWidget\"]')"  # shown while a script runs


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless Chromium with one tab; ``with Browser(binary, profile) as b: b.goto(url)``."""

    def __init__(self, binary: str, profile: Path, width: int = 1400, height: int = 1000, timeout: float = 30):
        import websocket  # dev extra: websocket-client

        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                                      "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._id = 0
        try:
            port = self._devtools_port(profile / "DevToolsActivePort", timeout)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as r:
                page = next(t for t in json.load(r) if t["type"] == "page")
            # no Origin header: Chromium refuses DevTools websockets from other origins
            self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
            self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    def _devtools_port(self, port_file: Path, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.proc.returncode} before opening DevTools")
            lines = port_file.read_text().splitlines() if port_file.exists() else []
            if lines and lines[0].isdigit():
                return int(lines[0])
            time.sleep(0.1)
        raise TimeoutError(f"chromium wrote no {port_file.name} within {timeout} s")

    def send(self, method: str, **params):
        """One DevTools command and its result; events arriving in between are dropped."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def eval(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float) -> float:
        """Seconds until ``expression`` is truthy in the page; TimeoutError after ``timeout``."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.eval(expression):
                return time.monotonic() - start
            time.sleep(0.1)
        raise TimeoutError(f"not true after {timeout} s: {expression}")

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
