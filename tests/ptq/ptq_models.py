"""Tiny models with planted activation outliers for the PTQ method tests (imported by the test files).

`Block` mirrors an LLaDA / Llama block (pre-norm RMSNorm or LayerNorm -> q, k, v -> attention -> o, norm ->
gate / up -> SwiGLU -> down) at width 64. Outlier *channels* are planted the way they arise in trained
transformers: a few norm gains are 15-20x the others, so every token carries them into q/k/v and gate/up.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

D, HEADS, FF = 64, 4, 128
OUTLIER_CHANNELS = {"attn_norm": [3, 17], "ff_norm": [5]}


class Block(nn.Module):
    def __init__(self, norm: str = "rms"):
        super().__init__()
        make_norm = nn.RMSNorm if norm == "rms" else nn.LayerNorm
        self.attn_norm, self.ff_norm = make_norm(D), make_norm(D)
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(D, D) for _ in range(4))
        self.gate_proj, self.up_proj, self.down_proj = nn.Linear(D, FF), nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x):  # (B, T, D) -> (B, T, D)
        b, t, _ = x.shape
        h = self.attn_norm(x)
        q, k, v = (p(h).view(b, t, HEADS, -1).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, D)
        x = x + self.o_proj(a)
        h = self.ff_norm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


def make_block(norm: str = "rms", seed: int = 0) -> Block:
    torch.manual_seed(seed)
    block = Block(norm)
    with torch.no_grad():
        for name, channels in OUTLIER_CHANNELS.items():
            n = getattr(block, name)
            n.weight.uniform_(0.5, 1.5)
            n.weight[channels] = 20.0  # planted outlier channels
            if getattr(n, "bias", None) is not None:
                n.bias.normal_(0, 0.2)
    return block.eval()


def block_batches(n: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 16, D, generator=g) for _ in range(n)]


def norm_linear(seed: int = 0, k: int = 128, n: int = 96) -> nn.Sequential:
    """One LayerNorm -> Linear pair: the smallest model with a foldable producer and planted outliers."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.LayerNorm(k), nn.Linear(k, n))
    with torch.no_grad():
        model[0].weight.uniform_(0.5, 1.5)
        model[0].weight[[7, 50, 99]] = 25.0
    return model.eval()


def rel_err(out, ref) -> float:
    return float((out - ref).detach().norm() / ref.detach().norm())


def outlier_acts(n: int, generator: torch.Generator, k: int = 128) -> torch.Tensor:
    """(n, k) activations with correlated channels (as real ones are; GPTQ exploits it) and 3 outlier channels."""
    mix = torch.randn(k, k, generator=torch.Generator().manual_seed(100)) / k**0.5
    x = torch.randn(n, k, generator=generator) @ (torch.eye(k) + 2 * mix)  # (n, k)
    x[:, [7, 50, 99]] *= 20.0  # planted outlier channels
    return x


def outlier_layer(seed: int = 0):
    """(model, calibration batches, held-out inputs) for one Linear(128, 96) reading outlier_acts."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    return nn.Sequential(nn.Linear(128, 96)), [outlier_acts(128, g) for _ in range(4)], outlier_acts(512, g)
