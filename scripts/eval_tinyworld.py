"""Measure the shipped tiny world: python scripts/eval_tinyworld.py [--n-prompts 1000] [--device cuda] [--fast]

Generation: the LCM student at 1, 2, 4 and 8 steps and the DDIM teacher (25 steps, classifier-free guidance)
on `eval_prompts(n)` (seen colour-shape combinations) and on `eval_prompts(n, held_out=True)` (held-out
combinations), every method from the same per-image noise; ground-truth renders of the same prompts give the
floor of each metric. Reported: attribute accuracy (one- and two-object prompts), FID on evaluator features,
CLIPScore and CLIP-IQA under the tiny judge, with 95% bootstrap intervals, and paired student-vs-teacher tests.
Components: judge caption retrieval and CLIP-IQA clean-vs-degraded ranking, evaluator accuracy on renders, VAE
PSNR, CPU speed of the 4-step student. Writes results/tinyworld_quality.{md,csv,json} and its metric card
(results/fast/ with --fast); every number in them comes from the run that wrote them.
--device cuda[:N] runs the models on a GPU (noise, renders and FID reference features stay on the CPU: images
differ by float rounding only and share the image cache); the CPU speed then comes from
scripts/bench_tinyworld_cpu.py (results/tinyworld_cpu_speed.md).
"""
from __future__ import annotations

import argparse
import copy
import csv
import datetime
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from qsched_core.jaq import Judge
from qsched_core.metrics import MetricCard, machine_description
from qsched_core.stats import paired_bootstrap_diff, sign_test
from qsched_core.tinyworld import quality as Q
from qsched_core.tinyworld.loaders import (
    GUIDANCE_SCALE,
    load_evaluator,
    load_judge,
    load_pipeline,
    load_teacher_pipeline,
)
from qsched_core.tinyworld.degrade import HELD_OUT
from qsched_core.tinyworld.render import render
from qsched_core.tinyworld.train_clip import evaluate_judge
from qsched_core.tinyworld.world import eval_prompts
from qsched_core.utils import REPO_ROOT, RESULTS_DIR, atomic_write

SETS = {"seen": False, "held-out": True}
IMAGE_CACHE = REPO_ROOT / ".cache" / "eval_tinyworld"  # generated images, so an interrupted run can resume
METRICS = ("acc_single", "acc_two", "background", "fid", "clip_score", "clip_iqa")


@dataclass
class EvalConfig:
    n_prompts: int = 1000          # prompts per set (seen, held-out)
    steps: tuple = (1, 2, 4, 8)    # student steps
    teacher_steps: int = 25
    guidance_scale: float = GUIDANCE_SCALE
    seed: int = 0                  # prompts and per-image noise
    ref_seed: int = 1              # FID reference renders (other prompts of the same distribution)
    n_ref: int = 5000
    batch_size: int = 32
    n_boot: int = 1000             # bootstrap resamples of per-image means
    fid_boot: int = 50             # bootstrap resamples of FID (one matrix square root each)
    threads: int = 2
    device: str = "cpu"            # "cpu" or "cuda[:N]": where the models run; the CPU speed needs "cpu"
    speed: bool = True             # measure the CPU speed here (False: the CPU is shared, use the bench script)
    fast: bool = False
    resume: bool = True            # reuse images cached by an interrupted run with the same settings and weights
    out_dir: str = str(RESULTS_DIR)

    def __post_init__(self):
        self.steps = tuple(int(s) for s in self.steps)
        if self.n_prompts < 2 or self.n_ref < 2 or not self.steps or min(self.steps) < 1:
            raise ValueError(f"n_prompts={self.n_prompts} and n_ref={self.n_ref} must be >= 2 and steps="
                             f"{self.steps} non-empty and >= 1 (e.g. --steps 1,2,4,8)")
        if 4 not in self.steps:
            raise ValueError(f"steps={self.steps} must include 4: the targets and the speed are for 4 steps")
        if not re.fullmatch(r"cpu|cuda(:\d+)?", str(self.device)):
            raise ValueError(f"device={self.device!r} must be 'cpu', 'cuda' or 'cuda:N' (e.g. --device cuda:0)")
        if self.batch_size < 1 or self.threads < 1:
            raise ValueError(f"batch_size={self.batch_size} and threads={self.threads} must be >= 1")


def parse_args() -> EvalConfig:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-prompts", type=int, default=None, help="prompts per set (default 1000, 64 with --fast)")
    p.add_argument("--n-ref", type=int, default=None, help="FID reference renders (default 5000, 512 with --fast)")
    p.add_argument("--steps", default="1,2,4,8")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]; the CPU speed is measured only on cpu")
    p.add_argument("--batch-size", type=int, default=32, help="generation batch (and the CPU speed's batch)")
    p.add_argument("--no-speed", action="store_true", help="skip the CPU speed (e.g. while other jobs share the CPU); "
                   "scripts/bench_tinyworld_cpu.py measures it alone")
    p.add_argument("--fast", action="store_true", help="tiny counts for a smoke run; writes under results/fast/")
    p.add_argument("--no-resume", action="store_true", help=f"regenerate every image (ignore {IMAGE_CACHE})")
    args = p.parse_args()
    if not all(v.strip().isdigit() for v in args.steps.split(",")):
        p.error(f"--steps {args.steps!r} must be comma-separated ints >= 1, e.g. --steps 1,2,4,8")
    fast = args.fast
    return EvalConfig(n_prompts=args.n_prompts or (64 if fast else 1000), n_ref=args.n_ref or (512 if fast else 5000),
                      steps=args.steps.split(","), seed=args.seed, threads=args.threads, device=args.device,
                      speed=not args.no_speed, batch_size=args.batch_size, fast=fast, resume=not args.no_resume,
                      n_boot=200 if fast else 1000, fid_boot=10 if fast else 50,
                      out_dir=str(RESULTS_DIR / "fast" if fast else RESULTS_DIR))


def methods(cfg: EvalConfig, pipe, teacher):
    """(model, steps, weights, images_fn(scenes)) for the floor, each student step count and the teacher."""
    yield "renders", 0, None, lambda scenes: render(scenes, torch.Generator().manual_seed(cfg.seed + 1000))
    for n in cfg.steps:
        yield "student", n, pipe.unet, lambda scenes, n=n: Q.generate(pipe, scenes, n, cfg.guidance_scale, cfg.seed,
                                                                      cfg.batch_size)
    yield "teacher", cfg.teacher_steps, teacher.unet, lambda scenes: Q.generate_teacher(
        teacher, scenes, cfg.teacher_steps, cfg.guidance_scale, cfg.seed, cfg.batch_size)


def images_of(cfg: EvalConfig, key: str, weights, images_fn, scenes) -> tuple[torch.Tensor, float, bool]:
    """(images, generation seconds, from cache): generate, or reload what an interrupted run generated."""
    if weights is None:  # renders: cheap, never cached
        t0 = time.perf_counter()
        return images_fn(scenes), time.perf_counter() - t0, False
    settings = f"n{cfg.n_prompts}-s{cfg.seed}-g{cfg.guidance_scale:g}-w{Q.weights_fingerprint(weights)}"
    path = IMAGE_CACHE / f"{key}-{settings}.pt"
    if cfg.resume and path.is_file():
        try:
            saved = torch.load(path)
            if saved["images"].shape[0] == len(scenes) and torch.isfinite(saved["images"]).all():
                return saved["images"], saved["gen_s"], True
            print(f"cached images {path} do not match this run: regenerating them", flush=True)
        except (OSError, EOFError, RuntimeError, KeyError, TypeError, AttributeError) as err:
            print(f"cached images {path} are unreadable ({type(err).__name__}: {err}): regenerating them", flush=True)
    t0 = time.perf_counter()
    images = images_fn(scenes)
    gen_s = time.perf_counter() - t0
    with atomic_write(path, "wb") as f:  # a killed run leaves no half-written cache
        torch.save({"images": images, "gen_s": gen_s}, f)
    return images, gen_s, False


def run_sets(cfg: EvalConfig, pipe, teacher, evaluator, judge, ref_evaluator) -> tuple[list[dict], list[dict]]:
    """Rows per (set, method) and paired student-vs-teacher tests; ref_evaluator: a CPU copy for the FID renders."""
    rows, paired = [], []
    for name, held_out in SETS.items():
        scenes = eval_prompts(cfg.n_prompts, seed=cfg.seed, held_out=held_out)
        ref = Q.reference_stats(ref_evaluator, cfg.n_ref, cfg.ref_seed, held_out)
        per_image = {}
        for model, steps, weights, images_fn in methods(cfg, pipe, teacher):
            images, gen_s, cached = images_of(cfg, f"{name}-{model}-{steps}", weights, images_fn, scenes)
            res = Q.evaluate(images.to(cfg.device), scenes, evaluator, judge, ref, cfg.n_boot, cfg.fid_boot, cfg.seed)
            per_image[model, steps] = res.pop("per_image")
            rows.append({"prompts": name, "model": model, "steps": steps, "gen_s": round(gen_s, 1),
                         "from_cache": cached, **res})
            print(f"[{name}] {model} {steps} steps: " + ", ".join(f"{k}={res[k][0]:.4g}" for k in METRICS)
                  + f" ({gen_s:.0f} s)", flush=True)
        teacher_hits = per_image["teacher", cfg.teacher_steps]["objects"]
        for n in cfg.steps:
            hits = per_image["student", n]["objects"]
            paired.append({"prompts": name, "steps": n, "diff": paired_bootstrap_diff(hits, teacher_hits, cfg.n_boot),
                           "sign_test_p": sign_test(hits, teacher_hits)})
    return rows, paired


def component_checks(cfg: EvalConfig, pipe, evaluator, judge_model) -> dict:
    """Judge, evaluator and VAE checks on CPU-drawn renders; the 4-step student's images/s only on the CPU."""
    # evaluate_judge draws its renders with a generator on the judge's device: a CPU copy keeps them the same
    on_cpu = cfg.device == "cpu"
    with torch.no_grad():
        judge = evaluate_judge(judge_model if on_cpu else copy.deepcopy(judge_model).cpu(), "cpu")
    speed = (Q.student_images_per_second(pipe, cfg.batch_size, cfg.guidance_scale, steps=4, repeats=3, seed=cfg.seed)
             if on_cpu and cfg.speed else None)  # else left to scripts/bench_tinyworld_cpu.py
    return {"judge": judge, "evaluator": Q.evaluator_accuracy(evaluator), "vae_psnr_db": Q.vae_psnr(pipe.vae),
            "student_4step_images_per_s": speed}


def find(rows, prompts, model, steps=None) -> dict:
    return next(r for r in rows if r["prompts"] == prompts and r["model"] == model and steps in (None, r["steps"]))


def targets(rows: list[dict], checks: dict) -> list[dict]:
    s4, teacher = find(rows, "seen", "student", 4), find(rows, "seen", "teacher")
    rho = checks["judge"]["iqa_spearman"]
    seen = [rho[k] for k in ("noise", "blur", "color_shift", "blocky")]  # the pixel kinds (latent needs the VAE)
    out = [("4-step one-object accuracy (seen)", ">= 0.90", s4["acc_single"][0], s4["acc_single"][0] >= 0.90),
           ("4-step two-object accuracy (seen)", ">= 0.60", s4["acc_two"][0], s4["acc_two"][0] >= 0.60),
           ("4-step FID / teacher FID (seen)", "<= 2", s4["fid"][0] / teacher["fid"][0],
            s4["fid"][0] <= 2 * teacher["fid"][0]),
           ("judge retrieval top-1 (512 pairs)", ">= 0.70", checks["judge"]["retrieval_top1_512"],
            checks["judge"]["retrieval_top1_512"] >= 0.70),
           ("CLIP-IQA graded: Spearman(strength, CLIP-IQA), worst seen kind", "<= -0.70", max(seen),
            max(seen) <= -0.70),
           ("evaluator all-attribute accuracy on renders", ">= 0.95", checks["evaluator"]["all"],
            checks["evaluator"]["all"] >= 0.95)]
    return [{"target": t, "threshold": th, "measured": round(m, 4), "met": bool(ok)} for t, th, m, ok in out]


# --------------------------------------------------------------------------------------------- output
def ci(v, digits=3) -> str:
    return f"{v[0]:.{digits}f} [{v[1]:.{digits}f}, {v[2]:.{digits}f}]"


def label(r) -> str:
    steps = f"{r['steps']} step" + ("s" if r["steps"] > 1 else "")
    return {"renders": "ground-truth renders", "student": f"LCM student, {steps}",
            "teacher": f"DDIM teacher, {r['steps']} steps, CFG"}[r["model"]]


def markdown(cfg: EvalConfig, rows, paired, checks, tgts, wall_s: float, machine: str,
             features: str) -> str:
    one = rows[0]
    lines = ["# Tiny-world quality", "",
             f"Written by `scripts/eval_tinyworld.py` on {datetime.date.today().isoformat()} in {wall_s / 60:.1f} min "
             f"on {machine} (models on {cfg.device}, torch threads = {cfg.threads}, batch {cfg.batch_size}). "
             "Every number below comes from that run.", "",
             f"Prompts: `eval_prompts({cfg.n_prompts}, seed={cfg.seed})` per set ({one['n_single']} one-object, "
             f"{one['n_two']} two-object in the seen set); noise: per-image generators seeded by (seed={cfg.seed}, i), "
             f"shared by every method; guidance scale {cfg.guidance_scale:g}. FID: {features} of "
             f"{cfg.n_prompts} generated images vs {cfg.n_ref} renders of "
             f"`eval_prompts({cfg.n_ref}, seed={cfg.ref_seed})` "
             "of the same set. Intervals: 95% percentile bootstrap "
             f"({cfg.n_boot} resamples); FID: {cfg.fid_boot} half-samples of the generated images without replacement, "
             "spread rescaled to the full set and centred on the estimate (`metrics.bootstrap_fid_ci`).",
             "", "## Targets", "", "| target | threshold | measured | status |", "|---|---|---|---|"]
    n_cached = sum(r["from_cache"] for r in rows)
    if n_cached:
        lines[-5:-5] = ["", f"{n_cached} of {len(rows)} rows reuse images that an earlier run with the same "
                        "settings and weights generated (`.cache/eval_tinyworld/`; `--no-resume` regenerates them); "
                        "generation times are that run's."]
    lines += [f"| {t['target']} | {t['threshold']} | {t['measured']:.4f} | {'met' if t['met'] else 'missed'} |"
              for t in tgts]
    for name in SETS:
        lines += ["", f"## Generation quality: {name} colour-shape combinations", "",
                  "| model | accuracy, one object | accuracy, two objects | background | FID | CLIPScore | CLIP-IQA "
                  "| generation s |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {label(r)} | {ci(r['acc_single'])} | {ci(r['acc_two'])} | {ci(r['background'])} | "
                  f"{ci(r['fid'], 1)} | {ci(r['clip_score'], 2)} | {ci(r['clip_iqa'])} | {r['gen_s']:.0f} |"
                  for r in rows if r["prompts"] == name]
    attrs = list(rows[0]["attributes"])
    lines += ["", "## Per-attribute accuracy (evaluator read-back)", "", "| prompts | model | " + " | ".join(attrs)
              + " |", "|---|---|" + "---|" * len(attrs)]
    lines += [f"| {r['prompts']} | {label(r)} | " + " | ".join(f"{r['attributes'][a]:.3f}" for a in attrs) + " |"
              for r in rows]
    lines += ["", "## Paired: student minus teacher, objects accuracy (same prompts, same noise)", "",
              "| prompts | student steps | difference [95% CI] | sign test p |", "|---|---|---|---|"]
    lines += [f"| {p['prompts']} | {p['steps']} | {ci(p['diff'])} | {p['sign_test_p']:.3g} |" for p in paired]
    j, e = checks["judge"], checks["evaluator"]
    lines += ["", "## Components", "", "| check | value |", "|---|---|",
              f"| judge zero-shot caption retrieval top-1, 512 held-out pairs | {j['retrieval_top1_512']:.4f} |"]
    lines += [f"| judge: Spearman rho of degradation strength vs CLIP-IQA, {k}{' (never seen in training)' if k in HELD_OUT else ''} | {v:.4f} |"
              for k, v in j["iqa_spearman"].items()]
    lines += [f"| judge CLIP-IQA of clean renders (mean; share above 0.95) | {j['iqa_clean_mean']:.4f}; "
              f"{j['iqa_clean_above_095']:.4f} |"]
    lines += [f"| evaluator accuracy on 2,048 eval-split renders: {k} | {v:.4f} |" for k, v in e.items()]
    speed, speed_md = checks["student_4step_images_per_s"], Path(cfg.out_dir, "tinyworld_cpu_speed.md")
    speed_row = (f"| 4-step student, CPU, batch {cfg.batch_size}, {cfg.threads} threads | {speed:.1f} images/s |"
                 if speed is not None else f"| 4-step student, CPU speed | not measured in this run: see "
                 f"`{os.path.relpath(speed_md, REPO_ROOT)}` (`scripts/bench_tinyworld_cpu.py`) |")
    lines += [f"| VAE reconstruction PSNR, 512 renders | {checks['vae_psnr_db']:.2f} dB |", speed_row, "",
              "Metric card: `tinyworld_quality.card.md`; raw values: `tinyworld_quality.json` and "
              "`tinyworld_quality.csv`."]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict]) -> None:
    flat = []
    for r in rows:
        row = {k: r[k] for k in ("prompts", "model", "steps", "n", "n_single", "n_two", "n_ref", "gen_s", "from_cache")}
        for m in (*METRICS, "acc_objects"):
            row.update({m: r[m][0], f"{m}_lo": r[m][1], f"{m}_hi": r[m][2]})
        flat.append(row | {f"attr_{k}": v for k, v in r["attributes"].items()})
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)


def main() -> None:
    cfg = parse_args()
    print(json.dumps(asdict(cfg)), flush=True)
    if cfg.device != "cpu" and (torch.device(cfg.device).index or 0) >= torch.cuda.device_count():
        raise RuntimeError(f"--device {cfg.device}: torch {torch.__version__} sees {torch.cuda.device_count()} CUDA "
                           "GPU(s); use --device cpu or an index below that count")
    torch.set_num_threads(cfg.threads)
    t_start, dev = time.perf_counter(), cfg.device
    pipe, teacher = load_pipeline(device=dev), load_teacher_pipeline(device=dev)
    # FID reference renders come from the CPU renderer, so their features are taken on a CPU copy (same weights,
    # same cache entry); generated images are scored on cfg.device
    ref_evaluator = load_evaluator(device="cpu")
    evaluator = ref_evaluator if dev == "cpu" else load_evaluator(device=dev)
    judge_model, tokenizer, _ = load_judge(device=dev)
    judge = Judge(judge_model, tokenizer, "tinyworld-clip")
    rows, paired = run_sets(cfg, pipe, teacher, evaluator, judge, ref_evaluator)
    checks = component_checks(cfg, pipe, evaluator, judge_model)
    tgts = targets(rows, checks)
    wall_s, machine = time.perf_counter() - t_start, machine_description()
    if dev != "cpu":  # machine_description names GPU 0; name the one the models ran on
        machine += f"; {dev} = {torch.cuda.get_device_name(torch.device(dev))}"
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "tinyworld_quality.md"
    md.write_text(markdown(cfg, rows, paired, checks, tgts, wall_s, machine, evaluator.describe()))
    write_csv(out / "tinyworld_quality.csv", rows)
    (out / "tinyworld_quality.json").write_text(json.dumps(
        {"config": asdict(cfg), "machine": machine, "date": datetime.date.today().isoformat(),
         "wall_time_s": round(wall_s, 1), "targets": tgts, "rows": rows, "paired": paired, "checks": checks}, indent=1))
    MetricCard(feature_network=evaluator.describe(), n_images=cfg.n_prompts,
               reference_set=f"renders of eval_prompts(n_ref, seed={cfg.ref_seed}), seen and held-out sets apart",
               reference_size=cfg.n_ref, resize_policy="none (native 64x64)",
               clip_backbone="tinyworld-clip (open_clip ViT, 64x64 input)", seeds=[cfg.seed, cfg.ref_seed],
               scorer_names=["clipscore[tinyworld-clip]", "clipiqa[tinyworld-clip]", "evaluator attribute hits"],
               machine=machine).save(md)
    print(f"wrote {md} ({wall_s / 60:.1f} min)")


if __name__ == "__main__":
    main()
