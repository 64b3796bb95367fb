"""The encoder's precision profile: what the CPU supports, and the profile actually run when it does not.

bf16 matrix products are fast only where the CPU has them in hardware (AVX-512 BF16 or AMX); elsewhere torch
emulates them, slower than fp32. int8 needs a quantized engine (fbgemm / x86 / onednn) in the torch build. A
profile the CPU lacks falls back to fp32: vectors then carry fp32's fingerprint, so an index built with the
profile is refused (IndexMismatch) instead of being searched with vectors of another kind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from search.config import Precision

log = logging.getLogger(__name__)

# The int8 profile's dense layers that stay fp32 (or bf16 under int8-bf16): the FFN output layers whose inputs
# have outlier channels. Quantized alone (the rest fp32), each moved 48 XQuAD en/zh/ru paragraph vectors most: mean
# cosine to fp32 4.down 0.9932, 5.down 0.9978, 0.down 0.9985; every other layer >= 0.9996; all 48 layers 0.9857
# (`python -m benchmarks.bench_precision --sensitivity`). They are 3 of the 48 dense layers, ~8% of the arithmetic.
INT8_KEEP = frozenset({"0.down", "4.down", "5.down"})


@dataclass(frozen=True)
class PrecisionChoice:
    """The profile asked for, the one run, and why they differ (empty when they do not)."""

    requested: Precision
    effective: Precision
    reason: str = ""

    @property
    def fell_back(self) -> bool:
        return self.effective != self.requested


def cpu_bf16() -> bool:
    """Whether the CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX tiles)."""
    import torch

    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def cpu_int8() -> bool:
    """Whether this torch build has a quantized engine for dynamic int8 linear layers on this CPU."""
    import torch

    engines = set(torch.backends.quantized.supported_engines)
    return bool(engines & {"x86", "fbgemm", "onednn"})


def choose(requested: Precision) -> PrecisionChoice:
    """The profile to run for `requested` on this CPU: the requested one, or fp32 with the reason."""
    missing = []
    if requested in ("bf16", "int8-bf16") and not cpu_bf16():
        missing.append("bf16 in hardware (AVX-512 BF16 or AMX)")
    if requested in ("int8", "int8-bf16") and not cpu_int8():
        missing.append("a quantized int8 engine in torch (x86/fbgemm/onednn)")
    if not missing:
        return PrecisionChoice(requested, requested)
    reason = f"this CPU/torch lacks {' and '.join(missing)}"
    log.warning("precision %s requested but %s: encoding in fp32", requested, reason)
    return PrecisionChoice(requested, "fp32", reason)
