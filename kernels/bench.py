"""Benchmark the Triton kernels against cuBLAS and against the memory limit, on one GPU, in one run.

What is measured, all in this run:
  - ceilings of this GPU: device-to-device copy bandwidth (the best of four methods on 1 and 4 GiB buffers,
    `copy_rates`), cuBLAS fp16 rate (8192^3) and the int8 rate of torch._int_mm (8192^3, K-major weight);
  - every GEMM at M in {1, 16, 128, 4096} on linear layers of real models (SD1.5/SDXL attention and feed-forward,
    FLUX, LLaDA-8B), against F.linear in fp16 and bf16 (cuBLAS) and against torch's dequantize-then-matmul path;
    at M <= 16 also each small-M W4A16 kernel on its own (`w4a16_gemv`, `w4a16_splitk`; `w4a16` runs the faster);
  - the small-M section: M = 2, 4, 8, 12 on the layers with >= 32 MB of fp16 weights, the same W4A16 columns;
  - the Hadamard transform and the activation quantizer against the copy bandwidth;
  - end to end (bench_e2e.py): one LLaDA-8B-sized transformer block at fp16 / W4A16 / W8A8 / W4A8, the tiny-world
    UNet, and the tiny diffusion LM's generation speed (tokens/s) in fp16 and W4A16.

How a time is measured (`time_us`): each call gets its own copy of the weights, and the calls are made in turn
over enough copies that a graph replay streams >= 512 MB, so no call finds its weights in the 60 MB L2 (a 4096 x
4096 int4 layer is 9 MB: timed alone it would run from L2). `us` is the GPU time per call from CUDA-graph replays
(launch overhead excluded: what a deployment with CUDA graphs or torch.compile sees); `us_eager` (M <= 16) is the
same calls launched from Python back to back, so a slow launch path shows up as GPU idle time.

Why the ratios: a 4-bit weight stream is ~3.9x smaller than fp16 (codes + scales), so at M = 1 a perfect W4A16 GEMV
approaches 3.9x over cuBLAS; at M = 4096 everything is compute-bound and only int8 tensor cores (2x fp16 on paper)
can win.

Run:  python kernels/bench.py --out results        (writes kernels.md, kernels.csv, kernels_roofline.png,
                                                    kernels_tuning.json, dllm_gpu_speed.json)
      python kernels/bench.py --plot results/kernels.csv   (redraw the roofline from a CSV, no GPU needed)
      python kernels/bench.py --dry-run --out /tmp/b        (tiny shapes on the CPU interpreter: checks the script)
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

SHAPES = [  # (name, K = in_features, N = out_features)
    ("sd-attn 1280", 1280, 1280), ("sd-ff-up 1280>10240", 1280, 10240), ("sd-ff-down 5120>1280", 5120, 1280),
    ("llada/anchor 4096", 4096, 4096), ("flux-ff 3072>12288", 3072, 12288), ("llada-ff 4096>12288", 4096, 12288),
    ("llada-down 12288>4096", 12288, 4096), ("8192x8192", 8192, 8192),
]
M_LIST = [1, 16, 128, 4096]
SMALL_M = [2, 4, 8, 12]  # the small-M section: one M per tuning bucket (2, 3-4, 5-8, 9-16) between 1 and 16
SMALL_M_IMPLS = ("cublas_fp16", "w4a16", "w4a16_gemv", "w4a16_splitk", "w4a16_f16x2", "w4a16_tc_f16x2")
ELEMENTWISE = [(4096, 4096), (4096, 12288), (16384, 4096)]  # (M, K) for the Hadamard transform and act quantizer
BLOCK = dict(d=4096, ff=12288, heads=32)  # LLaDA-8B
BLOCK_TOKENS = [1, 16, 4096]
ROTATE_BYTES = 512 * 2**20  # weight bytes streamed per graph replay (>= 8x the H200's 60 MB L2)
DRY = dict(shapes=[("tiny 256>96", 256, 96)], m_list=[1, 3, 17], small_m=[2], elementwise=[(5, 256)],
           block=dict(d=128, ff=256, heads=2), block_tokens=[1, 17])


def copies_for(nbytes: int, cap: int = 256) -> int:
    """How many copies of a tensor of nbytes make one rotation stream ROTATE_BYTES (2 at least)."""
    return max(2, min(cap, math.ceil(ROTATE_BYTES / max(nbytes, 1))))


def w4g128_layer_copies(k: int, n: int) -> tuple[list[torch.Tensor], list[tuple]]:
    """One random (N, K) layer, N(0, 0.02) on the GPU: its fp16 copies and its W4A16 g128 copies (packed codes, scales,
    zeros), enough of each (`copies_for`) that every call of a timed rotation reads its weights from memory."""
    w = torch.randn(n, k, device="cuda", dtype=torch.float16) * 0.02
    q0 = quantized_weights(w)["w4g128"]
    copies = copies_for(2 * n * k)
    wfs = [w] + [w.clone() for _ in range(copies - 1)]
    return wfs, [q0] + [tuple(t.clone() for t in q0) for _ in range(copies - 1)]


def time_us(fns, graph: bool = True, reps: int = 10) -> float:
    """Median time per call (us) of calling every fn in `fns` once, in turn; NaN (and a printed error) if one fails.

    graph=True captures the calls into one CUDA graph and times its replays; graph=False launches them from Python.
    On the CPU (--dry-run) it is wall-clock time, for checking the script only.
    """
    fns = fns if isinstance(fns, (list, tuple)) else [fns]
    try:
        fns[0]()  # compile and autotune outside any capture
        if not torch.cuda.is_available():
            t0 = time.perf_counter()
            for f in fns:
                f()
            return 1e6 * (time.perf_counter() - t0) / len(fns)
        run = lambda: [f() for f in fns]
        if graph:
            from kernels._common import capture_graph

            try:
                run = capture_graph(run).replay
            except RuntimeError as e:  # something in fn cannot be captured: say so, time it eagerly
                print(f"graph capture failed ({str(e)[:120]}); eager timing for this row", flush=True)
                return time_us(fns, graph=False, reps=reps)
        run()
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            times.append(1e3 * start.elapsed_time(end) / len(fns))
        return statistics.median(times)
    except Exception as e:  # one failing kernel must not end the run: reported, and the row shows NaN
        print(f"FAILED: {type(e).__name__}: {str(e)[:300]}", flush=True)
        return float("nan")


def copy_rates(dev) -> dict[str, float]:
    """Device-to-device copy bandwidth (TB/s, bytes read + written) by several methods; the ceiling is the best.

    A ceiling must be one: a CUDA-graph-captured `copy_` becomes a memcpy node, which one run measured at 2.75 TB/s,
    below the 3.20 TB/s that fwht moved in the same run. So: `copy_` eager and in a graph, an SM copy kernel
    (`torch.mul(x, 1)`), and Triton's vectorized copy, each on 1 GiB and 4 GiB buffers.
    """
    rates = {}
    for gib in (1, 4):
        rates.update(_copy_rates_at(dev, gib))
    return rates


def _copy_rates_at(dev, gib: int) -> dict[str, float]:
    from triton.testing import do_bench

    x = torch.randn(gib * 2**29, dtype=torch.float16, device=dev)
    y = torch.empty_like(x)
    nbytes = 2 * x.numel() * 2  # read + write
    rates = {f"{name} {gib} GiB": nbytes / time_us(fn) / 1e6
             for name, fn in [("copy_ graph", lambda: y.copy_(x)), ("mul graph", lambda: torch.mul(x, 1.0, out=y)),
                              ("triton graph", lambda: _triton_copy(x, y))]}
    rates[f"copy_ eager {gib} GiB"] = nbytes / (1e3 * do_bench(lambda: y.copy_(x), return_mode="min")) / 1e6
    return rates


_COPY_KERNEL = []  # the Triton copy kernel, built on first use (bench.py imports no Triton at module load)


def _triton_copy(x: torch.Tensor, y: torch.Tensor) -> None:
    """y = x with 8192-element programs (16-byte vector loads and stores)."""
    import triton
    import triton.language as tl

    if not _COPY_KERNEL:
        @triton.jit
        def copy_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
            offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
            tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)

        _COPY_KERNEL.append(copy_kernel)
    _COPY_KERNEL[0][(triton.cdiv(x.numel(), 8192),)](x, y, x.numel(), BLOCK=8192, num_warps=8)


def ceilings(dev) -> dict:
    if dev.type != "cuda":
        return {"copy_TBps": float("nan"), "fp16_TFLOPs": float("nan"), "int8_TOPs": float("nan"), "copy_methods": {}}
    rates = copy_rates(dev)
    a = torch.randn(8192, 8192, device=dev, dtype=torch.float16)
    fp16_us = time_us(lambda: F.linear(a, a))
    qa = torch.randint(-128, 127, (8192, 8192), device=dev, dtype=torch.int8)
    int8_us = time_us(lambda: torch._int_mm(qa, qa.t()))
    flop = 2 * 8192**3
    return {"copy_TBps": max(rates.values()), "fp16_TFLOPs": flop / fp16_us / 1e6, "int8_TOPs": flop / int8_us / 1e6,
            "copy_methods": rates}


def quantized_weights(w: torch.Tensor) -> dict:
    """The three formats from the library's primitives: w4 g128 asym (W4A16), w4 g32 sym (W4A8), w8 per-channel."""
    from kernels.int4_pack import pack_int4_weight, unpack_int4_ref
    from qsched_core.quant.primitives import choose_qparams, quantize

    out = {}
    for name, g, sym in [("w4g128", 128, False), ("w4g32", 32, True)]:
        s, z = choose_qparams(w.float(), 4, g, sym)
        out[name] = pack_int4_weight(quantize(w.float(), s, z, 4, sym), s, z, sym)
        if name == "w4g128":
            out["dequant"] = (unpack_int4_ref(out[name][0], w.shape[1], sym), s, z)  # codes for torch's path
    s, z = choose_qparams(w.float(), 8, -1, True)
    out["w8"] = (quantize(w.float(), s, z, 8, True), s)
    return out


def gemm_impls(x, qx, sx, qxa, sxa, zxa, wf, wb, q, m):
    """{impl: (call on one copy of the weights, bytes moved)} for one shape and M; q holds the quantized copies."""
    from kernels.w4a8_gemm import w4a8_gemm, w4a8_linear
    from kernels.w4a16_gemm import LARGE_M_PATHS, MEDIUM_MAX_M, w4a16_gemm, w4a16_large_m, w4a16_small_m
    from kernels.w8a8_gemm import w8a8_gemm, w8a8_linear
    from qsched_core.quant.primitives import dequantize

    (n, k), xb = wf.shape, x.bfloat16()
    p4, s4, z4 = q["w4g128"]
    p32, s32, _ = q["w4g32"]
    q8, s8 = q["w8"]
    codes, s4f, z4f = q["dequant"]
    io = 2 * m * (k + n)  # activation in + output out, fp16
    w4 = sum(t.numel() * t.element_size() for t in (p4, s4, z4)) + io
    w432 = p32.numel() + s32.numel() * 2
    impls = {
        "cublas_fp16": (lambda: F.linear(x, wf), 2 * n * k + io),
        "cublas_bf16": (lambda: F.linear(xb, wb), 2 * n * k + io),
        "torch_dequant_fp16": (lambda: F.linear(x, dequantize(codes, s4f, z4f).half()), w4),
        "w4a16": (lambda: w4a16_gemm(x, p4, s4, z4, 128), w4),
        "w4a16_bf16": (lambda: w4a16_gemm(xb, p4, s4, z4, 128), w4),
        "w8a8_gemm": (lambda: w8a8_gemm(qx, sx, None, q8, s8), n * k + m * k + 2 * m * n),
        "w8a8_linear": (lambda: w8a8_linear(x, q8, s8), n * k + io),
        "w4a8_gemm": (lambda: w4a8_gemm(qxa, sxa, zxa, p32, s32, 32), w432 + m * k + 2 * m * n),
        "w4a8_linear": (lambda: w4a8_linear(x, p32, s32, 32), w432 + io),
    }
    if m <= 16:  # each small-M kernel on its own (w4a16 runs the fastest, as its tuner timed them)
        impls["w4a16_gemv"] = (lambda: w4a16_small_m(x, p4, s4, z4, 128, paths=("gemv",)), w4)
        impls["w4a16_splitk"] = (lambda: w4a16_small_m(x, p4, s4, z4, 128, paths=("splitk",)), w4)
        impls["w4a16_tc_f16x2"] = (lambda: w4a16_small_m(x, p4, s4, z4, 128, paths=("tc_f16x2",)), w4)
    if m <= 2 and x.is_cuda:  # the fp16x2 GEMV on its own (fp16 x only; it runs inline PTX, so not on the CPU)
        impls["w4a16_f16x2"] = (lambda: w4a16_small_m(x, p4, s4, z4, 128, paths=("f16x2",)), w4)
    if m > 16:  # each large-M kernel on its own (w4a16 runs the fastest, as its tuner timed them)
        for path in LARGE_M_PATHS if m <= MEDIUM_MAX_M else ("tiled", "dequant_mm"):
            extra = 4 * n * k if path == "dequant_mm" else 0  # the fp16 weight, written and read back
            impls[f"w4a16_{path}"] = (lambda p=path: w4a16_large_m(x, p4, s4, z4, 128, paths=(p,)), w4 + extra)
    if m > 16 and x.is_cuda:  # torch._int_mm needs M > 16
        impls["torch_int_mm"] = (lambda: torch._int_mm(qx, q8.t()), n * k + m * k + 4 * m * n)
    if m >= 4096:  # the same matmul as cuBLAS plus a dequantization: adds nothing at M = 4096
        del impls["torch_dequant_fp16"]
    return impls


def small_m_pick(n: int, k: int, m: int, dtype) -> str:
    """'path: config' that w4a16_gemm ran for this shape and M (fp16/bf16, asymmetric g128, no bias)."""
    from kernels._common import label
    from kernels.w4a16_gemm import SMALL_M_PICKS

    key = (n, k, 1 << (m - 1).bit_length(), 128, True, False, dtype)
    hits = [pick for (paths, k_), pick in SMALL_M_PICKS.items() if k_ == key and len(paths) > 1]  # the dispatcher's
    return f"{hits[-1][0]}: {label(hits[-1][1])}" if hits else ""


def gemm_rows(dev, shapes, m_list, impls_kept=None) -> list[dict]:
    from kernels.act_quant import act_quant_int8

    rows = []
    torch.manual_seed(0)  # the same weights and inputs in every run (the timing does not depend on them)
    for name, k, n in shapes:
        w = torch.randn(n, k, device=dev, dtype=torch.float16) * 0.02
        q0 = quantized_weights(w)
        n_copies = copies_for(2 * n * k)
        clone = lambda t: t if t is None else t.clone()
        wfs = [w] + [w.clone() for _ in range(n_copies - 1)]  # every call reads its own copy (see time_us)
        wbs = [t.bfloat16() for t in wfs]
        qs = [q0] + [{f: tuple(clone(t) for t in v) for f, v in q0.items()} for _ in range(n_copies - 1)]
        packed = {f: sum(t.numel() * t.element_size() for t in q0[f] if t is not None) / (2 * n * k)
                  for f in ("w4g128", "w4g32")}  # codes + scales (+ zeros) over the fp16 weight's bytes
        for m in m_list:
            x = torch.randn(m, k, device=dev, dtype=torch.float16)
            qx, sx, _ = act_quant_int8(x, True, scale_rule="qmax")
            qxa, sxa, zxa = act_quant_int8(x, False)
            per_copy = [gemm_impls(x, qx, sx, qxa, sxa, zxa, wf, wb, q, m) for wf, wb, q in zip(wfs, wbs, qs)]
            if impls_kept:
                per_copy = [{i: v for i, v in c.items() if i in impls_kept} for c in per_copy]
            base, line = None, []
            for impl, (_, nbytes) in per_copy[0].items():
                fns = [c[impl][0] for c in per_copy]
                us = time_us(fns)
                base = us if impl == "cublas_fp16" else base
                eager = time_us(fns, graph=False, reps=5) if m <= 16 else float("nan")  # launch cost matters here
                dtype = torch.bfloat16 if impl == "w4a16_bf16" else torch.float16
                cfg = small_m_pick(n, k, m, dtype) if impl in ("w4a16", "w4a16_bf16") else ""
                rows.append(dict(kind="gemm", shape=name, M=m, K=k, N=n, impl=impl, us=us, us_eager=eager,
                                 TFLOPs=2 * m * n * k / us / 1e6, TBps=nbytes / us / 1e6,
                                 intensity=2 * m * n * k / nbytes, speedup_vs_fp16=base / us,
                                 fp16_weight_MB=2 * n * k / 2**20, config=cfg,
                                 weight_bytes_ratio=packed["w4g128" if impl.startswith("w4a16") else "w4g32"]
                                 if impl.startswith("w4") else float("nan")))
                line.append(f"{impl}={us:.1f}")
            print(f"{name:24s} M={m:5d} " + " ".join(line), flush=True)
        del w, q0, wfs, wbs, qs
    return rows


def elementwise_rows(dev, shapes) -> list[dict]:
    from kernels.act_quant import act_quant_int8
    from kernels.fwht import fwht
    from qsched_core.quant.hadamard import hadamard_transform

    rows = []
    for m, k in shapes:
        xs = [torch.randn(m, k, device=dev, dtype=torch.float16) for _ in range(copies_for(2 * m * k, cap=32))]
        d = (torch.randint(0, 2, (k,), device=dev) * 2 - 1).half()
        for impl, fn, nbytes in [("fwht", lambda x: fwht(x, d), 4 * m * k),
                                 ("torch_hadamard_transform", lambda x: hadamard_transform(x * d), 4 * m * k),
                                 ("act_quant_int8", lambda x: act_quant_int8(x, False), 3 * m * k)]:
            us = time_us([lambda x=x, fn=fn: fn(x) for x in xs])
            rows.append(dict(kind="elementwise", shape=f"{m}x{k}", M=m, K=k, N=k, impl=impl, us=us,
                             TFLOPs=float("nan"), TBps=nbytes / us / 1e6, intensity=float("nan"),
                             speedup_vs_fp16=float("nan"), fp16_weight_MB=0.0))
            print(f"{impl:26s} {m}x{k}: {us:.1f} us, {rows[-1]['TBps']:.2f} TB/s", flush=True)
        del xs
    return rows


def environment(dev) -> dict:
    import triton

    return {"gpu": torch.cuda.get_device_name() if dev.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "triton": triton.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python " + " ".join(sys.argv),
            "timing": "GPU time per call from CUDA-graph replays (launch overhead excluded), median of 10 replays, "
                      "each call on its own copy of the weights (>= 512 MB streamed per replay, so weights never "
                      "sit in L2); `eager` columns: the same calls launched from Python back to back"}


def pick_shapes(shapes: list[tuple[str, int, int]], wanted: str | None) -> list[tuple[str, int, int]]:
    """The layers named in `wanted` (comma-separated; a full name or its first word), in the table's order."""
    if wanted is None:
        return list(shapes)
    keys = {key: name for name, _, _ in shapes for key in (name, name.split()[0])}
    asked = [w.strip() for w in wanted.split(",") if w.strip()]
    unknown = [w for w in asked if w not in keys]
    if not asked or unknown:
        what = f"{unknown} not among this run's layers" if unknown else "names no layer"
        sys.exit(f"--shapes {wanted!r}: {what}; choose from {[name.split()[0] for name, _, _ in shapes]}")
    chosen = {keys[w] for w in asked}
    return [s for s in shapes if s[0] in chosen]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results", help="folder for kernels.md / kernels.csv / kernels_roofline.png")
    ap.add_argument("--plot", default=None, help="only redraw the roofline from this CSV")
    ap.add_argument("--report", default=None, help="only rewrite DIR/kernels.md (and the roofline) from the run's "
                                                   "DIR/kernels.csv and DIR/kernels_env.json, e.g. after editing "
                                                   "kernels/bench_notes.md or DIR/kernels_reading.md")
    ap.add_argument("--only", default="ceil,gemm,smallm,elementwise,block,unet,dllm",
                    help="comma-separated sections to run (ceil is always measured)")
    ap.add_argument("--m-list", default=None, help="M values of the gemm section (default 1,16,128,4096)")
    ap.add_argument("--block-tokens", default=None, help="token counts of the block section (default 1,16,4096)")
    ap.add_argument("--shapes", default=None, help="comma-separated layers of the gemm and smallm sections, by name "
                                                   "or its first word, e.g. llada-ff,8192x8192 (default: all)")
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU interpreter (checks the script)")
    args = ap.parse_args()
    shapes = pick_shapes(DRY["shapes"] if args.dry_run else SHAPES, args.shapes)
    if args.plot:
        from kernels.report import plot_roofline

        plot_roofline(Path(args.plot), Path(args.plot).with_name("kernels_roofline.png"))
        return
    if args.report:
        from kernels.report import read_rows

        out = Path(args.report)
        saved = json.loads((out / "kernels_env.json").read_text())
        save(read_rows(out / "kernels.csv"), saved["env"], saved["ceil"], out, write_data=False)
        return
    if args.dry_run:
        global ROTATE_BYTES
        os.environ["TRITON_INTERPRET"] = "1"
        ROTATE_BYTES = 1  # two copies of everything
    elif not torch.cuda.is_available():
        sys.exit("kernels/bench.py needs a CUDA GPU (the kernels' CPU interpreter is for tests only; see --dry-run)")
    from kernels import bench_e2e

    dev = torch.device("cpu" if args.dry_run else "cuda")
    sizes = dict(DRY) if args.dry_run else dict(m_list=M_LIST, small_m=SMALL_M, elementwise=ELEMENTWISE,
                                                block=BLOCK, block_tokens=BLOCK_TOKENS)
    sizes["shapes"] = shapes
    if args.m_list:
        sizes["m_list"] = [int(v) for v in args.m_list.split(",")]
    if args.block_tokens:
        sizes["block_tokens"] = [int(v) for v in args.block_tokens.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env, ceil = environment(dev), ceilings(dev)
    print(env, ceil, flush=True)
    rows = [dict(kind="ceiling", impl="copy", TBps=ceil["copy_TBps"])]
    rows += [dict(kind="copy_method", impl=k, TBps=v) for k, v in ceil["copy_methods"].items()]
    rows += [dict(kind="ceiling", impl="cublas_fp16_8192", TFLOPs=ceil["fp16_TFLOPs"]),
             dict(kind="ceiling", impl="torch_int_mm_8192", TFLOPs=ceil["int8_TOPs"])]
    sections = {
        "gemm": lambda: gemm_rows(dev, sizes["shapes"], sizes["m_list"]),
        "smallm": lambda: [dict(r, kind="smallm") for r in gemm_rows(
            dev, [s for s in sizes["shapes"] if 2 * s[1] * s[2] >= 32 * 2**20 or args.dry_run], sizes["small_m"],
            SMALL_M_IMPLS)],
        "elementwise": lambda: elementwise_rows(dev, sizes["elementwise"]),
        "block": lambda: bench_e2e.block_rows(dev, time_us, sizes["block"], sizes["block_tokens"]),
        "unet": lambda: bench_e2e.tiny_unet_rows(dev, time_us, dry=args.dry_run),
        "dllm": lambda: bench_e2e.dllm_speed_rows(dev, out / "dllm_gpu_speed.json", dry=args.dry_run),
    }
    steps = [(name, sections[name]) for name in args.only.split(",") if name in sections and name != "gemm"]
    if "gemm" in args.only.split(","):  # one step per M, so that a run cut short keeps the M values it finished
        at = [n for n in args.only.split(",") if n in sections].index("gemm")
        steps[at:at] = [(f"gemm M={m}", lambda m=m: gemm_rows(dev, sizes["shapes"], [m])) for m in sizes["m_list"]]
    for name, step in steps:
        t0 = time.time()
        try:
            rows += step()
        except Exception as e:  # a broken section must not lose the others
            print(f"section {name} FAILED: {type(e).__name__}: {str(e)[:500]}", flush=True)
        print(f"section {name}: {time.time() - t0:.0f} s", flush=True)
        save(rows, env, ceil, out)  # after each section: a run cut short still leaves its numbers


def save(rows, env, ceil, out: Path, write_data: bool = True) -> None:
    """kernels.csv, kernels_env.json (machine, versions, command, ceilings), kernels_tuning.json, kernels.md and the
    roofline into `out`; write_data=False (--report) keeps the run's CSV, environment and tuning files as they are."""
    from kernels._common import TUNED
    from kernels.report import plot_roofline, write_report

    if write_data:
        with open(out / "kernels.csv", "w", newline="") as f:
            keys = list(dict.fromkeys(k for r in rows for k in r))  # every column, in first-seen order
            wr = csv.DictWriter(f, fieldnames=keys)
            wr.writeheader()
            wr.writerows(rows)
        (out / "kernels_env.json").write_text(json.dumps(dict(env=env, ceil=ceil), indent=1))
        tuning = [dict(kernel=name, key=[str(v) for v in key], us=times) for (name, key), times in TUNED.items()]
        (out / "kernels_tuning.json").write_text(json.dumps(tuning, indent=1))
    write_report(rows, env, ceil, out / "kernels.md")
    try:
        plot_roofline(out / "kernels.csv", out / "kernels_roofline.png", ceil)
    except Exception as e:  # matplotlib missing, or a dry run without ceilings: redraw later with --plot
        print(f"roofline not drawn ({type(e).__name__}: {e}); "
              f"run: python kernels/bench.py --plot {out / 'kernels.csv'}")


if __name__ == "__main__":
    main()
