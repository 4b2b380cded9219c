"""Detection-avoidance attacks and the SSIM / PSNR quality bounds they use."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from e2escan.attacks import (
    BlackBoxParams,
    SsimReference,
    evade,
    psnr,
    ssim,
    whitebox_supported,
)
from e2escan.attacks.evasion import dct_model
from e2escan.attacks.quality import SSIM_WINDOW, ssim_window
from e2escan.errors import ConfigError, ImageError
from e2escan.hashing import get_hasher
from e2escan.images import image_rng, synthetic_image

SIZE = (64, 64)


def corpus_image(index: int, size: tuple[int, int] = SIZE) -> Image.Image:
    return synthetic_image(image_rng(7, index), size)


def noisy(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, image.shape)
    return np.clip(np.rint(image + noise), 0, 255).astype(np.uint8)


# --- SSIM ------------------------------------------------------------------------------------------


def ssim_oracle(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 written out window by window (slow; the specification)."""
    taps = ssim_window()
    w = np.outer(taps, taps)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a = np.atleast_3d(a.astype(np.float64))
    b = np.atleast_3d(b.astype(np.float64))
    n = SSIM_WINDOW
    values = []
    for c in range(a.shape[2]):
        for i in range(a.shape[0] - n + 1):
            for j in range(a.shape[1] - n + 1):
                x, y = a[i : i + n, j : j + n, c], b[i : i + n, j : j + n, c]
                mx, my = (w * x).sum(), (w * y).sum()
                vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
                cov = (w * (x - mx) * (y - my)).sum()
                values.append(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_is_one_for_identical_images_and_symmetric() -> None:
    a = np.asarray(corpus_image(0))
    b = noisy(a, 12.0, 1)
    assert ssim(a, a) == 1.0
    assert ssim(corpus_image(0), corpus_image(0)) == 1.0
    assert ssim(a, b) == pytest.approx(ssim(b, a), abs=1e-15)
    assert ssim(a, b) < 1.0


def test_ssim_falls_as_noise_grows() -> None:
    a = np.asarray(corpus_image(1))
    values = [ssim(a, noisy(a, sigma, 3)) for sigma in (1.0, 4.0, 16.0, 48.0)]
    assert values == sorted(values, reverse=True)
    assert values[-1] < 0.5 < values[0]


def test_ssim_of_constant_images_has_the_closed_form() -> None:
    # Flat windows have no variance or covariance, so only the luminance term is left.
    a, b = np.full((20, 24), 100, np.uint8), np.full((20, 24), 120, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 120 + c1) / (100**2 + 120**2 + c1), abs=1e-14)


def test_ssim_matches_scikit_image_reference_values() -> None:
    # scikit-image 0.26.0, structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
    # use_sample_covariance=False, data_range=255[, channel_axis=-1]) on this deterministic pair.
    y, x = np.mgrid[0:48, 0:40]
    a = np.stack([(7 * x + 13 * y) % 256, (x * y) % 256, (3 * x * x + y) % 256], axis=2).astype(np.uint8)
    b = np.clip(a.astype(int) + ((x * 5 + y * 3) % 41 - 20)[:, :, None], 0, 255).astype(np.uint8)
    assert ssim(a, b) == pytest.approx(0.9602985283730354, abs=1e-12)
    assert ssim(a[:, :, 0], b[:, :, 0]) == pytest.approx(0.9255224398580195, abs=1e-12)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), height=st.integers(11, 20), width=st.integers(11, 20),
       channels=st.sampled_from([1, 3]), sigma=st.floats(0.5, 80.0))  # fmt: skip
def test_ssim_agrees_with_the_window_by_window_oracle(seed, height, width, channels, sigma) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, size=(height, width, channels)).astype(np.uint8)
    b = noisy(a, sigma, seed + 1)
    assert ssim(a, b) == pytest.approx(ssim_oracle(a, b), abs=1e-12)
    reference = SsimReference(a)
    assert reference.ssim(b) == pytest.approx(ssim(a, b), abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(index=st.integers(0, 50), sigma=st.floats(0.3, 60.0), offset=st.floats(1e-9, 0.002), above=st.booleans())
def test_ssim_reference_fast_path_decides_like_the_exact_value(index, sigma, offset, above) -> None:
    # offsets of at least 1e-9: closer than that, float64 rounding may decide either way
    a = np.asarray(corpus_image(index))
    b = noisy(a, sigma, index)
    exact = ssim(a, b)
    reference = SsimReference(a)
    assert abs(reference.estimate(b) - exact) < 1e-4
    bound = exact + offset if above else exact - offset
    assert reference.meets(b, bound) == (exact >= bound)


def test_ssim_rejects_mismatched_or_tiny_images() -> None:
    with pytest.raises(ImageError, match="shapes"):
        ssim(np.zeros((20, 20), np.uint8), np.zeros((20, 21), np.uint8))
    with pytest.raises(ImageError, match="at least 11x11"):
        ssim(np.zeros((10, 30), np.uint8), np.zeros((10, 30), np.uint8))


def test_psnr_values() -> None:
    a = np.full((16, 16, 3), 100, np.uint8)
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 1) == pytest.approx(10 * math.log10(255**2), abs=1e-12)


# --- white-box models ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["phash", "pdq"])
@pytest.mark.parametrize("size", [(64, 64), (128, 96), (200, 200)])
def test_whitebox_models_reproduce_the_real_hash_bits(name, size) -> None:
    hasher = get_hasher(name)
    model = dct_model(hasher)
    for index in range(4):
        pixels = np.asarray(corpus_image(index, size))
        assert np.array_equal(model.bits(pixels), hasher.hash(pixels).to_bits())


def test_whitebox_is_only_offered_for_dct_hashes() -> None:
    assert whitebox_supported(get_hasher("phash")) and whitebox_supported(get_hasher("pdq"))
    assert not whitebox_supported(get_hasher("ahash"))
    with pytest.raises(ConfigError, match="whitebox"):
        evade(corpus_image(0), get_hasher("ahash"), min_distance=5, rng=np.random.default_rng(0), method="whitebox")


# --- the attack ------------------------------------------------------------------------------------


def _check_result(result, image, hasher, min_distance, min_ssim, max_queries) -> None:
    assert result.success
    assert result.distance >= min_distance
    assert result.queries <= max_queries
    assert result.ssim >= min_ssim
    # what is reported is what the returned image really does
    assert hasher.hash(result.image) == result.final_hash
    assert result.original_hash == hasher.hash(image)
    assert result.final_hash.distance(result.original_hash) == result.distance
    assert ssim(image, result.image) == pytest.approx(result.ssim, abs=1e-12)
    assert result.queries_to_reach(min_distance) == result.queries


@pytest.mark.parametrize(
    ("name", "min_distance"), [("ahash", 11), ("dhash", 11), ("phash", 11), ("pdq", 32)]
)
def test_blackbox_evasion_reaches_the_distance_within_budget_and_quality(name, min_distance) -> None:
    hasher = get_hasher(name)
    for index in range(3):
        image = corpus_image(index)
        result = evade(image, hasher, min_distance=min_distance, max_queries=600, min_ssim=0.95,
                       rng=np.random.default_rng(index))  # fmt: skip
        _check_result(result, image, hasher, min_distance, 0.95, 600)


@pytest.mark.parametrize(("name", "min_distance"), [("phash", 11), ("pdq", 32)])
def test_whitebox_evasion_needs_few_queries_and_little_distortion(name, min_distance) -> None:
    hasher = get_hasher(name)
    for index in range(3):
        image = corpus_image(index)
        result = evade(image, hasher, min_distance=min_distance, max_queries=50, min_ssim=0.97,
                       rng=np.random.default_rng(0), method="whitebox")  # fmt: skip
        _check_result(result, image, hasher, min_distance, 0.97, 50)
        assert result.queries <= 10


def test_evasion_is_deterministic_for_a_seed() -> None:
    hasher, image = get_hasher("phash"), corpus_image(3)
    runs = [evade(image, hasher, min_distance=14, max_queries=300, min_ssim=0.92, rng=np.random.default_rng(5))
            for _ in range(2)]  # fmt: skip
    assert runs[0].image.tobytes() == runs[1].image.tobytes()
    assert runs[0].progress == runs[1].progress and runs[0].queries == runs[1].queries
    other = evade(image, hasher, min_distance=14, max_queries=300, min_ssim=0.92, rng=np.random.default_rng(6))
    assert other.image.tobytes() != runs[0].image.tobytes()


def test_one_long_run_predicts_the_cost_of_every_smaller_goal() -> None:
    # The black-box trajectory does not depend on the goal, so the first acceptable image
    # past distance d in a long run is exactly where an attack aimed at d would stop.
    hasher, image = get_hasher("dhash"), corpus_image(4)
    long = evade(image, hasher, min_distance=32, max_queries=400, min_ssim=0.93, rng=np.random.default_rng(9))
    for goal in (4, 9, 15, 22):
        short = evade(image, hasher, min_distance=goal, max_queries=400, min_ssim=0.93,
                      rng=np.random.default_rng(9))  # fmt: skip
        expected = long.queries_to_reach(goal)
        if expected is None:
            assert not short.success and short.queries == 400
        else:
            assert short.success and short.queries == expected


def test_budget_of_one_query_returns_the_original() -> None:
    image = corpus_image(0)
    result = evade(image, get_hasher("ahash"), min_distance=5, max_queries=1, rng=np.random.default_rng(0))
    assert not result.success and result.queries == 1 and result.distance == 0
    assert result.image.tobytes() == image.tobytes() and result.ssim == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_distance": 0}, "min_distance"),
        ({"min_distance": 65}, "min_distance"),
        ({"min_distance": 5, "max_queries": 0}, "max_queries"),
        ({"min_distance": 5, "min_ssim": 1.5}, "min_ssim"),
        ({"min_distance": 5, "method": "greybox"}, "method"),
        ({"min_distance": 5, "rng": 3}, "rng"),
    ],
)
def test_evade_rejects_bad_arguments(kwargs, message) -> None:
    arguments = {"rng": np.random.default_rng(0), **kwargs}
    with pytest.raises(ConfigError, match=message):
        evade(corpus_image(0), get_hasher("ahash"), **arguments)


def test_blackbox_params_are_validated() -> None:
    with pytest.raises(ConfigError, match="samples"):
        BlackBoxParams(samples=3)
    with pytest.raises(ConfigError, match="grid"):
        BlackBoxParams(grid=1)
    with pytest.raises(ConfigError, match="sigma"):
        BlackBoxParams(sigma=0.0)


def test_evade_rejects_images_smaller_than_the_ssim_window() -> None:
    with pytest.raises(ImageError, match="11x11"):
        evade(np.zeros((8, 8, 3), np.uint8), get_hasher("ahash"), min_distance=3, rng=np.random.default_rng(0))
