"""Image-quality measures that bound the attacks: SSIM and PSNR.

:func:`ssim` is the mean structural similarity index of Wang, Bovik, Sheikh
and Simoncelli ("Image quality assessment: from error visibility to
structural similarity", IEEE Trans. Image Processing 13(4), 2004) with the
parameters recommended there:

* an 11x11 circular-symmetric Gaussian window with standard deviation 1.5,
  normalised to sum 1;
* ``C1 = (0.01 L)**2`` and ``C2 = (0.03 L)**2`` with dynamic range ``L = 255``;
* local statistics weighted by the window (population, not sample, variances);
* the index map averaged over every window that lies entirely inside the
  image (no padding).

Colour images are compared channel by channel and the channel means are
averaged. These choices equal scikit-image's
``structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255, channel_axis=-1)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ImageError
from .corpus import CorpusImage
from .transforms import TransformedImage

__all__ = ["DATA_RANGE", "FAST_PATH_MARGIN", "SSIM_SIGMA", "SSIM_WINDOW", "SsimReference", "psnr", "ssim", "ssim_window"]

DATA_RANGE = 255.0
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11  # 2 * int(3.5 * sigma + 0.5) + 1: the Gaussian truncated at 3.5 sigma
_K1, _K2 = 0.01, 0.03
_C1 = (_K1 * DATA_RANGE) ** 2
_C2 = (_K2 * DATA_RANGE) ** 2


def ssim_window() -> np.ndarray:
    """The 1-D Gaussian taps (length :data:`SSIM_WINDOW`, sum 1); the 2-D window is their outer product."""
    radius = SSIM_WINDOW // 2
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-(x * x) / (2.0 * SSIM_SIGMA**2))
    return taps / taps.sum()


def as_pixel_array(image: Any, name: str = "image") -> np.ndarray:
    """A float64 ``(H, W, C)`` view of a PIL image or a uint8/float array of shape ``(H, W)`` or ``(H, W, C)``.

    A :class:`~e2escan.images.TransformedImage` or :class:`~e2escan.images.CorpusImage` stands for its image.
    """
    if isinstance(image, (TransformedImage, CorpusImage)):
        image = image.image
    if not isinstance(image, np.ndarray):
        try:
            mode = image.mode
        except AttributeError:
            raise ImageError(f"{name}: expected a PIL image or a numpy array, got {type(image).__name__}") from None
        if mode not in ("L", "RGB"):
            image = image.convert("RGB")
        image = np.asarray(image)
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ImageError(f"{name}: expected shape (H, W) or (H, W, C), got {arr.shape}")
    return arr


def _filter(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 'valid' Gaussian filtering over the first two axes of an (H, W, ...) float64 array."""
    n = taps.size
    rows = x.shape[0] - n + 1
    acc = taps[0] * x[:rows]
    for k in range(1, n):
        acc += taps[k] * x[k : k + rows]
    cols = x.shape[1] - n + 1
    out = taps[0] * acc[:, :cols]
    for k in range(1, n):
        out += taps[k] * acc[:, k : k + cols]
    return out


def _checked_pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    x = as_pixel_array(a, "first image")
    y = as_pixel_array(b, "second image")
    if x.shape != y.shape:
        raise ImageError(f"cannot compare images of shapes {x.shape} and {y.shape}; they must match")
    return x, y


def _check_window(x: np.ndarray) -> None:
    if min(x.shape[0], x.shape[1]) < SSIM_WINDOW:
        raise ImageError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {x.shape[1]}x{x.shape[0]}"
        )


# The fast float32 path of SsimReference.meets is trusted only this far from the bound.
FAST_PATH_MARGIN = 1e-3
_CENTRE = DATA_RANGE / 2  # statistics are computed on centred values, which keeps float32 variances accurate
_Float = type[np.float64] | type[np.float32]  # the two precisions SsimReference computes in


def _index_mean(mu_x: np.ndarray, var_x: np.ndarray, mu_y: np.ndarray, var_y: np.ndarray, cov: np.ndarray) -> float:
    numerator = (2 * mu_x * mu_y + _C1) * (2 * cov + _C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + _C1) * (var_x + var_y + _C2)
    return float((numerator / denominator).mean(dtype=np.float64))


class SsimReference:
    """SSIM against one fixed image, with that image's local statistics computed once.

    :meth:`ssim` equals ``ssim(reference, other)`` to rounding. :meth:`meets`
    decides ``SSIM >= bound`` with a float32 computation and falls back to
    the float64 one when the estimate lies within :data:`FAST_PATH_MARGIN` of
    the bound, so its decisions agree with :func:`ssim` while most calls run
    at float32 speed (the float32 error is below 1e-4; the tests check it).
    """

    def __init__(self, reference: Any) -> None:
        x = as_pixel_array(reference, "reference image")
        _check_window(x)
        self._x = x
        self._stats = {dtype: self._reference_stats(x, dtype) for dtype in (np.float64, np.float32)}

    @staticmethod
    def _reference_stats(x: np.ndarray, dtype: _Float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        taps: np.ndarray = ssim_window().astype(dtype)
        centred: np.ndarray = (x - _CENTRE).astype(dtype)
        stats = _filter(np.concatenate([centred, centred * centred], axis=2), taps)
        c = x.shape[2]
        mean = stats[:, :, :c]
        return centred, mean + dtype(_CENTRE), stats[:, :, c:] - mean * mean, taps

    @property
    def shape(self) -> tuple[int, ...]:
        return self._x.shape

    def _compute(self, y: np.ndarray, dtype: _Float) -> float:
        centred_x, mu_x, var_x, taps = self._stats[dtype]
        centred_y: np.ndarray = (y - _CENTRE).astype(dtype)
        c = y.shape[2]
        stats = _filter(np.concatenate([centred_y, centred_y * centred_y, centred_x * centred_y], axis=2), taps)
        mean_y = stats[:, :, :c]
        mu_y = mean_y + dtype(_CENTRE)
        var_y = stats[:, :, c : 2 * c] - mean_y * mean_y
        cov = stats[:, :, 2 * c :] - (mu_x - dtype(_CENTRE)) * mean_y
        return _index_mean(mu_x, var_x, mu_y, var_y, cov)

    def _checked(self, other: Any) -> np.ndarray:
        y = as_pixel_array(other, "compared image")
        if y.shape != self._x.shape:
            raise ImageError(f"cannot compare images of shapes {self._x.shape} and {y.shape}; they must match")
        return y

    def ssim(self, other: Any) -> float:
        """Mean SSIM between the reference and ``other`` (same shape), in float64."""
        y = self._checked(other)
        if np.array_equal(self._x, y):
            return 1.0
        return self._compute(y, np.float64)

    def meets(self, other: Any, bound: float) -> bool:
        """``ssim(reference, other) >= bound``, decided in float32 unless the estimate is close to ``bound``."""
        y = self._checked(other)
        if np.array_equal(self._x, y):
            return 1.0 >= bound
        estimate = self._compute(y, np.float32)
        if abs(estimate - bound) > FAST_PATH_MARGIN:
            return estimate >= bound
        return self._compute(y, np.float64) >= bound

    def estimate(self, other: Any) -> float:
        """The float32 estimate of the SSIM (within about 1e-4 of :meth:`ssim`)."""
        y = self._checked(other)
        if np.array_equal(self._x, y):
            return 1.0
        return self._compute(y, np.float32)


def ssim(a: Any, b: Any) -> float:
    """Mean SSIM of two images of the same shape (PIL images or arrays with values in 0..255).

    1.0 exactly for identical images, symmetric in its arguments, at most 1.
    Raises :class:`~e2escan.errors.ImageError` when the shapes differ or an
    image is smaller than the 11x11 window.
    """
    x, y = _checked_pair(a, b)
    _check_window(x)
    if np.array_equal(x, y):
        return 1.0
    c = x.shape[2]
    stats = _filter(np.concatenate([x, y, x * x, y * y, x * y], axis=2), ssim_window())
    mu_x, mu_y = stats[:, :, :c], stats[:, :, c : 2 * c]
    var_x = stats[:, :, 2 * c : 3 * c] - mu_x * mu_x
    var_y = stats[:, :, 3 * c : 4 * c] - mu_y * mu_y
    cov = stats[:, :, 4 * c :] - mu_x * mu_y
    index = ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / ((mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2))
    return float(index.mean(dtype=np.float64))


def psnr(a: Any, b: Any) -> float:
    """Peak signal-to-noise ratio in dB (peak 255) over all pixels and channels; ``inf`` for identical images."""
    x, y = _checked_pair(a, b)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(DATA_RANGE**2 / mse)
