"""End-to-end rows of kernels/bench.py: one real-sized transformer block and the tiny-world UNet, fp16 vs quantized.

The quantized models are the float ones passed through `quantize_` with a preset; QuantLinear's backend "auto" puts
every layer that has a kernel on it (fp16 CUDA inputs), so this is what a user of the repo gets, Python overhead
included in eager mode. Each row also records how far the kernel path is from the fake-quant torch path on the same
layers (the numerical-equality check at real sizes) and the packed weight bytes.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    """A LLaDA-8B-sized transformer block in plain torch: RMS-free pre-norm attention + SwiGLU MLP."""

    def __init__(self, d: int = 4096, ff: int = 12288, heads: int = 32):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.gate, self.up, self.down = (nn.Linear(d, ff, bias=False), nn.Linear(d, ff, bias=False),
                                         nn.Linear(ff, d, bias=False))

    def forward(self, x):  # (B, T, d)
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)  # (B, T, H, hd)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        h = self.norm2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def end_to_end_rows(dev, bench, block: dict, tokens: list[int]) -> list[dict]:
    import copy

    from qsched_core.quant.config import QuantConfig
    from qsched_core.quant.qlinear import quantize_

    torch.manual_seed(0)
    ref = Block(**block).to(dev).half().eval()
    fp16_bytes = sum(m.weight.numel() * 2 for m in ref.modules() if isinstance(m, nn.Linear))
    models = {"fp16": ref}
    for preset in ("w4a16-g128", "w8a8", "w4a8"):
        models[preset] = quantize_(copy.deepcopy(ref).float(), QuantConfig.from_name(preset)).to(dev).half()
    rows = []
    with torch.no_grad():
        for t in tokens:
            x = torch.randn(1, t, block["d"], device=dev, dtype=torch.float16) * 0.5
            y_ref = ref(x).float()
            for name, model in models.items():
                try:
                    rows.append(block_row(model, name, x, y_ref, fp16_bytes, bench(lambda: model(x)), rows))  # noqa: B023
                except Exception as e:  # one failing format must not end the run
                    print(f"block T={t} {name} FAILED: {type(e).__name__}: {str(e)[:300]}", flush=True)
    return rows + tiny_unet_rows(dev, bench)


def block_row(model, name, x, y_ref, fp16_bytes, us, rows) -> dict:
    """Time, error against the fp16 block and against the fake-quant path, and packed weight bytes of one model."""
    from kernels.linear import packed_nbytes
    from qsched_core.quant.qlinear import QuantLinear

    base = us if name == "fp16" else [r for r in rows if r["M"] == x.shape[1] and r["impl"] == "fp16"][0]["us"]
    y = model(x).float()
    err = ((y - y_ref).norm() / y_ref.norm()).item()
    qls = [m for m in model.modules() if isinstance(m, QuantLinear)]
    nbytes = sum(packed_nbytes(m) for m in qls) if qls else fp16_bytes
    for m in qls:  # the same layers on the fake-quant torch path: the kernels must agree with it
        m.backend = "torch"
    y_fake = model(x).float()
    for m in qls:
        m.backend = "auto"
    fake_err = ((y - y_fake).norm() / y_fake.norm()).item()
    row = dict(kind="block", shape="llada-block", M=x.shape[1], K=x.shape[2], N=x.shape[2], impl=name,
               us=us, TFLOPs=float("nan"), TBps=float("nan"), intensity=float("nan"),
               speedup_vs_fp16=base / us, fp16_weight_MB=fp16_bytes / 2**20,
               rel_err_vs_fp16=err, rel_err_vs_fake_quant=fake_err, weight_bytes_ratio=nbytes / fp16_bytes)
    print(f"block T={x.shape[1]} {name}: {us:.1f} us ({base / us:.2f}x), rel err {err:.4f} "
          f"(vs fake {fake_err:.1e}), weights {nbytes / fp16_bytes:.3f}x fp16", flush=True)
    return row


def tiny_unet_rows(dev, bench) -> list[dict]:
    """The tiny-world UNet (random weights) at fp16 / W4A16 / W4A8, batch 8; needs diffusers, else one 'skipped' row."""
    import copy

    from kernels.linear import kernel_for
    from qsched_core.quant.config import QuantConfig
    from qsched_core.quant.qlinear import QuantLinear, quantize_

    try:
        from qsched_core.tinyworld.models import (
            LATENT_CHANNELS,
            LATENT_SIZE,
            TEXT_WIDTH,
            build_unet,
        )
        unet = build_unet().eval()
    except ImportError as e:
        print(f"tiny-world UNet skipped: {e}", flush=True)
        return [dict(kind="unet", shape="tiny-world UNet", impl="skipped", note=f"skipped: {e}")]
    x = torch.randn(8, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE, device=dev, dtype=torch.float16)
    text, t = torch.randn(8, 4, TEXT_WIDTH, device=dev, dtype=torch.float16), torch.full((8,), 500, device=dev)
    rows, base = [], None
    for name in ("fp16", "w4a16-g128", "w4a8"):
        model = unet if name == "fp16" else quantize_(copy.deepcopy(unet), QuantConfig.from_name(name))
        model = model.to(dev).half()
        qls = [m for m in model.modules() if isinstance(m, QuantLinear)]
        with torch.no_grad():
            us = bench(lambda: model(x, t, text).sample)  # noqa: B023 - timed inside this iteration
        base = us if base is None else base
        rows.append(dict(kind="unet", shape="tiny-world UNet", M=8, impl=name, us=us, speedup_vs_fp16=base / us,
                         note=f"{sum(kernel_for(m)[0] is not None for m in qls)} of {len(qls)} linear layers on kernels"))
        print(f"tiny UNet {name}: {us:.1f} us ({base / us:.2f}x), {rows[-1]['note']}", flush=True)
    return rows
