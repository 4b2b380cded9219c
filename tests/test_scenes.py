"""Synthetic scenes and their views: determinism, the homography, framing, and that views stay inside the scene."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from e2escan.errors import ConfigError
from e2escan.hashing import HashArray, get_hasher
from e2escan.hashing._popcount import popcount_rows
from e2escan.images import image_rng
from e2escan.images.scenes import (
    ViewGeometry,
    ViewModel,
    render_view,
    synthetic_scene,
    view_homography,
)


@pytest.fixture(scope="module")
def scene() -> Image.Image:
    return synthetic_scene(image_rng(5, 0), size=256, landmarks=4)


def test_a_scene_depends_only_on_its_seed_and_index(scene):
    again = synthetic_scene(image_rng(5, 0), size=256, landmarks=4)
    other = synthetic_scene(image_rng(5, 1), size=256, landmarks=4)
    assert scene.size == (256, 256) and scene.mode == "RGB"
    assert scene.tobytes() == again.tobytes()
    assert scene.tobytes() != other.tobytes()


def test_the_homography_maps_the_capture_corners_onto_the_source_quad():
    source = np.array([[10.0, 20.0], [200.0, 5.0], [230.0, 240.0], [3.0, 190.0]])
    a, b, c, d, e, f, g, h = view_homography(source, 64)
    for (x, y), (u, v) in zip([(0, 0), (64, 0), (64, 64), (0, 64)], source):
        w = g * x + h * y + 1
        assert (a * x + b * y + c) / w == pytest.approx(u, abs=1e-9)
        assert (d * x + e * y + f) / w == pytest.approx(v, abs=1e-9)


def test_a_degenerate_quad_is_refused():
    with pytest.raises(ConfigError, match="degenerate"):
        view_homography(np.array([[0, 0], [1, 1], [2, 2], [3, 3]]), 32)
    with pytest.raises(ConfigError, match="4 corners"):
        view_homography(np.zeros((3, 2)), 32)


def test_an_axis_aligned_view_is_the_crop_resized(scene):
    """No rotation, no perspective: the view is the framed square, resized (up to resampling differences)."""
    geometry = ViewGeometry((128.0, 128.0), 128.0, 0.0, ((0.0, 0.0),) * 4)
    np.testing.assert_allclose(geometry.corners(), [[64, 64], [192, 64], [192, 192], [64, 192]])
    view = np.asarray(render_view(scene, geometry, 64), dtype=float)
    crop = np.asarray(scene.crop((64, 64, 192, 192)).resize((64, 64), Image.Resampling.LANCZOS), dtype=float)
    elsewhere = np.asarray(scene.crop((0, 0, 128, 128)).resize((64, 64), Image.Resampling.LANCZOS), dtype=float)
    assert np.abs(view - crop).mean() < 6
    assert np.abs(view - crop).mean() < 0.5 * np.abs(view - elsewhere).mean()


def test_a_positive_angle_turns_the_frame_counter_clockwise_on_screen():
    top_left = ViewGeometry((100.0, 100.0), 20.0, 90.0, ((0.0, 0.0),) * 4).corners()[0]
    # Turned by 90 degrees counter-clockwise (y down), the top-left corner moves to the bottom-left.
    np.testing.assert_allclose(top_left, [90.0, 110.0], atol=1e-9)


@pytest.mark.parametrize("model", [ViewModel(), ViewModel(scale=(0.85, 0.9), offset=0.5, degrees=(-30, 30), perspective=0.0)])
def test_drawn_views_stay_inside_the_scene(model):
    rng = np.random.default_rng(3)
    for _ in range(300):
        try:
            corners = model.draw(rng, 512).corners()
        except ConfigError:  # a view too large to fit at this angle is refused, never cut off
            assert model.scale[1] >= 0.85
            continue
        assert corners.min() >= -1e-9 and corners.max() <= 512 + 1e-9


def test_bad_view_models_are_refused_with_the_field_named():
    with pytest.raises(ConfigError, match="scale"):
        ViewModel(scale=(0.9, 0.5))
    with pytest.raises(ConfigError, match="perspective"):
        ViewModel(perspective=0.5)
    with pytest.raises(ConfigError, match="size"):
        synthetic_scene(np.random.default_rng(0), size=10)
    with pytest.raises(ConfigError, match="capture_size"):
        render_view(Image.new("RGB", (64, 64)), ViewGeometry((32.0, 32.0), 16.0, 0.0, ((0.0, 0.0),) * 4), 8)


def test_views_of_one_scene_are_closer_than_views_of_different_scenes():
    """The reason for scenes: under a same-spot view model, pHash puts views of one scene nearer each other."""
    model = ViewModel(scale=(0.6, 0.7), offset=0.03, degrees=(-2, 2), perspective=0.02)
    hasher = get_hasher("phash")
    rng = np.random.default_rng(0)
    hashes, label = [], []
    for s in range(3):
        sc = synthetic_scene(image_rng(9, s), size=384, landmarks=5)
        for _ in range(6):
            hashes.append(hasher.hash(render_view(sc, model.draw(rng, 384), 64)))
            label.append(s)
    packed = HashArray.from_hashes(hashes).data
    d = np.array([popcount_rows(np.bitwise_xor(packed, row)) for row in packed])
    label = np.array(label)
    same = (label[:, None] == label[None, :]) & ~np.eye(len(label), dtype=bool)
    assert np.median(d[same]) < np.median(d[label[:, None] != label[None, :]]) - 4
