"""Where the time of the fp16x2 tensor-core W4A16 kernel (w4a16_tc_f16x2.py) goes at small M, on one GPU.

  --compare  cuBLAS fp16, the small-M dispatcher and w4a16_tc_f16x2 alone (tuned) on six layers at M = 3, 8, 16,
             with each kernel's max error against the fp32 reference and its four fastest configs;
  --probe    one config at a time at M = 16, launched straight at the kernel: split-K atomics against plain stores
             (wrong sums, same traffic), the PTX dequantization against Triton's own (DEQ_ASM = 0), the asm declared
             not pure (PURE = False), and the launcher's zeroed output (one memset) included;
  --sweep    48 configs through the launcher (zeroed output included) on the five large layers at M = 4 and 16,
             the six fastest of each;
  --medium   the same at M = 128 and 512 over 64- and 128-row blocks of x (`get_medium_configs` is a first guess,
             never swept), next to the tiled kernel tuned over its own configs.
Times are CUDA-graph replays with every call on its own copy of the weights (kernels/bench.py's `time_us`).
The logs of the runs that kernels/bench_notes.md quotes are in results/tc_study/ (README there).

Run:  python kernels/tc_study.py --compare | --probe | --sweep | --medium      (a CUDA GPU)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kernels._common import TUNED, cdiv  # noqa: E402
from kernels.bench import time_us, w4g128_layer_copies  # noqa: E402
from kernels.w4a16_gemm import w4a16_gemm_ref, w4a16_small_m  # noqa: E402
from kernels.w4a16_tc_f16x2 import ASM, CONSTRAINTS, w4a16_tc_f16x2, w4a16_tc_f16x2_kernel  # noqa: E402

LAYERS = [("sd-ff-up", 1280, 10240), ("llada/anchor", 4096, 4096), ("flux-ff", 3072, 12288),
          ("llada-ff", 4096, 12288), ("llada-down", 12288, 4096), ("8192", 8192, 8192)]  # (name, K, N)
PROBE_CONFIGS = [(64, 2, 16, 4, 3), (64, 2, 16, 2, 3), (128, 2, 8, 4, 3), (64, 2, 4, 4, 3), (128, 2, 2, 4, 3),
                 (64, 2, 32, 4, 3)]  # (BLOCK_N, NB, SPLIT_K, warps, stages)
SWEEP_CONFIGS = [(bn, 2, sk, w, st) for bn, w in [(64, 4), (32, 2), (32, 1)] for sk in (1, 2, 4, 8)
                 for st in (2, 3, 4, 5)]


def compare() -> None:
    for name, k, n in LAYERS:
        wfs, qs = w4g128_layer_copies(k, n)
        for m in (3, 8, 16):
            x = torch.randn(m, k, device="cuda", dtype=torch.float16)
            ref = w4a16_gemm_ref(x, *qs[0], 128).float()
            fp = time_us([lambda wf=wf: F.linear(x, wf) for wf in wfs])
            old = time_us([lambda q=q: w4a16_small_m(x, *q, 128) for q in qs])
            err = ((w4a16_tc_f16x2(x, *qs[0], 128).float() - ref).abs().max() / ref.abs().max()).item()
            new = time_us([lambda q=q: w4a16_tc_f16x2(x, *q, 128) for q in qs])
            key = [kk for kk in TUNED if kk[0] == "w4a16_tc_f16x2" and kk[1][:2] == (n, k)][-1]
            best = [(c, round(v, 1)) for c, v in list(TUNED[key].items())[:4]]
            print(f"{name:14s} M={m:2d} fp16 {fp:6.1f} dispatcher {old:6.1f} ({fp / old:.2f}x) tc_f16x2 {new:6.1f} "
                  f"({fp / new:.2f}x) err {err:.2g} best {best}", flush=True)
        del wfs, qs
        torch.cuda.empty_cache()


def _launch(x, q, n, k, cfg, atomic: bool, asm: bool, pure: bool, y=None):
    """The kernel itself with one config; y=None allocates the zeroed output as the launcher does."""
    p, s, z = q
    bn, nb, sk, w, st = cfg
    y = torch.zeros(x.shape[0], n, dtype=torch.float16, device="cuda") if y is None else y
    w4a16_tc_f16x2_kernel[(cdiv(n, bn), sk, 1)](
        x, p, s, z, s, y, x.shape[0], n, k, x.stride(0), p.stride(0), s.stride(0), y.stride(0),
        GROUP=128, HAS_ZEROS=True, HAS_BIAS=False, ATOMIC=atomic, EVEN_K=k % (64 * nb) == 0, DEQ_ASM=asm,
        DOT_DTYPE=tl.float16, ASM_TEXT=ASM, CONS=CONSTRAINTS, HALF_BLOCK=32, BLOCK_M=16, BLOCK_N=bn, NB=nb,
        SPLIT_K=sk, PURE=pure, num_warps=w, num_stages=st)
    return y


def probe() -> None:
    variants = {"atomic+asm": (True, True, True, False), "store+asm": (False, True, True, False),
                "atomic+triton-dequant": (True, False, True, False), "atomic+asm not pure": (True, True, False, False),
                "with torch.zeros": (True, True, True, True)}
    for name, k, n in [("8192", 8192, 8192), ("llada-ff", 4096, 12288)]:
        wfs, qs = w4g128_layer_copies(k, n)
        x = torch.randn(16, k, device="cuda", dtype=torch.float16)
        ys = torch.zeros(16, n, dtype=torch.float16, device="cuda")
        print(f"{name} M=16 cuBLAS {time_us([lambda wf=wf: F.linear(x, wf) for wf in wfs]):.1f} us", flush=True)
        for cfg in PROBE_CONFIGS:
            cells = []
            for label, (atomic, asm, pure, zero) in variants.items():
                t = time_us([lambda q=q, a=atomic, s=asm, p=pure, zz=zero: _launch(x, q, n, k, cfg, a, s, p,
                                                                                    None if zz else ys) for q in qs])
                cells.append(f"{label} {t:.1f}")
            print(f"  cfg {cfg}: " + "  ".join(cells), flush=True)
        del wfs, qs
        torch.cuda.empty_cache()


def _sweep(layers, m_list, configs, baseline=None) -> None:
    """Time every (BLOCK_N, NB, SPLIT_K, BLOCK_M, warps, stages) config through the launcher on each layer and M;
    print cuBLAS and the six fastest (with `baseline(x, q0)` -> (label, us) added to the ranking when given)."""
    for name, k, n in layers:
        wfs, qs = w4g128_layer_copies(k, n)
        for m in m_list:
            x = torch.randn(m, k, device="cuda", dtype=torch.float16)
            fp = time_us([lambda wf=wf: F.linear(x, wf) for wf in wfs])
            res = dict([baseline(x, qs[0])]) if baseline else {}
            for bn, nb, sk, bm, w, st in configs:
                cfg = triton.Config({"TC": 1, "BLOCK_N": bn, "NB": nb, "SPLIT_K": sk, "BLOCK_M": bm}, num_warps=w,
                                    num_stages=st)
                try:
                    res[(bn, nb, sk, bm, w, st)] = time_us([lambda q=q, c=cfg: w4a16_tc_f16x2(x, *q, 128, config=c)
                                                            for q in qs])
                except Exception as e:  # out of shared memory or registers: skip the config, say so
                    print(f"  {(bn, nb, sk, bm, w, st)} did not run: {type(e).__name__}", flush=True)
            best = sorted((v, str(c)) for c, v in res.items() if v == v)[:6]
            print(f"{name} M={m} cuBLAS {fp:.1f}: " + ", ".join(f"{c} {v:.1f} ({fp / v:.2f}x)" for v, c in best),
                  flush=True)
        del wfs, qs
        torch.cuda.empty_cache()


def sweep() -> None:
    _sweep([lay for lay in LAYERS if lay[0] != "sd-ff-up"], (4, 16),
           [(bn, nb, sk, 16, w, st) for bn, nb, sk, w, st in SWEEP_CONFIGS])


MEDIUM_SWEEP = [(bn, 2, sk, bm, w, st) for bm in (64, 128) for bn, w in [(32, 2), (64, 4), (128, 4), (128, 8)]
                for sk in (1, 2, 4) for st in (3, 4)]


def medium() -> None:
    from kernels._common import tune, tuned_us
    from kernels.w4a16_gemm import _configs_for, w4a16_tiled

    def tiled(x, q0):  # the tiled kernel, tuned over its own configs for this shape
        key = (q0[0].shape[0], x.shape[1], x.shape[0], "study")
        tune("tiled_study", key, _configs_for(128), lambda c: w4a16_tiled(x, *q0, 128, config=c))
        return "tiled (tuned)", tuned_us("tiled_study", key)

    _sweep([lay for lay in LAYERS if lay[0] != "sd-ff-up"], (128, 512), MEDIUM_SWEEP, tiled)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--compare", action="store_true")
    mode.add_argument("--probe", action="store_true")
    mode.add_argument("--sweep", action="store_true")
    mode.add_argument("--medium", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("kernels/tc_study.py times kernels on a CUDA GPU")
    torch.manual_seed(0)
    (compare if args.compare else probe if args.probe else sweep if args.sweep else medium)()


if __name__ == "__main__":
    main()
