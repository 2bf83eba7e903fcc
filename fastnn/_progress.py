"""The text progress bar of ``fit(verbose=1)``."""
from __future__ import annotations

import sys
import time


def format_logs(logs: dict) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


class ProgressBar:
    """One line per epoch, redrawn in place at most every ``interval`` seconds."""

    def __init__(self, total_samples: int, epoch: int, epochs: int, stream=None, interval: float = 0.1):
        self.total = total_samples
        self.stream = stream or sys.stdout
        self.interval = interval
        self.start = self.last = time.perf_counter()
        self.stream.write(f"Epoch {epoch + 1}/{epochs}\n")

    def _line(self, done: int, logs: dict, elapsed: float | None = None) -> str:
        width = 24
        filled = int(width * done / max(self.total, 1))
        bar = "=" * max(filled - 1, 0) + (">" if filled < width else "=") + "." * (width - filled)
        if elapsed is None:
            elapsed = time.perf_counter() - self.start
        elapsed = max(elapsed, 1e-9)
        parts = [f"{done}/{self.total} [{bar}]", f"{elapsed:.1f}s"]
        if logs:
            parts.append(format_logs(logs))
        parts.append(f"{done / elapsed:,.0f} samples/s")
        return " - ".join(parts)

    def update(self, done: int, logs) -> None:
        """Redraw when the interval has passed; ``logs`` is a dict or a function returning one,
        called only then (on the GPU, reading the running loss back waits for the device)."""
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            self.stream.write("\r" + self._line(done, logs() if callable(logs) else logs))
            self.stream.flush()

    def finish(self, logs: dict, train_seconds: float) -> None:
        """Final line; samples/s counts the training time only, not validation."""
        self.stream.write("\r" + self._line(self.total, logs, train_seconds) + "\n")
        self.stream.flush()
