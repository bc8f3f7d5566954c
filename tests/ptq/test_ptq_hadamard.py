"""Hadamard matrices (Sylvester, Paley, Kronecker), the fast transform, and DuQuant's block rotation."""
import pytest
import torch

from qsched_core.quant.duquant import (BlockRotation, base_rotation, block_size_for, duquant_transform,
                                       zigzag_permutation)
from qsched_core.quant.hadamard import (HadamardRotation, factor_size, fwht, hadamard_matrix, hadamard_transform,
                                        paley, random_hadamard, random_signs, supported_sizes)

SIZES = [1, 2, 8, 12, 20, 24, 64, 96, 384, 768]


@pytest.mark.parametrize("n", SIZES)
def test_hadamard_is_hadamard(n):
    h = hadamard_matrix(n)
    assert set(h.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(h @ h.T, n * torch.eye(n, dtype=torch.float64))


@pytest.mark.parametrize("n", SIZES)
def test_fast_transform_equals_the_matrix(n):
    x = torch.randn(5, 3, n, dtype=torch.float64)
    assert torch.allclose(hadamard_transform(x), x @ hadamard_matrix(n) / n**0.5, atol=1e-10)
    rot = HadamardRotation(random_signs(n, torch.Generator().manual_seed(n)))
    q = rot.matrix()
    assert torch.allclose(q @ q.T, torch.eye(n), atol=1e-5)  # orthogonal
    assert torch.allclose(rot(x.float()), x.float() @ q, atol=1e-5)


def test_fwht_butterflies_and_paley():
    x = torch.randn(4, 16)
    assert torch.allclose(fwht(x), x @ hadamard_matrix(16).float(), atol=1e-5)
    assert factor_size(96) == (12, 8) and factor_size(64) == (1, 64)
    c = paley(11) - torch.eye(12, dtype=torch.float64)
    assert torch.equal(c, -c.T)  # q = 3 mod 4: a skew conference matrix
    with pytest.raises(ValueError, match="prime q = 3"):
        paley(13)


def test_rotation_flattens_an_outlier_channel():
    x = torch.randn(256, 64)
    x[:, 5] *= 50
    q = random_hadamard(64, torch.Generator().manual_seed(0))

    def ratio(a):  # mean over tokens of peak / RMS
        return float(a.abs().amax(1).mean() / a.pow(2).mean(1).sqrt().mean())
    assert ratio(x @ q) < ratio(x) / 3


@pytest.mark.parametrize("n", [36, 28, 100])
def test_unsupported_width_names_width_and_alternatives(n):
    assert n not in supported_sizes(128)
    with pytest.raises(ValueError, match=rf"no Hadamard matrix of size {n}.*nearest"):
        hadamard_matrix(n)


def test_duquant_pieces():
    r0 = base_rotation(16, torch.Generator().manual_seed(0)).float()
    assert torch.allclose(r0 @ r0.T, torch.eye(16), atol=1e-5)
    assert torch.allclose(r0[0], torch.full((16,), 0.25), atol=1e-6)  # row 0 uniform: spreads channel 0
    perm = zigzag_permutation(torch.tensor([9.0, 1, 8, 2, 7, 3, 6, 4]), b=4)  # 2 blocks of 4
    # by size the channels are 0, 2, 4, 6, 7, 5, 3, 1; dealt 0,1,1,0,0,1,1,0 to the blocks -> sums 20 | 20
    assert perm.tolist() == [0, 6, 7, 1, 2, 4, 5, 3]
    x = torch.randn(128, 96)
    x[:, [4, 70]] *= 30
    rot, info = duquant_transform(x, b=32, steps=16, generator=torch.Generator().manual_seed(0))
    t = rot.matrix()
    assert isinstance(rot, BlockRotation) and torch.allclose(t @ t.T, torch.eye(96), atol=1e-4)
    assert torch.allclose(rot(x), x @ t, atol=1e-3)
    assert (x @ t).abs().max() < 0.5 * x.abs().max() and info["block"] == 32


def test_duquant_block_size_must_divide_width():
    assert block_size_for(96) == 96 and block_size_for(384) == 128 and block_size_for(64, 32) == 32
    with pytest.raises(ValueError, match=r"block size 48 must divide in_features=64.*divisors"):
        block_size_for(64, 48)
    with pytest.raises(ValueError, match="block_size=1"):
        block_size_for(64, 1)
