"""Training the tiny mask predictor in two resumable stages: "base" (pre-training) and "instruct" (SFT).

  base      random 128-token windows of the pre-training stream (`corpus.pretrain_stream`), `mdm_loss`;
            in 1 % of the batches the window is cut to a random length in [1, L] (LLaDA's recipe)
  instruct  starts from the base weights; (prompt, answer) pairs (`corpus.sft_pairs`), `sft_loss`

Each stage runs under a wall-clock budget (`minutes`) and a step cap (`max_steps`); the learning rate follows
linear warm-up and a cosine decay on progress = max(step / max_steps, elapsed / budget), so the schedule
always finishes, whichever limit is hit first (the number of steps reached is logged; a seeded run is
reproducible up to that count). AdamW at a fairly high learning rate, as dllm_ptq.md §5.1 advises (outliers
grow with training). A checkpoint (model, optimizer, step, elapsed time) is written every `ckpt_every` steps
and a rerun with the same out_dir resumes from it. The stage ends by writing fp16 safetensors and a JSON log.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .corpus import pretrain_stream, sft_pairs
from .diffusion import mdm_loss, sft_loss
from .model import DLLMConfig, LLaDAModel, load_safetensors, save_safetensors
from .tasks import make_suite
from .vocab import TOKENIZER

STAGES = ("base", "instruct")


@dataclass(frozen=True)
class TrainConfig:
    """One training stage (defaults: a CPU smoke run of a few steps; the GPU recipe is in scripts/train_dllm.py)."""
    stage: str = "base"
    minutes: float = 1.0          # wall-clock budget of this stage
    max_steps: int = 20
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup: int = 10
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    n_docs: int = 2000            # documents in the pre-training stream
    n_train: int = 1000           # train-split items per generated task (arith, code)
    random_length_prob: float = 0.01
    bf16: bool = False            # autocast matmuls to bfloat16 (GPU)
    device: str = "cpu"
    log_every: int = 10
    ckpt_every: int = 500

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"stage={self.stage!r} must be one of {STAGES}")
        if self.minutes <= 0 or self.max_steps < 1 or self.batch_size < 1 or self.warmup < 0:
            raise ValueError(f"minutes > 0, max_steps >= 1, batch_size >= 1 and warmup >= 0 are required, got {self}")
        if not 0 < self.lr < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"lr={self.lr} must be in (0, 1) and min_lr_ratio={self.min_lr_ratio} in [0, 1]")


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    cos = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cos)


class _Batches:
    """Draws training batches on the device from a seeded generator."""

    def __init__(self, cfg: TrainConfig, suite, gen: torch.Generator):
        self.cfg, self.gen, dev = cfg, gen, cfg.device
        if cfg.stage == "base":
            self.stream = pretrain_stream(suite, cfg.n_docs, cfg.seed).to(dev)
            self.offsets = torch.arange(cfg.seq_len, device=dev)
        else:
            ids, prompt_mask, ans_len = sft_pairs(suite, cfg.seq_len)
            self.ids, self.prompt_mask, self.ans_len = ids.to(dev), prompt_mask.to(dev), ans_len.to(dev)

    def loss(self, model) -> torch.Tensor:
        cfg, g, dev = self.cfg, self.gen, self.cfg.device
        if cfg.stage == "base":
            starts = torch.randint(0, len(self.stream) - cfg.seq_len, (cfg.batch_size,), device=dev, generator=g)
            x = self.stream[starts[:, None] + self.offsets]  # (B, L) windows of the stream
            if float(torch.rand(1, device=dev, generator=g)) < cfg.random_length_prob:
                x = x[:, : int(torch.randint(1, cfg.seq_len + 1, (1,), device=dev, generator=g))]
            return mdm_loss(model, x, TOKENIZER.mask_id, generator=g)
        rows = torch.randint(0, len(self.ids), (cfg.batch_size,), device=dev, generator=g)
        x = self.ids[rows]
        return sft_loss(model, x, self.prompt_mask[rows], self.ans_len[rows], TOKENIZER.mask_id,
                        attention_mask=x != TOKENIZER.pad_id, generator=g)


def train_stage(cfg: TrainConfig, out_dir, model_cfg: DLLMConfig | None = None, init: str | None = None) -> dict:
    """Run (or resume) one stage; writes out_dir/{stage}.safetensors and {stage}.log.json, returns the log."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if cfg.stage == "instruct" and init is None:
        raise ValueError("the instruct stage starts from base weights: pass init='path/to/base.safetensors'")
    model = (load_safetensors(init) if init else LLaDAModel(model_cfg or DLLMConfig())).to(cfg.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed)
    batches = _Batches(cfg, make_suite(n_train=cfg.n_train, seed=0), gen)
    ckpt, log = out / f"{cfg.stage}.ckpt.pt", dict(config=asdict(cfg), model=asdict(model.cfg), history=[])
    step, spent = 0, 0.0
    if ckpt.is_file():  # resume
        state = torch.load(ckpt, map_location=cfg.device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        step, spent, log = state["step"], state["spent"], state["log"]
    t0, budget = time.perf_counter() - spent, 60 * cfg.minutes
    model.train()
    while step < cfg.max_steps:
        elapsed = time.perf_counter() - t0
        progress = max(step / cfg.max_steps, elapsed / budget)
        if progress >= 1:
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step, progress)
        with torch.autocast(device_type="cuda" if "cuda" in cfg.device else "cpu", dtype=torch.bfloat16,
                            enabled=cfg.bf16):
            loss = batches.loss(model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == 1:
            log["history"].append(dict(step=step, loss=round(float(loss.detach()), 4), lr=opt.param_groups[0]["lr"],
                                       seconds=round(time.perf_counter() - t0, 1)))
            print(f"[{cfg.stage}] step {step} loss {float(loss.detach()):.4f} {log['history'][-1]['seconds']} s", flush=True)
        if step % cfg.ckpt_every == 0:
            torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), gen=gen.get_state(), step=step,
                            spent=time.perf_counter() - t0, log=log), ckpt)
    log.update(steps=step, seconds=round(time.perf_counter() - t0, 1),
               tokens_seen=step * cfg.batch_size * cfg.seq_len)
    save_safetensors(model, out / f"{cfg.stage}.safetensors")
    (out / f"{cfg.stage}.log.json").write_text(json.dumps(log, indent=1))
    return log
