"""The machine line every benchmark prints: CPU model, visible cores and the thread settings."""
from __future__ import annotations

import os
import platform


def describe() -> str:
    """e.g. 'AMD EPYC 7B13, 2 cores visible, {'OMP_NUM_THREADS': '1', ...}' (model from /proc/cpuinfo on Linux)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = {k: os.environ.get(k, "unset") for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS")}
    return f"{cpu}, {os.cpu_count()} cores visible, {threads}"
