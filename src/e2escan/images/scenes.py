"""Seeded synthetic scenes and distinct viewpoint-like views of them.

A *scene* stands in for a physical place: one large image (1024 x 1024 by
default) with structure at several scales, a backdrop from
:func:`~e2escan.images.synthetic.synthetic_image` plus "landmarks" (smaller
synthetic images pasted under soft masks) and a few bold shapes. A *view* is
what one photographer captures there: a square region of the scene at some
position and scale, turned by a small angle, with its corners displaced as a
perspective change would displace them, rendered to the capture size.

Two views of one scene share content but differ in framing, so their pixels
differ everywhere; that is the point: they model distinct photos of one
place, not edits of one photo. The geometry is drawn from a
:class:`ViewModel`, whose ranges are our assumption (no published model of
how photos of one place vary exists for this purpose).

Scene ``i`` of seed ``s`` depends only on ``(s, i)`` (via
:func:`~e2escan.images.synthetic.image_rng`); view geometries come from the
generator the caller passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..errors import ConfigError
from .synthetic import synthetic_image

__all__ = ["ViewGeometry", "ViewModel", "render_view", "synthetic_scene", "view_homography"]


def synthetic_scene(rng: np.random.Generator, size: int = 1024, landmarks: int = 9) -> Image.Image:
    """One RGB scene of ``size`` x ``size`` pixels: a backdrop, ``landmarks`` pasted objects and shapes.

    Each landmark is a synthetic image of 10-30% of the scene side pasted at a
    random position under a blurred elliptical or rectangular mask, so views
    at different positions frame different objects.
    """
    if size < 64:
        raise ConfigError(f"synthetic_scene: size must be >= 64 pixels, got {size}")
    if landmarks < 0:
        raise ConfigError(f"synthetic_scene: landmarks must be >= 0, got {landmarks}")
    scene = synthetic_image(rng, (size, size))
    for _ in range(landmarks):
        w, h = (int(v) for v in rng.uniform(0.10, 0.30, size=2) * size)
        w, h = max(8, w), max(8, h)
        patch = synthetic_image(rng, (w, h))
        mask = Image.new("L", (w, h), 0)
        if rng.random() < 0.5:
            ImageDraw.Draw(mask).ellipse((0, 0, w - 1, h - 1), fill=255)
        else:
            ImageDraw.Draw(mask).rectangle((w // 10, h // 10, w - 1 - w // 10, h - 1 - h // 10), fill=255)
        mask = mask.filter(ImageFilter.GaussianBlur(max(1.0, min(w, h) / 40)))
        x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        scene.paste(patch, (x, y), mask)
    return scene


@dataclass(frozen=True)
class ViewGeometry:
    """Where a view looks, in scene pixels.

    ``centre``: the view's centre; ``side``: the side of the square it frames
    (before perspective); ``degrees``: its rotation (counter-clockwise);
    ``corner_shift``: a ``(4, 2)`` displacement of the corners (top-left,
    top-right, bottom-right, bottom-left), in pixels, that makes the mapping
    a perspective one.
    """

    centre: tuple[float, float]
    side: float
    degrees: float
    corner_shift: tuple[tuple[float, float], ...]

    def corners(self) -> np.ndarray:
        """The ``(4, 2)`` scene coordinates the capture's corners come from (TL, TR, BR, BL)."""
        half = self.side / 2
        square = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
        a = math.radians(self.degrees)
        # Image y points down: a counter-clockwise turn on screen is (x, y) -> (x cos + y sin, -x sin + y cos).
        rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
        return square @ rot.T + np.asarray(self.centre) + np.asarray(self.corner_shift, dtype=float)


@dataclass(frozen=True)
class ViewModel:
    """How the views of one scene vary (our assumption; ranges are ``(low, high)``, drawn uniformly).

    ``scale``: the framed side as a fraction of the scene side; ``offset``: the
    centre's displacement from the scene centre, per axis, as a fraction of
    the scene side; ``degrees``: rotation; ``perspective``: each corner moves
    by up to this fraction of the framed side, per axis. A view that would
    leave the scene is moved back inside it (its centre clamped).
    """

    scale: tuple[float, float] = (0.45, 0.75)
    offset: float = 0.12
    degrees: tuple[float, float] = (-6.0, 6.0)
    perspective: float = 0.06

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0.05 <= lo <= hi <= 0.9:
            raise ConfigError(f"ViewModel.scale = {self.scale}: need 0.05 <= low <= high <= 0.9")
        if not 0.0 <= self.offset <= 0.5:
            raise ConfigError(f"ViewModel.offset = {self.offset}: need 0 <= offset <= 0.5")
        if not -30.0 <= self.degrees[0] <= self.degrees[1] <= 30.0:
            raise ConfigError(f"ViewModel.degrees = {self.degrees}: need -30 <= low <= high <= 30")
        if not 0.0 <= self.perspective <= 0.2:
            raise ConfigError(f"ViewModel.perspective = {self.perspective}: need 0 <= perspective <= 0.2")

    def draw(self, rng: np.random.Generator, scene_size: int) -> ViewGeometry:
        """One view geometry inside a ``scene_size`` square scene (the same number of draws every time)."""
        side = float(rng.uniform(*self.scale)) * scene_size
        offset = rng.uniform(-self.offset, self.offset, size=2) * scene_size
        degrees = float(rng.uniform(*self.degrees))
        shift = rng.uniform(-self.perspective, self.perspective, size=(4, 2)) * side
        a = math.radians(degrees)
        reach = side / 2 * (abs(math.cos(a)) + abs(math.sin(a))) + float(np.abs(shift).max())
        lo, hi = reach, scene_size - reach
        if lo > hi:
            raise ConfigError(f"ViewModel: a view of side {side:.0f} px does not fit a {scene_size} px scene; lower scale")
        centre = np.clip(scene_size / 2 + offset, lo, hi)
        return ViewGeometry((float(centre[0]), float(centre[1])), side, degrees,
                            tuple((float(x), float(y)) for x, y in shift))


def view_homography(source: np.ndarray, size: int) -> tuple[float, ...]:
    """PIL ``PERSPECTIVE`` coefficients mapping the ``size`` x ``size`` capture onto the quad ``source``.

    Returns ``(a, b, c, d, e, f, g, h)`` with
    ``x_src = (a x + b y + c) / (g x + h y + 1)`` and
    ``y_src = (d x + e y + f) / (g x + h y + 1)``, so that the capture's
    corners TL, TR, BR, BL land on the rows of ``source``.
    """
    source = np.asarray(source, dtype=float)
    if source.shape != (4, 2):
        raise ConfigError(f"view_homography: source must be 4 corners (4, 2), got shape {source.shape}")
    dest = np.array([[0, 0], [size, 0], [size, size], [0, size]], dtype=float)
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dest, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    try:
        return tuple(float(c) for c in np.linalg.solve(np.array(rows), np.array(rhs)))
    except np.linalg.LinAlgError:
        raise ConfigError("view_homography: the source corners are degenerate (three on a line)") from None


def render_view(scene: Image.Image, geometry: ViewGeometry, capture_size: int = 256) -> Image.Image:
    """The view as an RGB ``capture_size`` square: rendered at twice the size, then downscaled (Lanczos).

    Rendering at twice the size before an antialiased downscale keeps the
    framed region's detail from aliasing, as a camera's optics would.
    """
    if capture_size < 16:
        raise ConfigError(f"render_view: capture_size must be >= 16 pixels, got {capture_size}")
    big = 2 * capture_size
    coeffs = view_homography(geometry.corners(), big)
    shot = scene.convert("RGB").transform((big, big), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC)
    return shot.resize((capture_size, capture_size), Image.Resampling.LANCZOS)
