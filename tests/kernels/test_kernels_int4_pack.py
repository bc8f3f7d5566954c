"""int4 packing: the worked example of the docstring, round trips through the Triton unpacker, argument errors."""
import pytest
import torch
from kernel_helpers import DEVICE

from kernels.int4_pack import (pack_int4, pack_int4_weight, padded_k, unpack_int4, unpack_int4_ref)
from qsched_core.quant.primitives import choose_qparams, quantize


def test_docstring_worked_example():
    q = torch.zeros(1, 64, dtype=torch.int8)
    q[0, :4] = torch.tensor([-8, -1, 0, 7])
    q[0, 32:36] = torch.tensor([3, -3, 5, -8])
    assert pack_int4(q)[0, :4].tolist() == [0xB0, 0x57, 0xD8, 0x0F]


@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
@pytest.mark.parametrize("n,k", [(5, 64), (7, 96), (3, 200)], ids=lambda v: str(v))
def test_round_trip(n, k, symmetric):
    w = torch.randn(n, k)
    scale, zero = choose_qparams(w, 4, -1, symmetric)
    q = quantize(w, scale, zero, 4, symmetric)
    packed = pack_int4(q, symmetric)
    assert packed.shape == (n, padded_k(k) // 2) and packed.dtype == torch.uint8
    assert torch.equal(unpack_int4_ref(packed, k, symmetric), q)
    assert torch.equal(unpack_int4(packed.to(DEVICE), k, symmetric).cpu(), q)


def test_packed_bytes_target():
    """W4 g128 with zeros: codes + fp16 scales + uint8 zeros <= 0.27x the fp16 weight."""
    w = torch.randn(256, 1024)
    scale, zero = choose_qparams(w, 4, 128, False)
    tensors = pack_int4_weight(quantize(w, scale, zero, 4, False), scale, zero, False)
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    assert nbytes / (w.numel() * 2) <= 0.27


def test_errors():
    with pytest.raises(ValueError, match="outside int4"):
        pack_int4(torch.full((2, 64), 9, dtype=torch.int8))
    with pytest.raises(ValueError, match="must be"):
        unpack_int4(torch.zeros(2, 10, dtype=torch.uint8, device=DEVICE), 64)
    with pytest.raises(ValueError, match="zero points 0"):
        pack_int4_weight(torch.zeros(2, 64, dtype=torch.int8), torch.ones(2, 2), torch.ones(2, 2), True)
