"""Hashers equal their reference libraries bit for bit, in both packing directions; the block-mean hash equals
a block-by-block oracle. Property tests: determinism, bit length, robustness to a mild resize."""

from __future__ import annotations

import imagehash
import numpy as np
import pdqhash
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageDraw, ImageOps

from e2escan.errors import ConfigError, HashError
from e2escan.hashing import (
    HASHERS,
    BlockMeanHasher,
    ColorHasher,
    HashArray,
    PdqHasher,
    PerceptualHash,
    get_hasher,
    hash_many,
    parse_hasher_specs,
)


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(7)
    out = []
    y, x = np.mgrid[0:120, 0:160]
    out.append(Image.fromarray(np.dstack([x * 255 // 159, y * 255 // 119, (x + y) % 256]).astype(np.uint8)))
    out.append(Image.fromarray(rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)))
    canvas = Image.new("RGB", (200, 150), (30, 60, 90))
    draw = ImageDraw.Draw(canvas)
    draw.ellipse((20, 30, 120, 140), fill=(250, 200, 10))
    draw.rectangle((110, 10, 190, 70), fill=(10, 220, 120))
    out.append(canvas)
    out.append(Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8), mode="L"))
    out.append(canvas.convert("RGBA"))
    out.append(canvas.convert("P"))
    out.append(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)))
    return out


IMAGES = _images()

IMAGEHASH_CASES = [
    ("ahash", {"hash_size": 8}, lambda im: imagehash.average_hash(im, hash_size=8)),
    ("ahash", {"hash_size": 16}, lambda im: imagehash.average_hash(im, hash_size=16)),
    ("dhash", {}, lambda im: imagehash.dhash(im)),
    ("dhash", {"hash_size": 12}, lambda im: imagehash.dhash(im, hash_size=12)),
    ("phash", {}, lambda im: imagehash.phash(im)),
    ("phash", {"hash_size": 16, "highfreq_factor": 2}, lambda im: imagehash.phash(im, 16, 2)),
    ("whash", {}, lambda im: imagehash.whash(im)),
    ("whash", {"hash_size": 16, "remove_max_haar_ll": False}, lambda im: imagehash.whash(im, 16, remove_max_haar_ll=False)),
]


@pytest.mark.parametrize(("name", "params", "reference"), IMAGEHASH_CASES)
def test_imagehash_hashers_equal_library(name, params, reference):
    hasher = get_hasher(name, **params)
    for image in IMAGES:
        ours = hasher.hash(image)
        ref = reference(image)
        assert ours.bits == ref.hash.size == hasher.bits
        # ours -> imagehash: unpacked bits are ImageHash.hash flattened row-major.
        np.testing.assert_array_equal(ours.to_bits().astype(bool), ref.hash.flatten())
        np.testing.assert_array_equal(ours.to_bits().reshape(ref.hash.shape).astype(bool), ref.hash)
        # imagehash -> ours: imagehash's hex string parses to the same hash.
        assert ours.hex == str(ref)
        assert PerceptualHash.from_hex(str(ref)) == ours
        assert imagehash.hex_to_hash(ours.hex) == ref
        # Distances agree with imagehash's own subtraction.
        other = hasher.hash(IMAGES[1])
        assert ours.distance(other) == ref - reference(IMAGES[1])


def _threatexchange_hex(vector: np.ndarray) -> str:
    """PDQ's Hash256 hex format, rebuilt from pdqhash's vector (element j is bit 255 - j)."""
    bit = {255 - j: int(v) for j, v in enumerate(vector)}
    words = [sum(bit[16 * i + b] << b for b in range(16)) for i in range(16)]
    return "".join(f"{words[i]:04x}" for i in range(15, -1, -1))


def test_pdq_equals_library_and_threatexchange_format():
    hasher = PdqHasher()
    for image in IMAGES:
        ours, quality = hasher.hash_with_quality(image)
        vector, ref_quality = pdqhash.compute(np.asarray(image.convert("RGB")))
        assert quality == ref_quality and 0 <= quality <= 100
        assert ours.bits == 256
        np.testing.assert_array_equal(ours.to_bits(), vector)  # ours -> pdqhash
        assert PerceptualHash.from_bits(vector) == ours  # pdqhash -> ours
        assert ours.hex == _threatexchange_hex(vector)
        assert hasher.hash(image) == ours


def test_hashers_accept_arrays_and_wrapped_images():
    image = IMAGES[0]

    class Wrapped:
        def __init__(self, im):
            self.image = im

    for name in HASHERS:
        hasher = get_hasher(name)
        expected = hasher.hash(image)
        assert hasher.hash(np.asarray(image)) == expected
        assert hasher.hash(Wrapped(image)) == expected
    with pytest.raises(HashError, match="float64"):
        get_hasher("ahash").hash(np.zeros((4, 4)))
    with pytest.raises(HashError, match="str"):
        get_hasher("ahash").hash("not an image")


def test_registry_and_parameter_errors():
    assert set(HASHERS) >= {"ahash", "dhash", "phash", "whash", "pdq", "colorhash", "blockmean"}
    with pytest.raises(ConfigError, match="unknown hasher 'md5'.*ahash"):
        get_hasher("md5")
    with pytest.raises(ConfigError, match="no parameter 'size'.*hash_size"):
        get_hasher("phash", size=16)
    with pytest.raises(ConfigError, match="multiple of 4"):
        get_hasher("ahash", hash_size=6)
    with pytest.raises(ConfigError, match="power of two"):
        get_hasher("whash", hash_size=12)
    with pytest.raises(ConfigError, match="no parameter 'mode'"):
        get_hasher("whash", mode="db4")
    with pytest.raises(ConfigError, match="accepted: \\(none\\)"):
        get_hasher("pdq", hash_size=8)


def test_parse_hasher_specs():
    hashers = parse_hasher_specs("phash:hash_size=16,highfreq_factor=2,pdq, ahash")
    assert [h.spec for h in hashers] == ["phash:hash_size=16,highfreq_factor=2", "pdq", "ahash"]
    assert hashers[0].bits == 256
    for h in hashers:
        assert parse_hasher_specs(h.spec) == [h]
        assert get_hasher(h.name, **h.params()) == h
    for bad, match in [
        ("", "empty item"),
        ("ahash,,pdq", "empty item"),
        ("hash_size=8", "before any hasher"),
        ("phash:16", "not key=value"),
        ("pdq,pdq", "more than once"),
    ]:
        with pytest.raises(ConfigError, match=match):
            parse_hasher_specs(bad)


@pytest.mark.parametrize("workers", [1, 2])
def test_hash_many_matches_single_hashes_in_order(workers, tmp_path):
    hasher = get_hasher("dhash")
    images = IMAGES * 3
    expected = HashArray.from_hashes([hasher.hash(im) for im in images])
    got = hash_many(hasher, iter(images), workers=workers, chunksize=2)
    assert got == expected
    paths = []
    for i, im in enumerate(IMAGES[:3]):
        paths.append(tmp_path / f"{i}.png")
        im.save(paths[-1])
    from_paths = hash_many(hasher, (str(p) for p in paths), workers=workers, chunksize=1)
    assert from_paths == HashArray.from_hashes([hasher.hash(Image.open(p)) for p in paths])


def test_hash_many_empty_and_bad_arguments():
    empty = hash_many(get_hasher("pdq"), [])
    assert len(empty) == 0 and empty.bits == 256
    with pytest.raises(ConfigError, match="workers"):
        hash_many(get_hasher("pdq"), [], workers=0)
    with pytest.raises(ConfigError, match="chunksize"):
        hash_many(get_hasher("pdq"), [], chunksize=0)


def test_pool_workers_are_configured_for_cpu_bound_hashing(monkeypatch):
    """Workers run with one BLAS thread each and, on glibc, fixed malloc thresholds (see _worker_setup)."""
    import multiprocessing
    import os
    import platform

    from e2escan.hashing._parallel import imap_ordered, worker_settings

    settings = list(imap_ordered(worker_settings, [(), ()], 2))
    assert len(settings) == 2
    for applied in settings:
        assert applied is not None, "the pool did not configure its worker"
        if "forkserver" in multiprocessing.get_all_start_methods():
            assert applied["before_numpy"], "the fork server must apply the settings before numpy loads"
        for name, value in applied["threads"].items():
            assert value == os.environ.get(name, "1"), name  # a user's own setting is kept
        on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
        assert applied["glibc_malloc_tuned"] is on_glibc


def test_worker_setup_imports_nothing_heavy():
    """It is preloaded first by the fork server, so it must run before numpy (and BLAS) is loaded."""
    import subprocess
    import sys

    code = "import sys, e2escan._worker_setup as w; print(sorted({'numpy', 'PIL', 'scipy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- colorhash and the block-mean hash -------------------------------------------------------------


@pytest.mark.parametrize("binbits", [4, 8])
def test_colorhash_equals_library(binbits):
    hasher = get_hasher("colorhash", binbits=binbits)
    assert hasher.bits == 14 * binbits
    for image in IMAGES:
        ours = hasher.hash(image)
        ref = imagehash.colorhash(image.convert("RGB"), binbits=binbits)
        assert ours.bits == ref.hash.size
        np.testing.assert_array_equal(ours.to_bits().astype(bool), ref.hash.flatten())
        assert ours.hex == str(ref)
        assert ours.distance(hasher.hash(IMAGES[2])) == ref - imagehash.colorhash(IMAGES[2], binbits=binbits)


def _blockmean_oracle(grey: np.ndarray, hash_size: int) -> np.ndarray:
    """Yang et al.'s first method on an image already at the normalised size: loops over blocks, median threshold."""
    b = grey.shape[0] // hash_size
    means = [grey[r * b : (r + 1) * b, c * b : (c + 1) * b].mean() for r in range(hash_size) for c in range(hash_size)]
    return (np.array(means) > np.median(means)).astype(np.uint8)


def test_blockmean_equals_block_loop_oracle_and_known_patterns():
    rng = np.random.default_rng(3)
    for hash_size in (8, 16):
        side = 16 * hash_size  # already the normalised size, so the box resize is the identity
        grey = rng.integers(0, 256, (side, side), dtype=np.uint8)
        got = get_hasher("blockmean", hash_size=hash_size).hash(Image.fromarray(grey, mode="L"))
        np.testing.assert_array_equal(got.to_bits(), _blockmean_oracle(grey.astype(np.float64), hash_size))
    # Dark left half, bright right half: each row of 16 blocks reads 8 zeros then 8 ones (0x00ff), at any size.
    halves = np.zeros((90, 200), dtype=np.uint8)
    halves[:, 100:] = 200
    assert BlockMeanHasher().hash(halves).hex == "00ff" * 16
    assert BlockMeanHasher().hash(np.full((30, 40), 77, dtype=np.uint8)).hex == "00" * 32  # all at the median


def test_new_hashers_parameter_errors():
    with pytest.raises(ConfigError, match="binbits must be a multiple of 4"):
        get_hasher("colorhash", binbits=3)
    with pytest.raises(ConfigError, match="multiple of 4"):
        get_hasher("blockmean", hash_size=6)
    assert ColorHasher().spec == "colorhash" and get_hasher("colorhash", binbits=8).spec == "colorhash:binbits=8"
    assert parse_hasher_specs("blockmean:hash_size=8")[0].bits == 64


# Smooth test images: a small grid of distinct grey levels (or colours), upscaled bilinearly. Distinct levels
# keep flat regions from tying at the median, where any change to the pixels would flip many block bits.
GREY_GRIDS = hnp.arrays(np.uint8, st.tuples(st.integers(2, 5), st.integers(2, 5)),
                        elements=st.integers(0, 31).map(lambda v: 8 * v), unique=True)  # fmt: skip
COLOUR_GRIDS = hnp.arrays(np.uint8, st.tuples(st.integers(2, 5), st.integers(2, 5), st.just(3)))
SIZES = st.tuples(st.integers(64, 256), st.integers(64, 256))
MILD_SCALES = st.floats(0.8, 1.25)


def _smooth(grid: np.ndarray, size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(grid).resize(size, Image.Resampling.BILINEAR)


def _resized(image: Image.Image, scale: float) -> Image.Image:
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grid=GREY_GRIDS, size=SIZES, scale=MILD_SCALES)
def test_blockmean_properties(grid, size, scale):
    hasher = BlockMeanHasher()
    image = _smooth(grid, size)
    first = hasher.hash(image)
    assert first == hasher.hash(image) == hasher.hash(np.asarray(image))  # deterministic, PIL or array
    assert first.bits == 256 and len(first.hex) == 64
    # A mild resize moves few block means across the median: at most 10% of the bits (unrelated pairs: ~50%).
    assert first.distance(hasher.hash(_resized(image, scale))) <= 0.10 * 256


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grid=COLOUR_GRIDS, size=SIZES, scale=MILD_SCALES)
def test_colorhash_properties(grid, size, scale):
    hasher = ColorHasher()
    image = _smooth(grid, size)
    first = hasher.hash(image)
    assert first == hasher.hash(image) == hasher.hash(np.asarray(image))
    assert first.bits == 56 and len(first.hex) == 14
    # Bin fractions barely move under a mild resize: at most 8 of 56 bits (unrelated pairs: ~12 on average).
    assert first.distance(hasher.hash(_resized(image, scale))) <= 8


def test_robustness_bounds_can_fail():
    """The bounds above separate: an inverted image lies beyond both (so the property tests can fail)."""
    image = _smooth(np.array([[0, 80, 160], [240, 40, 120]], dtype=np.uint8), (120, 90)).convert("RGB")
    inverted = ImageOps.invert(image)
    assert BlockMeanHasher().hash(image).distance(BlockMeanHasher().hash(inverted)) > 0.10 * 256
    colourful = _smooth(np.array([[[250, 10, 10], [10, 250, 10]], [[10, 10, 250], [250, 250, 10]]], dtype=np.uint8),
                        (120, 90))  # fmt: skip
    assert ColorHasher().hash(colourful).distance(ColorHasher().hash(image)) > 8
