"""The tiny world: a procedural text-to-image data set that every model of this repo is trained on.

A scene is 1 or 2 objects (shape x colour x size x position) on a coloured, optionally textured background,
described by a templated caption:

    "a small red star on the left and a large blue ring on the right, on a striped gray background"

Every scene carries its ground-truth attributes, so a generated image can be checked the way GenEval checks
real text-to-image models (is the red star on the left?). Scenes are rendered by `render.py`.

Splits. A caption belongs to exactly one of train / calib / eval, decided by a hash of its text, so the
calibration prompts used to pick Q-Sched coefficients never overlap the evaluation prompts. A few
(colour, shape) pairs are *held out*: scenes containing them never appear in train, so evaluation can report
compositional generalisation to unseen attribute combinations separately.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "diamond")
COLORS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
SIZES = ("small", "large")
BACKGROUNDS = ("white", "gray", "black", "brown")
TEXTURES = ("plain", "striped", "checkered")
# layout 0..4: one object at that position; 5: two objects left/right; 6: two objects top/bottom
SINGLE_POSITIONS = ("left", "right", "top", "bottom", "center")
LAYOUTS = SINGLE_POSITIONS + ("left-right", "top-bottom")
POSITION_PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top",
                    "bottom": "at the bottom", "center": "in the center"}
HELD_OUT = frozenset({("red", "star"), ("blue", "triangle"), ("green", "ring"), ("yellow", "cross"),
                      ("purple", "square"), ("orange", "diamond"), ("cyan", "circle")})
SPLITS = ("train", "calib", "eval")


@dataclass(frozen=True)
class Obj:
    shape: str
    color: str
    size: str

    def phrase(self) -> str:
        return f"a {self.size} {self.color} {self.shape}"

    def held_out(self) -> bool:
        return (self.color, self.shape) in HELD_OUT


@dataclass(frozen=True)
class Scene:
    """Ground-truth attributes of one image. `objects[0]` is the left/top (or only) object."""

    layout: str
    objects: tuple[Obj, ...]
    background: str
    texture: str
    caption: str = field(init=False, compare=False)

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout={self.layout!r} is not one of {LAYOUTS}")
        if len(self.objects) != (2 if self.layout in LAYOUTS[5:] else 1):
            raise ValueError(f"layout={self.layout!r} needs {1 if self.layout in SINGLE_POSITIONS else 2} objects")
        object.__setattr__(self, "caption", caption_of(self))

    @property
    def n_objects(self) -> int:
        return len(self.objects)

    def held_out(self) -> bool:
        return any(o.held_out() for o in self.objects)

    def labels(self) -> dict[str, int]:
        """Integer labels for the evaluator heads; the second object's fields are 'none' (last class) if absent."""
        o1 = self.objects[0]
        o2 = self.objects[1] if self.n_objects == 2 else None
        return {
            "layout": LAYOUTS.index(self.layout),
            "shape1": SHAPES.index(o1.shape), "color1": COLORS.index(o1.color), "size1": SIZES.index(o1.size),
            "shape2": SHAPES.index(o2.shape) if o2 else len(SHAPES),
            "color2": COLORS.index(o2.color) if o2 else len(COLORS),
            "size2": SIZES.index(o2.size) if o2 else len(SIZES),
            "background": BACKGROUNDS.index(self.background), "texture": TEXTURES.index(self.texture),
        }


# number of classes of each evaluator head (the object-2 heads have an extra 'none' class)
LABEL_CLASSES = {"layout": len(LAYOUTS), "shape1": len(SHAPES), "color1": len(COLORS), "size1": len(SIZES),
                 "shape2": len(SHAPES) + 1, "color2": len(COLORS) + 1, "size2": len(SIZES) + 1,
                 "background": len(BACKGROUNDS), "texture": len(TEXTURES)}


def caption_of(scene: Scene) -> str:
    """The templated caption of a scene."""
    bg = f"on a {scene.texture} {scene.background} background"
    if scene.layout in SINGLE_POSITIONS:
        return f"{scene.objects[0].phrase()} {POSITION_PHRASES[scene.layout]}, {bg}"
    first, second = ("on the left", "on the right") if scene.layout == "left-right" else ("at the top", "at the bottom")
    return f"{scene.objects[0].phrase()} {first} and {scene.objects[1].phrase()} {second}, {bg}"


def parse_caption(caption: str) -> Scene:
    """Inverse of `caption_of`; raises ValueError for text that is not a tiny-world caption."""
    try:
        body, bg = caption.rsplit(", on a ", 1)
        texture, background, word = bg.split(" ")
        assert word == "background"
        parts = body.split(" and ")
        objs, places = [], []
        for part in parts:
            _, size, color, shape, *place = part.split(" ")
            objs.append(Obj(shape, color, size))
            places.append(" ".join(place))
        if len(parts) == 1:
            layout = {v: k for k, v in POSITION_PHRASES.items()}[places[0]]
        else:
            layout = {("on the left", "on the right"): "left-right", ("at the top", "at the bottom"): "top-bottom"}[tuple(places)]
        scene = Scene(layout, tuple(objs), background, texture)
    except (ValueError, KeyError, AssertionError) as err:
        raise ValueError(f"caption={caption!r} is not a tiny-world caption (see world.caption_of)") from err
    if scene.caption != caption or any(o.shape not in SHAPES or o.color not in COLORS or o.size not in SIZES for o in objs):
        raise ValueError(f"caption={caption!r} uses words outside the tiny-world vocabulary")
    return scene


def split_of(scene: Scene) -> str:
    """train / calib / eval by a stable hash of the caption; held-out combinations never go to train."""
    bucket = int(hashlib.sha1(scene.caption.encode()).hexdigest()[:8], 16) % 100
    if bucket < 5:
        return "calib"
    if bucket < 20 or scene.held_out():
        return "eval"
    return "train"


def random_scene(rng: random.Random, p_two: float = 0.5) -> Scene:
    """One scene with uniformly drawn attributes (two objects with probability p_two)."""
    def obj() -> Obj:
        return Obj(rng.choice(SHAPES), rng.choice(COLORS), rng.choice(SIZES))

    bg, tex = rng.choice(BACKGROUNDS), rng.choice(TEXTURES)
    if rng.random() < p_two:
        return Scene(rng.choice(LAYOUTS[5:]), (obj(), obj()), bg, tex)
    return Scene(rng.choice(SINGLE_POSITIONS), (obj(),), bg, tex)


def sample_scenes(n: int, split: str = "train", seed: int = 0, p_two: float = 0.5) -> list[Scene]:
    """`n` scenes of one split, reproducible from `seed` (rejection sampling on the caption hash)."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} must be one of {SPLITS}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n={n!r} must be an int >= 0 (the number of scenes)")
    rng = random.Random(f"{split}-{seed}")
    out = []
    while len(out) < n:
        scene = random_scene(rng, p_two)
        if split_of(scene) == split:
            out.append(scene)
    return out


def eval_prompts(n: int = 1000, seed: int = 0, held_out: bool = False) -> list[Scene]:
    """Evaluation prompts: eval-split scenes, half single- and half two-object.

    By default only seen (colour, shape) combinations (unseen captions of familiar parts); `held_out=True` gives
    scenes with at least one held-out combination, reported separately as compositional generalisation.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n={n!r} must be an int >= 0 (the number of evaluation prompts)")
    rng = random.Random(f"eval-{seed}-{held_out}")
    out = []
    while len(out) < n:
        scene = random_scene(rng, p_two=0.5)
        if split_of(scene) == "eval" and scene.held_out() == held_out:
            out.append(scene)
    return out


def calib_prompts(n: int = 5, seed: int = 0) -> list[Scene]:
    """Calibration prompts for the coefficient search (disjoint from train and eval captions)."""
    return sample_scenes(n, "calib", seed=seed, p_two=0.5)
