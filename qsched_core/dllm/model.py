"""A LLaDA-style mask predictor: a Llama-like transformer with no causal mask, in plain torch.

LLaDA (Nie et al. 2025, arXiv 2502.09992) is a decoder-only transformer whose attention is bidirectional and
which has no timestep input: the fraction of [MASK] tokens carries the noise level. The block is exactly the
one the PTQ study quantizes (dllm_ptq.md §1.1, §5.1), with the released checkpoints' parameter names, so
`load_llada(path)` reads LLaDA-8B-Base / -Instruct safetensors into this same module:

    model.transformer.wte                      embedding (V, d)              kept FP in the study
    model.transformer.blocks.i.attn_norm       RMSNorm (d,)
    model.transformer.blocks.i.{q,k,v}_proj    Linear d -> d (bias-free)     } the seven linears
    model.transformer.blocks.i.attn_out        Linear d -> d                 } every PTQ method
    model.transformer.blocks.i.ff_norm         RMSNorm (d,)                  } quantizes
    model.transformer.blocks.i.ff_proj         Linear d -> d_ff  (SwiGLU gate, silu applied to it)
    model.transformer.blocks.i.up_proj         Linear d -> d_ff
    model.transformer.blocks.i.ff_out          Linear d_ff -> d  (down projection)
    model.transformer.ln_f                     RMSNorm (d,)
    model.transformer.ff_out                   LM head d -> V, untied        kept FP in the study

Attention uses RoPE (rotate-half form) on q and k. `Block.attn_act_quant`, None by default, is where a
W-A method quantizes Q / K / V after RoPE (`attn_quant.py`); attention probabilities stay in float.
`attention_mask` (B, L) marks real tokens; padded keys are ignored. Because RoPE scores depend only on
relative positions, left-padding a prompt changes nothing, which lets prompts of different lengths share a
batch. Notation: B batch, L length, d model width, H heads, D = d / H head dim, V vocabulary.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DLLMConfig:
    """Sizes of the mask predictor; the defaults are the shipped tiny model (~5.3 M parameters)."""
    vocab_size: int = 640        # the tiny world has 616 words; padded to a multiple of 128
    d_model: int = 256            # multiple of 128: g128 groups, DuQuant blocks, Hadamard sizes fit
    n_layers: int = 6
    n_heads: int = 4              # head dim 64: a power of two
    n_kv_heads: int | None = None  # None = n_heads (LLaDA-8B is full MHA)
    d_ff: int = 768               # 3 x d as in LLaDA (12 * 64: the same K = 12 Hadamard as LLaDA's 12,288)
    max_seq_len: int = 128
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    mask_token_id: int = 2

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_seq_len"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be a positive int")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_kv_heads={self.n_kv_heads} must divide n_heads={self.n_heads}")
        if not 0 <= self.mask_token_id < self.vocab_size:
            raise ValueError(f"mask_token_id={self.mask_token_id} must be a token id below vocab_size={self.vocab_size}")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def from_llada_json(cls, cfg: dict) -> DLLMConfig:
        """Map a LLaDA `config.json` (OLMo-style keys) onto this config."""
        try:
            return cls(vocab_size=cfg.get("embedding_size") or cfg["vocab_size"], d_model=cfg["d_model"],
                       n_layers=cfg["n_layers"], n_heads=cfg["n_heads"], n_kv_heads=cfg.get("n_kv_heads"),
                       d_ff=cfg["mlp_hidden_size"], max_seq_len=cfg.get("max_sequence_length", 4096),
                       rope_theta=cfg.get("rope_theta", 10000.0), norm_eps=cfg.get("rms_norm_eps", 1e-5),
                       mask_token_id=cfg.get("mask_token_id", 126336))
        except KeyError as err:
            raise ValueError(f"config.json lacks {err.args[0]!r}; is this a LLaDA checkpoint?") from None


class RMSNorm(nn.Module):
    """y = w * x / sqrt(mean(x^2) + eps), statistics in float32."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary embedding, rotate-half form, on x (B, H, L, D)."""
    d, length = x.shape[-1], x.shape[-2]
    inv = 1.0 / theta ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)  # (D/2,)
    ang = torch.arange(length, device=x.device, dtype=torch.float32)[:, None] * inv[None]  # (L, D/2)
    cos, sin = torch.cat([ang.cos()] * 2, -1).to(x.dtype), torch.cat([ang.sin()] * 2, -1).to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class Block(nn.Module):
    """Pre-norm block: x + attn_out(attn(attn_norm(x))), then x + ff_out(silu(ff_proj(h)) * up_proj(h))."""

    def __init__(self, cfg: DLLMConfig):
        super().__init__()
        d, kv = cfg.d_model, cfg.kv_heads * cfg.head_dim
        self.cfg = cfg
        self.attn_norm, self.ff_norm = RMSNorm(d, cfg.norm_eps), RMSNorm(d, cfg.norm_eps)
        self.q_proj, self.k_proj = nn.Linear(d, d, bias=False), nn.Linear(d, kv, bias=False)
        self.v_proj, self.attn_out = nn.Linear(d, kv, bias=False), nn.Linear(d, d, bias=False)
        self.ff_proj, self.up_proj = nn.Linear(d, cfg.d_ff, bias=False), nn.Linear(d, cfg.d_ff, bias=False)
        self.ff_out = nn.Linear(cfg.d_ff, d, bias=False)
        self.attn_act_quant: nn.Module | None = None  # (q, k, v) -> (q, k, v), set by a W-A PTQ method

    def attention(self, h: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        b, length, _ = h.shape
        c = self.cfg
        q = self.q_proj(h).view(b, length, c.n_heads, c.head_dim).transpose(1, 2)  # (B, L, d) -> (B, H, L, D)
        k = self.k_proj(h).view(b, length, c.kv_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(b, length, c.kv_heads, c.head_dim).transpose(1, 2)
        q, k = rope(q, c.rope_theta), rope(k, c.rope_theta)
        if self.attn_act_quant is not None:
            q, k, v = self.attn_act_quant(q, k, v)
        if c.kv_heads != c.n_heads:
            k, v = (t.repeat_interleave(c.n_heads // c.kv_heads, dim=1) for t in (k, v))
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, L): True = attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=False)
        return self.attn_out(y.transpose(1, 2).reshape(b, length, -1))  # (B, H, L, D) -> (B, L, d)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attention(self.attn_norm(x), key_mask)
        h = self.ff_norm(x)
        return x + self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h))


class _Transformer(nn.Module):
    def __init__(self, cfg: DLLMConfig):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.d_model), blocks=nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers)),
            ln_f=RMSNorm(cfg.d_model, cfg.norm_eps), ff_out=nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)))


class LLaDAModel(nn.Module):
    """The mask predictor: token ids (B, L) -> logits (B, L, V) for every position at once."""

    def __init__(self, cfg: DLLMConfig):
        super().__init__()
        self.cfg = cfg
        self.model = _Transformer(cfg)
        self.apply(self._init)
        for blk in self.blocks:  # residual-writing projections start smaller (GPT-2 style)
            for lin in (blk.attn_out, blk.ff_out):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.transformer.blocks

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids has shape {tuple(input_ids.shape)}; pass (batch, length) token ids")
        t = self.model.transformer
        x = t.wte(input_ids)
        key_mask = None if attention_mask is None else attention_mask.bool()
        for blk in t.blocks:
            x = blk(x, key_mask)
        return t.ff_out(t.ln_f(x))


def block_linear_filter(module: nn.Module, name: str) -> bool:
    """The study's selection: the seven linears inside the blocks; embedding and LM head stay FP."""
    return isinstance(module, nn.Linear) and ".blocks." in name


_ST_DTYPES = {torch.float16: "F16", torch.float32: "F32", torch.bfloat16: "BF16"}


def _save_file(tensors: dict, path: Path) -> None:
    """safetensors' save_file, or the same format written by hand where the package is missing
    (u64 header length, JSON header of dtype / shape / byte offsets, raw little-endian data)."""
    try:
        from safetensors.torch import save_file
        return save_file(tensors, str(path))
    except ImportError:
        pass
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        raw = bytes(t.contiguous().view(torch.uint8).flatten().tolist())
        header[name] = dict(dtype=_ST_DTYPES[t.dtype], shape=list(t.shape), data_offsets=[offset, offset + len(raw)])
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(blobs))


def _load_file(path: Path) -> dict:
    """safetensors' load_file, or the hand-written reader of `_save_file`'s format."""
    try:
        from safetensors.torch import load_file
        return load_file(str(path))
    except ImportError:
        pass
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header, body = json.loads(data[8:8 + n]), bytearray(data[8 + n:])
    dtypes = {v: k for k, v in _ST_DTYPES.items()}
    return {name: torch.frombuffer(body[a:b], dtype=dtypes[h["dtype"]]).reshape(h["shape"]).clone()
            for name, h in header.items() if name != "__metadata__" for a, b in [h["data_offsets"]]}


def save_safetensors(model: LLaDAModel, path, dtype=torch.float16) -> None:
    """Weights as safetensors (fp16 by default) plus `config.json` in the same folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_file({k: v.detach().to(dtype).contiguous().cpu() for k, v in model.state_dict().items()}, path)
    (path.parent / "config.json").write_text(json.dumps(asdict(model.cfg), indent=1))


def load_safetensors(path, dtype=torch.float32) -> LLaDAModel:
    """A model saved by `save_safetensors` (config.json beside the weights)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; train it with scripts/train_dllm.py or use the shipped "
                                f"models/dllm/*.safetensors")
    model = LLaDAModel(DLLMConfig(**json.loads((path.parent / "config.json").read_text())))
    model.load_state_dict({k: v.to(dtype) for k, v in _load_file(path).items()})
    return model


def load_llada(path, dtype=torch.bfloat16) -> LLaDAModel:
    """LLaDA-8B-Base / -Instruct from a local folder (config.json + *.safetensors), no download, no transformers."""
    path = Path(path)
    shards = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    if not shards or not (path / "config.json").is_file():
        raise FileNotFoundError(f"no LLaDA checkpoint at {path}: expected config.json and *.safetensors there "
                                f"(download GSAI-ML/LLaDA-8B-Base elsewhere and pass its folder)")
    cfg = DLLMConfig.from_llada_json(json.loads((path / "config.json").read_text()))
    with torch.device("meta"):
        model = LLaDAModel(cfg)
    state = {}
    for shard in shards:
        state.update({k: v.to(dtype) for k, v in _load_file(shard).items()})
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} expected tensors, e.g. {sorted(missing)[:3]}")
    model.load_state_dict({k: state[k] for k in model.state_dict()}, assign=True)
    return model
