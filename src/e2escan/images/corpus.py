"""Image corpora: a directory of files or a seeded synthetic set, behind one small interface.

Both kinds are indexable (``corpus.load(i)``) and picklable, so a worker
process can fetch image ``i`` itself instead of receiving its pixels.
Iterating a corpus yields :class:`CorpusImage` items and never raises for a
bad file: the file is skipped and recorded in ``corpus.skipped`` with the
reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import ConfigError, ImageError
from .loading import DEFAULT_MAX_PIXELS, load_image
from .synthetic import image_rng, synthetic_image


@dataclass(frozen=True)
class CorpusImage:
    """An image and its name within the corpus (relative path, or ``synthetic-SEED-INDEX``)."""

    name: str
    image: Image.Image


@dataclass(frozen=True)
class SkippedFile:
    """A corpus entry that could not be used, and why."""

    name: str
    reason: str


@dataclass
class SyntheticCorpus:
    """``n`` synthetic images; image ``i`` depends only on ``(seed, i)`` and ``size``."""

    n: int
    seed: int = 0
    size: tuple[int, int] = (256, 256)
    skipped: list[SkippedFile] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 0:
            raise ConfigError(f"synthetic corpus size must be an int >= 0, got {self.n!r}")
        w, h = self.size
        if not (isinstance(w, int) and isinstance(h, int) and 8 <= w <= 8192 and 8 <= h <= 8192):
            raise ConfigError(f"synthetic image size must be two ints in 8..8192 (width, height), got {self.size!r}")

    @property
    def spec(self) -> str:
        return f"synthetic:{self.n}"

    def __len__(self) -> int:
        return self.n

    def name(self, index: int) -> str:
        return f"synthetic-{self.seed}-{index:06d}"

    def load(self, index: int) -> Image.Image:
        if not 0 <= index < self.n:
            raise IndexError(f"synthetic corpus has {self.n} images, index {index} is out of range")
        return synthetic_image(image_rng(self.seed, index), self.size)

    def __iter__(self) -> Iterator[CorpusImage]:
        for i in range(self.n):
            yield CorpusImage(self.name(i), self.load(i))


@dataclass
class DirectoryCorpus:
    """Every regular, non-hidden file under ``root`` (recursively), sorted by relative path.

    Files are tried whatever their extension; those that are not readable
    JPEG/PNG/WebP images are skipped with the reason from
    :func:`~e2escan.images.load_image`.
    """

    root: Path
    recursive: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS
    include: tuple[str, ...] | None = None  # exactly these relative paths, in this order (all must exist)
    label: str | None = None  # the corpus spec to report instead of the directory path
    files: tuple[str, ...] = field(init=False)
    skipped: list[SkippedFile] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise ConfigError(f"corpus directory {str(self.root)!r} does not exist or is not a directory")
        if self.include is not None:
            missing = [f for f in self.include if not (self.root / f).is_file()]
            if missing:
                raise ConfigError(f"corpus {self.spec!r}: missing file(s) {', '.join(missing)} in {self.root}")
            self.files = tuple(self.include)
            return
        pattern = "**/*" if self.recursive else "*"
        found = []
        for p in self.root.glob(pattern):
            rel = p.relative_to(self.root)
            if any(part.startswith(".") for part in rel.parts) or not p.is_file():
                continue
            found.append(rel.as_posix())
        self.files = tuple(sorted(found))

    @property
    def spec(self) -> str:
        return self.label or str(self.root)

    def __len__(self) -> int:
        return len(self.files)

    def name(self, index: int) -> str:
        return self.files[index]

    def load(self, index: int) -> Image.Image:
        """Decode file ``index``; raises :class:`ImageError` naming the file."""
        return load_image(self.root / self.files[index], max_pixels=self.max_pixels)

    def __iter__(self) -> Iterator[CorpusImage]:
        for i, name in enumerate(self.files):
            try:
                image = self.load(i)
            except ImageError as exc:
                self.skipped.append(SkippedFile(name, str(exc)))
                continue
            yield CorpusImage(name, image)


Corpus = SyntheticCorpus | DirectoryCorpus

_SYNTHETIC_RE = re.compile(r"\Asynthetic:(\d+)\Z")


#: The photographs among the images that ship inside scikit-image's wheel (``skimage/data``):
#: camera images, microscopy, astronomy and scanned pages. Left out: the synthetic or graphic ones
#: (chessboards, colour chart, logo, phantom, the binary horse silhouette) and ``motorcycle_right``,
#: the other half of a stereo pair whose left image is included (a near-duplicate, not an unrelated
#: image).
SKIMAGE_PHOTOS: tuple[str, ...] = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png", "coffee.png",
    "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "microaneurysms.png", "moon.png",
    "motorcycle_left.png", "page.png", "retina.jpg", "rocket.jpg", "text.png",
)  # fmt: skip
SKIMAGE_SPEC = "skimage"


def skimage_photos() -> DirectoryCorpus:
    """The small real-photo corpus of :data:`SKIMAGE_PHOTOS` (needs the optional ``photos`` extra)."""
    try:
        import skimage
    except ImportError:
        raise ConfigError(
            f"corpus {SKIMAGE_SPEC!r} needs scikit-image, which is not installed: pip install -e '.[photos]'"
        ) from None
    root = Path(skimage.__file__).parent / "data"
    return DirectoryCorpus(root, recursive=False, include=SKIMAGE_PHOTOS, label=SKIMAGE_SPEC)


def open_corpus(spec: str | os.PathLike[str], *, seed: int = 0, size: tuple[int, int] = (256, 256)) -> Corpus:
    """``"synthetic:N"`` -> N synthetic images of ``size`` from ``seed``; ``"skimage"`` -> the photographs
    bundled with scikit-image (:func:`skimage_photos`); anything else is a directory path."""
    text = os.fspath(spec)
    if text == SKIMAGE_SPEC:
        return skimage_photos()
    if text.startswith("synthetic:"):
        match = _SYNTHETIC_RE.match(text)
        if not match or int(match.group(1)) < 1:
            raise ConfigError(f"corpus spec {text!r}: expected synthetic:N with N a positive integer")
        return SyntheticCorpus(int(match.group(1)), seed, size)
    return DirectoryCorpus(Path(text))


def synthetic_corpus(n: int, seed: int = 0, size: tuple[int, int] = (256, 256)) -> SyntheticCorpus:
    """``n`` seeded synthetic test images (see :mod:`e2escan.images.synthetic`)."""
    return SyntheticCorpus(n, seed, size)
