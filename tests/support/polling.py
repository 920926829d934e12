"""Waiting for what arrives asynchronously (a gateway's poll, a log flush, a flow's step)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 60.0, every: float = 0.3) -> Any:
    """Poll ``condition`` until it returns something truthy and return that; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what} after {timeout}s"
        time.sleep(every)
