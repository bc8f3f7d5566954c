"""Markdown, JSON and figure for `validity.run_validity`: results/instrument_validity.{md,json,png}.

Each target of the instruments issue is printed next to its measured value with "met" / "MISSED", so a reader
sees at once which instrument can be trusted for what.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..utils import atomic_write_text
from .validity import ORDER, ValidityResult

TARGETS = {"rho": 0.8, "iq_sat": 0.20, "floor_share": 0.10, "p_win": 0.90}


def _ok(flag: bool) -> str:
    return "met" if flag else "MISSED"


def _instrument_section(r: dict) -> list[str]:
    rows, lines = r["rows"], [f"### {r['instrument']}", "", r["note"], ""]
    lines += ["| variant | JAQ | CLIPScore | CLIP-IQA | FID (vs 5,000 renders) | object accuracy |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {v['jaq']:.4f} | {v['clip_score']:.2f} | {v['clip_iqa']:.3f} | {v['fid']:.2f} | "
              f"{v['acc_objects']:.3f} |" for n, v in rows.items()]
    lines += ["", "JAQ(FP) - JAQ(X) at 4 steps, paired 95% bootstrap interval (the order must be FP > W4A8 > W4A4 > W3A4):", "",
              "| X | JAQ(FP) - JAQ(X) | 95% interval | away from 0 |", "|---|---|---|---|"]
    for n, (d, lo, hi) in r["fp_minus"].items():
        lines.append(f"| {n} | {d:+.4f} | [{lo:+.4f}, {hi:+.4f}] | {'yes' if lo > 0 or hi < 0 else 'no'} |")
    jaqs = [rows[n]["jaq"] for n in ORDER if n != "w8a8-4step" and n in rows]  # FP, W4A8, W4A4, W3A4
    ordered = all(a > b for a, b in zip(jaqs, jaqs[1:]))
    strict = ordered and all(r["fp_minus"][n][1] > 0 for n in ("w4a8-4step", "w4a4-4step", "w3a4-4step")
                             if n in r["fp_minus"])
    share = r["fid_floor"] / r["fid_w4a8_vs_renders_same_n"] if r["fid_w4a8_vs_renders_same_n"] else float("nan")
    table_share = r["fid_floor_table_n"] / r["fid_w4a8_table_n"]
    p5 = r["p_fp_beats_w4a8"].get(5, r["p_fp_beats_w4a8"].get("5", float("nan")))
    lines += ["", "| check | target | measured | status |", "|---|---|---|---|",
              f"| JAQ orders FP > W4A8 > W4A4 > W3A4, FP - X intervals away from 0 | yes | "
              f"{'yes' if strict else ('order only' if ordered else 'no')} | {_ok(strict)} |",
              f"| Spearman rho(dJAQ, dFID) over {len(rows) - 1} variants | <= -{TARGETS['rho']} | "
              f"{r['spearman_djaq_dfid']:+.3f} | {_ok(r['spearman_djaq_dfid'] <= -TARGETS['rho'])} |",
              f"| Spearman rho(dJAQ, d accuracy) | >= +{TARGETS['rho']} | {r['spearman_djaq_dacc']:+.3f} | "
              f"{_ok(r['spearman_djaq_dacc'] >= TARGETS['rho'])} |",
              f"| FP images with CLIP-IQA > 0.95 | <= {TARGETS['iq_sat']:.0%} | {r['iq_above_095_fp']:.1%} "
              f"(median {r['iq_median_fp']:.3f}) | {_ok(r['iq_above_095_fp'] <= TARGETS['iq_sat'])} |",
              f"| FID of two disjoint render sets / FID(naive W4A8) at N = {r['n_images']} | <= "
              f"{TARGETS['floor_share']:.0%} | {r['fid_floor']:.2f} / {r['fid_w4a8_vs_renders_same_n']:.2f} = "
              f"{share:.1%} | {_ok(share <= TARGETS['floor_share'])} |",
              f"| the same at the main table's N = {r['table_n']} | <= {TARGETS['floor_share']:.0%} | "
              f"{r['fid_floor_table_n']:.2f} / {r['fid_w4a8_table_n']:.2f} = {table_share:.1%} | "
              f"{_ok(table_share <= TARGETS['floor_share'])} |",
              f"| P(JAQ(FP) > JAQ(W4A8)) on 5 prompts (the search's size) | >= {TARGETS['p_win']} | {p5:.3f} | "
              f"{_ok(p5 >= TARGETS['p_win'])} |",
              f"| dead feature dimensions (FP images) | 0 | {r['dead_dims_fp']} of {r['feature_dim']} | "
              f"{_ok(r['dead_dims_fp'] == 0)} |", "",
              "P(JAQ(FP) > JAQ(W4A8)) by calibration size: " + ", ".join(
                  f"{n} prompts {p:.3f}" for n, p in r["p_fp_beats_w4a8"].items()), ""]
    return lines


def _curves_section(curves: dict) -> list[str]:
    lines = ["## The quality term against degradation strength", "",
             "Mean CLIP-IQA of 512 evaluation renders degraded at strengths "
             "0 / 0.1 / 0.25 / 0.5 / 0.75 / 1, and Spearman's rho between strength and CLIP-IQA over all (image, "
             "strength) pairs (-1 = perfectly graded). jpeg, contrast, posterize and warp were never used in "
             "training any judge.", "", "| judge | kind | held out | mean CLIP-IQA by strength | rho |", "|---|---|---|---|---|"]
    from ..tinyworld.degrade import HELD_OUT
    for judge, c in curves.items():
        for kind, curve in c["iqa_curves"].items():
            lines.append(f"| {judge} | {kind} | {'yes' if kind in HELD_OUT else ''} | "
                         f"{' / '.join(f'{v:.3f}' for v in curve)} | {c['iqa_spearman'][kind]:+.3f} |")
    return lines + [""]


def validity_table(data: dict):
    """The checks of results/instrument_validity.json as a DataFrame: one row per check, one column per instrument."""
    import pandas as pd

    cols = {}
    for r in data["instruments"]:
        p5 = r["p_fp_beats_w4a8"].get("5", r["p_fp_beats_w4a8"].get(5))
        cols[r["instrument"].split(":")[0].split(" + ")[0]] = {
            "JAQ(FP) - JAQ(W4A8) [95% CI]": "{:+.3f} [{:+.3f}, {:+.3f}]".format(*r["fp_minus"]["w4a8-4step"]),
            "rho(dJAQ, dFID) (target <= -0.8)": round(r["spearman_djaq_dfid"], 3),
            "rho(dJAQ, d accuracy) (target >= 0.8)": round(r["spearman_djaq_dacc"], 3),
            "FP images with CLIP-IQA > 0.95 (target <= 20%)": f"{r['iq_above_095_fp']:.0%}",
            f"FID floor / FID(W4A8) at N={r['n_images']} (target <= 10%)":
                f"{r['fid_floor'] / r['fid_w4a8_vs_renders_same_n']:.1%}",
            f"FID floor / FID(W4A8) at N={r.get('table_n', '?')}":
                f"{r['fid_floor_table_n'] / r['fid_w4a8_table_n']:.1%}" if "table_n" in r else "not measured",
            "P(JAQ(FP) > JAQ(W4A8)), 5 prompts (target >= 0.9)": round(p5, 3),
            "dead feature dims": f"{r['dead_dims_fp']} of {r['feature_dim']}"}
    return pd.DataFrame(cols)


def write_validity(result: ValidityResult, out_dir: Path, command: str, machine: str) -> Path:
    """results/instrument_validity.{md,json,png}; returns the markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = result.config
    atomic_write_text(out_dir / "instrument_validity.json", json.dumps(
        {"config": cfg, "instruments": result.instruments, "judge_curves": result.judge_curves,
         "wall_s": result.wall_s, "command": command, "machine": machine}, indent=1, default=float))
    lines = ["# Instrument validity: can the judge and the FID features see quantization damage?", "",
             f"Command: `{command}`  ", f"Machine: {machine}; wall time {result.wall_s / 60:.1f} min.  ",
             f"Sample: {cfg['n_prompts']} held-out evaluation prompts x seeds {list(cfg['seeds'])} = "
             f"{cfg['n_prompts'] * len(cfg['seeds'])} paired images per variant (same prompts and noise in every "
             f"variant); {len(cfg['variants'])} variants: {', '.join(cfg['variants'])}; k = {cfg['k']}; "
             f"{cfg['n_boot']} bootstrap draws; FID reference {cfg['n_ref']} renders (seed {cfg['ref_seed']}).", "",
             "Every difference is taken to FP at 4 steps. FID is on each instrument's own evaluator features; the "
             "noise floor compares two disjoint render sets of the same size as the generated sets.", ""]
    for r in result.instruments:
        lines += _instrument_section(r)
    lines += _curves_section(result.judge_curves)
    lines += ["![instrument validity](instrument_validity.png)", ""]
    path = out_dir / "instrument_validity.md"
    atomic_write_text(path, "\n".join(lines))
    plot_validity(result, out_dir / "instrument_validity.png")
    return path


def plot_validity(result: ValidityResult, path: Path) -> None:
    import matplotlib.pyplot as plt

    insts = result.instruments
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    for r in insts:
        names = [n for n in r["rows"] if n != "fp-4step"]
        dj = [r["rows"][n]["jaq"] - r["rows"]["fp-4step"]["jaq"] for n in names]
        df = [r["rows"][n]["fid"] - r["rows"]["fp-4step"]["fid"] for n in names]
        axes[0].scatter(df, dj, label=f"{r['instrument']} (rho {r['spearman_djaq_dfid']:+.2f})", s=22)
    axes[0].set(xlabel="dFID vs FP 4-step (lower is better)", ylabel="dJAQ vs FP 4-step (higher is better)",
                title="JAQ should fall as FID rises", xscale="symlog")
    axes[0].axhline(0, color="gray", lw=0.5), axes[0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    width = 0.8 / len(insts)
    for i, r in enumerate(insts):
        names = list(r["fp_minus"])
        d = [r["fp_minus"][n][0] for n in names]
        err = [[v - r["fp_minus"][n][1] for n, v in zip(names, d)], [r["fp_minus"][n][2] - v for n, v in zip(names, d)]]
        axes[1].bar([j + i * width for j in range(len(names))], d, width, yerr=err, capsize=3, label=r["instrument"])
        axes[1].set_xticks([j + 0.4 - width / 2 for j in range(len(names))], [n.replace("-4step", "") for n in names])
    axes[1].axhline(0, color="gray", lw=0.5)
    axes[1].set(ylabel="JAQ(FP) - JAQ(X), 95% CI (> 0: damage seen)", title="Does JAQ see the damage? (4 steps)")
    axes[1].legend(fontsize=7, loc="upper left")
    for r in insts:
        p = r["p_fp_beats_w4a8"]
        axes[2].plot([int(n) for n in p], list(p.values()), "o-", label=r["instrument"])
    axes[2].axhline(0.9, color="gray", ls="--", lw=0.8), axes[2].axhline(0.5, color="gray", lw=0.5)
    sizes = [int(n) for n in insts[0]["p_fp_beats_w4a8"]]
    axes[2].set(xlabel="calibration prompts", ylabel="P(JAQ(FP) > JAQ(W4A8))", xscale="log", ylim=(0.3, 1.02),
                title="Can a search of this size tell FP from W4A8?")
    axes[2].set_xticks(sizes, [str(n) for n in sizes]), axes[2].minorticks_off()
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
