"""Benchmark the Triton kernels against cuBLAS and against the memory limit, on one GPU, in one run.

What is measured (median GPU time, L2 flushed before each call, from CUDA-graph replays so that Python launch
overhead is excluded; at M <= 16 the eager do_bench time is recorded too, as `us_eager`):
  - ceilings of this GPU, in this run: device-to-device copy bandwidth (1 GiB), cuBLAS fp16 rate (8192^3) and the int8
    rate of torch._int_mm (8192^3, K-major weight);
  - every GEMM at M in {1, 16, 128, 4096} on linear layers of real models (SD1.5/SDXL attention and feed-forward,
    FLUX, LLaDA-8B), against F.linear in fp16 and bf16 (cuBLAS) and against torch's dequantize-then-matmul path;
  - the Hadamard transform and the activation quantizer against the copy bandwidth;
  - end to end, one LLaDA-8B-sized transformer block (plain torch, QuantLinear on the kernels) at fp16 / W4A16 /
    W8A8 / W4A8, with its packed weight bytes, and the tiny-world UNet when diffusers is installed.
Why the ratios: a 4-bit weight stream is ~3.9x smaller than fp16 (codes + scales), so at M = 1 a perfect W4A16 GEMV
approaches 3.9x over cuBLAS; at M = 4096 everything is compute-bound and only int8 tensor cores (2x fp16 on paper)
can win.

Run:  python kernels/bench.py --out results        (writes kernels.md, kernels.csv, kernels_roofline.png)
      python kernels/bench.py --plot results/kernels.csv   (redraw the roofline from a CSV, no GPU needed)
"""
from __future__ import annotations

import argparse
import csv
import datetime
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

SHAPES = [  # (name, K = in_features, N = out_features)
    ("sd-attn 1280", 1280, 1280), ("sd-ff-up 1280>10240", 1280, 10240), ("sd-ff-down 5120>1280", 5120, 1280),
    ("llada/anchor 4096", 4096, 4096), ("flux-ff 3072>12288", 3072, 12288), ("llada-ff 4096>12288", 4096, 12288),
    ("llada-down 12288>4096", 12288, 4096), ("8192x8192", 8192, 8192),
]
M_LIST = [1, 16, 128, 4096]
ELEMENTWISE = [(4096, 4096), (4096, 12288), (16384, 4096)]  # (M, K) for the Hadamard transform and act quantizer
BLOCK = dict(d=4096, ff=12288, heads=32)  # LLaDA-8B
BLOCK_TOKENS = [1, 16, 4096]
BIG = 32 * 2**20  # "shapes with >= 32 MB of fp16 weights" (the W4A16 targets)


_FLUSH: dict = {}


def bench(fn, rep: int = 30, graph: bool = True) -> float:
    """Median GPU time of fn() in microseconds, L2 flushed before every call; NaN (and a printed error) if fn fails.

    graph=True replays fn from a CUDA graph, so Python and launch overhead is excluded (what a deployment with CUDA
    graphs or torch.compile sees); the 256 MB flush runs inside the graph and its own time is subtracted.
    graph=False is triton's do_bench: eager launches, where a slow Python launch path shows up as GPU idle time.
    """
    from triton.testing import do_bench, do_bench_cudagraph

    try:
        if not graph:
            return 1e3 * do_bench(fn, warmup=5, rep=rep, return_mode="median")
        if "buf" not in _FLUSH:
            _FLUSH["buf"] = torch.empty(2**28, dtype=torch.int8, device="cuda")
            _FLUSH["us"] = 1e3 * do_bench_cudagraph(_FLUSH["buf"].zero_, rep=rep, return_mode="median")
        fn()  # compile and autotune outside the graph capture
        torch.cuda.synchronize()
        try:
            both = 1e3 * do_bench_cudagraph(lambda: (_FLUSH["buf"].zero_(), fn()), rep=rep, return_mode="median")
        except RuntimeError as e:  # something in fn cannot be captured: say so, time it eagerly
            print(f"graph capture failed ({str(e)[:120]}); eager timing for this row", flush=True)
            return bench(fn, rep, graph=False)
        return both - _FLUSH["us"]
    except Exception as e:  # one failing kernel must not end the run: reported, and the row shows NaN
        print(f"FAILED: {type(e).__name__}: {str(e)[:300]}", flush=True)
        return float("nan")


def ceilings(dev) -> dict:
    x = torch.empty(2**29, dtype=torch.float16, device=dev)  # 1 GiB
    y = torch.empty_like(x)
    copy_us = bench(lambda: y.copy_(x), graph=False)
    a = torch.randn(8192, 8192, device=dev, dtype=torch.float16)
    fp16_us = bench(lambda: F.linear(a, a), graph=False)
    qa = torch.randint(-128, 127, (8192, 8192), device=dev, dtype=torch.int8)
    int8_us = bench(lambda: torch._int_mm(qa, qa.t()), graph=False)
    del x, y
    flop = 2 * 8192**3
    return {"copy_TBps": 2 * 2**30 / copy_us / 1e6, "fp16_TFLOPs": flop / fp16_us / 1e6,
            "int8_TOPs": flop / int8_us / 1e6}


def quantized_weights(w: torch.Tensor) -> dict:
    """The three formats from the library's primitives: w4 g128 asym (W4A16), w4 g32 sym (W4A8), w8 per-channel."""
    from kernels.int4_pack import pack_int4_weight
    from qsched_core.quant.primitives import choose_qparams, quantize

    out = {}
    for name, g, sym in [("w4g128", 128, False), ("w4g32", 32, True)]:
        s, z = choose_qparams(w.float(), 4, g, sym)
        out[name] = pack_int4_weight(quantize(w.float(), s, z, 4, sym), s, z, sym) + (s, z, g)
    s, z = choose_qparams(w.float(), 8, -1, True)
    out["w8"] = (quantize(w.float(), s, z, 8, True), s)
    return out


def gemm_rows(dev) -> list[dict]:
    from kernels.act_quant import act_quant_int8
    from kernels.int4_pack import unpack_int4_ref
    from kernels.w4a8_gemm import w4a8_gemm, w4a8_linear
    from kernels.w4a16_gemm import w4a16_gemm
    from kernels.w8a8_gemm import w8a8_gemm, w8a8_linear
    from qsched_core.quant.primitives import dequantize

    rows = []
    for name, k, n in SHAPES:
        w = torch.randn(n, k, device=dev, dtype=torch.float16) * 0.02
        wb = w.bfloat16()
        qw = quantized_weights(w)
        (p4, s4, z4, s4f, z4f, g4), (p32, s32, _, _, _, _), (q8, s8) = qw["w4g128"], qw["w4g32"], qw["w8"]
        codes4 = unpack_int4_ref(p4, k, symmetric=False)
        w4_bytes = sum(t.numel() * t.element_size() for t in (p4, s4, z4))
        w432_bytes = p32.numel() + s32.numel() * 2
        for m in M_LIST:
            x = torch.randn(m, k, device=dev, dtype=torch.float16)
            xb = x.bfloat16()
            qx, sx, _ = act_quant_int8(x, True, scale_rule="qmax")
            qxa, sxa, zxa = act_quant_int8(x, False)
            io = 2 * m * (k + n)  # activation in + output out, fp16
            impls = {
                "cublas_fp16": (lambda: F.linear(x, w), 2 * n * k + io),
                "cublas_bf16": (lambda: F.linear(xb, wb), 2 * n * k + io),
                "torch_dequant_fp16": (lambda: F.linear(x, dequantize(codes4, s4f, z4f).half()), w4_bytes + io),
                "w4a16": (lambda: w4a16_gemm(x, p4, s4, z4, g4), w4_bytes + io),
                "w4a16_bf16": (lambda: w4a16_gemm(xb, p4, s4, z4, g4), w4_bytes + io),
                "w8a8_gemm": (lambda: w8a8_gemm(qx, sx, None, q8, s8), n * k + m * k + 2 * m * n),
                "w8a8_linear": (lambda: w8a8_linear(x, q8, s8), n * k + io),
                "w4a8_gemm": (lambda: w4a8_gemm(qxa, sxa, zxa, p32, s32, 32), w432_bytes + m * k + 2 * m * n),
                "w4a8_linear": (lambda: w4a8_linear(x, p32, s32, 32), w432_bytes + io),
            }
            if m > 16:  # torch._int_mm needs M > 16
                impls["torch_int_mm"] = (lambda: torch._int_mm(qx, q8.t()), n * k + m * k + 4 * m * n)
            base = None
            for impl, (fn, nbytes) in impls.items():
                if m == 4096 and impl == "torch_dequant_fp16":
                    continue  # the same matmul as cuBLAS plus a dequantization: adds nothing at M = 4096
                us = bench(fn)
                base = us if impl == "cublas_fp16" else base
                eager = bench(fn, graph=False) if m <= 16 else float("nan")  # launch overhead matters at small M
                rows.append(dict(kind="gemm", shape=name, M=m, K=k, N=n, impl=impl, us=us, us_eager=eager,
                                 TFLOPs=2 * m * n * k / us / 1e6, TBps=nbytes / us / 1e6,
                                 intensity=2 * m * n * k / nbytes, speedup_vs_fp16=base / us,
                                 fp16_weight_MB=2 * n * k / 2**20))
            print(f"{name:24s} M={m:5d} " + " ".join(f"{r['impl']}={r['us']:.1f}" for r in rows[-len(impls):]),
                  flush=True)
        del w, wb, qw
    return rows


def elementwise_rows(dev) -> list[dict]:
    from kernels.act_quant import act_quant_int8
    from kernels.fwht import fwht
    from qsched_core.quant.hadamard import hadamard_transform

    rows = []
    for m, k in ELEMENTWISE:
        x = torch.randn(m, k, device=dev, dtype=torch.float16)
        d = (torch.randint(0, 2, (k,), device=dev) * 2 - 1).half()
        for impl, fn, nbytes in [("fwht", lambda: fwht(x, d), 4 * m * k),
                                 ("torch_hadamard_transform", lambda: hadamard_transform(x * d), 4 * m * k),
                                 ("act_quant_int8", lambda: act_quant_int8(x, False), 3 * m * k)]:
            us = bench(fn)
            rows.append(dict(kind="elementwise", shape=f"{m}x{k}", M=m, K=k, N=k, impl=impl, us=us,
                             TFLOPs=float("nan"), TBps=nbytes / us / 1e6, intensity=float("nan"),
                             speedup_vs_fp16=float("nan"), fp16_weight_MB=0.0))
            print(f"{impl:26s} {m}x{k}: {us:.1f} us, {rows[-1]['TBps']:.2f} TB/s", flush=True)
    return rows


def environment() -> dict:
    import triton

    return {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
            "cuda": torch.version.cuda, "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python " + " ".join(sys.argv),
            "timing": "GPU time from CUDA-graph replays (launch overhead excluded), median, L2 flushed before each "
                      "call; `eager` columns: triton.testing.do_bench with ordinary Python launches"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results", help="folder for kernels.md / kernels.csv / kernels_roofline.png")
    ap.add_argument("--plot", default=None, help="only redraw the roofline from this CSV")
    ap.add_argument("--skip-block", action="store_true")
    args = ap.parse_args()
    if args.plot:
        from kernels.report import plot_roofline

        plot_roofline(Path(args.plot), Path(args.plot).with_name("kernels_roofline.png"))
        return
    if not torch.cuda.is_available():
        sys.exit("kernels/bench.py needs a CUDA GPU (the kernels' CPU interpreter is for tests only)")
    dev = torch.device("cuda")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env, ceil = environment(), ceilings(dev)
    print(env, ceil, flush=True)
    rows = [dict(kind="ceiling", impl="copy", TBps=ceil["copy_TBps"]),
            dict(kind="ceiling", impl="cublas_fp16_8192", TFLOPs=ceil["fp16_TFLOPs"]),
            dict(kind="ceiling", impl="torch_int_mm_8192", TFLOPs=ceil["int8_TOPs"])]
    from kernels.bench_e2e import end_to_end_rows

    for section in (gemm_rows, elementwise_rows, None if args.skip_block else end_to_end_rows):
        if section is not None:
            rows += section(dev) if section is not end_to_end_rows else section(dev, bench, BLOCK, BLOCK_TOKENS)
            save(rows, env, ceil, out)  # after each section: a run cut short still leaves its numbers


def save(rows, env, ceil, out: Path) -> None:
    from kernels.report import plot_roofline, write_report

    with open(out / "kernels.csv", "w", newline="") as f:
        keys = list(dict.fromkeys(k for r in rows for k in r))  # every column, in first-seen order
        wr = csv.DictWriter(f, fieldnames=keys)
        wr.writeheader()
        wr.writerows(rows)
    write_report(rows, env, ceil, out / "kernels.md")
    try:
        plot_roofline(out / "kernels.csv", out / "kernels_roofline.png", ceil)
    except ImportError as e:  # matplotlib missing on the GPU machine: redraw later with --plot
        print(f"roofline not drawn ({e}); run: python kernels/bench.py --plot {out / 'kernels.csv'}")


if __name__ == "__main__":
    main()
