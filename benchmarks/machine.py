"""The machine and software a measurement ran on, recorded beside every figure."""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = (
    "search",
    "torch",
    "sentence-transformers",
    "transformers",
    "faiss-cpu",
    "numpy",
    "lingua-language-detector",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: other work on the machine skews every timing."""
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict[str, Any]:
    import faiss
    import torch

    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": _mem_total_gb(),
        "torch_threads": torch.get_num_threads(),
        "faiss_threads": faiss.omp_get_max_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in _PACKAGES},
        "load_average_at_start": load_average(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def rss_mb(pid: int | str = "self") -> dict[str, float]:
    """Resident memory of a process now (VmRSS) and at its peak (VmHWM), in MB, from /proc."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def machine_markdown(info: dict[str, Any]) -> str:
    pk = info["packages"]
    versions = ", ".join(f"{k} {v}" for k, v in pk.items() if v)
    return (
        f"Machine: {info['cpu_model']}, {info['cores_usable']} cores, {info['memory_gb']} GB, "
        f"torch threads {info['torch_threads']}, faiss threads {info['faiss_threads']}; "
        f"load average at start {info['load_average_at_start']}"
        + (f", at end {info['load_average_at_end']}" if "load_average_at_end" in info else "")
        + f". Python {info['python']}; {versions}. Run {info['started_at']}."
    )
