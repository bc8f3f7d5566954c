"""Per-token int8 activation quantization and the Hadamard transform against the library (`*_ref`)."""
import pytest
import torch
from kernel_helpers import DEVICE, TOL, assert_close_report

from kernels._common import label
from kernels.act_quant import act_quant_int8, act_quant_int8_ref
from kernels.fwht import fwht, fwht_ref, get_autotune_configs, kron_factors
from qsched_core.quant.hadamard import hadamard_matrix

ACT_CASES = [(False, "torchao"), (True, "qmax"), (True, "torchao")]  # (symmetric, scale_rule): w4a8, w8a8, other


@pytest.mark.parametrize("symmetric,rule", ACT_CASES, ids=str)
@pytest.mark.parametrize("m,k", [(1, 64), (3, 200), (17, 5000)], ids=str)  # K > 4096: two chunks per pass
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_act_quant_matches_library(m, k, symmetric, rule, dtype):
    x = (torch.randn(m, k) * 3 + 0.5).to(dtype)
    x[0, 1] = 40.0  # an outlier channel
    q, s, z = act_quant_int8(x.to(DEVICE), symmetric, 1.0, rule)
    qr, sr, zr = act_quant_int8_ref(x, symmetric, 1.0, rule)
    assert torch.equal(s.cpu(), sr), f"scales differ: max {(s.cpu() - sr).abs().max().item():.3g}"
    assert torch.equal(z.cpu(), zr)
    # codes bit for bit: the kernel rounds x * (1/s) on its own before rounding to an integer, as torch does (a
    # fused multiply-add there moved 1 code in ~600 by one level on a GPU; see act_quant.py)
    diff = (q.cpu().int() - qr.int()).abs()
    assert diff.max() == 0, f"codes differ at {int((diff > 0).sum())} of {diff.numel()} places (max {diff.max()})"


def test_act_quant_clip_and_zero_row():
    x = torch.zeros(2, 64)
    x[1] = torch.linspace(-1, 3, 64)
    q, s, z = act_quant_int8(x.to(DEVICE), False, 0.9)
    qr, sr, zr = act_quant_int8_ref(x, False, 0.9)
    assert torch.equal(q.cpu(), qr) and torch.equal(s.cpu(), sr) and torch.equal(z.cpu(), zr)


@pytest.mark.parametrize("k", [64, 96, 256, 768, 1024, 12 * 256], ids=str)  # 96, 768, 3072 = 12 * 2^k (Paley)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_fwht_matches_library(k, dtype):
    x = torch.randn(5, k).to(dtype)
    signs = torch.randint(0, 2, (k,)).float() * 2 - 1
    out = fwht(x.to(DEVICE), signs.to(DEVICE)).cpu()
    # the intermediate A^T X is rounded once to the dtype: allow twice the GEMM tolerance
    assert_close_report(out, fwht_ref(x, signs), 2 * TOL[dtype], f"fwht K={k} {dtype}")


@pytest.mark.parametrize("cfg", get_autotune_configs(), ids=label)
def test_fwht_every_config(cfg):
    """Each config the tuner may pick (one row at a time, or R rows stacked), on a Paley size with masked tiles."""
    x = torch.randn(7, 96).half()
    signs = torch.randint(0, 2, (96,)).float() * 2 - 1
    out = fwht(x.to(DEVICE), signs.to(DEVICE), config=cfg).cpu()
    assert_close_report(out, fwht_ref(x, signs), 2 * TOL[torch.float16], f"fwht {label(cfg)}")


def test_fwht_factors_are_the_library_matrix():
    for k in (64, 96, 768):
        at, b = kron_factors(k)
        assert torch.equal(torch.kron(at.T.contiguous(), b).double(), hadamard_matrix(k))


def test_fwht_wrong_sign_is_caught_and_errors():
    x = torch.randn(2, 256, generator=torch.Generator().manual_seed(0)).half()
    x[0, 7] = 2.0  # the flipped feature is large: the error it makes (2 |x_7| / 16 each) is far above the tolerance
    signs = torch.ones(256)
    bad = signs.clone()
    bad[7] = -1
    with pytest.raises(AssertionError, match="max abs err"):
        assert_close_report(fwht(x.to(DEVICE), bad.to(DEVICE)).cpu(), fwht_ref(x, signs), 2 * TOL[torch.float16])
    with pytest.raises(ValueError, match="no Hadamard matrix"):
        fwht(torch.randn(2, 100).half().to(DEVICE))
    with pytest.raises(ValueError, match="signs has shape"):
        fwht(x.to(DEVICE), torch.ones(255, device=DEVICE))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_gpu_act_quant_and_fwht_large(dtype):
    for m in (1, 2, 3, 15, 16, 17, 128, 1000):
        x = torch.randn(m, 4096).to(dtype)
        for symmetric, rule in ACT_CASES:
            q, s, z = act_quant_int8(x.cuda(), symmetric, 1.0, rule)
            qr, sr, zr = act_quant_int8_ref(x, symmetric, 1.0, rule)
            assert torch.equal(q.cpu(), qr) and torch.equal(s.cpu(), sr), f"act_quant M={m} {symmetric} {rule}"
        for k in (4096, 12288):
            xk = torch.randn(m, k).to(dtype)
            assert_close_report(fwht(xk.cuda()).cpu(), fwht_ref(xk), 2 * TOL[dtype], f"fwht M={m} K={k}")


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", get_autotune_configs(), ids=label)
def test_gpu_fwht_every_config(cfg):
    """Every config that fits this GPU is right (the tuner skips those that run out of shared memory, as here)."""
    from triton.runtime.errors import OutOfResources

    for k in (4096, 12288):
        x = torch.randn(17, k).half()
        try:
            out = fwht(x.cuda(), config=cfg).cpu()
        except OutOfResources:
            continue
        assert_close_report(out, fwht_ref(x), 2 * TOL[torch.float16], f"fwht K={k} {label(cfg)}")
