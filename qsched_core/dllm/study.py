"""The PTQ grid of the study on the tiny model: methods x settings x calibration seeds x {Base, Instruct}.

| setting        | methods                              | weights                     | activations              |
|----------------|--------------------------------------|-----------------------------|--------------------------|
| W4A16, W3A16   | RTN, GPTQ, AWQ                       | g128, asymmetric            | FP                       |
| W8A8, W4A4     | RTN, SmoothQuant                     | per channel, asym, min-max  | per token, asym; Q/K/V per (token, head), asym |
|                | QuaRot                               | per channel, sym (s = max / (2^(b-1)-1)), GPTQ + MSE clip | Hadamard, per token, sym; K, V per token, sym; Q FP |
|                | DuQuant                              | per channel, asym, clip 0.8 | smooth + R1 P R2, per token, asym, clip 0.9; Q/K Hadamard |

These are the conventions of dllm_ptq.md §2.0-2.5 and §5.3: all seven block linears are quantized, the
embedding and LM head stay FP (`block_linear_filter`). GPTQ: damp 0.01, B = 128, no act-order, sequential,
asymmetric (⚠ the study's code ran AutoGPTQ's symmetric default; we follow its table). Calibration: 128
clean 128-token sequences of the `wiki` corpus (`pile` for AWQ); seed s draws other sequences and, for QuaRot
and DuQuant, other random signs / rotations. RTN needs no data and runs once.

The five methods are the repo's (`qsched_core.quant`, applied through `apply_ptq`); the study adds only the
quantizer choices above and the Q/K/V quantizers (`attn_quant.py`). Every job is evaluated on the same items
with the same MC mask draws as FP (`evaluate.py`). Jobs append to a JSONL file as they finish, so an
interrupted run resumes where it stopped; with workers > 1 they run in parallel processes (PTQ on the CPU,
evaluation on `device`).
"""
from __future__ import annotations

import copy
import dataclasses
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..quant import QuantConfig, apply_ptq
from .attn_quant import set_attn_quant
from .corpus import calibration_corpus
from .evaluate import EvalConfig, evaluate
from .model import block_linear_filter, load_safetensors
from .tasks import make_suite

WEIGHT_ONLY = {"w4a16": 4, "w3a16": 3}
WEIGHT_ACT = {"w8a8": 8, "w4a4": 4}
METHODS_FOR = {**{s: ("rtn", "gptq", "awq") for s in WEIGHT_ONLY},
               **{s: ("rtn", "smoothquant", "quarot", "duquant") for s in WEIGHT_ACT}}
ATTN_STYLE = {"rtn": "per_head", "smoothquant": "per_head", "quarot": "quarot", "duquant": "duquant"}
_FIELDS = {f.name for f in dataclasses.fields(QuantConfig)}


def _qcfg(**fields) -> QuantConfig:
    """QuantConfig from fields; the symmetric scale rule is passed only where QuantConfig has it."""
    return QuantConfig(**{k: v for k, v in fields.items() if k in _FIELDS})


def quant_config(method: str, setting: str, group_size: int = 128) -> QuantConfig:
    """The study's quantizer for one (method, setting), per the table in the module docstring."""
    if setting in WEIGHT_ONLY:
        return _qcfg(w_bits=WEIGHT_ONLY[setting], a_bits=16, a_granularity=None, w_group_size=group_size,
                     w_symmetric=False)
    if setting not in WEIGHT_ACT:
        raise ValueError(f"setting={setting!r} must be one of {tuple(WEIGHT_ONLY) + tuple(WEIGHT_ACT)}")
    b = WEIGHT_ACT[setting]
    if method == "quarot":
        return _qcfg(w_bits=b, a_bits=b, w_group_size=-1, w_symmetric=True, a_symmetric=True,
                     a_granularity="per_token", w_scale_rule="qmax", a_scale_rule="qmax")
    clips = dict(w_clip_ratio=0.8, a_clip_ratio=0.9) if method == "duquant" else {}
    return _qcfg(w_bits=b, a_bits=b, w_group_size=-1, w_symmetric=False, a_symmetric=False,
                 a_granularity="per_token", **clips)


def method_opts(method: str, seed: int) -> dict:
    return {"rtn": {}, "gptq": dict(sequential=True, percdamp=0.01, block_size=128, act_order=False),
            "awq": dict(n_grid=20, clip=True), "smoothquant": dict(alpha=0.5),
            "quarot": dict(weights="gptq", mse_clip=True, seed=seed),
            "duquant": dict(alpha=0.5, block_size=128, steps=256, seed=seed)}[method]


@dataclass(frozen=True)
class StudyConfig:
    """The grid and how to run it (defaults: the full study; tests shrink everything)."""
    model_dir: str = "models/dllm"
    models: tuple[str, ...] = ("base", "instruct")
    settings: tuple[str, ...] = ("w4a16", "w3a16", "w8a8", "w4a4")
    methods: tuple[str, ...] = ("rtn", "gptq", "awq", "smoothquant", "quarot", "duquant")
    seeds: tuple[int, ...] = (0, 1, 2)
    n_items: int = 500
    mc_num: int = 32
    n_calib: int = 128            # calibration sequences (the study: 128)
    calib_len: int = 128          # = the model's maximum length
    calib_batch: int = 16
    group_size: int = 128
    device: str = "cpu"           # evaluation device; PTQ itself runs on the CPU
    workers: int = 1
    threads: int = 1              # torch threads per worker
    out: str = "results/dllm_ptq.jsonl"
    time_limit_min: float = 0.0   # stop submitting new jobs after this many minutes (0 = no limit)
    eval_in_workers: bool = False  # workers > 1: each worker also evaluates its model on `device` (parallel GPU use)

    def __post_init__(self):
        bad = [s for s in self.settings if s not in METHODS_FOR]
        if bad or not self.seeds or self.n_calib % self.calib_batch:
            raise ValueError(f"settings {bad} unknown, seeds empty, or n_calib={self.n_calib} not a multiple of "
                             f"calib_batch={self.calib_batch}: fix the StudyConfig")


@dataclass(frozen=True)
class Job:
    model: str
    method: str                   # "fp" for the unquantized reference
    setting: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.model}/{self.method}/{self.setting}/{self.seed}"


def grid(cfg: StudyConfig) -> list[Job]:
    """FP first, then every (setting, method) at seed 0, then the other seeds (RTN has no seed)."""
    jobs = [Job(m, "fp", "fp", 0) for m in cfg.models]
    for seed in cfg.seeds:
        for m in cfg.models:
            for s in cfg.settings:
                jobs += [Job(m, meth, s, seed) for meth in METHODS_FOR[s]
                         if meth in cfg.methods and not (meth == "rtn" and seed != cfg.seeds[0])]
    return jobs


def calibration(cfg: StudyConfig, method: str, seed: int) -> list[torch.Tensor]:
    x = calibration_corpus("pile" if method == "awq" else "wiki", cfg.n_calib, cfg.calib_len, seed)
    return list(x.split(cfg.calib_batch))  # batches of (calib_batch, calib_len)


_CACHE: dict = {}


def _resources(cfg: StudyConfig):
    if "suite" not in _CACHE:
        torch.set_num_threads(cfg.threads)
        _CACHE["suite"] = make_suite(n_eval=max(cfg.n_items, 500), n_train=1)
        _CACHE["models"] = {m: load_safetensors(Path(cfg.model_dir) / f"{m}.safetensors") for m in cfg.models}
    return _CACHE["suite"], _CACHE["models"]


def quantize_model(model, method: str, setting: str, seed: int, cfg: StudyConfig):
    """A quantized copy of `model` (CPU, fp32) and its PTQReport."""
    model = copy.deepcopy(model).cpu().float().eval()
    qcfg = quant_config(method, setting, cfg.group_size)
    model, report = apply_ptq(model, method, qcfg, calibration(cfg, method, seed), filter_fn=block_linear_filter,
                              **method_opts(method, seed))
    if setting in WEIGHT_ACT:
        set_attn_quant(model, WEIGHT_ACT[setting], ATTN_STYLE[method])
    return model, report


def ptq_job(job: Job, cfg: StudyConfig):
    """(quantized model or the FP one, PTQ seconds, report summary) for one job, on the CPU."""
    _, models = _resources(cfg)
    if job.method == "fp":
        return models[job.model], 0.0, {}
    t0 = time.perf_counter()
    model, report = quantize_model(models[job.model], job.method, job.setting, job.seed, cfg)
    return model, time.perf_counter() - t0, report.summary()


def eval_job(job: Job, model, ptq_s: float, summary: dict, cfg: StudyConfig) -> dict:
    """Evaluate one (quantized) model on cfg.device and pack the result row (per-item 0/1 strings)."""
    suite, _ = _resources(cfg)
    t0 = time.perf_counter()
    with torch.no_grad():
        res = evaluate(model.to(cfg.device), suite, EvalConfig(n_items=cfg.n_items, mc_num=cfg.mc_num,
                                                               device=cfg.device))
    return dict(asdict(job), key=job.key, ptq_s=round(ptq_s, 1), eval_s=round(time.perf_counter() - t0, 1),
                acc={t: round(100 * float(v.float().mean()), 2) for t, v in res.items()},
                items={t: "".join("1" if b else "0" for b in v.tolist()) for t, v in res.items()},
                report={k: summary.get(k) for k in ("mean_rel_err", "mean_rel_err_rtn", "fp_max_abs_diff")})


def _ptq_worker(args):
    """Pool worker: PTQ on the CPU; the model travels back serialized (torch.save), errors as text.

    With cfg.eval_in_workers the worker evaluates the model itself and returns the finished row (a dict)."""
    job, cfg = args
    try:
        model, ptq_s, summary = ptq_job(job, cfg)
        if cfg.eval_in_workers:
            return job, eval_job(job, model, ptq_s, summary, cfg), ptq_s, summary
        buf = io.BytesIO()
        torch.save(model, buf)
        return job, buf.getvalue(), ptq_s, summary
    except Exception as err:
        return job, f"{type(err).__name__}: {err}", 0.0, {}


COST = {"fp": 0, "rtn": 1, "smoothquant": 1, "duquant": 2, "awq": 2, "quarot": 3, "gptq": 5}  # rough PTQ minutes


def _priority(job: Job, cfg: StudyConfig) -> tuple:
    """FP first, then seed 0 before the other seeds, the slowest methods first (they set the wall time)."""
    return job.method != "fp", job.seed != cfg.seeds[0], -COST[job.method]


def load_results(path) -> list[dict]:
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def run_study(cfg: StudyConfig) -> list[dict]:
    """Run every job of the grid not yet in cfg.out (resumable); returns all results.

    workers > 1: PTQ runs in `workers` CPU processes while this process evaluates each finished model on
    cfg.device, one at a time (one CUDA context, no contention between evaluations); with cfg.eval_in_workers
    every worker evaluates its own models too (one CUDA context per worker; evaluation stops being serial).
    """
    done = {r["key"] for r in load_results(cfg.out) if "error" not in r}
    todo = sorted((j for j in grid(cfg) if j.key not in done), key=lambda j: _priority(j, cfg))
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    late = lambda: cfg.time_limit_min and time.perf_counter() - t0 > 60 * cfg.time_limit_min
    with open(cfg.out, "a") as f:
        def finish(job, model, ptq_s, summary):
            try:
                r = model if isinstance(model, dict) else eval_job(job, model, ptq_s, summary, cfg)
            except Exception as err:  # reported in the JSONL; the rest of the grid goes on
                r = dict(asdict(job), key=job.key, error=f"{type(err).__name__}: {err}")
            f.write(json.dumps(r) + "\n")
            f.flush()
            print(f"[{time.perf_counter() - t0:6.0f} s] {r['key']} {r.get('acc', r.get('error'))} "
                  f"ptq {r.get('ptq_s')} s eval {r.get('eval_s')} s", flush=True)
        if cfg.workers <= 1:
            for job in todo:
                if late():
                    break
                try:
                    finish(job, *ptq_job(job, cfg))
                except Exception as err:
                    finish(job, dict(asdict(job), key=job.key, error=f"{type(err).__name__}: {err}"), 0, {})
            return load_results(cfg.out)
        import torch.multiprocessing as mp
        fp = [j for j in todo if j.method == "fp"]
        with mp.get_context("spawn").Pool(cfg.workers) as pool:
            pending = pool.imap_unordered(_ptq_worker, [(j, cfg) for j in todo if j.method != "fp"])
            for job in fp:  # the FP references, while the workers quantize
                finish(job, *ptq_job(job, cfg))
            for job, blob, ptq_s, summary in pending:
                if late():
                    pool.terminate()
                    break
                if isinstance(blob, str):
                    finish(job, dict(asdict(job), key=job.key, error=blob), 0, {})
                elif isinstance(blob, dict):
                    finish(job, blob, ptq_s, summary)
                else:
                    finish(job, torch.load(io.BytesIO(blob), weights_only=False), ptq_s, summary)
    return load_results(cfg.out)
