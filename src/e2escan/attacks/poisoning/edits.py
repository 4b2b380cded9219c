"""How a circulating image gets copied: everyday edit families, their mix, and the hashed copies they make.

A copy is the target after one transform chain drawn from an :class:`EditFamily`
(forwarded unchanged, re-encoded by a messenger, cropped, captioned, ...);
:data:`EVERYDAY_EDITS` is the mix assumed here, :func:`with_weights` changes it,
and :func:`make_copies` draws and hashes copies from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ...errors import ConfigError
from ...hashing import HashArray, Hasher, PerceptualHash
from ...images import TransformChain, TransformStep

__all__ = ["EVERYDAY_EDITS", "MESSENGER_JPEG", "CopySet", "EditFamily", "Uniform", "make_copies", "with_weights"]

@dataclass(frozen=True)
class Uniform:
    """A transform parameter drawn uniformly from ``[low, high]`` for every copy."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ConfigError(f"Uniform: low = {self.low} must not exceed high = {self.high}")

    def draw(self, rng: np.random.Generator) -> float:
        """One draw of the parameter."""
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class EditFamily:
    """One kind of everyday edit: a chain of transforms whose parameters may vary per copy.

    ``steps`` lists ``(transform name, parameters)``; a parameter given as a
    :class:`Uniform` is drawn for every copy, any other value is fixed.
    Transforms with random choices of their own (``crop`` at
    ``position=random``) draw them from the same generator.
    """

    name: str
    weight: float
    steps: tuple[tuple[str, Mapping[str, Any]], ...]

    def __post_init__(self) -> None:
        if not self.weight > 0:
            raise ConfigError(f"edit family {self.name!r}: weight must be > 0, got {self.weight}")
        for name, params in self.steps:  # validate names and fixed parameters now, not at the first draw
            TransformStep.make(name, **{k: (v.low if isinstance(v, Uniform) else v) for k, v in params.items()})

    def draw(self, rng: np.random.Generator) -> TransformChain:
        """The chain for one copy: every :class:`Uniform` parameter drawn from ``rng``, the others as given."""
        steps = []
        for name, params in self.steps:
            values = {k: (v.draw(rng) if isinstance(v, Uniform) else v) for k, v in params.items()}
            steps.append(TransformStep.make(name, **values))
        return TransformChain(tuple(steps))


#: The messenger's re-encoding of a sent image (deterministic: an adversary can reproduce it exactly).
MESSENGER_JPEG: tuple[str, Mapping[str, Any]] = ("jpeg", {"quality": 75})

#: How a circulating image gets copied, with the share of copies made each way.
#: Our assumption (no published mix exists): a quarter are forwarded unchanged,
#: three in ten are re-encoded or downscaled by a messenger (deterministic, so
#: an adversary who anticipates them gets the exact hash), and the rest are
#: edited with parameters that differ from copy to copy.
EVERYDAY_EDITS: tuple[EditFamily, ...] = (
    EditFamily("forwarded", 0.25, ()),
    EditFamily("recompressed", 0.15, (MESSENGER_JPEG,)),
    EditFamily("downscaled", 0.15, (("resize", {"scale": 0.5}), MESSENGER_JPEG)),
    EditFamily("cropped", 0.15, (("crop", {"fraction": Uniform(0.8, 0.97), "position": "random"}), MESSENGER_JPEG)),
    EditFamily("rotated", 0.1, (("rotate", {"degrees": Uniform(-5.0, 5.0)}), MESSENGER_JPEG)),
    EditFamily("captioned", 0.1, (("text", {"size": Uniform(0.05, 0.1), "position": "random"}), MESSENGER_JPEG)),
    EditFamily("screenshot", 0.1, (("screenshot", {"scale": Uniform(0.6, 0.95)}), MESSENGER_JPEG)),
)


def with_weights(edits: Sequence[EditFamily], weights: Mapping[str, float]) -> tuple[EditFamily, ...]:
    """``edits`` with the weights of the named families replaced (the others unchanged).

    Weights are relative: :func:`make_copies` normalises them. A weight of 0
    drops the family from the mix.
    """
    names = [e.name for e in edits]
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ConfigError(f"with_weights: unknown edit family {unknown[0]!r}; known: {', '.join(names)}")
    for name, w in weights.items():
        if not (w >= 0 and math.isfinite(w)):
            raise ConfigError(f"with_weights: weight of {name!r} must be a finite number >= 0, got {w}")
    out = tuple(
        EditFamily(e.name, float(weights[e.name]), e.steps) if e.name in weights else e
        for e in edits if weights.get(e.name, 1.0) > 0
    )
    if not out:
        raise ConfigError("with_weights: every edit family has weight 0")
    return out


@dataclass(frozen=True)
class CopySet:
    """Hashes of edited copies: ``target[i]`` is the index of the source image of copy ``i``."""

    hashes: HashArray
    target: np.ndarray
    family: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.hashes)

    def of_target(self, index: int) -> CopySet:
        """The copies of source image ``index``, in order."""
        mask = self.target == index
        return CopySet(self.hashes[mask], self.target[mask], tuple(f for f, m in zip(self.family, mask) if m))


def make_copies(
    images: Sequence[Image.Image],
    edits: Sequence[EditFamily],
    per_image: int,
    hasher: Hasher,
    rng: np.random.Generator,
) -> CopySet:
    """``per_image`` copies of every image: an edit family drawn by weight, then its chain, then the hash."""
    if per_image < 1:
        raise ConfigError(f"make_copies: per_image must be >= 1, got {per_image}")
    if not edits:
        raise ConfigError("make_copies: needs at least one edit family")
    weights = np.array([e.weight for e in edits], dtype=float)
    weights /= weights.sum()
    hashes: list[PerceptualHash] = []
    target: list[int] = []
    family: list[str] = []
    for index, image in enumerate(images):
        for choice in rng.choice(len(edits), size=per_image, p=weights):
            edit = edits[int(choice)]
            copy = edit.draw(rng).apply(image, rng).image
            hashes.append(hasher.hash(copy))
            target.append(index)
            family.append(edit.name)
    return CopySet(HashArray.from_hashes(hashes), np.array(target, dtype=np.int64), tuple(family))

