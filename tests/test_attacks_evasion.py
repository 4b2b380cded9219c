"""Detection-avoidance attacks and the SSIM / PSNR quality bounds they use."""

from __future__ import annotations

import io
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
    evasion,
    psnr,
    ssim,
    whitebox_supported,
)
from e2escan.attacks.evasion import PDQ_MIN_QUALITY, dct_model
from e2escan.errors import ConfigError, ImageError
from e2escan.hashing import get_hasher
from e2escan.images import image_rng, synthetic_image
from e2escan.images.quality import SSIM_WINDOW, ssim_window

SIZE = (64, 64)


def corpus_image(index: int, size: tuple[int, int] = SIZE) -> Image.Image:
    return synthetic_image(image_rng(7, index), size)


def usable_images(hasher, count: int, size: tuple[int, int] = SIZE, seed: int = 7) -> list[Image.Image]:
    """The first ``count`` corpus images whose hash PDQ would keep (quality >= 50), raw and after JPEG-90."""
    images, index = [], 0
    while len(images) < count:
        image = synthetic_image(image_rng(seed, index), size)
        index += 1
        if hasher.spec != "pdq" or min(hasher.hash_with_quality(image)[1],
                                        hasher.hash_with_quality(jpeg90(image))[1]) >= PDQ_MIN_QUALITY:  # fmt: skip
            images.append(image)
    return images


def jpeg90(image: Image.Image) -> Image.Image:
    """A real JPEG-90 round trip through Pillow, as a messenger's attachment encoder does it."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=90)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


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
    for index, image in enumerate(usable_images(hasher, 3)):
        result = evade(image, hasher, min_distance=min_distance, max_queries=600, min_ssim=0.95,
                       rng=np.random.default_rng(index))  # fmt: skip
        _check_result(result, image, hasher, min_distance, 0.95, 600)


@pytest.mark.parametrize(("name", "min_distance"), [("phash", 11), ("pdq", 32)])
def test_whitebox_evasion_needs_few_queries_and_little_distortion(name, min_distance) -> None:
    hasher = get_hasher(name)
    for image in usable_images(hasher, 3):
        result = evade(image, hasher, min_distance=min_distance, max_queries=50, min_ssim=0.97,
                       rng=np.random.default_rng(0), method="whitebox")  # fmt: skip
        _check_result(result, image, hasher, min_distance, 0.97, 50)
        assert result.queries <= 10 and not result.fell_back


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
        ({"min_distance": 5, "margin": -1}, "margin"),
        ({"min_distance": 60, "margin": 5}, "margin"),
        ({"min_distance": 5, "encode": "jpeg:quality=101"}, "encode"),
        ({"min_distance": 5, "encode": "sharpen-a-lot"}, "encode"),
        ({"min_distance": 5, "encode": 90}, "encode"),
        ({"min_distance": 5, "encode": "jpeg", "max_queries": 1}, "max_queries"),
        ({"min_distance": 5, "original_hash": "00ff"}, "original_hash"),
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


# --- the messenger's encoding, the margin, PDQ quality and the model fallback ----------------------


def test_whitebox_pdq_evasion_aimed_through_jpeg90_survives_a_real_jpeg90_round_trip() -> None:
    hasher = get_hasher("pdq")
    for index, image in enumerate(usable_images(hasher, 10)):
        result = evade(image, hasher, min_distance=32, max_queries=100, min_ssim=0.95, rng=np.random.default_rng(index),
                       method="whitebox", encode="jpeg:quality=90", margin=8)  # fmt: skip
        assert result.success and result.ssim >= 0.95 and result.encode == "jpeg:quality=90"
        assert result.distance >= 32 + 8  # aimed past the threshold, not just at it
        received, quality = hasher.hash_with_quality(jpeg90(result.image))
        assert received == result.final_hash and quality == result.quality >= PDQ_MIN_QUALITY
        assert received.distance(hasher.hash(image)) >= 32


def test_success_is_judged_after_the_encoding_round_trip() -> None:
    hasher = get_hasher("pdq")
    raw_only_failed = 0
    for index, image in enumerate(usable_images(hasher, 10, size=(96, 96))):
        plain = evade(image, hasher, min_distance=32, max_queries=100, min_ssim=0.95, rng=np.random.default_rng(index),
                      method="whitebox")  # fmt: skip
        assert plain.success  # on raw pixels
        raw_only_failed += hasher.hash(jpeg90(plain.image)).distance(plain.original_hash) < 32
        encoded = evade(image, hasher, min_distance=32, max_queries=100, min_ssim=0.95,
                        rng=np.random.default_rng(index), method="whitebox", encode="jpeg:quality=90")  # fmt: skip
        if encoded.success:
            assert hasher.hash(jpeg90(encoded.image)).distance(encoded.original_hash) >= 32
        else:
            # never reported successful when the scanner's view says otherwise
            assert hasher.hash(jpeg90(encoded.image)).distance(encoded.original_hash) < 32 or encoded.quality < 50
    assert raw_only_failed >= 1


def test_a_margin_keeps_the_threshold_crossed_with_distance_to_spare() -> None:
    hasher = get_hasher("phash")
    for index, image in enumerate(usable_images(hasher, 3)):
        result = evade(image, hasher, min_distance=11, margin=4, max_queries=100, min_ssim=0.95,
                       rng=np.random.default_rng(index), method="whitebox")  # fmt: skip
        assert result.success and result.distance >= 15 and result.margin == 4
        assert result.queries_to_reach(15) == result.queries


def stripes(index: int, size: int = 64) -> np.ndarray:
    """Vertical sine stripes: many DCT coefficients equal the median exactly, so float noise decides their bits."""
    period = int(np.random.default_rng(index).integers(4, 16))
    row = (128 + 80 * np.sin(2 * np.pi * np.arange(size) / period)).astype(np.uint8)
    return np.repeat(np.tile(row, (size, 1))[:, :, None], 3, axis=2)


@pytest.mark.parametrize(("name", "min_distance"), [("phash", 11), ("pdq", 32)])
def test_whitebox_falls_back_to_nes_when_median_ties_break_the_model(name, min_distance, monkeypatch) -> None:
    hasher = get_hasher(name)
    model = dct_model(hasher)
    for index in range(3):
        image = stripes(index)
        assert not np.array_equal(model.bits(image), hasher.hash(image).to_bits())  # ties: the model is not exact
        result = evade(image, hasher, min_distance=min_distance, max_queries=100, min_ssim=0.95,
                       rng=np.random.default_rng(index), method="whitebox")  # fmt: skip
        assert result.fell_back and result.success and result.method == "whitebox"
    # without the fallback, the white-box attack pushes the wrong features and stalls
    monkeypatch.setattr(evasion, "model_agrees", lambda model, search: True)
    for index in range(3):
        result = evade(stripes(index), hasher, min_distance=min_distance, max_queries=100, min_ssim=0.95,
                       rng=np.random.default_rng(index), method="whitebox")  # fmt: skip
        assert not result.fell_back and not result.success


def test_pdq_success_needs_quality_50_and_reports_it() -> None:
    hasher = get_hasher("pdq")
    flat = corpus_image(0)  # quality 31 at this size: PDQ's documentation says to discard such hashes
    assert hasher.hash_with_quality(flat)[1] < PDQ_MIN_QUALITY
    result = evade(flat, hasher, min_distance=32, max_queries=60, min_ssim=0.95, rng=np.random.default_rng(0))
    assert not result.success and result.quality is not None
    usable = evade(usable_images(hasher, 1)[0], hasher, min_distance=32, max_queries=60, min_ssim=0.95,
                   rng=np.random.default_rng(0), method="whitebox")  # fmt: skip
    assert usable.success and usable.quality >= PDQ_MIN_QUALITY
    assert evade(corpus_image(1), get_hasher("phash"), min_distance=5, rng=np.random.default_rng(0)).quality is None


def test_evasion_aims_away_from_a_given_database_hash() -> None:
    hasher = get_hasher("dhash")
    image = corpus_image(2)
    database_hash = hasher.hash(corpus_image(3))
    result = evade(image, hasher, min_distance=40, max_queries=1, original_hash=database_hash,
                   rng=np.random.default_rng(0))  # fmt: skip
    assert result.original_hash == database_hash and result.queries == 1
    assert result.distance == hasher.hash(image).distance(database_hash)
