"""Masked diffusion: the training loss, the low-confidence-remasking sampler and Monte-Carlo likelihoods.

Forward process (LLaDA, Nie et al. 2025, arXiv 2502.09992; Shi et al. / Sahoo et al. 2024 for the ELBO).
Draw t ~ U(0, 1), set p = (1 - eps) t + eps, and replace each token by [MASK] with probability p. The mask
predictor sees x_t and predicts every masked token at once. Its loss is an upper bound on -log p(x_0):

    L = -(1 / (B L)) sum_b sum_{i masked} log p_theta(x_0^i | x_t) / p_b                     (pre-training)
    L = -(1 / B) sum_b (1 / A_b) sum_{i masked, i in answer} log p_theta(x_0^i | x_t) / p_b  (SFT)

with A_b the answer length including its [EOS] padding; SFT never masks the prompt (dllm_ptq.md §4.2).
Without the 1 / p weight the bound is biased towards lightly masked sequences.

Sampling (§4.3). The generated region starts fully masked and is split into blocks of `block_len`, filled
left to right (semi-autoregressive). Inside a block, `steps / n_blocks` steps each commit k tokens (k from
a linear schedule, the remainder going to the first steps): the model predicts x_0 = argmax of the logits
(plus Gumbel noise at temperature T > 0), scores each masked position of the current block by the
probability of its prediction ("low_confidence" remasking) or at random, and commits the k most confident.
Committed tokens are never re-masked; later blocks stay masked but are visible to attention. There is no KV
cache: every step re-runs the whole sequence. With steps = gen_len, one token is committed per step.

Likelihood (§4.4). log p(answer | prompt) is estimated with mc_num masked copies in which only answer
tokens are masked, with stratified mask counts (an offset k_0 ~ U{1..A}, then counts spaced evenly mod A):

    log p ~ -(1 / mc) sum_j sum_{i masked in copy j} CE_i / (n_j / A)

The draws come from a generator seeded per item, so an FP and a quantized model see the same masks (common
random numbers): their difference is not drowned by Monte-Carlo noise.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-3


def check_gen_args(gen_len: int, block_len: int, steps: int) -> None:
    if gen_len <= 0 or block_len <= 0 or gen_len % block_len:
        raise ValueError(f"gen_len={gen_len} must be a positive multiple of block_len={block_len}")
    n_blocks = gen_len // block_len
    if steps <= 0 or steps % n_blocks:
        raise ValueError(f"steps={steps} must be a positive multiple of the number of blocks {n_blocks} "
                         f"(gen_len / block_len); the study uses steps = gen_len")
    if steps // n_blocks > block_len:
        raise ValueError(f"steps per block {steps // n_blocks} > block_len={block_len}: some steps would commit "
                         f"nothing; use steps <= gen_len")


def noise(x0: torch.Tensor, mask_id: int, generator=None, frozen: torch.Tensor | None = None, eps: float = EPS):
    """Forward process: (x_t, masked (B, L) bool, p (B,)); positions in `frozen` are never masked."""
    b = x0.shape[0]
    t = torch.rand(b, device=x0.device, generator=generator)
    p = (1 - eps) * t + eps  # (B,)
    masked = torch.rand(x0.shape, device=x0.device, generator=generator) < p[:, None]
    if frozen is not None:
        masked &= ~frozen
    return torch.where(masked, torch.full_like(x0, mask_id), x0), masked, p


def mdm_loss(model, x0: torch.Tensor, mask_id: int, generator=None, eps: float = EPS) -> torch.Tensor:
    """Pre-training loss: CE on masked tokens, each / p, summed and divided by B * L."""
    xt, masked, p = noise(x0, mask_id, generator, eps=eps)
    logits = model(xt)  # (B, L, V)
    ce = F.cross_entropy(logits[masked].float(), x0[masked], reduction="none")  # (n_masked,)
    weight = p[:, None].expand_as(masked)[masked]  # each token's 1 / p_b
    return (ce / weight).sum() / x0.numel()


def sft_loss(model, x0: torch.Tensor, prompt_mask: torch.Tensor, answer_len: torch.Tensor, mask_id: int,
             attention_mask: torch.Tensor | None = None, generator=None, eps: float = EPS) -> torch.Tensor:
    """SFT loss: prompt (prompt_mask) never masked; CE / p / answer length per example, averaged over B."""
    xt, masked, p = noise(x0, mask_id, generator, frozen=prompt_mask, eps=eps)
    logits = model(xt, attention_mask)
    ce = F.cross_entropy(logits[masked].float(), x0[masked], reduction="none")
    weight = (p[:, None] * answer_len[:, None].float()).expand_as(masked)[masked]
    return (ce / weight).sum() / x0.shape[0]


def left_pad(seqs: list[list[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B, L_max), attention_mask (B, L_max) bool) with every sequence right-aligned."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
    ids = ids.to(device)
    return ids, ids != pad_id


def transfer_schedule(n_masked: int, steps: int) -> list[int]:
    """Tokens to commit at each step: n_masked split evenly, the remainder to the earliest steps."""
    base, extra = divmod(n_masked, steps)
    return [base + (1 if i < extra else 0) for i in range(steps)]


@torch.no_grad()
def generate(model, prompts: list[list[int]], gen_len: int, block_len: int, steps: int | None = None, *,
             mask_id: int, pad_id: int, temperature: float = 0.0, remasking: str = "low_confidence",
             generator: torch.Generator | None = None, device=None, trace: bool = False):
    """Fill gen_len masks after each prompt; returns generated ids (B, gen_len) [and the list of states]."""
    steps = gen_len if steps is None else steps
    check_gen_args(gen_len, block_len, steps)
    if remasking not in ("low_confidence", "random"):
        raise ValueError(f"remasking={remasking!r} must be 'low_confidence' or 'random'")
    device = device or next(model.parameters()).device
    ids, attn = left_pad(prompts, pad_id, device)
    lp = ids.shape[1]
    x = torch.cat([ids, torch.full((len(prompts), gen_len), mask_id, dtype=torch.long, device=device)], 1)
    attn = torch.cat([attn, torch.ones(len(prompts), gen_len, dtype=torch.bool, device=device)], 1)
    n_blocks = gen_len // block_len
    states = [x[:, lp:].clone().cpu()] if trace else None
    for blk in range(n_blocks):
        lo, hi = lp + blk * block_len, lp + (blk + 1) * block_len
        for k in transfer_schedule(block_len, steps // n_blocks):
            logits = model(x, attn)[:, lo:hi].double()  # 1. a full forward pass (no cache); keep the block
            noisy = logits
            if temperature > 0:  # 2. Gumbel-max sampling at temperature T
                u = torch.rand(logits.shape, generator=generator, dtype=torch.float64).to(device)
                noisy = logits / temperature - torch.log(-torch.log(u.clamp_min(1e-20)))
            x0 = noisy.argmax(-1)  # (B, block_len)
            if remasking == "low_confidence":  # 3. confidence: the model's probability of that prediction
                conf = F.softmax(logits, -1).gather(-1, x0[..., None])[..., 0]
            else:
                conf = torch.rand(x0.shape, generator=generator, dtype=torch.float64).to(device)
            conf = conf.masked_fill(x[:, lo:hi] != mask_id, -torch.inf)  # only still-masked positions
            top = conf.topk(k, dim=-1).indices  # 4. commit the k most confident, never re-masked
            x[:, lo:hi] = x[:, lo:hi].scatter(1, top, x0.gather(1, top))
            if trace:
                states.append(x[:, lp:].clone().cpu())
    return (x[:, lp:], states) if trace else x[:, lp:]


def stratified_counts(n_answer: int, mc_num: int, generator: torch.Generator) -> torch.Tensor:
    """mc_num mask counts in 1..n_answer: a random offset, then evenly spaced mod n_answer."""
    k0 = int(torch.randint(0, n_answer, (1,), generator=generator))
    spaced = torch.round(torch.arange(mc_num, dtype=torch.float64) * n_answer / mc_num).long()  # ~ j A / mc
    return (k0 + spaced) % n_answer + 1


def mask_draws(n_answer: int, mc_num: int, seed: int) -> torch.Tensor:
    """(mc_num, n_answer) bool: which answer tokens each MC copy masks, reproducible from `seed`."""
    g = torch.Generator().manual_seed(seed)
    counts = stratified_counts(n_answer, mc_num, g)
    ranks = torch.rand(mc_num, n_answer, generator=g).argsort(-1).argsort(-1)  # a random order per copy
    return ranks < counts[:, None]


@torch.no_grad()
def loglik(model, pairs: list[tuple[list[int], list[int]]], seeds: list[int], *, mc_num: int, mask_id: int,
           pad_id: int, device=None, batch_rows: int = 4096) -> torch.Tensor:
    """MC estimate of log p(answer | prompt) for each (prompt ids, answer ids) pair; draws seeded by `seeds`."""
    if len(pairs) != len(seeds):
        raise ValueError(f"{len(pairs)} pairs but {len(seeds)} seeds; pass one seed per pair")
    device = device or next(model.parameters()).device
    ids, attn = left_pad([p + a for p, a in pairs], pad_id)  # (n, L): every answer ends the row
    n, width = ids.shape
    masks = torch.zeros(n, mc_num, width, dtype=torch.bool)  # (n, mc, L): which answer tokens each copy masks
    cache: dict = {}
    for i, ((_, answer), seed) in enumerate(zip(pairs, seeds)):
        key = (len(answer), seed)
        if key not in cache:
            cache[key] = mask_draws(len(answer), mc_num, seed)
        masks[i, :, width - len(answer):] = cache[key]
    n_ans = torch.tensor([len(a) for _, a in pairs], dtype=torch.float64)
    weight = n_ans[:, None] / masks.sum(-1).double()  # (n, mc): 1 / mask ratio
    x = torch.where(masks, mask_id, ids[:, None, :]).reshape(n * mc_num, width)  # (n, mc, L) -> (n*mc, L)
    tgt = torch.where(masks, ids[:, None, :], -100).reshape(n * mc_num, width)
    am = attn[:, None, :].expand(n, mc_num, width).reshape(n * mc_num, width)
    ce = torch.empty(n * mc_num, dtype=torch.float64)
    for s in range(0, n * mc_num, batch_rows):
        logits = model(x[s:s + batch_rows].to(device), am[s:s + batch_rows].to(device)).float()
        t = tgt[s:s + batch_rows].to(device)
        ce[s:s + batch_rows] = F.cross_entropy(logits.transpose(1, 2), t, ignore_index=-100,
                                               reduction="none").sum(1).double().cpu()
    return -(ce.view(n, mc_num) * weight).sum(1) / mc_num
