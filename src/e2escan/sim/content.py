"""Where simulated images come from: known images, popular images and fresh innocent ones.

With ``corpus = "synthetic"`` every image is generated from a seed, so runs
need no downloads. With a directory, its readable images are shuffled with the
content generator and split into known images (the database), popular images
and fresh images; fresh images are reused cyclically when the directory runs
out, and the number of reuses is reported.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import E2escanError, ImageError, ScenarioError
from ..images import DirectoryCorpus, image_rng, parse_chain, synthetic_image
from ..images.transforms import TransformChain
from .scenario import Content, Traffic
from .traffic import KNOWN, POPULAR, ImageRef


@lru_cache(maxsize=256)
def chain_for(spec: str) -> TransformChain:
    return parse_chain("identity" if spec.strip() in ("none", "identity", "") else spec)



def encode_attachment(image: Image.Image, encoding: str) -> bytes:
    """The attachment bytes for ``image``: JPEG at quality 90 (``"jpeg"``) or PNG (``"png"``).

    The one definition of the scenario's attachment encoding: the faithful path sends these
    bytes, and the calibration (:func:`e2escan.sim.calibration.encode_decode`) hashes their decoding.
    """
    buf = io.BytesIO()
    if encoding == "jpeg":
        image.convert("RGB").save(buf, format="JPEG", quality=90)
    else:
        image.save(buf, format="PNG", compress_level=1)  # lossless at any level; level 1 is fast
    return buf.getvalue()

class ContentSource:
    def __init__(self, cfg: Content, traffic: Traffic, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.size = (cfg.image_size, cfg.image_size)
        self.seeds = {kind: int(s) for kind, s in zip(("known", "popular", "fresh"), rng.integers(0, 2**63, 3))}
        self.fresh_reused = 0
        self._reused: dict[tuple[str, int], Image.Image] = {}
        for t in cfg.transforms:
            try:
                chain_for(t.spec)
            except E2escanError as exc:  # ConfigError from the transform parser
                raise ScenarioError(f"content.transforms: {exc}") from None
        self.directory = None
        if cfg.corpus != "synthetic":
            corpus = DirectoryCorpus(Path(cfg.corpus))
            order = rng.permutation(len(corpus))
            need = cfg.database_size + traffic.popular_images + 1
            if len(corpus) < need:
                raise ScenarioError(
                    f"content.corpus: {cfg.corpus!r} holds {len(corpus)} files; the scenario needs at least {need} "
                    f"(database_size + traffic.popular_images + 1)"
                )
            self.directory = corpus
            self.known_idx = order[: cfg.database_size]
            self.popular_idx = order[cfg.database_size : cfg.database_size + traffic.popular_images]
            self.fresh_idx = order[cfg.database_size + traffic.popular_images :]

    def _base(self, kind: str, index: int) -> Image.Image:
        if kind in (KNOWN, POPULAR):  # re-sent many times: render once
            key = (kind, index)
            img = self._reused.get(key)
            if img is None:
                img = self._reused[key] = self._render_base(kind, index)
            return img
        return self._render_base(kind, index)

    def _render_base(self, kind: str, index: int) -> Image.Image:
        if self.directory is None:
            return synthetic_image(image_rng(self.seeds[kind], index), self.size)
        if kind == KNOWN:
            return self._load(self.known_idx[index])
        if kind == POPULAR:
            return self._load(self.popular_idx[index])
        if index >= len(self.fresh_idx):
            self.fresh_reused += 1
        return self._load(self.fresh_idx[index % len(self.fresh_idx)])

    def _load(self, i: int) -> Image.Image:
        if self.directory is None:  # a synthetic corpus renders, never loads
            raise ScenarioError("content.corpus: 'synthetic' has no image files to load")
        try:
            return self.directory.load(int(i))
        except ImageError as exc:
            raise ScenarioError(f"content.corpus: {exc} (remove or fix the file)") from None

    def known_images(self) -> Iterator[Image.Image]:
        """The originals whose hashes form the database."""
        for i in range(self.cfg.database_size):
            yield self._base(KNOWN, i)

    def render(self, ref: ImageRef) -> bytes:
        """The attachment bytes a device sends: the transformed image, encoded."""
        return self.encode(self.render_image(ref))

    def render_image(self, ref: ImageRef) -> Image.Image:
        """The transformed image before encoding."""
        return chain_for(ref.transform).apply(self._base(ref.kind, ref.index), np.random.default_rng(ref.transform_seed)).image

    def popular_image(self, index: int) -> Image.Image:
        return self._base(POPULAR, index)

    def encode(self, image: Image.Image) -> bytes:
        return encode_attachment(image, self.cfg.encoding)
