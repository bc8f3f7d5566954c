"""An offline CLIP tokenizer, built from the BPE merges that ship inside the open_clip wheel.

Stable Diffusion's text encoder uses OpenAI's CLIP BPE tokenizer (49,408 tokens, 77-token context). No hub is
reachable here, but open_clip bundles the same merge list (`bpe_simple_vocab_16e6.txt.gz`), so we rebuild the
vocabulary from it: 256 byte symbols, the same 256 with the end-of-word marker `</w>`, one token per merge, and
the two special tokens. The result is a standard transformers `CLIPTokenizer` that gives the OpenAI ids
("a photo of a cat" -> [49406, 320, 1125, 539, 320, 2368, 49407]) and saves with `save_pretrained`.
"""
from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

N_MERGES = 49152 - 256 - 2  # the merge list is cut so that the vocabulary has exactly 49,408 entries
MODEL_MAX_LENGTH = 77


def byte_symbols() -> dict[int, str]:
    """Map each byte to a printable unicode character, in CLIP's vocabulary order (printable bytes first)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in keep]
    table = {b: chr(b) for b in keep}
    # unprintable bytes are shifted past 255 so that every byte gets a visible symbol
    table.update({b: chr(256 + i) for i, b in enumerate(rest)})
    return table


def bpe_file() -> Path:
    """Path of the BPE merge file bundled with open_clip (found without importing open_clip)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise RuntimeError("open_clip_torch is not installed; run `make setup` to install the pinned requirements")
    path = Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the open_clip wheel; reinstall open_clip_torch")
    return path


def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The OpenAI CLIP vocabulary (token -> id) and merge list, rebuilt from the bundled BPE file."""
    lines = gzip.open(bpe_file(), "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(m.split()) for m in lines[1 : N_MERGES + 1]]  # line 0 is a version header
    symbols = list(byte_symbols().values())
    tokens = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, merges


@lru_cache(maxsize=1)
def load_tokenizer():
    """A transformers `CLIPTokenizer` with OpenAI CLIP ids and `model_max_length=77` (cached)."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MODEL_MAX_LENGTH)
