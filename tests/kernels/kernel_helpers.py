"""Helpers of the kernel tests: the device, per-dtype tolerances, and an assert that reports max / mean errors."""
import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# fraction of max|ref| allowed: fp16 / bf16 outputs carry ~1-2 ulp of rounding (fp16 ulp 2^-11, bf16 2^-8)
TOL = {torch.float16: 4e-3, torch.bfloat16: 3e-2, torch.float32: 1e-5}


def assert_close_report(out: torch.Tensor, ref: torch.Tensor, tol: float, what: str = "") -> None:
    assert out.shape == ref.shape and out.dtype == ref.dtype, \
        f"{what}: {out.shape}/{out.dtype} vs {ref.shape}/{ref.dtype}"
    err = (out.float() - ref.float()).abs()
    bound = tol * max(ref.float().abs().max().item(), 1e-6)
    assert err.max().item() <= bound, (f"{what}: max abs err {err.max().item():.3g} > {bound:.3g} "
                                       f"(mean abs err {err.mean().item():.3g}, max|ref| {ref.abs().max().item():.3g})")
