"""End-to-end rows of kernels/bench.py: a real-sized transformer block, the tiny-world UNet and the tiny diffusion LM.

The quantized models are the float ones passed through `quantize_` with a preset; QuantLinear's backend "auto" puts
every layer that has a kernel on it (fp16 CUDA inputs), so this is what a user of the repo gets. The block and the
UNet are timed like the GEMMs (CUDA-graph replays, `us`); the diffusion LM generates text the way the study does
(no graph, Python in the loop, one forward pass per committed token), so its tokens/s include every launch. Each
block row also records how far the kernel path is from the fake-quant torch path on the same layers (the
numerical-equality check at real sizes) and the packed weight bytes.
"""
from __future__ import annotations

import copy
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    """A LLaDA-8B-sized transformer block in plain torch: LayerNorm pre-norm attention + SwiGLU MLP."""

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


def block_rows(dev, time_us, block: dict, tokens: list[int]) -> list[dict]:
    from qsched_core.quant.config import QuantConfig
    from qsched_core.quant.qlinear import quantize_

    torch.manual_seed(0)
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    ref = Block(**block).to(dev).to(dtype).eval()
    fp16_bytes = sum(m.weight.numel() * 2 for m in ref.modules() if isinstance(m, nn.Linear))
    models = {"fp16": ref}
    for preset in ("w4a16-g128", "w8a8", "w4a8"):
        models[preset] = quantize_(copy.deepcopy(ref).float(), QuantConfig.from_name(preset)).to(dev).to(dtype)
    rows = []
    with torch.no_grad():
        for t in tokens:
            x = torch.randn(1, t, block["d"], device=dev, dtype=dtype) * 0.5
            y_ref = ref(x).float()
            for name, model in models.items():
                try:
                    us = time_us(lambda: model(x))
                    rows.append(block_row(model, name, x, y_ref, fp16_bytes, us, rows))
                except Exception as e:  # one failing format must not end the run
                    print(f"block T={t} {name} FAILED: {type(e).__name__}: {str(e)[:300]}", flush=True)
    return rows


def block_row(model, name, x, y_ref, fp16_bytes, us, rows) -> dict:
    """Time, error against the fp16 block and against the fake-quant path, and packed weight bytes of one model."""
    from kernels.linear import packed_nbytes
    from qsched_core.quant.qlinear import QuantLinear

    base = us if name == "fp16" else [r for r in rows if r["M"] == x.shape[1] and r["impl"] == "fp16"][0]["us"]
    y = model(x).float()
    err = ((y - y_ref).norm() / y_ref.norm()).item()
    qls = [m for m in model.modules() if isinstance(m, QuantLinear)]
    nbytes = sum(packed_nbytes(m) for m in qls) if qls and x.is_cuda else fp16_bytes
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


def tiny_unet_rows(dev, time_us, dry: bool = False) -> list[dict]:
    """The tiny-world UNet (random weights) at fp16 / W4A16 / W4A8, batch 8; needs diffusers, else one 'skipped' row.

    Linears whose in_features the preset's group size does not divide (the 64-wide time embedding at g128) stay fp16.
    """
    from kernels.linear import kernel_for
    from qsched_core.quant.config import QuantConfig
    from qsched_core.quant.qlinear import QuantLinear, quantize_

    try:
        if dry:
            raise ImportError("not run in --dry-run (fp16 convolutions on the CPU interpreter take minutes)")
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
        if name == "fp16":  # the float UNet itself: no preset
            model = unet
        else:
            cfg = QuantConfig.from_name(name)
            fits = lambda m, fqn, g=cfg.w_group_size: isinstance(m, nn.Linear) and m.in_features % g == 0
            model = quantize_(copy.deepcopy(unet), cfg, filter_fn=fits)  # the others stay fp16
        model = model.to(dev).half()
        qls = [m for m in model.modules() if isinstance(m, QuantLinear)]
        with torch.no_grad():
            us = time_us(lambda: model(x, t, text).sample)
        base = us if base is None else base
        on = sum(kernel_for(m)[0] is not None for m in qls)
        rows.append(dict(kind="unet", shape="tiny-world UNet", M=8, impl=name, us=us, speedup_vs_fp16=base / us,
                         note=f"{on} of {len(qls)} quantized linear layers on kernels"))
        print(f"tiny UNet {name}: {us:.1f} us ({base / us:.2f}x), {rows[-1]['note']}", flush=True)
    return rows


def generation_speed(model, items, dev) -> tuple[float, float, list[str]]:
    """(tokens/s, seconds, completions) of greedy generation of the arith prompts, after one warm-up batch."""
    from qsched_core.dllm.evaluate import EvalConfig, completions
    from qsched_core.dllm.tasks import GEN

    cfg = EvalConfig(n_items=len(items), gen_batch=len(items), device=str(dev))
    completions(model, items, cfg, "arith")  # warm-up: compiles and tunes the kernels for these sizes
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    texts = completions(model, items, cfg, "arith")  # ends with a copy to the CPU: synchronized
    sec = time.perf_counter() - t0
    return len(items) * GEN["arith"].gen_len / sec, sec, texts


def dllm_speed_rows(dev, json_path, dry: bool = False) -> list[dict]:
    """Tokens/s of the tiny diffusion LM (models/dllm) in fp16 and with real W4A16 kernels (the seven block linears,
    g128 asymmetric; embedding and LM head fp16, as in the study), 1 and 64 prompts; also written to json_path."""
    from kernels.linear import kernel_for
    from qsched_core.dllm.model import block_linear_filter, load_safetensors
    from qsched_core.dllm.tasks import GEN, make_suite
    from qsched_core.quant.config import QuantConfig
    from qsched_core.quant.qlinear import QuantLinear, quantize_
    from qsched_core.utils import MODELS_DIR

    suite = make_suite(n_train=1)
    batches = [1] if dry else [1, 64]
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    rows, result = [], {"device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
                        "torch": torch.__version__, "gen_len": GEN["arith"].gen_len,
                        "forward_passes": GEN["arith"].gen_len, "timing": "wall clock of one greedy generation "
                        "after a warm-up one (eager, Python in the loop, no CUDA graph)"}
    for name in ("base",) if dry else ("base", "instruct"):
        path = MODELS_DIR / "dllm" / f"{name}.safetensors"
        if not path.exists():
            print(f"dllm {name}: {path} not found, skipped", flush=True)
            continue
        fp32 = load_safetensors(path).eval()
        models = {"fp16": copy.deepcopy(fp32).to(dev).to(dtype),
                  "w4a16": quantize_(copy.deepcopy(fp32), QuantConfig.from_name("w4a16-g128"),
                                     filter_fn=block_linear_filter).to(dev).to(dtype)}
        qls = [m for m in models["w4a16"].modules() if isinstance(m, QuantLinear)]
        on_kernels = sum(kernel_for(m)[0] is not None for m in qls) if dev.type == "cuda" else 0
        texts = {}
        for batch in batches:
            items = suite.arith_eval[:batch]
            for label, model in models.items():
                tps, sec, texts[label] = generation_speed(model, items, dev)
                result.setdefault(name, {}).setdefault(label, {})[f"prompts_{batch}"] = dict(
                    tokens_per_s=round(tps, 1), seconds=round(sec, 3))
                note = f"{on_kernels} of {len(qls)} block linears on kernels" if label == "w4a16" else ""
                rows.append(dict(kind="dllm", shape=f"dllm-{name}", M=batch, impl=label, tokens_per_s=tps,
                                 us=1e6 * sec, note=note))
                print(f"dllm {name} {label} prompts={batch}: {tps:.1f} tokens/s ({sec:.2f} s)", flush=True)
            same = sum(a == b for a, b in zip(texts["fp16"], texts["w4a16"])) / len(items)
            result[name][f"same_completion_fp16_w4a16_prompts_{batch}"] = round(same, 3)
        result[name]["w4a16_linears_on_kernels"] = f"{on_kernels} of {len(qls)}"
    json_path.write_text(json.dumps(result, indent=1))
    return rows
