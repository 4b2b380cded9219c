"""False-flag collisions and the account-level consequence of sending crafted images."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from e2escan.attacks import collide, ssim, targeted_flag_probability
from e2escan.attacks.evasion import PDQ_MIN_QUALITY
from e2escan.errors import ConfigError
from e2escan.hashing import PerceptualHash, get_hasher
from e2escan.images import image_rng, synthetic_image
from e2escan.metrics import false_flag_probability

SIZE = (64, 64)


def innocent(index: int):
    return synthetic_image(image_rng(11, index), SIZE)


def jpeg90(image):
    """A real JPEG-90 round trip through Pillow, as a messenger's attachment encoder does it."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=90)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def usable_innocents(hasher, count: int) -> list:
    """Innocent images whose PDQ hash is kept (quality >= 50) raw and after JPEG-90; any image for other hashers."""
    found, index = [], 0
    while len(found) < count:
        image = innocent(index)
        index += 1
        if hasher.spec != "pdq" or min(hasher.hash_with_quality(image)[1],
                                        hasher.hash_with_quality(jpeg90(image))[1]) >= PDQ_MIN_QUALITY:  # fmt: skip
            found.append(image)
    return found


def database_image(index: int):
    return synthetic_image(image_rng(12, index), SIZE)


def _check_collision(result, image, target, hasher, radius, min_ssim, max_queries) -> None:
    assert result.success and result.distance <= radius
    assert result.initial_distance > radius  # the test pairs really start far apart
    assert result.queries <= max_queries
    assert result.ssim >= min_ssim
    assert hasher.hash(result.image) == result.final_hash
    assert result.final_hash.distance(target) == result.distance
    assert ssim(image, result.image) == pytest.approx(result.ssim, abs=1e-12)
    assert result.queries_to_reach(radius) == result.queries


def test_blackbox_collision_on_ahash_lands_within_the_radius() -> None:
    hasher = get_hasher("ahash")
    for index in range(2):
        image, target = innocent(index), hasher.hash(database_image(index))
        result = collide(image, target, hasher, radius=8, max_queries=1500, min_ssim=0.7,
                         rng=np.random.default_rng(index))  # fmt: skip
        _check_collision(result, image, target, hasher, 8, 0.7, 1500)


@pytest.mark.parametrize(("name", "radius"), [("phash", 8), ("pdq", 31)])
def test_whitebox_collision_on_dct_hashes(name, radius) -> None:
    hasher = get_hasher(name)
    for index, image in enumerate(usable_innocents(hasher, 2)):
        target = hasher.hash(database_image(index))
        result = collide(image, target, hasher, radius=radius, max_queries=60, min_ssim=0.9,
                         rng=np.random.default_rng(0), method="whitebox")  # fmt: skip
        _check_collision(result, image, target, hasher, radius, 0.9, 60)


def test_collision_is_deterministic_for_a_seed() -> None:
    hasher = get_hasher("dhash")
    image, target = innocent(3), hasher.hash(database_image(3))
    runs = [collide(image, target, hasher, radius=10, max_queries=400, min_ssim=0.75,
                    rng=np.random.default_rng(21)) for _ in range(2)]  # fmt: skip
    assert runs[0].image.tobytes() == runs[1].image.tobytes()
    assert runs[0].progress == runs[1].progress


def test_collision_rejects_bad_targets() -> None:
    hasher = get_hasher("ahash")
    with pytest.raises(ConfigError, match="bits"):
        collide(innocent(0), PerceptualHash(256, bytes(32)), hasher, radius=8, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="radius"):
        collide(innocent(0), hasher.hash(database_image(0)), hasher, radius=64, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="target"):
        collide(innocent(0), "00" * 8, hasher, radius=8, rng=np.random.default_rng(0))


@pytest.mark.parametrize(("name", "radius"), [("phash", 8), ("pdq", 31)])
def test_whitebox_collision_aimed_through_jpeg90_survives_a_real_jpeg90_round_trip(name, radius) -> None:
    hasher = get_hasher(name)
    survived_raw_aim = 0
    for index, image in enumerate(usable_innocents(hasher, 6)):
        target = hasher.hash(database_image(index))
        aimed = collide(image, target, hasher, radius=radius, max_queries=100, min_ssim=0.9, margin=radius // 4,
                        rng=np.random.default_rng(index), method="whitebox", encode="jpeg:quality=90")  # fmt: skip
        assert aimed.success and aimed.distance <= radius - radius // 4 and aimed.ssim >= 0.9
        received = hasher.hash(jpeg90(aimed.image))
        assert received == aimed.final_hash and received.distance(target) <= radius
        raw = collide(image, target, hasher, radius=radius, max_queries=100, min_ssim=0.9,
                      rng=np.random.default_rng(index), method="whitebox")  # fmt: skip
        assert raw.success  # on raw pixels
        survived_raw_aim += hasher.hash(jpeg90(raw.image)).distance(target) <= radius
    assert survived_raw_aim < 6  # stopping exactly at the radius on raw pixels does not survive the encoding


@settings(max_examples=12, deadline=None)
@given(index=st.integers(0, 30), margin=st.integers(0, 6), quality=st.sampled_from([75, 90]))
def test_reported_collision_success_is_what_the_encoded_attachment_gives(index, margin, quality) -> None:
    hasher = get_hasher("phash")
    image, target = innocent(index), hasher.hash(database_image(index))
    result = collide(image, target, hasher, radius=8, margin=margin, max_queries=40, min_ssim=0.85,
                     rng=np.random.default_rng(index), method="whitebox", encode=f"jpeg:quality={quality}")  # fmt: skip
    buf = io.BytesIO()
    result.image.save(buf, format="JPEG", quality=quality)
    received = hasher.hash(Image.open(io.BytesIO(buf.getvalue())))
    assert received == result.final_hash
    assert result.success == (received.distance(target) <= 8)
    assert result.queries <= 40


def test_collision_rejects_bad_margin_and_encoding() -> None:
    hasher = get_hasher("ahash")
    target = hasher.hash(database_image(0))
    with pytest.raises(ConfigError, match="margin"):
        collide(innocent(0), target, hasher, radius=4, margin=5, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="encode"):
        collide(innocent(0), target, hasher, radius=4, encode="jpeg:qualty=90", rng=np.random.default_rng(0))


# --- account level ----------------------------------------------------------------------------------


def flag_oracle(sent: int, success: float, threshold: int, innocent_images: int, innocent_rate: float) -> float:
    """P[Bin(sent, success) + Bin(innocent_images, innocent_rate) >= threshold] by full enumeration."""
    total = 0.0
    for j in range(sent + 1):
        pj = math.comb(sent, j) * success**j * (1 - success) ** (sent - j)
        for m in range(innocent_images + 1):
            if j + m >= threshold:
                total += pj * math.comb(innocent_images, m) * innocent_rate**m * (1 - innocent_rate) ** (innocent_images - m)
    return total


@settings(max_examples=60, deadline=None)
@given(sent=st.integers(0, 25), success=st.floats(0.0, 1.0), threshold=st.integers(-2, 30),
       innocent_images=st.integers(0, 25), innocent_rate=st.floats(0.0, 1.0))  # fmt: skip
def test_targeted_flag_probability_matches_enumeration(sent, success, threshold, innocent_images, innocent_rate) -> None:
    got = targeted_flag_probability(sent, success, threshold, innocent_images=innocent_images,
                                    innocent_rate=innocent_rate)  # fmt: skip
    assert got == pytest.approx(flag_oracle(sent, success, threshold, innocent_images, innocent_rate),
                                rel=1e-9, abs=1e-12)  # fmt: skip


def test_targeted_flag_probability_special_cases() -> None:
    # No innocent images: the binomial tail of the crafted matches.
    assert targeted_flag_probability(40, 0.3, 10) == pytest.approx(false_flag_probability(40, 0.3, 10), rel=1e-12)
    assert targeted_flag_probability(30, 1.0, 30) == 1.0
    assert targeted_flag_probability(29, 1.0, 30) == 0.0
    assert targeted_flag_probability(0, 0.5, 0) == 1.0
    # Apple-like threshold of 30: 31 certain collisions flag the account, more attempts raise the odds.
    assert targeted_flag_probability(31, 1.0, 30) == 1.0
    values = [targeted_flag_probability(k, 0.5, 30, innocent_images=10_000, innocent_rate=1e-6) for k in (40, 60, 80)]
    assert values == sorted(values) and values[-1] > 0.99


def test_targeted_flag_probability_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="images_sent"):
        targeted_flag_probability(-1, 0.5, 3)
    with pytest.raises(ConfigError, match="per_image_success"):
        targeted_flag_probability(3, 1.5, 3)
    with pytest.raises(ConfigError, match="innocent_rate"):
        targeted_flag_probability(3, 0.5, 3, innocent_rate=-0.1)
    with pytest.raises(ConfigError, match="threshold"):
        targeted_flag_probability(3, 0.5, 2.5)
