"""Screenshot a Streamlit page once it has rendered (used by scripts/smoke_dashboard.sh).

``chromium --screenshot --virtual-time-budget=…`` fast-forwards virtual time while the page
waits on its websocket, so it often shoots the loading skeleton. This drives headless
Chromium through the DevTools protocol instead: load the page, wait until one of the
``--wait`` texts is on it and Streamlit's "running" indicator has been gone for a moment,
optionally type into a text area and click tabs, buttons or labels, then capture. It prints the page's error boxes (``st.error``) and
exits 1 on a Streamlit exception box or a timeout.

    .venv/bin/python scripts/screenshot_page.py http://localhost:8599 /tmp/dash.png \
        --wait Recommended --wait "No split meets" [--click "Compare A/B" --click "Pin"] [--type TEXT] [--size 1400x1800]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

STATE_JS = """(() => {
  const body = document.body ? document.body.innerText : "";
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  const running = !!status && /Running|Stop/.test(status.innerText);
  const stale = document.querySelectorAll('[data-stale="true"]').length > 0;
  const spinner = !!document.querySelector('[data-testid="stSpinner"]');
  const errors = [...document.querySelectorAll('[data-testid="stAlertContentError"]')].map(e => e.innerText);
  const exceptions = [...document.querySelectorAll('[data-testid="stException"]')].map(e => e.innerText);
  return JSON.stringify({body, busy: running || spinner || stale, errors, exceptions});
})()"""


class Page:
    def __init__(self, ws):
        self.ws, self.n = ws, 0

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def state(self) -> dict:
        return json.loads(self.call("Runtime.evaluate", expression=STATE_JS, returnByValue=True)["result"]["value"])

    def settle(self, wait: list[str], timeout: float) -> dict:
        """Wait for a wait text (any) with nothing running for 1.5 s; return the page state."""
        end, quiet_since = time.monotonic() + timeout, None
        while time.monotonic() < end:
            s = self.state()
            ready = (not wait or any(w in s["body"] for w in wait) or s["exceptions"]) and not s["busy"]
            if ready:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= 1.5:
                    return s
            else:
                quiet_since = None
            time.sleep(0.25)
        raise TimeoutError(f"page not ready after {timeout:.0f} s (waiting for {wait})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("out")
    ap.add_argument("--wait", action="append", default=[], help="text that marks the page as rendered (any)")
    ap.add_argument("--click", action="append", default=[],
                    help="then click the tab, button, expander or label with this text (exact match first, "
                         "else the first containing it; repeatable, in order)")
    ap.add_argument("--type", default=None, help="first type this into the page's first text area")
    ap.add_argument("--size", default="1400x1800")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))

    with tempfile.TemporaryDirectory(prefix="shot-chromium-", ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen([args.chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={w},{h}",
                                 "--remote-debugging-port=0", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            for _ in range(200):
                if port_file.is_file() and port_file.read_text().strip():
                    break
                time.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
            ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            with connect(ws_url, max_size=None) as ws:
                page = Page(ws)
                page.call("Emulation.setDeviceMetricsOverride", width=w, height=h, deviceScaleFactor=1, mobile=False)
                page.call("Page.navigate", url=args.url)
                state = page.settle(args.wait, args.timeout)
                if args.type is not None:
                    page.call("Runtime.evaluate", expression="document.querySelector('textarea').focus()")
                    page.call("Input.insertText", text=args.type)
                    time.sleep(0.3)
                for text in args.click:
                    clicked = page.call("Runtime.evaluate", returnByValue=True, expression=(
                        "(() => { const all = ['[role=tab]', 'button', 'summary', 'label']"
                        ".flatMap(q => [...document.querySelectorAll(q)]);"
                        f" const x = {json.dumps(text)};"
                        " const t = all.find(e => e.innerText.trim() === x) || all.find(e => e.innerText.includes(x));"
                        " if (t) t.click(); return !!t; })()"
                    ))["result"]["value"]
                    if not clicked:
                        print(f"nothing to click labelled {text!r}", file=sys.stderr)
                        return 1
                    time.sleep(0.5)
                    state = page.settle([], args.timeout)
                png = base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"])
                Path(args.out).write_bytes(png)
        finally:
            try:  # Chromium's helpers live in the session we started for it
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
    for e in state["errors"]:
        print(f"error box: {e}")
    for e in state["exceptions"]:
        print(f"EXCEPTION box: {e}")
    print(f"wrote {args.out} ({len(png)} bytes)")
    return 1 if state["exceptions"] else 0


if __name__ == "__main__":
    sys.exit(main())
