"""Hadamard matrices and the online rotation QuaRot applies to a linear layer's input.

Why rotate: an outlier channel makes the range of every token it appears in large, so per-token int4 rounds
the ordinary channels to zero. An orthogonal Q spreads each channel over all K channels: x Q has the same norm
as x but (for a Hadamard Q, whose entries are all +-1/sqrt(K)) no channel dominates, and the weight absorbs the
inverse exactly because Q Q^T = I:

    y = x W^T = (x Q)(W Q)^T

A Hadamard matrix H (K x K, entries +-1, H H^T = K I) is the cheapest such Q: it needs no multiplications and
the fast Walsh-Hadamard transform applies it in O(K log K). Randomised: Q = diag(d) H / sqrt(K) with random
signs d in {-1, +1}, so the rotation is not aligned with any particular channel (QuaRot, Ashkboos et al. 2024).

Which widths: Sylvester's construction gives K = 2^k; Paley's construction I gives K = q + 1 for a prime
q = 3 (mod 4) (12, 20, 24, 32, 44, 48, 60, ...); a Kronecker product gives every K = m * 2^k with m a Paley size.
The UNet widths 96 = 12 * 8, 384 = 12 * 32 and 768 = 12 * 64 need m = 12, exactly like LLaDA's d_ff = 12 * 1024
(QuaRot's `get_hadK`). Other widths raise a ValueError naming the width and the nearest supported sizes.

Notation: x (..., K); H_K the +-1 Hadamard matrix; Q = diag(d) H_K / sqrt(K) orthogonal; m * 2^k = K.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn as nn

MAX_PALEY = 260  # largest Paley block searched (m = q + 1 <= 260)


def _is_prime(q: int) -> bool:
    return q > 1 and all(q % p for p in range(2, int(q**0.5) + 1))


def sylvester(n: int) -> torch.Tensor:
    """H_n for n = 2^k: H_1 = [1], H_2n = [[H_n, H_n], [H_n, -H_n]] (symmetric), float64 +-1 entries."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"sylvester(n={n}) needs a power of two")
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def paley(q: int) -> torch.Tensor:
    """Paley construction I: H = I + [[0, 1^T], [-1, J]], size q + 1, for a prime q = 3 (mod 4).

    J[i, j] = chi(j - i) is the Jacobsthal matrix, chi the quadratic character mod q (1 for a non-zero
    square, -1 for a non-square, 0 for 0); it is antisymmetric when q = 3 (mod 4).
    """
    if not (_is_prime(q) and q % 4 == 3):
        raise ValueError(f"paley(q={q}) needs a prime q = 3 (mod 4), e.g. 3, 7, 11, 19, 23")
    squares = {(i * i) % q for i in range(1, q)}
    chi = torch.tensor([0.0] + [1.0 if a in squares else -1.0 for a in range(1, q)], dtype=torch.float64)
    idx = (torch.arange(q)[None, :] - torch.arange(q)[:, None]) % q
    c = torch.zeros(q + 1, q + 1, dtype=torch.float64)
    c[0, 1:], c[1:, 0], c[1:, 1:] = 1.0, -1.0, chi[idx]
    return c + torch.eye(q + 1, dtype=torch.float64)


def _paley_sizes() -> list[int]:
    return [q + 1 for q in range(3, MAX_PALEY) if _is_prime(q) and q % 4 == 3 and (q + 1) & q]  # not 2^k


def factor_size(n: int) -> tuple[int, int] | None:
    """(m, 2^k) with n = m * 2^k, m = 1 or a Paley size, preferring the smallest m; None if unsupported."""
    if n >= 1 and not n & (n - 1):
        return 1, n
    for m in _paley_sizes():
        if n % m == 0 and not (n // m) & (n // m - 1):
            return m, n // m
    return None


def supported_sizes(limit: int = 1024) -> list[int]:
    """Every width <= limit that hadamard_matrix can build."""
    return [n for n in range(1, limit + 1) if factor_size(n) is not None]


def _check_size(n: int) -> tuple[int, int]:
    f = factor_size(n) if isinstance(n, int) else None
    if f is None:
        near = sorted(supported_sizes(max(2 * n, 64) if isinstance(n, int) else 64),
                      key=lambda s: abs(s - n) if isinstance(n, int) else s)[:4]
        raise ValueError(f"no Hadamard matrix of size {n}: supported widths are m * 2^k with m = 1 or a Paley size "
                         f"q + 1 ({', '.join(map(str, _paley_sizes()[:5]))}, ...); nearest: {sorted(near)}. "
                         f"Skip this layer (filter_fn) or use DuQuant's block rotation, which fits any divisor")
    return f


@lru_cache(maxsize=16)
def _paley_cached(q: int) -> torch.Tensor:
    return paley(q)


@lru_cache(maxsize=64)
def _hadamard_cached(n: int) -> torch.Tensor:
    m, p = _check_size(n)
    base = sylvester(p)
    return base if m == 1 else torch.kron(_paley_cached(m - 1), base)  # H_m (x) H_p, both +-1


def hadamard_matrix(n: int) -> torch.Tensor:
    """The +-1 Hadamard matrix H_n (float64) with H H^T = n I, for every n in supported_sizes()."""
    return _hadamard_cached(n).clone()


def random_signs(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """d in {-1, +1}^n, float32."""
    return torch.randint(0, 2, (n,), generator=generator).float() * 2 - 1


def random_hadamard(n: int, generator: torch.Generator | None = None,
                    signs: torch.Tensor | None = None) -> torch.Tensor:
    """Orthogonal Q = diag(d) H_n / sqrt(n) (float32, on the device of the given signs), d random signs."""
    d = random_signs(n, generator) if signs is None else signs
    return (d.double()[:, None] * hadamard_matrix(n).to(d.device) / n**0.5).float()


def fwht(x: torch.Tensor) -> torch.Tensor:
    """x H_n along the last dim (n = 2^k), unnormalised, in O(n log n): log2(n) butterflies (a+b, a-b)."""
    n = x.shape[-1]
    if n & (n - 1):
        raise ValueError(f"fwht needs a power-of-two last dim, got {n}; use hadamard_transform for m * 2^k")
    h = 1
    while h < n:
        y = x.reshape(*x.shape[:-1], n // (2 * h), 2, h)  # (..., pairs of blocks, 2, h)
        x = torch.stack([y[..., 0, :] + y[..., 1, :], y[..., 0, :] - y[..., 1, :]], dim=-2).reshape(*x.shape)
        h *= 2
    return x


def hadamard_transform(x: torch.Tensor) -> torch.Tensor:
    """x H_K / sqrt(K) along the last dim, for K = m * 2^k: a fast WHT on 2^k, a small m x m matmul on m.

    With X the (m, 2^k) view of a row, x (H_m (x) H_p) = H_m^T X H_p (row-major Kronecker order).
    """
    k = x.shape[-1]
    m, p = _check_size(k)
    y = fwht(x.reshape(*x.shape[:-1], m, p))  # (..., m, p) @ H_p
    if m > 1:
        hm = _paley_cached(m - 1).to(device=x.device, dtype=x.dtype)
        y = torch.einsum("ij,...ip->...jp", hm, y)  # H_m^T acting on the m axis
    return y.reshape(x.shape) / k**0.5


class HadamardRotation(nn.Module):
    """Online x -> x Q with Q = diag(d) H_K / sqrt(K): flip signs, then a fast Hadamard transform.

    Buffers: signs (K,) float32. `matrix()` returns Q (K, K), so that forward(x) == x @ matrix().
    """

    def __init__(self, signs: torch.Tensor):
        super().__init__()
        _check_size(signs.numel())
        self.register_buffer("signs", signs.float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return hadamard_transform(x * self.signs.to(x.dtype))

    def matrix(self) -> torch.Tensor:
        return random_hadamard(self.signs.numel(), signs=self.signs)

    def extra_repr(self) -> str:
        m, p = _check_size(self.signs.numel())
        return f"K={self.signs.numel()} (H_{m} x H_{p})" if m > 1 else f"K={self.signs.numel()} (H_{p})"
