"""Q-Sched ablations on the tiny world: what in the calibration recipe matters, each evaluated on held-out prompts.

    python scripts/qsched_ablations.py                              # W4A8, 4 steps, 1,000 images per cell
    python scripts/qsched_ablations.py --steps 2 --n-prompts 200 --name qsched_ablations_2step   # reduced, 2 steps
    python scripts/qsched_ablations.py --groups objective,tcd       # a subset
    QSCHED_FAST=1 python scripts/qsched_ablations.py                # CI smoke run -> results/fast/

Groups (each row = one calibration recipe; everything else fixed):
  objective  JAQ = log CLIPScore + k * CLIP-IQA with k in {0, 0.5, 1, 2, 5} (k = 0 is CLIPScore only), and IQ only
  axes       both coefficients, c^x only, c^eps only (the argmax of the same 11x11 grid restricted to a line)
  prompts    1, 5 or 20 calibration prompts
  grid       grid resolution 3x3, 5x5, 11x11 (add 21 with --grid-sizes)
  method     11x11 grid vs a 3x3 grid, coarse-to-fine (12 points) and gradient ascent (4 iterates) at about equal
             network evaluations
  tcd        the TCD sampler with gamma in {0, 0.3, 0.7}, naive and Q-Sched each
Every recipe's winner is evaluated like a main-table row (`qsched_core.evaluate`) and differenced against the naive
row on the same prompts and noise. Two recipes that pick the same coefficients share one cached cell. The default
is the paper's 4 steps at the main table's size; 2 steps is where W4A8 hurts the tiny student most
(results/qsched_main.md), so a recipe has the most to recover there. Writes results/<name>.{md,csv,png} and
results/<name>.card.md (name: qsched_ablations unless --name says otherwise).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch

from qsched_core import fast_mode, viz
from qsched_core.checks import check_int_list
from qsched_core.evaluate import (FAST_METRICS, Calibration, EvalConfig, Setting, calibrate, fmt, load_models,
                                  markdown_table, naive_twin, paired_diffs, quantized_pipeline, run_settings,
                                  summary_rows, write_csv)
from qsched_core.metrics import MetricCard, machine_description
from qsched_core.tinyworld.quality import weights_fingerprint
from qsched_core.utils import results_dir

GROUPS = ("objective", "axes", "prompts", "grid", "method", "tcd")


@dataclass
class AblationConfig:
    preset: str = "w4a8"
    steps: int = 4
    n_prompts: int = 1000       # images per cell, as in the main table
    seeds: str = "0"
    groups: str = ",".join(GROUPS)
    ks: str = "0,0.5,1,2,5"
    calib_sizes: str = "1,5,20"
    grid_sizes: str = "3,5,11"
    gammas: str = "0,0.3,0.7"
    device: str = "cpu"
    batch_size: int = 64
    n_ref: int = 5000
    n_boot: int = 1000
    fid_boot: int = 100
    threads: int = 2
    name: str = "qsched_ablations"   # output files results/<name>.*

    def __post_init__(self):
        if not self.name or any(c in self.name for c in "/\\ ."):
            raise ValueError(f"name={self.name!r} must be a plain file stem such as 'qsched_ablations_2step'")
        unknown = set(self.groups.split(",")) - set(GROUPS)
        if unknown:
            raise ValueError(f"groups={self.groups!r} has unknown {sorted(unknown)}; pick from {GROUPS}")
        if self.threads < 1:
            raise ValueError(f"threads={self.threads} must be >= 1")
        for name in ("seeds", "calib_sizes", "grid_sizes"):
            check_int_list(getattr(self, name), name, "1,5,20")
        self.eval_config(), ablation_settings(self)  # a bad count or preset fails now, before any model loads

    @classmethod
    def fast(cls) -> AblationConfig:
        """CI smoke size: 16 images, 1 step, only the cheap groups on 3x3 grids."""
        return cls(steps=1, n_prompts=16, groups="objective,axes", ks="0,2", batch_size=16,
                   **FAST_METRICS)

    def eval_config(self) -> EvalConfig:
        return EvalConfig(n_prompts=self.n_prompts, seeds=tuple(int(s) for s in self.seeds.split(",")),
                          n_ref=self.n_ref, batch_size=self.batch_size, device=self.device, n_boot=self.n_boot,
                          fid_boot=self.fid_boot)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def ablation_settings(cfg: AblationConfig) -> list[tuple[str, str, Setting]]:
    """(group, row label, Q-Sched setting) for every requested ablation row."""
    base_cal = Calibration(grid_points=3 if fast_mode() else 11)

    def q(cal: Calibration = base_cal, **kw) -> Setting:
        return Setting(cfg.preset, cfg.steps, "qsched", calibration=cal, **kw)

    rows = {
        "objective": [(f"k={k:g}" + (" (CLIPScore only)" if k == 0 else ""), q(replace(base_cal, k=k)))
                      for k in _floats(cfg.ks)] + [("IQ only", q(replace(base_cal, objective="iq")))],
        "axes": [(f"{a} (argmax on the {'whole grid' if a == 'both' else 'line through 1'})",
                  q(replace(base_cal, axes=a))) for a in ("both", "x", "eps")],
        "prompts": [(f"{int(n)} prompts", q(replace(base_cal, num_prompts=int(n)))) for n in _floats(cfg.calib_sizes)],
        "grid": [(f"{int(p)}x{int(p)} grid", q(replace(base_cal, grid_points=int(p))))
                 for p in _floats(cfg.grid_sizes)],
        "method": [("grid 11x11", q()), ("grid 3x3", q(replace(base_cal, grid_points=3))),
                   ("coarse-to-fine", q(replace(base_cal, method="coarse_to_fine"))),
                   ("gradient (4 iterates)", q(replace(base_cal, method="gradient", grad_steps=4)))],
        "tcd": [(f"TCD gamma={g:g}", q(family="tcd", eta=g)) for g in _floats(cfg.gammas)],
    }
    return [(group, label, s) for group in cfg.groups.split(",") for label, s in rows[group]]


def resolve(entries, models, ecfg: EvalConfig) -> list[dict]:
    """Calibrate every recipe; its winner becomes a fixed-coefficient setting (identical winners share a cell)."""
    fingerprint, pipes, out = weights_fingerprint(models.pipe.unet), {}, []
    for group, label, s in entries:
        def get_pipe(s=s):
            if s.preset not in pipes:
                pipes[s.preset] = quantized_pipeline(models.pipe, s.preset)[0]
            return pipes[s.preset]
        coeffs, record = calibrate(get_pipe, s, models.judge, ecfg, fingerprint)
        fixed = replace(s, coefficients=(float(coeffs.start_x), float(coeffs.start_eps)), calibration=Calibration())
        print(f"{group:>9} {label:<40} -> {fixed.coefficients}, {record['nfe']} NFE", flush=True)
        out.append({"group": group, "label": label, "setting": s, "fixed": fixed, "calibration": record})
    return out


def ablation_rows(resolved: list[dict], cells, ref, cfg: AblationConfig) -> list[dict]:
    """One row per recipe: its winner, calibration cost, metrics and paired differences to the naive row."""
    pairs = list(dict.fromkeys((r["fixed"], naive_twin(r["fixed"])) for r in resolved))
    diffs = paired_diffs(cells, ref, pairs=pairs, n_boot=cfg.n_boot, fid_boot=cfg.fid_boot)
    diffs = dict(zip(pairs, diffs, strict=True))
    summary = dict(zip(dict.fromkeys(c.setting for c in cells), summary_rows(cells), strict=True))
    rows = []
    for r in resolved:
        d, s, cal = diffs[(r["fixed"], naive_twin(r["fixed"]))], summary[r["fixed"]], r["calibration"]
        gain = cal["best_jaq"] - (cal["identity_jaq"] if cal["identity_jaq"] is not None else float("nan"))
        rows.append({"group": r["group"], "recipe": r["label"], "start_x": r["fixed"].coefficients[0],
                     "start_eps": r["fixed"].coefficients[1], "calib_nfe": cal["nfe"], "calib_s": cal["wall_s"],
                     "calib_jaq_gain": gain, "on_edge": cal["on_edge"], "fid": s["fid"], "acc": s["acc_objects"],
                     "gen_s": s["gen_s"], "eval_s": s["eval_s"], "cached": s["cached"],
                     "clip_iqa": s["clip_iqa"], "clip_score": s["clip_score"], "n_images": s["n_images"],
                     **{k: v for k, v in d.items() if k.startswith(("d_", "acc_", "sign"))},
                     "comparison": f"{r['group']}: {r['label']}", "steps": cfg.steps})
    return rows


COLUMNS = {
    "recipe": "recipe", "(c^x_0, c^eps_0)": lambda r: f"({r['start_x']:.2f}, {r['start_eps']:.2f})",
    "calib NFE / s": lambda r: f"{r['calib_nfe']} / {r['calib_s']:.0f}",
    "cell s": lambda r: cell_seconds(r),
    "calib JAQ gain": lambda r: fmt(r["calib_jaq_gain"], digits=4), "FID": lambda r: fmt(r["fid"], digits=1),
    "dFID vs naive [95% CI]": lambda r: fmt(r["d_fid"], r["d_fid_lo"], r["d_fid_hi"], digits=2),
    "d accuracy": lambda r: fmt(r["d_acc"], r["d_acc_lo"], r["d_acc_hi"], digits=3),
    "dCLIP-IQA": lambda r: fmt(r["d_clip_iqa"], r["d_clip_iqa_lo"], r["d_clip_iqa_hi"], digits=3),
    "dCLIPScore": lambda r: fmt(r["d_clip_score"], r["d_clip_score_lo"], r["d_clip_score_hi"], digits=2),
    "sign p": lambda r: f"{r['sign_p']:.3g}",
}
def cell_seconds(r: dict) -> str:
    """Search + image generation + every metric of one recipe's cell, as this run measured them ('-' if reused)."""
    if r["cached"] or r["eval_s"] is None:
        return "- (reused)"
    return f"{r['calib_s']:.1f} + {r['gen_s']:.1f} + {r['eval_s']:.1f}"


GROUP_NOTES = {
    "objective": "The maximised objective; k = 0 is CLIPScore only. Paper: small k distorts colours, k = 5 drifts "
                 "from the data (FID up), k = 2 is stable.",
    "axes": "c^x only / c^eps only take the JAQ argmax on the grid line where the other start stays 1 (the cost "
            "column counts that line only). Paper: both together beat either alone.",
    "prompts": "Calibration prompts (common random numbers, one image each). The paper uses 5.",
    "grid": "Points per axis over [0.8, 1.2]; odd sizes keep the stock (1, 1) point on the grid.",
    "method": "Cheaper searches against the exhaustive grid. Gradient NFE counts forward passes only; each of its "
              "3 backward passes costs about two more.",
    "tcd": "The same student under TCD with stochasticity gamma (naive TCD rows use the same gamma); the paper "
           "reports Q-Sched above PTQD at every gamma.",
}


def render_markdown(rows, cfg: AblationConfig, info: dict) -> str:
    fast = "**FAST mode (CI smoke run): tiny sample counts, numbers are not meaningful.**\n\n" if info["fast"] else ""
    reduced = (" (fewer than the main table's 1,000, for CPU time; full size: `python scripts/qsched_ablations.py`)"
               if cfg.n_prompts < 1000 else "")
    parts = ["# Q-Sched ablations on the tiny world", "",
             fast + f"{cfg.preset.upper()}, {cfg.steps} steps, guidance 4.0, LCM scheduler unless stated; "
             f"{cfg.n_prompts} held-out evaluation images per cell{reduced}, seeds {cfg.seeds}. Every "
             "difference is the recipe's winner minus the naive row on the same prompts and noise (95% paired "
             f"bootstrap CI; sign test on discordant accuracy pairs). 'cell s' = the recipe's search (its recorded cost) + "
             "image generation + every metric, in seconds, as computed (with other jobs possibly sharing the machine). "
             "Cells computed on: "
             f"{'; '.join(info['cell_machines'])}. Report built on {info['machine']} in "
             f"{info['wall_s'] / 60:.1f} min. Command: `{info['command']}`.", ""]
    for i, group in enumerate(dict.fromkeys(r["group"] for r in rows), 1):
        parts += [f"## {i}. {group}", "", GROUP_NOTES[group], "",
                  markdown_table([r for r in rows if r["group"] == group], COLUMNS)]
    parts += [(f"Figure: `{cfg.name}.png` (dFID of every recipe vs naive). Metric card: `{cfg.name}.card.md`."), ""]
    return "\n".join(parts)


def parse_args(argv=None) -> AblationConfig:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    base = AblationConfig.fast() if fast_mode() else AblationConfig()
    for f in fields(AblationConfig):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(base, f.name)), default=getattr(base, f.name))
    return AblationConfig(**vars(p.parse_args(argv)))


def main(argv=None) -> dict[str, Path]:
    cfg = parse_args(argv)
    torch.set_num_threads(cfg.threads)
    print(json.dumps(asdict(cfg)), flush=True)
    t0, ecfg = time.perf_counter(), cfg.eval_config()
    models = load_models(ecfg)
    resolved = resolve(ablation_settings(cfg), models, ecfg)
    todo = list(dict.fromkeys(s for r in resolved for s in (naive_twin(r["fixed"]), r["fixed"])))
    cells = run_settings(todo, ecfg, models, log=lambda m: print(m, flush=True))
    rows = ablation_rows(resolved, cells, models.ref, cfg)
    out = results_dir()
    info = {"machine": machine_description(), "fast": fast_mode(), "wall_s": time.perf_counter() - t0,
            "cell_machines": sorted({c.machine for c in cells}),
            "command": "python " + shlex.join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])])}
    paths = {"csv": write_csv(rows, out / f"{cfg.name}.csv"), "md": out / f"{cfg.name}.md",
             "figure": out / f"{cfg.name}.png"}
    paths["md"].write_text(render_markdown(rows, cfg, info))
    viz.plot_paired_diffs(rows, "d_fid", title=f"{cfg.preset.upper()} {cfg.steps} steps: recipe - naive").savefig(
        paths["figure"], dpi=110)
    card = MetricCard(feature_network=models.evaluator.describe(), n_images=cfg.n_prompts,
                      reference_set=models.ref.name, reference_size=models.ref.n, resize_policy="none (native 64x64)",
                      clip_backbone="tinyworld-clip (open_clip format, 64x64)",
                      seeds=[int(s) for s in cfg.seeds.split(",")],
                      scorer_names=sorted({r["calibration"]["scorer"] for r in resolved}))
    paths["card"] = card.save(paths["csv"])
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return paths


if __name__ == "__main__":
    main()
