"""The tiny world's words and its word-level tokenizer.

Why a word-level tokenizer: the study's models read BPE tokens, but what matters for quantization is the
network, not the tokenizer. A closed vocabulary of ~500 words keeps the embedding and head small (they stay
in FP anyway, as in the study) and the sequences short, so a 128-token context holds a prompt and a 64-token
answer. Numbers are spelled digit by digit ("3 8"), so arithmetic has to be learned, not looked up.

Every word the generators (`corpus.py`, `tasks.py`, `toylang.py`) can emit is listed here as a constant;
`Tokenizer.encode` raises a ValueError naming any word that is missing instead of mapping it to an UNK id.
Reserved ids: 0 = [PAD] (padding, masked out of attention), 1 = [EOS] (end of text and answer padding, as
LLaDA's SFT does), 2 = [MASK] (the absorbing state of the masked diffusion; LLaDA's is id 126336).
"""
from __future__ import annotations

import itertools

PAD, EOS, MASK = "[PAD]", "[EOS]", "[MASK]"
SPECIALS = (PAD, EOS, MASK)
DIGITS = tuple("0123456789")
SYMBOLS = (".", ",", ";", ":", "?", "=", "+", "-", "*", ">", "<")

# ------------------------------------------------------------------------------------- knowledge base
_SYLLABLES = ("ka", "lo", "ve", "ri", "mu", "sa", "to", "ne", "bi", "du", "fe", "go", "ha", "ji", "pa",
              "qu", "ro", "si", "ta", "zo")
NAMES = tuple(a.capitalize() + b for a, b in itertools.product(_SYLLABLES, repeat=2) if a != b)  # 380 names
CITY_DIR = ("north", "south", "east", "west", "old", "new")
CITY_STEM = ("zentar", "belik", "morra", "tavin", "quell", "oskar", "pirin", "dovan", "lume", "sarko")
JOB_ADJ = ("night", "river", "stone", "glass", "sky")
JOB_NOUN = ("baker", "guide", "smith", "doctor", "painter", "farmer")
PET_COLOR = ("red", "blue", "green", "white", "black", "grey")
PET_ANIMAL = ("cat", "dog", "owl", "fox", "horse", "goat", "crow", "frog")

# ------------------------------------------------------------------------------------- generic text
NOUNS = ("river", "valley", "mountain", "forest", "village", "road", "bridge", "tower", "market", "garden",
         "winter", "summer", "song", "story", "book", "ship", "king", "queen", "child", "teacher", "farmer",
         "wind", "rain", "field", "lake", "wall", "door", "window", "table", "letter", "festival", "island",
         "harbor", "stone", "tree", "bird", "sun", "moon", "star", "cloud")
ADJS = ("old", "young", "green", "dark", "bright", "small", "large", "quiet", "famous", "ancient", "cold",
        "warm", "long", "narrow", "wide", "white", "red", "blue", "high", "low")
VERBS = ("crosses", "follows", "reaches", "meets", "builds", "finds", "watches", "opens", "remembers",
         "carries", "visits", "leaves", "joins", "guards", "paints", "sings")
PREPS = ("near", "behind", "across", "above", "under", "beside", "beyond", "through")
CONNECTIVES = ("and", "but", "while", "because", "so", "then", "later", "often", "sometimes")
GENERIC_EXTRA = ("the", "a", "of", "in", "on", "was", "is", "it", "they", "this", "that", "year", "people",
                 "called", "known", "as", "for", "many", "after", "before", "list", "item", "note", "says",
                 "asks", "replies", "yes", "no", "first", "second", "third", "chapter", "part")

# ------------------------------------------------------------------------------------- task words
QA_WORDS = ("question", "answer", "where", "does", "live", "what", "job", "pet", "own", "lives", "has",
            "house", "home", "works", "by", "trade", "owns", "an")
ARITH_OBJECTS = ("coins", "apples", "books", "shells", "stamps", "marbles")
ARITH_WORDS = ("finds", "buys", "gets", "loses", "gives", "away", "sells", "more", "how", "many", "have",
               "now", "then", "so", "the", "is", "with", "starts")
CODE_WORDS = ("write", "f", "takes", "x", "def", "if", "else", "end", "return", "add", "subtract",
              "multiply", "square", "it", "greater", "less", "than", "otherwise", "then", "by")


class Tokenizer:
    """Word-level tokenizer over a closed vocabulary: text is split on spaces, every word is one id."""

    def __init__(self, words):
        self.itos = list(SPECIALS) + sorted(set(words) - set(SPECIALS))
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.pad_id, self.eos_id, self.mask_id = (self.stoi[s] for s in SPECIALS)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[w] for w in text.split()]
        except KeyError as err:
            raise ValueError(f"word {err.args[0]!r} is not in the vocabulary; add it to a word list in "
                             f"qsched_core/dllm/vocab.py") from None

    def decode(self, ids, stop_at_eos: bool = True) -> str:
        words = []
        for i in (int(i) for i in ids):
            if stop_at_eos and i == self.eos_id:
                break
            if i != self.pad_id:
                words.append(self.itos[i])
        return " ".join(words)


def all_words() -> list[str]:
    cities = list(CITY_DIR + CITY_STEM)
    groups = (DIGITS, SYMBOLS, NAMES, cities, JOB_ADJ, JOB_NOUN, PET_COLOR, PET_ANIMAL, NOUNS, ADJS, VERBS,
              PREPS, CONNECTIVES, GENERIC_EXTRA, QA_WORDS, ARITH_OBJECTS, ARITH_WORDS, CODE_WORDS)
    return [w for g in groups for w in g]


TOKENIZER = Tokenizer(all_words())
