"""Turn the rows of kernels/bench.py into results/kernels.md (tables + target checks) and a roofline figure.

Kept apart from bench.py so the figure can be redrawn from the CSV on a machine without a GPU
(`python kernels/bench.py --plot results/kernels.csv`). Numbers come only from the rows; nothing is typed in.

Roofline: x = arithmetic intensity (flops per byte moved: weights + activations + outputs), y = achieved TFLOP/s.
Roofs: the copy bandwidth (a line of slope TB/s) and the measured cuBLAS fp16 and torch._int_mm int8 rates.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

KERNELS = ["w4a16", "w4a16_bf16", "w4a16_gemv", "w4a16_splitk", "w4a16_f16x2", "w4a16_tc_f16x2", "w4a16_tiled",
           "w4a16_dequant_mm", "w8a8_gemm", "w8a8_linear", "w4a8_gemm", "w4a8_linear"]
BASELINES = ["cublas_fp16", "cublas_bf16", "torch_dequant_fp16", "torch_int_mm"]
BIG_MB = 32.0
TEXT_COLUMNS = ("kind", "shape", "impl", "note", "config")


def _pick(rows, **kv):
    return [r for r in rows if all(r.get(k) == v for k, v in kv.items())]


def _one(rows, **kv):
    hit = _pick(rows, **kv)
    return hit[0] if hit else None


def _fmt(v, spec=".1f"):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _targets(rows, ceil) -> list[str]:
    g = _pick(rows, kind="gemm")
    big = sorted({r["shape"] for r in g if r["fp16_weight_MB"] >= BIG_MB - 1e-6})
    lines = ["| target | measured (worst shape) | per shape | met? |", "|---|---|---|---|"]
    for m, goal in [(1, 3.0), (16, 2.0)]:
        sp = {s: _one(g, shape=s, M=m, impl="w4a16")["speedup_vs_fp16"] for s in big if _one(g, shape=s, M=m)}
        if not sp:
            continue
        worst = min(sp.values())
        lines.append(f"| W4A16 >= {goal}x over cuBLAS fp16 at M={m}, shapes >= 32 MB | {worst:.2f}x | "
                     + ", ".join(f"{s}: {v:.2f}x" for s, v in sp.items()) + f" | {'yes' if worst >= goal else 'no'} |")
    for impl in ("w8a8_gemm", "w8a8_linear"):
        sp = {r["shape"]: r["speedup_vs_fp16"] for r in _pick(g, M=4096, impl=impl)}
        if not sp:
            continue
        worst = min(sp.values())
        lines.append(f"| W8A8 >= 1.7x at M=4096 ({impl}) | {worst:.2f}x (best {max(sp.values()):.2f}x) | "
                     + ", ".join(f"{s}: {v:.2f}x" for s, v in sp.items()) + f" | {'yes' if worst >= 1.7 else 'no'} |")
    fw = [r for r in _pick(rows, kind="elementwise", impl="fwht") if r["TBps"] == r["TBps"]]  # drop NaN (failed)
    if fw:
        frac = {r["shape"]: r["TBps"] / ceil["copy_TBps"] for r in fw}
        worst = min(frac.values())
        lines.append(f"| Hadamard >= 80% of copy bandwidth | {100 * worst:.0f}% | "
                     + ", ".join(f"{s}: {100 * v:.0f}%" for s, v in frac.items())
                     + f" | {'yes' if worst >= 0.8 else 'no'} |")
    packed = {impl: max(r["weight_bytes_ratio"] for r in _pick(g, impl=impl)) for impl in ("w4a16", "w4a8_gemm")
              if _pick(g, impl=impl)}
    if len(packed) == 2:
        lines.append(f"| W4 packed weights <= 0.27x fp16 bytes (scales, zeros included) | {packed['w4a16']:.3f}x "
                     f"(W4A16 g128, worst shape) | W4A8 g32: {packed['w4a8_gemm']:.3f}x | "
                     f"{'yes' if packed['w4a16'] <= 0.27 else 'no'} |")
    return lines


def _gemm_table(rows, m, ceil) -> list[str]:
    small = m <= 16
    head = ["shape (K>N)", "fp16 us", "bf16 us"] + (["dequant+mm us"] if m < 4096 else []) + \
        ["W4A16", "W4A16 TB/s", "W4A16 bf16"] + \
        (["W4A16 gemv", "W4A16 split-K", "W4A16 f16x2", "W4A16 tc_f16x2"] if small else
         ["W4A16 tiled", "W4A16 tc_f16x2", "W4A16 deq+cuBLAS"]) + \
        ["W8A8 gemm", "W8A8 +act", "W4A8 gemm", "W4A8 +act"] + (["_int_mm"] if m > 16 else [])
    eager = small and any(r.get("us_eager") == r.get("us_eager") for r in _pick(rows, kind="gemm", M=m))
    head += ["W4A16 eager us", "fp16 eager us"] if eager else []
    lines = [f"**M = {m}** (time in us; `Nx` = speedup over cuBLAS fp16 in the same run; W4A16 bf16 vs cuBLAS bf16)",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for shape in dict.fromkeys(r["shape"] for r in _pick(rows, kind="gemm", M=m)):
        get = lambda impl: _one(rows, kind="gemm", shape=shape, M=m, impl=impl)
        fp16, bf16 = get("cublas_fp16"), get("cublas_bf16")
        cell = lambda r, ref: "-" if r is None else f"{r['us']:.1f} ({ref['us'] / r['us']:.2f}x)"
        row = [shape, _fmt(fp16["us"]), _fmt(bf16["us"])]
        if m < 4096:
            row.append(cell(get("torch_dequant_fp16"), fp16))
        w4 = get("w4a16")
        row += [cell(w4, fp16), f"{w4['TBps']:.2f} ({100 * w4['TBps'] / ceil['copy_TBps']:.0f}%)",
                cell(get("w4a16_bf16"), bf16)]
        small_impls = ("w4a16_gemv", "w4a16_splitk", "w4a16_f16x2", "w4a16_tc_f16x2")
        large_impls = ("w4a16_tiled", "w4a16_tc_f16x2", "w4a16_dequant_mm")
        row += [cell(get(k), fp16) for k in (small_impls if small else large_impls)]
        row += [cell(get(k), fp16) for k in ("w8a8_gemm", "w8a8_linear", "w4a8_gemm", "w4a8_linear")]
        if m > 16:
            row.append(cell(get("torch_int_mm"), fp16))
        if eager:
            row += [_fmt(w4["us_eager"]), _fmt(fp16["us_eager"])]
        lines.append("| " + " | ".join(row) + " |")
    return lines + [""]


def _unet_table(rows) -> list[str]:
    """The tiny-world UNet rows: one line per format (the float UNet has no quantized layers), or why it was skipped."""
    unet = _pick(rows, kind="unet")
    ran = [r for r in unet if r["impl"] != "skipped"]
    out = [f"\nTiny-world UNet {r['note']}." for r in unet if r["impl"] == "skipped"]
    if ran:
        out += ["", "## End to end: the tiny-world UNet (batch 8; layers whose width the group size does not divide "
                "stay fp16)", "", "| format | us | vs fp16 | quantized linear layers on kernels |", "|---|---|---|---|"]
        for r in ran:
            on = "- (the float UNet)" if r["impl"] == "fp16" else r["note"].replace(
                " quantized linear layers on kernels", "")
            out.append(f"| {r['impl']} | {r['us']:.1f} | {r['speedup_vs_fp16']:.2f}x | {on} |")
    return out


def _dllm_table(rows) -> list[str]:
    dl = _pick(rows, kind="dllm")
    if not dl:
        return []
    out = ["", "## Tiny diffusion LM (models/dllm): generation speed, fp16 vs real W4A16", "",
           "Greedy arith completions, 32 tokens, one full forward pass per committed token (no KV cache), eager "
           "Python loop; W4A16 = the seven block linears on the kernels (g128 asymmetric), embedding and LM head "
           "fp16.", "", "| model | prompts | fp16 tokens/s | W4A16 tokens/s | W4A16 / fp16 |", "|---|---|---|---|---|"]
    for shape in dict.fromkeys(r["shape"] for r in dl):
        for m in sorted({r["M"] for r in _pick(dl, shape=shape)}):
            fp, w4 = _one(dl, shape=shape, M=m, impl="fp16"), _one(dl, shape=shape, M=m, impl="w4a16")
            if fp and w4:
                out.append(f"| {shape} | {m} | {fp['tokens_per_s']:.0f} | {w4['tokens_per_s']:.0f} | "
                           f"{w4['tokens_per_s'] / fp['tokens_per_s']:.2f}x |")
    return out


def _config_table(rows) -> list[str]:
    """The small-M kernel and config that w4a16_gemm ran per shape and M (the `config` column)."""
    picked = [r for r in _pick(rows, impl="w4a16") if r.get("config")]
    if not picked:
        return []
    return (["", "## W4A16: the kernel and config the tuner picked (gemv DOT=0: CUDA-core FMA, DOT=1: tensor cores; "
             "splitk: the tiled kernel with split-K; f16x2: the fp16x2 GEMV; tc_f16x2: fp16x2 dequantization into "
             "the tensor cores; tiled: the tiled kernel; dequant_mm: the fp16 weight written, then cuBLAS)", "",
             "| shape | M | picked |", "|---|---|---|"]
            + [f"| {r['shape']} | {r['M']} | `{r['config']}` |" for r in sorted(picked, key=lambda r: (r["K"], r["N"],
                                                                                              r["M"]))])


def _small_m_table(rows) -> list[str]:
    """W4A16 at M = 1..16 on the large layers: each small-M kernel alone, the dispatched one, and cuBLAS fp16."""
    sm = _pick(rows, kind="smallm") + [r for r in _pick(rows, kind="gemm") if r["M"] <= 16]
    shapes = sorted({r["shape"] for r in sm if r["fp16_weight_MB"] >= BIG_MB - 1e-6})
    if not shapes:
        return []
    ms = sorted({r["M"] for r in sm})
    out = ["## Small M: which W4A16 kernel is faster (us; speedup over cuBLAS fp16 in brackets; layers >= 32 MB)", "",
           "| shape | M | fp16 | W4A16 (dispatched) | gemv | split-K | f16x2 | tc_f16x2 | fastest |",
           "|---|---|---|---|---|---|---|---|---|"]
    for shape in shapes:
        for m in ms:
            get = lambda impl: next((r for r in sm if r["shape"] == shape and r["M"] == m and r["impl"] == impl), None)
            fp16, auto = get("cublas_fp16"), get("w4a16")
            alone = {"gemv": get("w4a16_gemv"), "split-K": get("w4a16_splitk"), "f16x2": get("w4a16_f16x2"),
                     "tc_f16x2": get("w4a16_tc_f16x2")}
            if not (fp16 and alone["gemv"] and alone["split-K"]):
                continue
            cell = lambda r: "-" if r is None else f"{r['us']:.1f} ({fp16['us'] / r['us']:.2f}x)"
            timed = {k: r["us"] for k, r in alone.items() if r is not None and r["us"] == r["us"]}
            out.append(f"| {shape} | {m} | {fp16['us']:.1f} | {cell(auto)} | "
                       + " | ".join(cell(r) for r in alone.values()) + f" | {min(timed, key=timed.get, default='-')} |")
    return out + [""]


def _copy_table(rows, ceil) -> list[str]:
    cm = _pick(rows, kind="copy_method")
    if not cm:
        return []
    return (["Copy bandwidth by method (TB/s, read + write; the ceiling is the best):", "",
             "| method | TB/s |", "|---|---|"] + [f"| {r['impl']} | {r['TBps']:.2f} |" for r in cm] + [""])


def write_report(rows, env, ceil, path: Path) -> None:
    out = ["# Triton kernels: measured on one GPU", "",
           f"GPU **{env['gpu']}**, torch {env['torch']}, Triton {env['triton']}, CUDA {env['cuda']}, "
           f"Python {env['python']}; {env['date']}.", f"Command: `{env['command']}` (`make bench`).", "",
           f"Ceilings measured in the same run: copy bandwidth **{ceil['copy_TBps']:.2f} TB/s** (D2D, best method), "
           f"cuBLAS fp16 **{ceil['fp16_TFLOPs']:.0f} TFLOP/s** (8192^3), torch._int_mm int8 "
           f"**{ceil['int8_TOPs']:.0f} TOP/s** (8192^3).", "",
           f"Timing: {env.get('timing', 'triton.testing.do_bench (eager launches), median, L2 flushed per call')}"
           "; weights random (N(0, 0.02)). "
           "W4A16 = int4 asymmetric g128 (the `w4a16-g128` preset), W8A8 = int8 per-channel weights x per-token "
           "int8 activations (`w8a8`), W4A8 = int4 symmetric g32 x asymmetric per-token int8 (`w4a8`). "
           "`gemm` times start from int8 activations; `+act` includes the fused activation quantizer.", "",
           ] + _copy_table(rows, ceil) + ["## Targets", ""] + _targets(rows, ceil) + ["", "## GEMMs", ""]
    for m in sorted({r["M"] for r in _pick(rows, kind="gemm")}):
        out += _gemm_table(rows, m, ceil)
    out += _small_m_table(rows)
    out += ["## Hadamard transform and activation quantizer (fp16, bytes = read + write)", "",
            "| M x K | kernel | us | TB/s | % of copy |", "|---|---|---|---|---|"]
    for r in _pick(rows, kind="elementwise"):
        out.append(f"| {r['shape']} | {r['impl']} | {r['us']:.1f} | {r['TBps']:.2f} | "
                   f"{100 * r['TBps'] / ceil['copy_TBps']:.0f}% |")
    blocks = _pick(rows, kind="block")
    if blocks:
        out += ["", "## End to end: one LLaDA-8B-sized transformer block (d 4096, SwiGLU 12288, 32 heads; "
                "QuantLinear, backend auto)", "",
                "| tokens | format | us | vs fp16 | rel. error vs fp16 block | kernels vs fake-quant | weight bytes |",
                "|---|---|---|---|---|---|---|"]
        for r in blocks:
            out.append(f"| {r['M']} | {r['impl']} | {r['us']:.1f} | {r['speedup_vs_fp16']:.2f}x | "
                       f"{r['rel_err_vs_fp16']:.4f} | {_fmt(r['rel_err_vs_fake_quant'], '.1e')} | "
                       f"{r['weight_bytes_ratio']:.3f}x |")
    out += _unet_table(rows)
    out += _dllm_table(rows) + _config_table(rows)
    notes = Path(__file__).with_name("bench_notes.md")
    if notes.exists():
        out += ["", notes.read_text().strip()]
    reading = path.with_name("kernels_reading.md")  # notes on this run, written after it (kept by --report)
    if reading.exists():
        out += ["", reading.read_text().strip()]
    path.write_text("\n".join(out) + "\n")


def read_rows(path: Path) -> list[dict]:
    """The rows of a kernels.csv, numbers as int / float (NaN where empty)."""
    rows = []
    for r in csv.DictReader(open(path)):
        for k, v in r.items():
            try:
                r[k] = int(v) if k in ("M", "K", "N") else float(v) if k not in TEXT_COLUMNS else v
            except ValueError:
                r[k] = float("nan") if k not in TEXT_COLUMNS else v
        rows.append(r)
    return rows


def ceilings_of(rows) -> dict:
    """The copy bandwidth and matrix rates measured in the same run (the `ceiling` rows)."""
    return {"copy_TBps": _one(rows, kind="ceiling", impl="copy")["TBps"], "copy_methods": {},
            "fp16_TFLOPs": _one(rows, kind="ceiling", impl="cublas_fp16_8192")["TFLOPs"],
            "int8_TOPs": _one(rows, kind="ceiling", impl="torch_int_mm_8192")["TFLOPs"]}


def roofline_figure(rows, ceil: dict | None = None):
    """Matplotlib figure: the measured GEMM points under the copy-bandwidth and matrix-rate roofs."""
    import matplotlib.pyplot as plt

    ceil = ceil or ceilings_of(rows)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    xs = [10 ** (i / 20) for i in range(-20, 100)]  # 0.1 .. 1e5 flop/byte
    ax.plot(xs, [min(ceil["copy_TBps"] * x, ceil["int8_TOPs"]) for x in xs], "k-", lw=1,
            label=f"measured roof: copy {ceil['copy_TBps']:.2f} TB/s, torch._int_mm {ceil['int8_TOPs']:.0f} TOP/s "
                  "(not the int8 peak)")
    ax.axhline(ceil["fp16_TFLOPs"], color="gray", ls="--", lw=1, label=f"cuBLAS fp16 {ceil['fp16_TFLOPs']:.0f} TFLOP/s")
    style = {"cublas_fp16": ("o", "tab:gray"), "w4a16": ("s", "tab:blue"), "w4a16_gemv": ("v", "tab:cyan"),
             "w8a8_gemm": ("^", "tab:red"),
             "w4a8_gemm": ("D", "tab:green"), "torch_dequant_fp16": ("x", "tab:orange")}
    gemms = [r for r in rows if r["kind"] in ("gemm", "smallm") and r["TFLOPs"] == r["TFLOPs"]]
    for impl, (marker, color) in style.items():
        pts = [(r["intensity"], r["TFLOPs"]) for r in gemms if r["impl"] == impl]
        if pts:
            ax.scatter(*zip(*pts), marker=marker, color=color, label=impl, alpha=0.8, s=28)
    ms = ", ".join(str(m) for m in sorted({r["M"] for r in gemms}))
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (flop / byte moved)",
           ylabel="achieved TFLOP/s (TOP/s for int8)", title=f"Kernels on the roofline (M = {ms})")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, which="both", alpha=0.2)
    fig.tight_layout()
    return fig


def plot_roofline(csv_path: Path, png_path: Path, ceil: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = roofline_figure(read_rows(csv_path), ceil)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
