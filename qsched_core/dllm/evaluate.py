"""Scoring a model on the three tasks, paired between FP and quantized runs, with bootstrap intervals.

Protocol (dllm_ptq.md §5.4): the same items, prompts, gen_len, steps, block length, temperature 0 and
the same Monte-Carlo mask draws (seeded by item index) for every model, so two runs differ only by the
model. Every prompt starts with [EOS], the document separator pre-training saw before each document.

Intervals: `accuracy_ci` bootstraps items; `paired_drop` bootstraps items jointly for the FP and the
quantized per-item scores (the quantized score of an item may be a mean over calibration seeds), which is
the right interval for a relative drop (FP - Q) / FP measured on the same items.
"""
from __future__ import annotations

import functools
import platform
import time
from dataclasses import dataclass

import torch

from .diffusion import generate, loglik
from .tasks import GEN, GenItem, QAItem, arith_correct, code_correct
from .vocab import TOKENIZER


@dataclass(frozen=True)
class EvalConfig:
    """How many items, MC draws and which batch sizes (defaults: the study's settings, on CPU)."""
    n_items: int = 500           # per task, the first n of the held-out set
    mc_num: int = 32             # likelihood MC draws (the study: 128; spec minimum 32)
    gen_batch: int = 500         # prompts per generation batch
    loglik_rows: int = 8192      # sequences per likelihood forward pass
    temperature: float = 0.0     # greedy, as the study
    device: str = "cpu"

    def __post_init__(self):
        if self.n_items < 1 or self.mc_num < 1 or self.gen_batch < 1 or self.loglik_rows < 1:
            raise ValueError(f"n_items, mc_num, gen_batch and loglik_rows must be >= 1, got {self}")


def _prompt_ids(prompt: str) -> list[int]:
    return [TOKENIZER.eos_id] + TOKENIZER.encode(prompt)


def eval_qa(model, items: list[QAItem], cfg: EvalConfig) -> torch.Tensor:
    """(n,) bool: the option with the highest MC log-likelihood is the right one."""
    pairs, seeds = [], []
    for i, item in enumerate(items):
        for opt in item.options:  # the same mask draws for every option of an item
            pairs.append((_prompt_ids(item.prompt), TOKENIZER.encode(opt)))
            seeds.append(i)
    ll = loglik(model, pairs, seeds, mc_num=cfg.mc_num, mask_id=TOKENIZER.mask_id, pad_id=TOKENIZER.pad_id,
                device=cfg.device, batch_rows=cfg.loglik_rows)
    ll = ll.view(len(items), -1)  # (n, options)
    return ll.argmax(1) == torch.tensor([item.answer for item in items])


def completions(model, items: list[GenItem], cfg: EvalConfig, task: str) -> list[str]:
    """Decoded generations (cut at the first [EOS]) with the task's gen_len / block_len, steps = gen_len."""
    s, out = GEN[task], []
    gen = torch.Generator().manual_seed(0)
    for b in range(0, len(items), cfg.gen_batch):
        batch = items[b:b + cfg.gen_batch]
        ids = generate(model, [_prompt_ids(i.prompt) for i in batch], s.gen_len, s.block_len, mask_id=TOKENIZER.mask_id,
                       pad_id=TOKENIZER.pad_id, temperature=cfg.temperature, generator=gen, device=cfg.device)
        out += [TOKENIZER.decode(row) for row in ids.cpu()]
    return out


def eval_generation(model, items: list[GenItem], cfg: EvalConfig, task: str) -> tuple[torch.Tensor, list[str]]:
    """(n,) bool (exact match for arith, pass@1 for code) and the completions."""
    texts = completions(model, items, cfg, task)
    score = arith_correct if task == "arith" else code_correct
    return torch.tensor([score(i, t) for i, t in zip(items, texts)]), texts


def evaluate(model, suite, cfg: EvalConfig, tasks=("qa", "arith", "code")) -> dict[str, torch.Tensor]:
    """Per-item correctness {task: (n,) bool} on the first cfg.n_items of each evaluation set."""
    model.eval()
    out = {}
    for task in tasks:
        items = getattr(suite, f"{task}_eval")[: cfg.n_items]
        out[task] = eval_qa(model, items, cfg) if task == "qa" else eval_generation(model, items, cfg, task)[0]
    return out


@functools.lru_cache(maxsize=8)
def _boot_weights(n_boot: int, n: int, seed: int) -> torch.Tensor:
    """(n_boot, n) float64: row b holds how often each item is drawn in resample b, divided by n.

    `W @ x` is then the mean of x over every resample at once; the same draws serve every interval of a report."""
    idx = torch.randint(0, n, (n_boot, n), generator=torch.Generator().manual_seed(seed))
    counts = torch.zeros(n_boot, n, dtype=torch.float64)
    return counts.scatter_add_(1, idx, torch.ones(n_boot, n, dtype=torch.float64)) / n


def accuracy_ci(correct: torch.Tensor, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(accuracy, 2.5 %, 97.5 %) in percent, bootstrapping items."""
    x = correct.double().reshape(len(correct), -1).mean(1)
    boots = _boot_weights(n_boot, len(x), seed) @ x
    return 100 * float(x.mean()), 100 * float(boots.quantile(0.025)), 100 * float(boots.quantile(0.975))


def paired_drop(fp: torch.Tensor, q: torch.Tensor, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Relative drop (FP - Q) / FP in percent with a 95 % paired bootstrap interval over items.

    fp (n,) per-item scores; q (n,) or (n, seeds), averaged over seeds first.
    """
    f, qq = fp.double(), q.double().reshape(len(fp), -1).mean(1)
    if float(f.mean()) == 0:
        raise ValueError("FP accuracy is 0 on these items; a relative drop is undefined")
    w = _boot_weights(n_boot, len(f), seed)
    fb, qb = w @ f, w @ qq
    drops = 100 * (fb - qb) / fb.clamp_min(1e-12)
    return 100 * float((f.mean() - qq.mean()) / f.mean()), float(drops.quantile(0.025)), float(drops.quantile(0.975))


def paired_gap(fp: torch.Tensor, qa: torch.Tensor, qb: torch.Tensor, n_boot: int = 2000,
               seed: int = 0) -> tuple[float, float, float]:
    """drop(a) - drop(b) in percentage points of FP, with a 95 % bootstrap interval resampling items jointly.

    Positive: a loses more than b. fp (n,); qa, qb (n,) or (n, seeds), averaged over seeds first. Because both
    drops share the FP denominator, the gap is (mean(qb) - mean(qa)) / mean(fp).
    """
    f = fp.double()
    a, b = (q.double().reshape(len(f), -1).mean(1) for q in (qa, qb))
    if float(f.mean()) == 0:
        raise ValueError("FP accuracy is 0 on these items; a relative drop is undefined")
    w = _boot_weights(n_boot, len(f), seed)
    gaps = 100 * (w @ b - w @ a) / (w @ f).clamp_min(1e-12)
    return 100 * float((b.mean() - a.mean()) / f.mean()), float(gaps.quantile(0.025)), float(gaps.quantile(0.975))


def cpu_tokens_per_second(model, suite, n_prompts: int = 8, threads: int | None = None) -> dict:
    """Generation speed on the CPU: arith prompts, gen_len 32, one token per step (tokens committed per second)."""
    if threads:
        torch.set_num_threads(threads)
    items = suite.arith_eval[:n_prompts]
    cfg = EvalConfig(n_items=n_prompts, gen_batch=n_prompts, device="cpu")
    model = model.cpu().eval()
    completions(model, items[:1], cfg, "arith")  # warm-up
    t0 = time.perf_counter()
    completions(model, items, cfg, "arith")
    sec = time.perf_counter() - t0
    n_tok = n_prompts * GEN["arith"].gen_len
    return dict(tokens_per_s=round(n_tok / sec, 1), seconds=round(sec, 2), prompts=n_prompts,
                gen_len=GEN["arith"].gen_len, forward_passes=GEN["arith"].gen_len, threads=torch.get_num_threads(),
                cpu=platform.processor() or platform.machine(), torch=torch.__version__)
