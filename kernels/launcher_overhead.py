"""The Python time of one W4A16 call at M = 1, with the kernel launch replaced by a no-op (runs on the CPU).

Why: launched eagerly, a W4A16 layer at M = 1 took 85-183 us on the H200 host against 18-47 us for F.linear
(`eager` columns of results/kernels_f16x2/kernels.md), while the GPU work is 4-16 us. Much of the difference is
Python that runs before the kernel starts: argument checks, the dispatcher's bookkeeping, the launcher's own work.
This script times that Python alone (Triton's launch itself is not included), so a change to the launchers can be
measured on any machine: `python kernels/launcher_overhead.py` prints the best of REPEATS x CALLS calls.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # CPU tensors pass the device check; no kernel runs (see below)
os.environ["QSCHED_AUTOTUNE"] = "0"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

REPEATS, CALLS = 7, 3000


class _NoLaunch:
    """Stands in for a Triton kernel: `kernel[grid](...)` does nothing."""

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


def python_us_per_call(n: int = 4096, k: int = 4096) -> float:
    """Best over REPEATS of the mean Python time (us) of w4a16_gemm at M = 1 on an (N, K) layer, launches no-ops."""
    import kernels.w4a16_gemm as gemm
    import kernels.w4a16_gemv as gemv
    from kernels.int4_pack import pack_int4_weight
    from qsched_core.quant.primitives import choose_qparams, quantize

    saved = gemv.w4a16_gemv_kernel, gemm.w4a16_gemm_kernel
    gemv.w4a16_gemv_kernel = gemm.w4a16_gemm_kernel = _NoLaunch()
    try:
        w = torch.randn(n, k, generator=torch.Generator().manual_seed(0))
        scale, zero = choose_qparams(w, 4, 128, False)
        packed = pack_int4_weight(quantize(w, scale, zero, 4, False), scale, zero, False)
        x = torch.randn(1, k).half()
        call = lambda: gemm.w4a16_gemm(x, *packed, 128)  # noqa: E731
        for _ in range(200):
            call()
        best = float("inf")
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            for _ in range(CALLS):
                call()
            best = min(best, (time.perf_counter() - t0) / CALLS)
        return 1e6 * best
    finally:
        gemv.w4a16_gemv_kernel, gemm.w4a16_gemm_kernel = saved


if __name__ == "__main__":
    print(f"w4a16_gemm at M = 1 (4096 x 4096, fp16 x), Python only: {python_us_per_call():.1f} us per call "
          f"(best of {REPEATS} x {CALLS} calls; the kernel launch is a no-op)")
