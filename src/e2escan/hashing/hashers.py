"""Perceptual hashers behind one interface, and the registry that names them.

Every hasher wraps a reference implementation and returns its output bit for
bit; only the packing differs:

* imagehash (``ahash``, ``dhash``, ``phash``, ``whash``): ``ImageHash.hash`` is a
  2-D bool array. It is flattened row-major (``ndarray.flatten()``, as
  imagehash's own ``str()`` does) and packed with ``np.packbits``, so our hex
  equals ``str(imagehash_result)`` for every size that is a multiple of 4.
* imagehash ``colorhash`` (``colorhash``): ``ImageHash.hash`` is a ``(14, binbits)``
  bool array, flattened and packed the same way; its hex equals
  ``str(imagehash_result)`` when ``14 * binbits`` is a multiple of 8.
* ``blockmean`` is computed here (imagehash ships no block-mean hash): Yang,
  Gu and Niu's block-mean-value hash, bit ``i`` for block ``i`` in row-major order.
* pdqhash (``pdq``): ``pdqhash.compute`` returns a 256-element 0/1 vector whose
  element ``j`` is bit ``255 - j`` of PDQ's ``Hash256`` (``w[k >> 4] >> (k & 15)``).
  Packing that vector with ``np.packbits`` yields exactly ThreatExchange's
  64-character hex format (``w[15]`` first, each 16-bit word most significant
  nibble first), so our hex is interchangeable with PDQ hex hashes elsewhere.

The packed bytes are ``np.packbits(vector)``; the vector is recovered with
``np.unpackbits(data)``. Both directions are tested against the libraries.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import imagehash
import numpy as np
import pdqhash
from PIL import Image

from ..errors import ConfigError, HashError
from ..plugins import Registry
from .types import PerceptualHash

ImageLike = Any  # PIL.Image.Image, an (H, W[, 3]) uint8 array, or an object with an ``.image`` attribute


def as_pil(image: ImageLike) -> Image.Image:
    """Return a PIL image for the accepted image inputs (no copy when already PIL)."""
    if isinstance(image, Image.Image):
        return image
    inner = getattr(image, "image", None)
    if isinstance(inner, Image.Image):
        return inner
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise HashError(
                f"cannot hash an array of dtype {image.dtype} and shape {image.shape}; "
                "expected uint8 of shape (H, W) or (H, W, 3)"
            )
        return Image.fromarray(image)
    raise HashError(f"cannot hash a {type(image).__name__}; expected a PIL image or a uint8 array")


class Hasher(ABC):
    """A perceptual hash function: image in, :class:`PerceptualHash` of :attr:`bits` bits out.

    Implementations are small frozen dataclasses (picklable, so they can be
    shipped to worker processes) that validate their parameters at
    construction and raise :class:`~e2escan.errors.ConfigError` naming the
    offending parameter.
    """

    name: ClassVar[str]

    @property
    @abstractmethod
    def bits(self) -> int:
        """Length of the hashes this hasher produces."""

    @abstractmethod
    def hash_packed(self, image: ImageLike) -> np.ndarray:
        """The hash as a packed ``uint8`` array of length ``bits // 8`` (the fast path of ``hash_many``)."""

    def hash(self, image: ImageLike) -> PerceptualHash:
        """Hash one image."""
        return PerceptualHash(self.bits, self.hash_packed(image).tobytes())

    def hash_with_quality(self, image: ImageLike) -> tuple[PerceptualHash, int | None]:
        """The hash and the hasher's own quality score of it (PDQ's 0..100), or ``None`` if it has none."""
        packed, quality = self.hash_packed_with_quality(image)
        return PerceptualHash(self.bits, packed.tobytes()), quality

    def hash_packed_with_quality(self, image: ImageLike) -> tuple[np.ndarray, int | None]:
        """:meth:`hash_packed` and the quality score (``None`` for hashers without one, the default)."""
        return self.hash_packed(image), None

    def params(self) -> dict[str, Any]:
        """The constructor parameters, so that ``get_hasher(h.name, **h.params())`` rebuilds ``h``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @property
    def spec(self) -> str:
        """``name`` or ``name:key=value,...`` listing the parameters that differ from the defaults."""
        defaults = type(self)()  # every hasher is constructible with defaults
        changed = {k: v for k, v in self.params().items() if getattr(defaults, k) != v}
        if not changed:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in changed.items())


def _check_hash_size(cls_name: str, hash_size: object, *, power_of_two: bool = False) -> None:
    if isinstance(hash_size, bool) or not isinstance(hash_size, int):
        raise ConfigError(f"{cls_name}: hash_size must be an int, got {hash_size!r}")
    # hash_size**2 bits must fill whole bytes, which needs hash_size % 4 == 0.
    if hash_size < 4 or hash_size % 4:
        raise ConfigError(f"{cls_name}: hash_size must be a multiple of 4 and >= 4, got {hash_size}")
    if power_of_two and hash_size & (hash_size - 1):
        raise ConfigError(f"{cls_name}: hash_size must be a power of two (4, 8, 16, ...), got {hash_size}")


def _pack_imagehash(result: imagehash.ImageHash, bits: int, name: str) -> np.ndarray:
    if result.hash.size != bits:  # guards the bits contract against library changes
        raise HashError(f"{name}: imagehash returned {result.hash.size} bits, expected {bits}")
    return np.packbits(result.hash.ravel())


@dataclass(frozen=True)
class AverageHasher(Hasher):
    """imagehash ``average_hash``: grey, resize to ``hash_size`` squared, threshold at the mean."""

    name: ClassVar[str] = "ahash"
    hash_size: int = 8

    def __post_init__(self) -> None:
        _check_hash_size("ahash", self.hash_size)

    @property
    def bits(self) -> int:
        return self.hash_size * self.hash_size

    def hash_packed(self, image: ImageLike) -> np.ndarray:
        return _pack_imagehash(imagehash.average_hash(as_pil(image), hash_size=self.hash_size), self.bits, self.name)


@dataclass(frozen=True)
class DifferenceHasher(Hasher):
    """imagehash ``dhash`` (horizontal gradient): ``hash_size`` rows of ``hash_size`` comparisons."""

    name: ClassVar[str] = "dhash"
    hash_size: int = 8

    def __post_init__(self) -> None:
        _check_hash_size("dhash", self.hash_size)

    @property
    def bits(self) -> int:
        return self.hash_size * self.hash_size

    def hash_packed(self, image: ImageLike) -> np.ndarray:
        return _pack_imagehash(imagehash.dhash(as_pil(image), hash_size=self.hash_size), self.bits, self.name)


@dataclass(frozen=True)
class DctHasher(Hasher):
    """imagehash ``phash``: 2-D DCT of a ``hash_size * highfreq_factor`` thumbnail, median threshold."""

    name: ClassVar[str] = "phash"
    hash_size: int = 8
    highfreq_factor: int = 4

    def __post_init__(self) -> None:
        _check_hash_size("phash", self.hash_size)
        if isinstance(self.highfreq_factor, bool) or not isinstance(self.highfreq_factor, int) or self.highfreq_factor < 1:
            raise ConfigError(f"phash: highfreq_factor must be an int >= 1, got {self.highfreq_factor!r}")

    @property
    def bits(self) -> int:
        return self.hash_size * self.hash_size

    def hash_packed(self, image: ImageLike) -> np.ndarray:
        return _pack_imagehash(
            imagehash.phash(as_pil(image), hash_size=self.hash_size, highfreq_factor=self.highfreq_factor),
            self.bits,
            self.name,
        )


@dataclass(frozen=True)
class WaveletHasher(Hasher):
    """imagehash ``whash`` with Haar wavelets: wavelet low band, median threshold.

    imagehash's ``mode="db4"`` is not offered: its low band has boundary
    coefficients, so the hash is longer than ``hash_size ** 2`` bits and its
    length depends on the image scale.
    """

    name: ClassVar[str] = "whash"
    hash_size: int = 8
    remove_max_haar_ll: bool = True

    def __post_init__(self) -> None:
        _check_hash_size("whash", self.hash_size, power_of_two=True)
        if not isinstance(self.remove_max_haar_ll, bool):
            raise ConfigError(f"whash: remove_max_haar_ll must be true or false, got {self.remove_max_haar_ll!r}")

    @property
    def bits(self) -> int:
        return self.hash_size * self.hash_size

    def hash_packed(self, image: ImageLike) -> np.ndarray:
        pil = as_pil(image)
        if min(pil.size) < 2:
            raise HashError(f"whash needs an image of at least 2x2 pixels, got {pil.size[0]}x{pil.size[1]}")
        return _pack_imagehash(
            imagehash.whash(pil, hash_size=self.hash_size, mode="haar", remove_max_haar_ll=self.remove_max_haar_ll),
            self.bits,
            self.name,
        )


@dataclass(frozen=True)
class ColorHasher(Hasher):
    """imagehash ``colorhash``: the fractions of an image in 14 HSV bins, ``binbits`` bits each.

    The bins are black, grey (low saturation), and six hue bins for each of
    mildly and highly saturated pixels; each fraction is quantised to
    ``binbits`` bits. The hash has ``14 * binbits`` bits and no position
    information, so mirroring, rotation by 90 degrees and cropping a uniform
    border leave it unchanged, and unrelated images of similar colour share it.
    Default ``binbits=4`` (56 bits), not imagehash's 3: 42 bits do not fill
    whole bytes, so ``binbits`` must be a multiple of 4. The image is converted
    to RGB first (imagehash's HSV conversion needs it).
    """

    name: ClassVar[str] = "colorhash"
    binbits: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.binbits, bool) or not isinstance(self.binbits, int) or self.binbits < 4 or self.binbits % 4:
            raise ConfigError(
                f"colorhash: binbits must be a multiple of 4 and >= 4 (14 * binbits bits must fill whole bytes), "
                f"got {self.binbits!r}"
            )

    @property
    def bits(self) -> int:
        return 14 * self.binbits

    def hash_packed(self, image: ImageLike) -> np.ndarray:
        pil = as_pil(image)
        if pil.mode != "RGB":
            pil = pil.convert("RGB")
        return _pack_imagehash(imagehash.colorhash(pil, binbits=self.binbits), self.bits, self.name)


@dataclass(frozen=True)
class BlockMeanHasher(Hasher):
    """Block-mean-value hash: ``hash_size`` x ``hash_size`` block means of the luma, thresholded at their median.

    The algorithm of B. Yang, F. Gu and X. Niu, "Block Mean Value Based Image
    Perceptual Hashing", Proc. International Conference on Intelligent Information
    Hiding and Multimedia Signal Processing (IIH-MSP 2006), IEEE (their first
    method, non-overlapping blocks; the pHash library ships it as
    ``ph_bmb_imagehash``): normalise the image to a fixed size, split it into
    ``hash_size ** 2`` equal blocks, and set bit ``i`` when the mean of block
    ``i`` (row-major) is above the median of all block means. Here the image is
    converted to 8-bit luma (PIL ``"L"``, ITU-R 601) and normalised to
    ``16 * hash_size`` pixels square with an area-averaging (box) filter, so
    each block is 16 x 16 pixels, as in the paper's 256 x 256 image with 16 x 16
    blocks for the default ``hash_size=16`` (256 bits). A block exactly at
    the median gives 0. Bits are not interchangeable with pHash's (another
    resampler and bit order). This is not the blockhash.io algorithm either
    (which thresholds each horizontal band at its own median).
    """

    name: ClassVar[str] = "blockmean"
    hash_size: int = 16
    block_pixels: ClassVar[int] = 16

    def __post_init__(self) -> None:
        _check_hash_size("blockmean", self.hash_size)

    @property
    def bits(self) -> int:
        return self.hash_size * self.hash_size

    def block_means(self, image: ImageLike) -> np.ndarray:
        """The ``(hash_size, hash_size)`` block means of the normalised luma, in grey levels 0..255."""
        side = self.hash_size * self.block_pixels
        grey = as_pil(image).convert("L").resize((side, side), Image.Resampling.BOX)
        pixels = np.asarray(grey, dtype=np.float64)
        n, b = self.hash_size, self.block_pixels
        means: np.ndarray = pixels.reshape(n, b, n, b).mean(axis=(1, 3))
        return means

    def hash_packed(self, image: ImageLike) -> np.ndarray:
        means = self.block_means(image)
        packed: np.ndarray = np.packbits((means > np.median(means)).ravel())
        return packed


@dataclass(frozen=True)
class PdqHasher(Hasher):
    """Meta's PDQ via the ``pdqhash`` package: 256 bits plus a quality score in 0..100.

    PDQ's documentation recommends discarding hashes of quality below 50
    (too little gradient information to match on); :meth:`hash_with_quality`
    exposes the score so that callers can apply that rule.
    """

    name: ClassVar[str] = "pdq"

    @property
    def bits(self) -> int:
        return 256

    @staticmethod
    def _rgb_array(image: ImageLike) -> np.ndarray:
        pil = as_pil(image)
        if pil.mode != "RGB":
            pil = pil.convert("RGB")
        return np.asarray(pil)

    def hash_packed_with_quality(self, image: ImageLike) -> tuple[np.ndarray, int | None]:
        vector, quality = pdqhash.compute(self._rgb_array(image))
        return np.packbits(vector.astype(np.uint8)), int(quality)

    def hash_packed(self, image: ImageLike) -> np.ndarray:
        return self.hash_packed_with_quality(image)[0]


_BUILT_IN_HASHERS = (AverageHasher, DifferenceHasher, DctHasher, WaveletHasher, PdqHasher, ColorHasher, BlockMeanHasher)
#: Names of the built-in hashers.
BUILT_IN_HASHERS: tuple[str, ...] = tuple(cls.name for cls in _BUILT_IN_HASHERS)
#: Entry-point group through which installed distributions add hashers.
HASHER_ENTRY_POINT_GROUP = "e2escan.hashers"


def _register_entry_point(loaded: Any, origin: str) -> None:
    register(loaded, origin=origin)


_REGISTRY: Registry[type[Hasher]] = Registry(HASHER_ENTRY_POINT_GROUP, "hasher", _register_entry_point, ConfigError)
for _cls in _BUILT_IN_HASHERS:
    _REGISTRY.add(_cls.name, _cls, "built-in")

#: Every registered hasher class by name: the built-ins, then plugins. Read-only; installed
#: plugins (entry-point group ``e2escan.hashers``) load on first use.
HASHERS: Mapping[str, type[Hasher]] = _REGISTRY


def register(cls: type[Hasher], *, origin: str = "registered", replace: bool = False) -> type[Hasher]:
    """Register a hasher class (a frozen-dataclass :class:`Hasher` subclass constructible with defaults).

    Raises :class:`ConfigError` naming what is wrong: not a Hasher dataclass, a name that is not
    kebab-case or is taken (a built-in is never replaced), defaults that fail, or ``bits`` that is
    not a positive multiple of 8.
    """
    if not (isinstance(cls, type) and issubclass(cls, Hasher) and dataclasses.is_dataclass(cls)):
        raise ConfigError(f"register: expected a Hasher subclass that is a dataclass, got {cls!r}")
    name = _REGISTRY.check_name(getattr(cls, "name", None), cls.__name__)
    try:
        bits = cls().bits
    except Exception as exc:  # noqa: BLE001 - any failure of the defaults is the plugin's error
        raise ConfigError(f"register: hasher {name!r}: constructing it with its defaults fails: {exc}") from None
    if not isinstance(bits, int) or bits <= 0 or bits % 8:
        raise ConfigError(f"register: hasher {name!r}: bits must be a positive multiple of 8, got {bits!r}")
    _REGISTRY.add(name, cls, origin, replace=replace)
    return cls


def unregister(name: str) -> None:
    """Remove a registered plugin hasher (built-ins stay)."""
    _REGISTRY.unregister(name)


def hasher_origin(name: str) -> str:
    """``"built-in"``, ``"plugin <distribution>"`` or ``"registered"``."""
    if name not in HASHERS:
        raise ConfigError(f"unknown hasher {name!r}; known hashers: {', '.join(sorted(HASHERS))}")
    return _REGISTRY.origin(name)


def get_hasher(name: str, **params: Any) -> Hasher:
    """Build the hasher registered as ``name`` with ``params``; unknown names or parameters raise ConfigError."""
    try:
        cls = HASHERS[name]
    except KeyError:
        raise ConfigError(f"unknown hasher {name!r}; known hashers: {', '.join(sorted(HASHERS))}") from None
    accepted = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(
            f"hasher {name!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(accepted) if accepted else '(none)'}"
        )
    return cls(**params)


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_hasher_specs(spec: str) -> list[Hasher]:
    """Parse ``"phash:hash_size=16,highfreq_factor=4,pdq"`` into hashers.

    Items are separated by commas; an item containing ``=`` is a parameter of
    the hasher before it (hasher names never contain ``=``). Duplicate hashers
    (same name and parameters) are an error, since their results would share a label.
    """
    hashers: list[tuple[str, dict[str, Any]]] = []
    for raw in spec.split(","):
        item = raw.strip()
        if ":" in item:
            name, _, item = item.partition(":")
            hashers.append((name.strip(), {}))
            item = item.strip()
        elif "=" not in item:
            if not item:
                raise ConfigError(f"empty item in hasher list {spec!r}; expected NAME[:key=value,...][,NAME...]")
            hashers.append((item, {}))
            continue
        if not hashers:
            raise ConfigError(f"parameter {item!r} in {spec!r} comes before any hasher name")
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"{raw.strip()!r} in hasher list {spec!r} is not key=value after NAME:")
        hashers[-1][1][key.strip()] = _parse_value(value.strip())
    built = [get_hasher(name, **params) for name, params in hashers]
    specs = [h.spec for h in built]
    dupes = sorted({s for s in specs if specs.count(s) > 1})
    if dupes:
        raise ConfigError(f"hasher list {spec!r} names {', '.join(dupes)} more than once")
    return built
