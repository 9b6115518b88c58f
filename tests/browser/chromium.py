"""Where Chromium is and how it is started: shared by the browser tests and the docs screenshots."""

from __future__ import annotations

import os

CHROMIUM = os.environ.get("TASKFLOW_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
