"""Helpers shared by the kernel files: argument checks with actionable errors, and two tiny @triton.jit helpers.

Why a shared file: every launcher checks the same things (device, dtype, contiguity, shapes), and every kernel that
rounds must round exactly like `torch.round` (half to even) so that its integer codes equal the ones
`qsched_core.quant.quantize` produces. Triton has no portable rint (libdevice's is missing under TRITON_INTERPRET=1),
so `round_half_even` builds it from floor.

Under TRITON_INTERPRET=1 (CPU tests) `tl.dot` on bf16 gives wrong answers, so float dots run in fp32 there
(`float_dot_dtype`); on a GPU they run in the activation dtype with fp32 accumulation.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

FLOAT_ACTS = (torch.float16, torch.bfloat16)
PACK_BLOCK = 64  # int4 packing block along K (see int4_pack.py); also the K step of the int4 GEMMs


def cdiv(a: int, b: int) -> int:
    """Ceiling division of Python ints (triton.cdiv is a jit function: a Python-side call costs microseconds, and
    launchers at M = 1 make several per call)."""
    return -(-a // b)


def interpreting() -> bool:
    """True when Triton kernels run in the CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def autotune_enabled() -> bool:
    """Autotuning runs on a GPU unless QSCHED_AUTOTUNE=0 (tests: one compile per variant instead of one per config)."""
    return not interpreting() and os.environ.get("QSCHED_AUTOTUNE", "1") != "0"


def autotuner(kernel, configs: list[triton.Config]):
    """`triton.autotune` of `kernel` over `configs`, keyed by (N, K, M_BUCKET); the GEMM modules build it on first
    launch (through `launch`'s `tuned`), so importing a kernel module compiles and times nothing."""
    return triton.autotune(configs, key=["N", "K", "M_BUCKET"], warmup=5, rep=20)(kernel)


def launch(kernel, tuned, grid, args, meta, config=None, interp_config=None) -> None:
    """Run `tuned` (an autotuner over `kernel`) or, with a fixed config, `kernel` itself.

    `grid` maps a config's kwargs to the launch grid. The config is `config` if given, else (no autotuning)
    `interp_config` under the interpreter or the first autotune config on a GPU.
    """
    if config is None and autotune_enabled():
        tuned()[grid](*args, **meta)
        return
    cfg = config or (interp_config if interpreting() and interp_config is not None else tuned().configs[0])
    opts = {} if interpreting() else dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    kernel[grid(cfg.kwargs)](*args, **meta, **cfg.kwargs, **opts)


TUNED: dict[tuple, dict[str, float]] = {}  # (kernel, shape key) -> {config label: us}; the winner is listed first
_WINNER: dict[tuple, triton.Config] = {}  # (kernel, shape key) -> the winning config (no lookup per launch)
FLUSH_BYTES = 128 * 2**20  # > the H200's 60 MB L2: a memset of this size evicts the last call's weights


def label(cfg: triton.Config) -> str:
    """A config as one short string, e.g. 'BLOCK_N=64 NB=4 ITERS=1 SPLIT_K=8 w4 s3'."""
    return " ".join(f"{k}={v}" for k, v in cfg.kwargs.items()) + f" w{cfg.num_warps} s{cfg.num_stages}"


def capture_graph(fn) -> torch.cuda.CUDAGraph:
    """fn() captured into a CUDA graph, after one warm-up call on a side stream (as capture requires)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return g


def graph_us(fn, n: int = 10, reps: int = 5, flush: torch.Tensor | None = None) -> float:
    """GPU time (us) of one call of `fn`, from CUDA-graph replays of n calls, each after an L2 flush.

    A graph replay has no Python launch cost, which eager timing (do_bench) adds to fast kernels with a long
    launcher; the flush (a memset of FLUSH_BYTES) is timed alone in a second graph and subtracted, so each call
    reads its weights from memory, as a layer of a real model does.
    """
    def graph_ms(with_fn: bool) -> float:
        def body():
            for _ in range(n):
                if flush is not None:
                    flush.zero_()
                if with_fn:
                    fn()
        g = capture_graph(body)
        g.replay()
        times = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            g.replay()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return sorted(times)[reps // 2]

    base = graph_ms(False) if flush is not None else 0.0
    return 1e3 * (graph_ms(True) - base) / n


def tune(name: str, key: tuple, configs: list[triton.Config], run) -> triton.Config:
    """The fastest config for `run(config)` (one launch), timed once per (name, key) and remembered in TUNED.

    Why not `triton.autotune`: the launcher must know the winner before it launches (a split-K config needs a
    zeroed output, the others do not), and a config that fails to compile (or runs out of shared memory or
    registers) on some GPU is skipped with its error recorded instead of ending the run. Times are CUDA-graph
    replays with the L2 flushed between calls (`graph_us`): eager timing let the launcher's Python cost into the
    times of fast kernels and made the pick noisy (results/kernels.md).
    """
    if (name, key) in _WINNER:
        return _WINNER[(name, key)]
    if torch.cuda.is_current_stream_capturing():
        raise RuntimeError(f"{name}: shape {key} has not been tuned; run the layer once before CUDA-graph capture")
    flush = torch.empty(FLUSH_BYTES, dtype=torch.uint8, device="cuda")
    times, errors = {}, {}
    for cfg in configs:
        try:
            run(cfg)  # compile outside the capture
            times[label(cfg)] = graph_us(lambda: run(cfg), flush=flush)  # noqa: B023
        except Exception as e:  # this config cannot run here: skip it, keep the reason
            times[label(cfg)], errors[label(cfg)] = float("inf"), f"{type(e).__name__}: {str(e)[:200]}"
            torch.cuda.synchronize()
    if min(times.values()) == float("inf"):
        raise RuntimeError(f"{name}: no config ran for {key}; errors: {errors}")
    TUNED[(name, key)] = dict(sorted(times.items(), key=lambda kv: kv[1]))
    best = next(iter(TUNED[(name, key)]))
    _WINNER[(name, key)] = next(c for c in configs if label(c) == best)
    return _WINNER[(name, key)]


def tuned_us(name: str, key: tuple) -> float:
    """The winner's time (us) of a finished `tune(name, key, ...)`."""
    return next(iter(TUNED[(name, key)].values()))


def tuned_label(name: str, *key_prefix) -> str:
    """The winning config of the last `tune(name, key)` whose key starts with key_prefix ('' if none): for reports."""
    hits = [times for (n, key), times in TUNED.items() if n == name and key[:len(key_prefix)] == key_prefix]
    return next(iter(hits[-1])) if hits else ""


def float_dot_dtype(dtype: torch.dtype):
    """The tl dtype float tiles are cast to before tl.dot: the activation dtype on a GPU, fp32 in the interpreter."""
    if interpreting():
        return tl.float32
    return {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}[dtype]


def check_device(**tensors) -> None:
    """Every tensor on one CUDA device, or on the CPU under TRITON_INTERPRET=1."""
    devices = {t.device for t in tensors.values() if t is not None}
    if len(devices) > 1:
        raise ValueError(f"tensors are on different devices {sorted(map(str, devices))}; move them to one device")
    dev = devices.pop()
    if dev.type != "cuda" and not interpreting():
        raise ValueError(f"Triton kernels run on a CUDA GPU, the tensors are on {dev}; move them with .cuda(), "
                         f"or set TRITON_INTERPRET=1 to run the (slow) CPU interpreter")


def check_dtype(t: torch.Tensor, name: str, allowed: tuple[torch.dtype, ...]) -> None:
    if t.dtype not in allowed:
        raise ValueError(f"{name} has dtype {t.dtype}; expected one of {[str(d) for d in allowed]}")


def check_shape(t: torch.Tensor, name: str, shape: tuple[int, ...], hint: str = "") -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {tuple(shape)}{'; ' + hint if hint else ''}")


def check_contiguous(**tensors) -> None:
    for name, t in tensors.items():
        if t is not None and not t.is_contiguous():
            raise ValueError(f"{name} must be contiguous (stride {t.stride()}); pass {name}.contiguous()")


def check_group_size_int4(group_size: int, k: int) -> int:
    """The int4 GEMMs support G = 32, any multiple of 64, or -1 (per channel); returns the kernel's GROUP."""
    if group_size == -1:
        return 1 << 30  # one group spans all of K: every block reads scale column 0
    if not isinstance(group_size, int) or group_size <= 0 or (group_size != 32 and group_size % PACK_BLOCK):
        raise ValueError(f"group_size={group_size!r} is not supported by the int4 kernels; use 32, a multiple of "
                         f"64 (64, 128, ...) or -1 for per-channel scales")
    if k % group_size:
        raise ValueError(f"group_size={group_size} must divide K={k}")
    return group_size


def flatten_rows(x: torch.Tensor) -> torch.Tensor:
    """(..., K) -> (M, K) without a copy when possible; the kernels need unit stride along K."""
    x2 = x.reshape(-1, x.shape[-1])
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


@triton.jit
def round_half_even(v):
    """torch.round for fp32 |v| < 2^22: floor(v + 0.5), moved down by one on an exact tie with an odd result."""
    r = tl.floor(v + 0.5)
    tie = (r - v) == 0.5
    odd = (r - 2.0 * tl.floor(r * 0.5)) != 0.0
    return tl.where(tie & odd, r - 1.0, r)
