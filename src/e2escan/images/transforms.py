"""Named, parameterised, seeded image transformations and chains of them.

A :class:`TransformStep` is a transformation name plus validated parameters;
a :class:`TransformChain` applies steps in order. Applying a chain to an image
returns a :class:`TransformedImage` that records the chain, so every hash
computed downstream knows exactly what was done to its image.

Spec syntax (used by the CLI and by ``parse_chain``)::

    jpeg:quality=50|crop:fraction=0.9,position=random|grey

Steps are separated by ``|``; parameters by ``,``; omitted parameters take
their defaults. Every transform takes a ``numpy.random.Generator``; those
with random choices (``noise``, ``crop`` at ``position=random``, ...) draw
from it, so the same seed gives the same pixels.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageColor, ImageEnhance, ImageFilter, ImageOps

from ..errors import ConfigError
from .synthetic import render_text

# -- parameters -------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One transform parameter: its type, default and accepted range (described in words)."""

    kind: type
    default: Any
    check: Callable[[Any], bool] = lambda v: True
    accepted: str = ""

    def validate(self, transform: str, name: str, value: Any) -> Any:
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or (self.kind is int and isinstance(value, bool)):
            raise ConfigError(
                f"transform {transform!r}: parameter {name!r} must be {self.kind.__name__}"
                f"{' ' + self.accepted if self.accepted else ''}, got {value!r}"
            )
        if not self.check(value):
            raise ConfigError(f"transform {transform!r}: parameter {name!r} must be {self.accepted}, got {value!r}")
        return value


def _colour_ok(value: str) -> bool:
    try:
        ImageColor.getrgb(value)
    except ValueError:
        return False
    return True


def _in(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda v: lo <= v <= hi


def _choice(*options: str) -> Callable[[Any], bool]:
    return lambda v: v in options


_POSITIONS = ("center", "top-left", "top-right", "bottom-left", "bottom-right", "random")
_COLOUR_TEXT = "a PIL colour name or #rrggbb"

# -- the transformations ---------------------------------------------------------------
# Each takes (image: RGB PIL image, rng, **params) and returns a new RGB image.


def _jpeg(image: Image.Image, rng: np.random.Generator, *, quality: int, subsampling: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality, subsampling=subsampling)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return decoded.convert("RGB")


_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def _resize(image: Image.Image, rng: np.random.Generator, *, scale: float, resample: str) -> Image.Image:
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, _RESAMPLING[resample])


def _offset(rng: np.random.Generator, position: str, free_x: int, free_y: int) -> tuple[int, int]:
    if position == "random":
        return int(rng.integers(0, free_x + 1)), int(rng.integers(0, free_y + 1))
    x = {"center": free_x // 2, "top-left": 0, "bottom-left": 0}.get(position, free_x)
    y = {"center": free_y // 2, "top-left": 0, "top-right": 0}.get(position, free_y)
    return x, y


def _crop(image: Image.Image, rng: np.random.Generator, *, fraction: float, position: str) -> Image.Image:
    """Keep ``fraction`` of the width and of the height (so ``fraction**2`` of the area)."""
    w, h = max(1, round(image.width * fraction)), max(1, round(image.height * fraction))
    x, y = _offset(rng, position, image.width - w, image.height - h)
    return image.crop((x, y, x + w, y + h))


def _rotate(image: Image.Image, rng: np.random.Generator, *, degrees: float, expand: bool, fill: str) -> Image.Image:
    quarter = {90.0: Image.Transpose.ROTATE_90, 180.0: Image.Transpose.ROTATE_180, 270.0: Image.Transpose.ROTATE_270}
    turn = degrees % 360.0
    if turn in quarter:  # lossless for the right angles
        return image.transpose(quarter[turn])
    if turn == 0.0:
        return image.copy()
    return image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=expand, fillcolor=ImageColor.getrgb(fill))


def _flip(image: Image.Image, rng: np.random.Generator, *, axis: str) -> Image.Image:
    return ImageOps.mirror(image) if axis == "horizontal" else ImageOps.flip(image)


def _pad(image: Image.Image, rng: np.random.Generator, *, fraction: float, color: str) -> Image.Image:
    """Add a border of ``fraction`` of the width (left/right) and height (top/bottom) on each side."""
    border = (round(image.width * fraction), round(image.height * fraction))
    return ImageOps.expand(image, border=(*border, *border), fill=ImageColor.getrgb(color))


def _brightness(image: Image.Image, rng: np.random.Generator, *, factor: float) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


def _contrast(image: Image.Image, rng: np.random.Generator, *, factor: float) -> Image.Image:
    return ImageEnhance.Contrast(image).enhance(factor)


def _gamma(image: Image.Image, rng: np.random.Generator, *, gamma: float) -> Image.Image:
    lut = [min(255, max(0, round(255.0 * (i / 255.0) ** gamma))) for i in range(256)]
    return image.point(lut * 3)


def _noise(image: Image.Image, rng: np.random.Generator, *, sigma: float) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    noisy = pixels + rng.normal(0.0, sigma, size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), mode="RGB")


def _blur(image: Image.Image, rng: np.random.Generator, *, radius: float) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius))


def _sharpen(image: Image.Image, rng: np.random.Generator, *, radius: float, percent: int, threshold: int) -> Image.Image:
    return image.filter(ImageFilter.UnsharpMask(radius=radius, percent=percent, threshold=threshold))


def _grey(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return image.convert("L").convert("RGB")


def _text(
    image: Image.Image, rng: np.random.Generator, *, text: str, size: float, position: str, color: str, opacity: float
) -> Image.Image:
    """Overlay ``text`` ``size`` (fraction of the image height) tall, e.g. a caption or a signature."""
    rgb = ImageColor.getrgb(color)[:3]
    tile = render_text(text, max(1, round(image.height * size)), (*rgb, round(255 * opacity)))
    if tile.width > image.width:  # keep the whole caption inside the frame
        tile = tile.resize((image.width, max(1, round(tile.height * image.width / tile.width))), Image.Resampling.NEAREST)
    x, y = _offset(rng, position, image.width - tile.width, image.height - tile.height)
    canvas = image.convert("RGBA")
    canvas.alpha_composite(tile, (x, y))
    return canvas.convert("RGB")


def _watermark(
    image: Image.Image, rng: np.random.Generator, *, text: str, size: float, color: str, opacity: float
) -> Image.Image:
    """Tile semi-transparent ``text`` across the whole image, as stock-photo watermarks do."""
    rgb = ImageColor.getrgb(color)[:3]
    tile = render_text(text, max(1, round(image.height * size)), (*rgb, round(255 * opacity)))
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    step_x, step_y = tile.width + tile.height, 3 * tile.height
    for row, y in enumerate(range(0, image.height, step_y)):
        shift = (row % 2) * (step_x // 2)  # brick pattern, so no column is left untouched
        for x in range(-shift, image.width, step_x):
            layer.paste(tile, (x, y))  # tiles do not overlap, so pasting equals compositing
    canvas = Image.alpha_composite(image.convert("RGBA"), layer)
    return canvas.convert("RGB")


def _screenshot(
    image: Image.Image, rng: np.random.Generator, *, scale: float, aspect: float, background: str, position: str
) -> Image.Image:
    """Shrink the image to ``scale`` of a canvas ``aspect`` (height/width) with status and navigation bars.

    The canvas has the original width, as a phone screenshot of a shared
    photo does; the picture keeps its aspect ratio.
    """
    canvas_w = image.width
    canvas_h = max(1, round(canvas_w * aspect))
    bar = max(1, round(canvas_h * 0.05))
    w = max(1, round(canvas_w * scale))
    h = max(1, round(image.height * w / image.width))
    if h > canvas_h - 2 * bar:  # a tall picture is limited by the screen height instead
        h = max(1, canvas_h - 2 * bar)
        w = max(1, round(image.width * h / image.height))
    canvas = Image.new("RGB", (canvas_w, canvas_h), ImageColor.getrgb(background)[:3])
    canvas.paste((40, 40, 40), (0, 0, canvas_w, bar))
    canvas.paste((40, 40, 40), (0, canvas_h - bar, canvas_w, canvas_h))
    x, y = _offset(rng, position, canvas_w - w, canvas_h - 2 * bar - h)
    canvas.paste(image.resize((w, h), Image.Resampling.BICUBIC), (x, y + bar))
    return canvas


@dataclass(frozen=True)
class Transform:
    """A registered transformation: its function, parameters and a one-line description."""

    name: str
    func: Callable[..., Image.Image]
    params: Mapping[str, Param]
    description: str


def _registry(*items: Transform) -> dict[str, Transform]:
    return {t.name: t for t in items}


_FRACTION = "a float in (0, 1]"
TRANSFORMS: Mapping[str, Transform] = _registry(
    Transform("jpeg", _jpeg, {
        "quality": Param(int, 75, _in(1, 100), "an int in 1..100"),
        "subsampling": Param(int, 2, _in(0, 2), "0 (4:4:4), 1 (4:2:2) or 2 (4:2:0)"),
    }, "re-encode as JPEG"),
    Transform("resize", _resize, {
        "scale": Param(float, 0.5, lambda v: 0.01 <= v <= 8.0, "a float in [0.01, 8]"),
        "resample": Param(str, "bicubic", _choice(*_RESAMPLING), f"one of {', '.join(_RESAMPLING)}"),
    }, "scale both sides by a factor"),
    Transform("crop", _crop, {
        "fraction": Param(float, 0.9, lambda v: 0.0 < v <= 1.0, _FRACTION),
        "position": Param(str, "center", _choice(*_POSITIONS), f"one of {', '.join(_POSITIONS)}"),
    }, "keep a fraction of each side"),
    Transform("rotate", _rotate, {
        "degrees": Param(float, 5.0, _in(-360.0, 360.0), "a float in [-360, 360]"),
        "expand": Param(bool, False, accepted="true or false"),
        "fill": Param(str, "black", _colour_ok, _COLOUR_TEXT),
    }, "rotate counter-clockwise (right angles are lossless)"),
    Transform("flip", _flip, {
        "axis": Param(str, "horizontal", _choice("horizontal", "vertical"), "horizontal or vertical"),
    }, "mirror"),
    Transform("pad", _pad, {
        "fraction": Param(float, 0.1, _in(0.0, 2.0), "a float in [0, 2]"),
        "color": Param(str, "black", _colour_ok, _COLOUR_TEXT),
    }, "add a uniform border"),
    Transform("brightness", _brightness, {
        "factor": Param(float, 1.3, _in(0.0, 10.0), "a float in [0, 10]"),
    }, "scale brightness (1 = unchanged)"),
    Transform("contrast", _contrast, {
        "factor": Param(float, 0.7, _in(0.0, 10.0), "a float in [0, 10]"),
    }, "scale contrast (1 = unchanged)"),
    Transform("gamma", _gamma, {
        "gamma": Param(float, 1.5, lambda v: 0.05 <= v <= 20.0, "a float in [0.05, 20]"),
    }, "gamma curve on each channel"),
    Transform("noise", _noise, {
        "sigma": Param(float, 10.0, _in(0.0, 255.0), "a float in [0, 255]"),
    }, "add Gaussian noise (sigma in grey levels)"),
    Transform("blur", _blur, {
        "radius": Param(float, 1.5, _in(0.0, 100.0), "a float in [0, 100]"),
    }, "Gaussian blur"),
    Transform("sharpen", _sharpen, {
        "radius": Param(float, 2.0, _in(0.0, 100.0), "a float in [0, 100]"),
        "percent": Param(int, 150, _in(0, 1000), "an int in 0..1000"),
        "threshold": Param(int, 3, _in(0, 255), "an int in 0..255"),
    }, "unsharp mask"),
    Transform("grey", _grey, {}, "convert to greyscale (kept as RGB)"),
    Transform("text", _text, {
        "text": Param(str, "e2escan", lambda v: 0 < len(v) <= 200, "1 to 200 characters"),
        "size": Param(float, 0.08, lambda v: 0.0 < v <= 1.0, _FRACTION),
        "position": Param(str, "bottom-right", _choice(*_POSITIONS), f"one of {', '.join(_POSITIONS)}"),
        "color": Param(str, "white", _colour_ok, _COLOUR_TEXT),
        "opacity": Param(float, 1.0, _in(0.0, 1.0), "a float in [0, 1]"),
    }, "overlay a caption"),
    Transform("watermark", _watermark, {
        "text": Param(str, "sample", lambda v: 0 < len(v) <= 200, "1 to 200 characters"),
        "size": Param(float, 0.06, lambda v: 0.0 < v <= 1.0, _FRACTION),
        "color": Param(str, "white", _colour_ok, _COLOUR_TEXT),
        "opacity": Param(float, 0.35, _in(0.0, 1.0), "a float in [0, 1]"),
    }, "tile semi-transparent text over the image"),
    Transform("screenshot", _screenshot, {
        "scale": Param(float, 0.8, lambda v: 0.0 < v <= 1.0, _FRACTION),
        "aspect": Param(float, 2.0, lambda v: 0.2 <= v <= 5.0, "a float in [0.2, 5] (height / width)"),
        "background": Param(str, "white", _colour_ok, _COLOUR_TEXT),
        "position": Param(str, "center", _choice(*_POSITIONS), f"one of {', '.join(_POSITIONS)}"),
    }, "shrink into a phone-screenshot canvas"),
)  # fmt: skip


# -- steps, chains and transformed images ----------------------------------------------


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class TransformStep:
    """One transformation with its full, validated parameters (defaults filled in)."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def make(cls, name: str, **params: Any) -> TransformStep:
        """Validate ``params`` against the registered transform ``name``."""
        try:
            transform = TRANSFORMS[name]
        except KeyError:
            raise ConfigError(f"unknown transform {name!r}; known transforms: {', '.join(sorted(TRANSFORMS))}") from None
        unknown = sorted(set(params) - set(transform.params))
        if unknown:
            accepted = ", ".join(transform.params) or "(none)"
            raise ConfigError(f"transform {name!r} has no parameter {', '.join(map(repr, unknown))}; accepted: {accepted}")
        values = tuple(
            (key, p.validate(name, key, params.get(key, p.default))) for key, p in transform.params.items()
        )
        return cls(name, values)

    @property
    def spec(self) -> str:
        """Spec listing only parameters that differ from their defaults (``jpeg:quality=50``)."""
        defaults = TRANSFORMS[self.name].params
        changed = [f"{k}={_format_value(v)}" for k, v in self.params if v != defaults[k].default]
        return self.name + (":" + ",".join(changed) if changed else "")

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        if image.mode != "RGB":
            image = image.convert("RGB")
        return TRANSFORMS[self.name].func(image, rng, **dict(self.params))


@dataclass(frozen=True)
class TransformedImage:
    """An image together with the chain of steps that produced it from its source image."""

    image: Image.Image
    chain: tuple[TransformStep, ...] = ()
    source: str | None = None

    @property
    def spec(self) -> str:
        return "|".join(step.spec for step in self.chain) or "identity"


@dataclass(frozen=True)
class TransformChain:
    """Steps applied left to right. The empty chain is the identity."""

    steps: tuple[TransformStep, ...] = field(default=())

    @property
    def spec(self) -> str:
        return "|".join(step.spec for step in self.steps) or "identity"

    def __str__(self) -> str:
        return self.spec

    def apply(self, image: Image.Image | TransformedImage, rng: np.random.Generator) -> TransformedImage:
        """Apply every step with draws from ``rng``; a ``TransformedImage`` input extends its chain."""
        previous: tuple[TransformStep, ...] = ()
        source = None
        if isinstance(image, TransformedImage):
            previous, source, image = image.chain, image.source, image.image
        out = image if image.mode == "RGB" else image.convert("RGB")
        for step in self.steps:
            out = step.apply(out, rng)
        return TransformedImage(out, previous + self.steps, source)


# -- parsing ---------------------------------------------------------------------------


def _parse_value(transform: str, key: str, text: str) -> Any:
    """Convert spec text to the parameter's declared type (unknown keys are left to ``make``)."""
    param = TRANSFORMS.get(transform, Transform("", _grey, {}, "")).params.get(key)
    if param is None or param.kind is str:
        return text
    if param.kind is bool:
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
    else:
        try:
            return param.kind(text)
        except ValueError:
            pass
    raise ConfigError(f"transform {transform!r}: parameter {key!r} must be {param.accepted}, got {text!r}")


def parse_step(spec: str) -> TransformStep:
    """``"crop:fraction=0.9,position=random"`` -> a validated :class:`TransformStep`."""
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    params: dict[str, Any] = {}
    if rest.strip():
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ConfigError(f"transform spec {spec!r}: {item!r} is not key=value")
            if key.strip() in params:
                raise ConfigError(f"transform spec {spec!r}: parameter {key.strip()!r} given twice")
            params[key.strip()] = _parse_value(name, key.strip(), value.strip())
    if not name:
        raise ConfigError(f"transform spec {spec!r} has no transform name")
    return TransformStep.make(name, **params)


def parse_chain(spec: str) -> TransformChain:
    """``"jpeg:quality=50|crop:fraction=0.9"`` -> a :class:`TransformChain`; ``"identity"`` is the empty chain."""
    if spec.strip() == "identity":
        return TransformChain(())
    return TransformChain(tuple(parse_step(part) for part in spec.split("|")))


#: The transform set used by ``hash-eval --transforms default``: one family per
#: common benign edit, at strengths an ordinary user or platform applies.
DEFAULT_TRANSFORMS: tuple[str, ...] = (
    "jpeg:quality=75",
    "jpeg:quality=30",
    "resize:scale=0.5",
    "resize:scale=0.5|jpeg:quality=75",
    "crop:fraction=0.9",
    "crop:fraction=0.75,position=random",
    "rotate:degrees=5",
    "rotate:degrees=90",
    "flip",
    "pad:fraction=0.1",
    "brightness:factor=1.3",
    "contrast:factor=0.7",
    "gamma:gamma=1.5",
    "noise:sigma=10.0",
    "blur:radius=1.5",
    "sharpen",
    "grey",
    "text:size=0.1",
    "watermark",
    "screenshot",
)

#: A small set for quick runs and tests: one of each kind of change.
QUICK_TRANSFORMS: tuple[str, ...] = (
    "jpeg:quality=50",
    "resize:scale=0.5",
    "crop:fraction=0.9",
    "rotate:degrees=5",
    "flip",
    "screenshot",
)

TRANSFORM_SETS: Mapping[str, tuple[str, ...]] = {"default": DEFAULT_TRANSFORMS, "quick": QUICK_TRANSFORMS}


def parse_transform_set(spec: str) -> list[TransformChain]:
    """A ``;``-separated list of set names (``default``, ``quick``) and chain specs, without duplicates."""
    chains: list[TransformChain] = []
    for part in spec.split(";"):
        part = part.strip()
        if not part:
            raise ConfigError(f"empty item in transform list {spec!r}; separate chains with ';'")
        specs: Iterable[str] = TRANSFORM_SETS.get(part, (part,))
        chains.extend(parse_chain(s) for s in specs)
    seen: set[str] = set()
    for chain in chains:
        if chain.spec in seen:
            raise ConfigError(f"transform list {spec!r} contains {chain.spec!r} more than once")
        seen.add(chain.spec)
    return chains


def describe_transforms(names: Sequence[str] | None = None) -> str:
    """Human-readable list of transforms and their parameters (for ``--help`` texts)."""
    lines = []
    for name in names or sorted(TRANSFORMS):
        t = TRANSFORMS[name]
        params = ", ".join(f"{k}={_format_value(p.default)}" for k, p in t.params.items())
        lines.append(f"{name}({params}): {t.description}")
    return "\n".join(lines)
