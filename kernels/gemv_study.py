"""Where the time of a W4A16 layer goes at M = 1: four kernels over the same int4 words, timed in one run.

  stream     loads the int32 words of codes and XORs them together: no arithmetic, the rate at which this access
             pattern streams the weight (the ceiling of any kernel that reads it this way);
  gemv_fp32  the repo's w4a16_gemv, CUDA-core path (fp32 arithmetic, one weight per instruction), tuned;
  f16x2_auto the fp16x2 arithmetic of w4a16_gemv_f16x2 (the same inline PTX) in plain Triton, whose compiler picks
             the register layouts and converts between them through shared memory (the kernel's first form: its
             scales and zeros go through fp32 and are loaded per plane);
  f16x2      the repo's w4a16_gemv_f16x2 (the same arithmetic, every layout fixed in Gluon), tuned;
and cuBLAS fp16 F.linear, on the layers with >= 32 MB of fp16 weights (the W4A16 target's layers).

`--sass` compiles the same kernels for sm_90 on any machine (Triton's bundled ptxas and nvdisasm, no GPU) and
counts the instructions of each kernel's main loop per weight, its registers per thread and its barriers: the
numbers kernels/bench_notes.md uses to explain the times. It also counts the tensor-core kernels of M = 3..16:
the split-K tiled kernel and w4a16_tc_f16x2, the latter also with its inline asm declared not pure.

Run:  python kernels/gemv_study.py --out results/gemv_study     (one GPU; writes gemv_study.md and .json)
      python kernels/gemv_study.py --sass                        (no GPU)
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kernels.w4a16_gemv_f16x2 import ASM  # noqa: E402

LAYERS = [("llada/anchor 4096", 4096, 4096), ("flux-ff 3072>12288", 3072, 12288),
          ("llada-ff 4096>12288", 4096, 12288), ("llada-down 12288>4096", 12288, 4096), ("8192x8192", 8192, 8192)]
STREAM_CONFIGS = [(16, 16, 4), (32, 8, 2), (8, 16, 4), (64, 8, 8)]  # (BLOCK_N, NB, warps): rows, blocks, warps
AUTO_CONFIGS = [(8, 16, 4), (4, 16, 2), (8, 8, 2), (16, 8, 4)]


@triton.jit
def stream_kernel(w_ptr, y_ptr, N, KW, stride_wn, BLOCK_N: tl.constexpr, NB: tl.constexpr):
    """XOR of every word of BLOCK_N rows, NB packing blocks (8 words each) per loop step."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_N, 8 * NB), dtype=tl.int32)
    for tile in range(0, KW // (8 * NB)):
        word = tile * 8 * NB + tl.arange(0, 8 * NB)
        acc ^= tl.load(w_ptr + rows[:, None] * stride_wn + word[None, :], mask=rows[:, None] < N, other=0)
    tl.store(y_ptr + rows, tl.sum(acc, axis=1).to(tl.float32).to(tl.float16), mask=rows < N)


@triton.jit
def _dup16(v):
    h = v.to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
    return h | (h << 16)


@triton.jit
def f16x2_auto_kernel(x_ptr, w_ptr, s_ptr, z_ptr, y_ptr, N, KW, stride_wn, stride_sn, GROUP: tl.constexpr,
                      BLOCK_N: tl.constexpr, NB: tl.constexpr, ASM_TEXT: tl.constexpr):
    """w4a16_gemv_f16x2's arithmetic with Triton's own layouts (K a multiple of 64 NB, zeros present, no masks on K)."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    r3 = rows[:, None, None]
    b3 = tl.arange(0, NB)[None, :, None]
    j3 = tl.arange(0, 8)[None, None, :]
    acc3 = tl.zeros((BLOCK_N, NB, 8), dtype=tl.float32)
    for tile in range(0, KW // (8 * NB)):
        blk = tile * NB + b3
        words = tl.load(w_ptr + r3 * stride_wn + blk * 8 + j3, mask=r3 < N, other=0)
        g_lo, g_hi = (blk * 64) // GROUP, (blk * 64 + 32) // GROUP
        s_lo = tl.load(s_ptr + r3 * stride_sn + g_lo, mask=r3 < N, other=0.0)
        s_hi = tl.load(s_ptr + r3 * stride_sn + g_hi, mask=r3 < N, other=0.0)
        z_lo = tl.load(z_ptr + r3 * stride_sn + g_lo, mask=r3 < N, other=0).to(tl.float32)
        z_hi = tl.load(z_ptr + r3 * stride_sn + g_hi, mask=r3 < N, other=0).to(tl.float32)
        x_lo = tl.load(x_ptr + blk * 16 + j3)
        x_hi = tl.load(x_ptr + blk * 16 + 8 + j3)
        w0 = words * 0
        acc3 += tl.inline_asm_elementwise(
            ASM_TEXT, "=f,r,r,r,r,r,l,l",
            [words, _dup16(z_lo + 1024.0) + w0, _dup16(-(z_hi + 64.0)) + w0, _dup16(s_lo.to(tl.float32)) + w0,
             _dup16(s_hi.to(tl.float32)) + w0, x_lo + w0.to(tl.int64), x_hi + w0.to(tl.int64)],
            dtype=tl.float32, is_pure=True, pack=1)
    tl.store(y_ptr + rows, tl.sum(tl.sum(acc3, axis=2), axis=1).to(tl.float16), mask=rows < N)


def run_stream(q, n, cfg):
    bn, nb, w = cfg
    words = q[0].view(torch.int32)
    y = torch.empty(n, dtype=torch.float16, device=words.device)
    stream_kernel[(triton.cdiv(n, bn),)](words, y, n, words.shape[1], words.stride(0), BLOCK_N=bn, NB=nb,
                                         num_warps=w)
    return y


def run_auto(x, q, n, cfg):
    bn, nb, w = cfg
    p, s, z = q
    words = p.view(torch.int32)
    y = torch.empty(1, n, dtype=torch.float16, device=x.device)
    f16x2_auto_kernel[(triton.cdiv(n, bn),)](x.view(torch.int64), words, s, z, y, n, words.shape[1],
                                             words.stride(0), s.stride(0), GROUP=128, BLOCK_N=bn, NB=nb,
                                             ASM_TEXT=ASM, num_warps=w)
    return y


def measure(out: Path) -> None:
    from kernels.bench import environment, time_us, w4g128_layer_copies
    from kernels.w4a16_gemm import w4a16_gemm_ref, w4a16_small_m

    torch.manual_seed(0)
    env, rows = environment(torch.device("cuda")), []
    for name, k, n in LAYERS:
        wfs, qs = w4g128_layer_copies(k, n)
        w, q0 = wfs[0], qs[0]
        x = torch.randn(1, k, device="cuda", dtype=torch.float16)
        ref = w4a16_gemm_ref(x, *q0, 128).float()
        row = dict(layer=name, K=k, N=n, weight_MB=sum(t.numel() * t.element_size() for t in q0) / 1e6)
        row["cublas_fp16"] = time_us([lambda wf=wf: F.linear(x, wf) for wf in wfs])
        row["stream"] = min(time_us([lambda q=q, c=c: run_stream(q, n, c) for q in qs]) for c in STREAM_CONFIGS)
        for key, paths in (("gemv_fp32", ("gemv",)), ("f16x2", ("f16x2",))):
            err = ((w4a16_small_m(x, *q0, 128, paths=paths).float() - ref).abs().max() / ref.abs().max()).item()
            row[key] = time_us([lambda q=q, p=paths: w4a16_small_m(x, *q, 128, paths=p) for q in qs])
            row[key + "_err"] = err
        auto = {c: time_us([lambda q=q, c=c: run_auto(x, q, n, c) for q in qs]) for c in AUTO_CONFIGS}
        best = min(auto, key=auto.get)
        row["f16x2_auto"] = auto[best]
        row["f16x2_auto_err"] = ((run_auto(x, q0, n, best).float() - ref).abs().max() / ref.abs().max()).item()
        rows.append(row)
        print({k_: (round(v, 2) if isinstance(v, float) else v) for k_, v in row.items()}, flush=True)
        del qs, wfs, w
        torch.cuda.empty_cache()
    out.mkdir(parents=True, exist_ok=True)
    (out / "gemv_study.json").write_text(json.dumps(dict(env=env, rows=rows), indent=1))
    lines = [f"# W4A16 at M = 1: where the time goes ({env['gpu']}, torch {env['torch']}, Triton {env['triton']}, "
             f"{env['date']})", "", "Command: `python kernels/gemv_study.py --out results/gemv_study`. Time per call "
             "in us (CUDA-graph replays, every call on its own copy of the weights, as kernels/bench.py); speedup "
             "over cuBLAS fp16 in brackets; `TB/s` = int4 codes + scales + zeros per second. Max error of the "
             "three W4A16 kernels against the fp32 reference: fraction of max|y|.", "",
             "| layer | weight MB (int4) | cuBLAS fp16 | stream (no math) | gemv_fp32 | f16x2_auto | f16x2 | "
             "f16x2 TB/s | max err |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = lambda key: f"{r[key]:.1f} ({r['cublas_fp16'] / r[key]:.2f}x)"  # noqa: E731
        err = max(r["gemv_fp32_err"], r["f16x2_err"], r["f16x2_auto_err"])
        lines.append(f"| {r['layer']} | {r['weight_MB']:.1f} | {r['cublas_fp16']:.1f} | {c('stream')} | "
                     f"{c('gemv_fp32')} | {c('f16x2_auto')} | {c('f16x2')} | {r['weight_MB'] / r['f16x2']:.2f} | "
                     f"{err:.1e} |")
    (out / "gemv_study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


# ------------------------------------------------------------------------------ instruction counts, no GPU
def _compile(fn, signature: dict, constexprs: dict, num_warps: int, gluon: bool = False, num_stages: int = 3):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = list(signature) + list(constexprs)
    attrs = {(names.index(a),): [["tt.divisibility", 16]] for a, t in signature.items() if t != "fp32"}
    src_cls = ASTSource
    if gluon:
        from triton.experimental.gluon._runtime import GluonASTSource as src_cls
    src = src_cls(fn=fn, signature={**signature, **{c: "constexpr" for c in constexprs}}, constexprs=constexprs,
                  attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=num_warps,
                                                                              num_stages=num_stages))


def _sass_loop(kernel) -> tuple[collections.Counter, int]:
    """Instruction counts of the longest backward-branch loop of the kernel's SASS, and its registers/thread."""
    tools = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    with tempfile.TemporaryDirectory() as d:
        cubin = Path(d) / "k.cubin"
        cubin.write_bytes(kernel.asm["cubin"])
        sass = subprocess.run([str(tools / "nvdisasm"), "-c", str(cubin)], capture_output=True, text=True).stdout
        usage = subprocess.run([str(tools / "cuobjdump"), "--dump-resource-usage", str(cubin)], capture_output=True,
                               text=True).stdout
    regs = int(re.search(r"REG:(\d+)", usage).group(1))
    lines = sass.splitlines()
    labels = {m.group(1): i for i, line in enumerate(lines) if (m := re.match(r"\.(L_x_\d+):", line.strip()))}
    loops = [(labels[m.group(1)], i) for i, line in enumerate(lines)
             if (m := re.search(r"BRA\s+`?\(?\.(L_x_\d+)", line)) and labels.get(m.group(1), i) < i]
    start, end = max(loops, key=lambda se: se[1] - se[0])
    ops = collections.Counter(m.group(1).split(".")[0] for line in lines[start:end + 1]
                              if (m := re.search(r"/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", line)))
    return ops, regs


def sass_report() -> list[str]:
    from kernels.w4a16_gemv import w4a16_gemv_kernel
    from kernels.w4a16_gemv import get_autotune_configs as gemv_configs
    from kernels.w4a16_gemv_f16x2 import get_autotune_configs as f16x2_configs
    from kernels.w4a16_gemm import get_splitk_configs, w4a16_gemm_kernel
    from kernels.w4a16_gemv_f16x2 import w4a16_gemv_f16x2_kernel
    from kernels.w4a16_tc_f16x2 import ASM as TC_ASM
    from kernels.w4a16_tc_f16x2 import CONSTRAINTS as TC_CONS
    from kernels.w4a16_tc_f16x2 import get_autotune_configs as tc_configs
    from kernels.w4a16_tc_f16x2 import w4a16_tc_f16x2_kernel

    i32 = "i32"
    cases = []
    bn, nb, w = STREAM_CONFIGS[0]
    cases.append(("stream", stream_kernel, dict(w_ptr="*i32", y_ptr="*fp16", N=i32, KW=i32, stride_wn=i32),
                  dict(BLOCK_N=bn, NB=nb), w, False, bn * 8 * nb))
    fma = next(c for c in gemv_configs() if not c.kwargs["DOT"])
    sig = dict(x_ptr="*fp16", w_ptr="*i32", s_ptr="*fp16", z_ptr="*u8", b_ptr="*fp16", y_ptr="*fp16", M=i32, N=i32,
               K=i32, KW=i32, stride_xm=i32, stride_wn=i32, stride_sn=i32, stride_ym=i32, magic=i32)
    const = dict(GROUP=128, HAS_ZEROS=True, HAS_BIAS=False, DOT_DTYPE=tl.float16, ATOMIC=False, EVEN_K=True,
                 BLOCK_M=1, **fma.kwargs)
    cases.append(("gemv_fp32", w4a16_gemv_kernel, sig, const, fma.num_warps, False,
                  fma.kwargs["BLOCK_N"] * 8 * fma.kwargs["NB"] * fma.kwargs["ITERS"]))
    bn, nb, w = AUTO_CONFIGS[0]
    cases.append(("f16x2_auto", f16x2_auto_kernel, dict(x_ptr="*i64", w_ptr="*i32", s_ptr="*fp16", z_ptr="*u8",
                                                        y_ptr="*fp16", N=i32, KW=i32, stride_wn=i32, stride_sn=i32),
                  dict(GROUP=128, BLOCK_N=bn, NB=nb, ASM_TEXT=ASM), w, False, bn * 8 * nb))
    c = f16x2_configs()[0]
    sig = dict(x_ptr="*i64", w_ptr="*i32", s_ptr="*fp16", z_ptr="*u8", b_ptr="*fp16", y_ptr="*fp16", N=i32, K=i32,
               K4=i32, KW=i32, stride_xm=i32, stride_wn=i32, stride_sn=i32, stride_ym=i32)
    kw = {k: v for k, v in c.kwargs.items() if k not in ("F16X2", "SPLIT_K")}
    const = dict(GROUP=128, HAS_ZEROS=True, HAS_BIAS=False, ATOMIC=False, EVEN_K=True, **kw, WARPS=c.num_warps,
                 ASM_TEXT=ASM)
    cases.append(("f16x2", w4a16_gemv_f16x2_kernel, sig, const, c.num_warps, True, kw["BLOCK_N"] * 8 * kw["NB"]))
    # the tensor-core kernels of M = 3..16 (the first configs of their tuners)
    sig = dict(x_ptr="*fp16", w_ptr="*u8", s_ptr="*fp16", z_ptr="*u8", b_ptr="*fp16", y_ptr="*fp16", M=i32, N=i32,
               K=i32, M_BUCKET=i32, stride_xm=i32, stride_wn=i32, stride_sn=i32, stride_ym=i32)
    sk = get_splitk_configs()[0]
    const = dict(GROUP=128, HAS_ZEROS=True, HAS_BIAS=False, DOT_DTYPE=tl.float16, HALF_BLOCK=32, **sk.kwargs)
    cases.append(("splitk (M <= 16)", w4a16_gemm_kernel, sig, const, sk.num_warps, False,
                  sk.kwargs["BLOCK_N"] * 8 * sk.kwargs["NB"], sk.num_stages))
    sig = {k: v for k, v in sig.items() if k != "M_BUCKET"}
    tc = tc_configs()[0]
    for pure in (True, False):
        const = dict(GROUP=128, HAS_ZEROS=True, HAS_BIAS=False, ATOMIC=True, EVEN_K=True, DEQ_ASM=True,
                     DOT_DTYPE=tl.float16, ASM_TEXT=TC_ASM, CONS=TC_CONS, HALF_BLOCK=32,
                     **{k: v for k, v in tc.kwargs.items() if k != "TC"}, PURE=pure)
        cases.append(("tc_f16x2" + ("" if pure else " (PURE=False)"), w4a16_tc_f16x2_kernel, sig, const, tc.num_warps,
                      False, tc.kwargs["BLOCK_N"] * 8 * tc.kwargs["NB"], tc.num_stages))
    lines = [f"# Main-loop instructions per weight, compiled for sm_90 (Triton {triton.__version__}, no GPU)", "",
             "Command: `python kernels/gemv_study.py --sass`. Per weight = instructions of one loop step x threads "
             "per program / weights per step (every thread executes the loop body once per step).", "",
             "| kernel | config | registers/thread | loop instructions / weight | of which barriers + shared-memory "
             "loads/stores per weight | top instructions in the loop |", "|---|---|---|---|---|---|"]
    for name, fn, sig, const, warps, gluon, words_per_step, *stages in cases:
        ops, regs = _sass_loop(_compile(fn, sig, const, warps, gluon, *stages))
        per = 32 * warps / (8 * words_per_step)  # a loop step: every thread once, 8 weights per word
        total = sum(ops.values())
        shared = sum(v for k, v in ops.items() if k in ("BAR", "LDS", "STS", "LDSM", "STSM"))
        cfg = " ".join(f"{k}={v}" for k, v in const.items()
                       if k.isupper() and k not in ("ASM_TEXT", "DOT_DTYPE", "CONS", "HALF_BLOCK", "DEQ_ASM"))
        top = ", ".join(f"{k} {v}" for k, v in ops.most_common(6))
        lines.append(f"| {name} | {cfg} w{warps} | {regs} | {total * per:.2f} | {shared * per:.2f} | {top} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/gemv_study")
    ap.add_argument("--sass", action="store_true", help="instruction counts for sm_90, no GPU needed")
    args = ap.parse_args()
    if args.sass:
        print("\n".join(sass_report()))
        return
    if not torch.cuda.is_available():
        sys.exit("gemv_study.py times kernels on a CUDA GPU; --sass counts their instructions without one")
    os.environ.setdefault("QSCHED_AUTOTUNE", "1")
    measure(Path(args.out))


if __name__ == "__main__":
    main()
