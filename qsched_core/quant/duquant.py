"""DuQuant (Lin et al. 2024, arXiv 2406.01721): smoothing, then rotations aimed at the outliers themselves.

A Hadamard rotation spreads every channel evenly, whether or not it is an outlier. DuQuant builds its
rotation from the calibration activation instead, and keeps it cheap by making it block-diagonal:

    x' = (x / s) R1 P R2,        W' = (W diag(s)) R1 P R2,        x' W'^T = x W^T

  1. smoothing s as in SmoothQuant (alpha = 0.5), folded into the producer or kept online;
  2. R1: one b x b rotation shared by all K / b blocks of channels (the activation is viewed as (-1, b)),
     built greedily: find the largest |x| entry, take its channel j, rotate with E_j R0 E_j, where R0 is an
     orthogonal matrix whose row 0 is uniform (1/sqrt(b)) and E_j swaps indices 0 and j, so channel j is spread
     evenly over the block. Repeat up to `steps` times (256 in the study) and keep the prefix of steps with the
     smallest peak (max - min) of the rotated activation; the empty prefix (identity) is allowed;
  3. P: the zigzag permutation. Channels sorted by max |x| are dealt to the blocks in the order
     0, 1, ..., B-1, B-1, ..., 1, 0, 0, 1, ..., so every block gets a similar share of the outlier mass;
  4. R2: a second greedy rotation on the permuted activation.
R1, P and R2 are online (the `BlockRotation` act_transform), the weights absorb them offline; weights and
activations are then quantized per cfg by RTN. The study uses per-channel asymmetric weights with clip
0.8 and per-token asymmetric activations with clip 0.9 (`w_clip_ratio=0.8, a_clip_ratio=0.9`).

Block size: b = min(block_size, K) and b must divide K (b = 128 in the study; the UNet's K = 64 and 96 give a
single block, where P only sorts channels). Deviations from the reference code (dllm_ptq.md §2.5):
  - R0 is any orthogonal matrix with a uniform row 0 (QR of a seeded Gaussian with a ones column), where the
    code uses b - 1 Givens rotations times diag(1, random orthogonal): the same role;
  - j is the *channel* (column) of the largest entry, as the paper describes; the code takes the row index;
  - rotations are fitted on the `rot_tokens` calibration rows with the largest |x| (a generic model has no
    sequence axis to average, where the code uses the mean calibration sequence).

Notation: x (T, K), W (N, K), b block size, B = K / b blocks, R0 / R1 / R2 (b, b), P (K, K) permutation.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .calib import collect_inputs, find_input_groups
from .config import QuantConfig
from .methods import PTQReport, measure
from .qlinear import is_linear
from .rtn import GroupPlan, quantize_plans
from .smoothquant import check_alpha, smooth_scales


def block_size_for(k: int, block_size: int = 128) -> int:
    """b = min(block_size, K), which must divide K."""
    if not isinstance(block_size, int) or block_size < 2:
        raise ValueError(f"block_size={block_size!r} must be an int >= 2 (the study uses 128)")
    b = min(block_size, k)
    if k % b:
        divisors = [d for d in range(2, min(k, 256) + 1) if k % d == 0]
        raise ValueError(f"DuQuant block size {b} must divide in_features={k}; pass block_size= one of the "
                         f"divisors {divisors[-6:]}")
    return b


def base_rotation(b: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """R0 (b, b) float64, orthogonal, row 0 = 1/sqrt(b): e_0 R0 spreads channel 0 evenly over the block."""
    m = torch.randn(b, b, generator=generator, dtype=torch.float64)
    m[:, 0] = 1.0
    q, _ = torch.linalg.qr(m)  # q[:, 0] = +-1/sqrt(b)
    q[:, 0] *= torch.sign(q[0, 0])
    return q.T


def _swap0(r0: torch.Tensor, j: int) -> torch.Tensor:
    """E_j R0 E_j: indices 0 and j swapped in rows and columns, so row j becomes the uniform row."""
    idx = torch.arange(r0.shape[0])
    idx[0], idx[j] = j, 0
    return r0[idx][:, idx]


def greedy_rotation(x: torch.Tensor, r0: torch.Tensor, steps: int) -> tuple[torch.Tensor, int]:
    """The best prefix of greedy outlier rotations for x (rows, b): (R (b, b), number of steps kept)."""
    r0, x = r0.double(), x.double()  # float64: R is a product of up to `steps` rotations
    r = best = torch.eye(r0.shape[0], dtype=torch.float64)
    cur, best_peak, kept = x, float(x.max() - x.min()), 0
    for step in range(1, steps + 1):
        j = int(cur.abs().argmax()) % cur.shape[1]  # the channel holding the largest |x|
        rj = _swap0(r0, j)
        cur, r = cur @ rj, r @ rj
        peak = float(cur.max() - cur.min())
        if peak < best_peak:
            best_peak, best, kept = peak, r, step
    return best.float(), kept


def zigzag_permutation(absmax: torch.Tensor, b: int) -> torch.Tensor:
    """perm (K,) with x[..., perm] dealing channels (largest first) to the K / b blocks in zigzag order."""
    n_blocks = absmax.numel() // b
    blocks: list[list[int]] = [[] for _ in range(n_blocks)]
    for rank, ch in enumerate(torch.argsort(absmax, descending=True).tolist()):
        sweep, pos = divmod(rank, n_blocks)
        blocks[pos if sweep % 2 == 0 else n_blocks - 1 - pos].append(ch)  # 0..B-1, then B-1..0, ...
    return torch.tensor([ch for blk in blocks for ch in blk])  # each block already sorted descending


class BlockRotation(nn.Module):
    """Online x -> ((x R1) P) R2 with one b x b rotation per block. Buffers: r1, r2 (b, b), perm (K,) int64."""

    def __init__(self, r1: torch.Tensor, perm: torch.Tensor, r2: torch.Tensor):
        super().__init__()
        self.register_buffer("r1", r1.float().clone())
        self.register_buffer("perm", perm.long().clone())
        self.register_buffer("r2", r2.float().clone())

    def _blocks(self, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        b = r.shape[0]
        return (x.reshape(*x.shape[:-1], -1, b) @ r.to(x.dtype)).reshape(x.shape)  # (..., K/b, b) @ (b, b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._blocks(self._blocks(x, self.r1)[..., self.perm], self.r2)

    def matrix(self) -> torch.Tensor:
        """T (K, K) with forward(x) == x @ T."""
        return self.forward(torch.eye(self.perm.numel(), device=self.perm.device))

    def extra_repr(self) -> str:
        return f"K={self.perm.numel()}, b={self.r1.shape[0]}"


def duquant_transform(x: torch.Tensor, b: int, steps: int = 256, generator: torch.Generator | None = None):
    """Fit R1, P, R2 on x (T, K) (already smoothed): returns (BlockRotation, info dict)."""
    r0 = base_rotation(b, generator)
    r1, kept1 = greedy_rotation(x.reshape(-1, b), r0, steps)
    x1 = (x.reshape(-1, b) @ r1).reshape(x.shape)  # (T, K) -> (T * K/b, b) -> (T, K)
    perm = zigzag_permutation(x1.abs().amax(0), b)
    r2, kept2 = greedy_rotation(x1[:, perm].reshape(-1, b), r0, steps)
    return BlockRotation(r1, perm, r2), dict(block=b, steps_r1=kept1, steps_r2=kept2)


def duquant_quantize(model: nn.Module, cfg: QuantConfig, calib, *, alpha: float = 0.5, smooth: bool = True,
                     block_size: int = 128, steps: int = 256, rot_tokens: int = 256, seed: int = 0,
                     filter_fn=is_linear, fold: bool = True, tokens_per_call: int = 256,
                     check_tol: float = 1e-3) -> tuple[nn.Module, PTQReport]:
    """DuQuant: smoothing (folded where possible) + online R1 P R2 block rotations, then RTN weights."""
    check_alpha(alpha)
    with measure() as m:
        groups = find_input_groups(model, calib, filter_fn, fold)
        ks = [model.get_submodule(g.consumers[0]).in_features for g in groups]
        bs = [block_size_for(k, block_size) for k in ks]  # fail before any work on a width that does not fit
        stats = collect_inputs(model, groups, calib, tokens_per_call=tokens_per_call)
        gen = torch.Generator().manual_seed(seed)
        plans = []
        for g, st, b in zip(groups, stats, bs):
            ws = [model.get_submodule(n).weight for n in g.consumers]
            s = smooth_scales(st.absmax, ws, alpha) if smooth else None
            x = st.x if s is None else st.x / s
            x = x[x.abs().amax(1).argsort(descending=True)[:rot_tokens]]  # the rows with the largest |x|
            rotation, info = duquant_transform(x, b, steps, gen)
            plans.append(GroupPlan(g, s=s, rotation=rotation, label="smooth", info=info))
        report = quantize_plans(model, cfg, calib, plans, stats, "duquant", check_tol=check_tol)
    report.seconds, report.peak_mem_mb = m.seconds, m.peak_mem_mb
    return model, report
