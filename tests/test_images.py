"""Image loading, corpora and transformations."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from e2escan.errors import ConfigError, ImageError
from e2escan.images import (
    DEFAULT_TRANSFORMS,
    TRANSFORMS,
    DirectoryCorpus,
    SyntheticCorpus,
    TransformChain,
    TransformedImage,
    TransformStep,
    load_image,
    open_corpus,
    parse_chain,
    parse_step,
    parse_transform_set,
    synthetic_corpus,
)


def _jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (a decompression-bomb shape) with no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def sample() -> Image.Image:
    return synthetic_corpus(1, seed=3).load(0)


# -- loading -------------------------------------------------------------------------------


def test_load_image_roundtrip_formats(tmp_path, sample):
    for fmt, ext in [("PNG", "png"), ("WEBP", "webp")]:
        path = tmp_path / f"a.{ext}"
        sample.save(path, format=fmt, lossless=True)
        loaded = load_image(path)
        assert loaded.mode == "RGB" and loaded.size == sample.size
        np.testing.assert_array_equal(np.asarray(loaded), np.asarray(sample))
    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg_bytes(sample, quality=90))
    assert load_image(path).size == sample.size


def test_load_image_applies_exif_orientation(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 20))  # blue on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "oriented.jpg"
    image.save(path, format="JPEG", exif=exif.tobytes(), quality=95)
    loaded = load_image(path)
    assert loaded.size == (20, 40)
    top = np.asarray(loaded)[2, 10]
    assert top[2] > 200 and top[0] < 60  # the blue band is now at the top


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty.jpg", b"", "empty.jpg: file is empty"),
        ("notes.txt", b"hello, not an image\n" * 10, "notes.txt: not an image"),
        ("bomb.png", _png_header_only(40_000, 40_000), "bomb.png: .*(exceeds|decompression)"),
    ],
)
def test_load_image_bad_files_name_the_file(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=match):
        load_image(path)


def test_load_image_truncated_jpeg(tmp_path, sample):
    data = _jpeg_bytes(sample, quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg: corrupt or truncated"):
        load_image(path)


def test_load_image_limits_and_missing(tmp_path, sample):
    path = tmp_path / "small.png"
    sample.save(path)
    with pytest.raises(ImageError, match="small.png: 256x256 = 65536 pixels exceeds the limit of 1000"):
        load_image(path, max_pixels=1000)
    with pytest.raises(ImageError, match="format PNG is not accepted"):
        load_image(path, formats=("JPEG",))
    with pytest.raises(ImageError, match="missing.png: cannot read"):
        load_image(tmp_path / "missing.png")


# -- corpora -------------------------------------------------------------------------------


def test_directory_corpus_skips_and_reports(tmp_path, sample):
    (tmp_path / "sub").mkdir()
    sample.save(tmp_path / "b.png")
    sample.save(tmp_path / "sub" / "c.webp")
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "z.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"")
    corpus = open_corpus(tmp_path)
    assert isinstance(corpus, DirectoryCorpus)
    assert corpus.files == ("a.jpg", "b.png", "sub/c.webp", "z.txt")
    names = [item.name for item in corpus]
    assert names == ["b.png", "sub/c.webp"]
    assert [s.name for s in corpus.skipped] == ["a.jpg", "z.txt"]
    assert "empty" in corpus.skipped[0].reason and "not an image" in corpus.skipped[1].reason


def test_synthetic_corpus_is_seeded_and_prefix_stable():
    a = synthetic_corpus(3, seed=5, size=(64, 48))
    b = synthetic_corpus(5, seed=5, size=(64, 48))
    c = synthetic_corpus(3, seed=6, size=(64, 48))
    images_a = [np.asarray(item.image) for item in a]
    assert images_a[0].shape == (48, 64, 3)
    for i in range(3):
        np.testing.assert_array_equal(images_a[i], np.asarray(b.load(i)))
        assert not np.array_equal(images_a[i], np.asarray(c.load(i)))
    assert not np.array_equal(images_a[0], images_a[1])
    assert [item.name for item in a] == ["synthetic-5-000000", "synthetic-5-000001", "synthetic-5-000002"]


def test_synthetic_images_are_varied():
    """Unrelated synthetic images should not be near-copies of each other."""
    images = [np.asarray(item.image, dtype=np.float32) for item in synthetic_corpus(8, seed=0, size=(64, 64))]
    for i in range(len(images)):
        assert images[i].std() > 10
        for j in range(i):
            assert np.abs(images[i] - images[j]).mean() > 10


def test_open_corpus_specs(tmp_path):
    corpus = open_corpus("synthetic:12", seed=4, size=(32, 32))
    assert isinstance(corpus, SyntheticCorpus) and len(corpus) == 12 and corpus.seed == 4
    for bad in ["synthetic:", "synthetic:0", "synthetic:x", "synthetic:-3"]:
        with pytest.raises(ConfigError, match="synthetic:N"):
            open_corpus(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        open_corpus(tmp_path / "nope")
    with pytest.raises(ConfigError, match="size"):
        synthetic_corpus(2, size=(2, 2))


# -- transforms ----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", DEFAULT_TRANSFORMS + ("crop:fraction=0.5,position=random|noise:sigma=3", "text:position=random"))
def test_transforms_deterministic_for_a_seed(sample, spec):
    chain = parse_chain(spec)
    small = sample.resize((96, 96))
    first = chain.apply(small, np.random.default_rng(11))
    again = chain.apply(small, np.random.default_rng(11))
    assert first.image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(first.image), np.asarray(again.image))
    assert first.chain == chain.steps and first.spec == chain.spec
    assert parse_chain(first.spec) == chain


def test_random_transforms_depend_on_the_seed(sample):
    chain = parse_chain("noise:sigma=5")
    a = chain.apply(sample, np.random.default_rng(1)).image
    b = chain.apply(sample, np.random.default_rng(2)).image
    assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_transform_geometry(sample):
    rng = np.random.default_rng(0)
    w, h = sample.size
    assert parse_chain("resize:scale=0.5").apply(sample, rng).image.size == (w // 2, h // 2)
    assert parse_chain("crop:fraction=0.5,position=top-left").apply(sample, rng).image.size == (w // 2, h // 2)
    top_left = parse_chain("crop:fraction=0.5,position=top-left").apply(sample, rng).image
    np.testing.assert_array_equal(np.asarray(top_left), np.asarray(sample)[: h // 2, : w // 2])
    assert parse_chain("pad:fraction=0.25").apply(sample, rng).image.size == (w + w // 2, h + h // 2)
    flipped = parse_chain("flip").apply(sample, rng).image
    np.testing.assert_array_equal(np.asarray(flipped), np.asarray(sample)[:, ::-1])
    turned = parse_chain("rotate:degrees=90|rotate:degrees=-90").apply(sample, rng).image
    np.testing.assert_array_equal(np.asarray(turned), np.asarray(sample))
    grey = np.asarray(parse_chain("grey").apply(sample, rng).image)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    shot = parse_chain("screenshot:scale=0.5,aspect=2.0").apply(sample, rng).image
    assert shot.size == (w, 2 * w)
    identity = parse_chain("identity").apply(sample, rng)
    assert identity.chain == () and identity.spec == "identity"
    np.testing.assert_array_equal(np.asarray(identity.image), np.asarray(sample))


def test_chains_compose_and_record_steps(sample):
    rng = np.random.default_rng(0)
    first = parse_chain("jpeg:quality=40").apply(TransformedImage(sample, source="x"), rng)
    second = parse_chain("crop:fraction=0.8").apply(first, rng)
    assert second.source == "x"
    assert [s.spec for s in second.chain] == ["jpeg:quality=40", "crop:fraction=0.8"]
    assert second.spec == "jpeg:quality=40|crop:fraction=0.8"


def test_steps_fill_defaults_and_validate():
    step = parse_step("crop:fraction=0.5")
    assert dict(step.params) == {"fraction": 0.5, "position": "center"}
    assert step == TransformStep.make("crop", fraction=0.5)
    assert parse_step("rotate:degrees=90").params[0] == ("degrees", 90.0)
    assert parse_step("text:text=1234").params[0] == ("text", "1234")
    assert parse_step("jpeg:quality=75").spec == "jpeg"
    for bad, match in [
        ("blurr", "unknown transform 'blurr'; known transforms: .*blur"),
        ("jpeg:qualty=5", "no parameter 'qualty'; accepted: quality, subsampling"),
        ("jpeg:quality=0", "'quality' must be an int in 1..100, got 0"),
        ("jpeg:quality=high", "'quality' must be an int in 1..100, got 'high'"),
        ("crop:fraction=1.5", "fraction"),
        ("crop:position=middle", "one of center"),
        ("pad:color=notacolour", "colour"),
        ("rotate:expand=maybe", "true or false"),
        ("jpeg:quality", "not key=value"),
        ("jpeg:quality=5,quality=6", "given twice"),
        (":quality=5", "no transform name"),
    ]:
        with pytest.raises(ConfigError, match=match):
            parse_step(bad)


def test_transform_sets():
    default = parse_transform_set("default")
    assert [c.spec for c in default] == [parse_chain(s).spec for s in DEFAULT_TRANSFORMS]
    mixed = parse_transform_set("quick; grey|blur")
    assert mixed[-1].spec == "grey|blur"
    with pytest.raises(ConfigError, match="more than once"):
        parse_transform_set("flip;flip:axis=horizontal")
    with pytest.raises(ConfigError, match="empty item"):
        parse_transform_set("flip;;grey")
    assert set(TRANSFORMS) >= {
        "jpeg", "resize", "crop", "rotate", "flip", "pad", "brightness", "contrast", "gamma", "noise",
        "blur", "sharpen", "grey", "text", "watermark", "screenshot",
    }  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from(sorted(TRANSFORMS)),
    st.integers(0, 2**31 - 1),
    st.integers(9, 40),
    st.integers(9, 40),
)
def test_every_transform_keeps_a_valid_rgb_image(name, seed, w, h):
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    out = TransformChain((TransformStep.make(name),)).apply(image, rng).image
    assert out.mode == "RGB" and out.width >= 1 and out.height >= 1


def test_skimage_photo_corpus_without_the_extra_names_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "skimage", None)  # import skimage -> ImportError
    with pytest.raises(ConfigError, match=r"needs scikit-image.*\.\[photos\]"):
        open_corpus("skimage")


def test_skimage_photo_corpus(tmp_path):
    pytest.importorskip("skimage")
    from e2escan.images import SKIMAGE_PHOTOS

    corpus = open_corpus("skimage")
    assert corpus.spec == "skimage" and len(corpus) == len(SKIMAGE_PHOTOS) == 19
    names = [item.name for item in corpus]
    assert names == list(SKIMAGE_PHOTOS) and not corpus.skipped


def test_directory_corpus_with_an_explicit_file_list(tmp_path, sample):
    from e2escan.images.corpus import DirectoryCorpus

    sample.save(tmp_path / "a.png")
    sample.save(tmp_path / "b.png")
    corpus = DirectoryCorpus(tmp_path, include=("b.png", "a.png"), label="two")
    assert corpus.spec == "two" and corpus.files == ("b.png", "a.png")
    with pytest.raises(ConfigError, match="missing file"):
        DirectoryCorpus(tmp_path, include=("c.png",))
