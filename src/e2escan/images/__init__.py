"""Images: safe loading, corpora (directory or synthetic) and seeded transformations."""

from __future__ import annotations

from .corpus import (
    SKIMAGE_PHOTOS,
    Corpus,
    CorpusImage,
    DirectoryCorpus,
    SkippedFile,
    SyntheticCorpus,
    open_corpus,
    skimage_photos,
    synthetic_corpus,
)
from .loading import ACCEPTED_FORMATS, DEFAULT_MAX_PIXELS, load_image
from .synthetic import image_rng, synthetic_image
from .transforms import (
    DEFAULT_TRANSFORMS,
    QUICK_TRANSFORMS,
    TRANSFORM_SETS,
    TRANSFORMS,
    Transform,
    TransformChain,
    TransformedImage,
    TransformStep,
    parse_chain,
    parse_step,
    parse_transform_set,
)

__all__ = [
    "ACCEPTED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_TRANSFORMS",
    "QUICK_TRANSFORMS",
    "SKIMAGE_PHOTOS",
    "TRANSFORMS",
    "TRANSFORM_SETS",
    "Corpus",
    "CorpusImage",
    "DirectoryCorpus",
    "SkippedFile",
    "SyntheticCorpus",
    "Transform",
    "TransformChain",
    "TransformStep",
    "TransformedImage",
    "image_rng",
    "load_image",
    "open_corpus",
    "parse_chain",
    "parse_step",
    "parse_transform_set",
    "skimage_photos",
    "synthetic_corpus",
    "synthetic_image",
]
