"""Surveillance of a place: the victims' distinct views of a scene against the adversary's poisoned views.

The circulating-image experiment follows one image and its copies. The
surveillance the paper's title names is about a place: the victims' photos of
it are distinct photos, taken from other positions, not copies of the
adversary's image. Here each target is a synthetic scene
(:mod:`e2escan.images.scenes`); the adversary poisons the database with the
hashes of ``k`` views of its own, and the surveillance rate is the share of the
victims' distinct views of the scene whose nearest poisoned entry (found by
:class:`~e2escan.hashing.HammingIndex`) lies within radius ``r``. The innocent
cost of the same rule is the share of views of *other* scenes that match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ...errors import ConfigError
from ...hashing import HammingIndex, HashArray, Hasher, PerceptualHash, get_hasher
from ...images import image_rng
from ...images.scenes import ViewModel, render_view, synthetic_scene
from ...metrics.rates import clustered_proportion, proportion
from .edits import MESSENGER_JPEG, EditFamily

__all__ = ["VIEW_MODELS", "VIEW_RADII", "ViewpointExperiment", "run_viewpoint_surveillance"]

#: The view models compared (our assumption, from a narrow to a wide spread of viewpoints):
#: "same spot" frames nearly the same region, "nearby" varies framing moderately,
#: "around the place" frames 45-75% of the scene anywhere within 12% of its centre.
VIEW_MODELS: tuple[tuple[str, ViewModel], ...] = (
    ("same spot", ViewModel(scale=(0.60, 0.70), offset=0.03, degrees=(-2.0, 2.0), perspective=0.02)),
    ("nearby", ViewModel(scale=(0.55, 0.70), offset=0.06, degrees=(-4.0, 4.0), perspective=0.04)),
    ("around the place", ViewModel()),
)

#: Matching radii per hash: exact, PDQ's recommended 31, and wider rules; the 64-bit radii are the
#: 256-bit ones scaled by 64/256 (rounded), so both hashes tolerate the same share of differing bits.
VIEW_RADII: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("pdq", (0, 31, 45, 63, 80, 96)),
    ("phash", (0, 8, 11, 16, 20, 24)),
)


@dataclass(frozen=True)
class ViewpointExperiment:
    """Surveillance of synthetic scenes by their distinct views, against the matching radius.

    Per scene, the adversary takes ``adversary_views`` views and poisons the
    database with the hashes of the first ``k`` for every ``k`` of
    ``entries_per_target`` (so the entry sets are nested); victims take
    ``victim_views`` other views. Every view goes through ``encoding`` (the
    messenger's re-encoding) before it is hashed, the adversary's too: it
    knows the encoding path. The scene is the replicate unit: views of one
    scene share its content, so the intervals come from the variance between
    scenes.
    """

    scenes: int = 12
    scene_size: int = 1024
    capture_size: int = 256
    adversary_views: int = 20
    victim_views: int = 40
    entries_per_target: tuple[int, ...] = (1, 5, 20)
    view_models: tuple[tuple[str, ViewModel], ...] = VIEW_MODELS
    radii: tuple[tuple[str, tuple[int, ...]], ...] = VIEW_RADII
    encoding: tuple[tuple[str, Mapping[str, Any]], ...] = (MESSENGER_JPEG,)

    def __post_init__(self) -> None:
        if self.scenes < 2:
            raise ConfigError(f"ViewpointExperiment.scenes must be >= 2 (other scenes are the innocent views), got {self.scenes}")
        for name, value in (("adversary_views", self.adversary_views), ("victim_views", self.victim_views)):
            if value < 1:
                raise ConfigError(f"ViewpointExperiment.{name} must be >= 1, got {value}")
        if not self.entries_per_target or any(not 1 <= k <= self.adversary_views for k in self.entries_per_target):
            raise ConfigError(f"ViewpointExperiment.entries_per_target = {self.entries_per_target}: each must lie in "
                              f"[1, adversary_views = {self.adversary_views}]")
        if not self.view_models or not self.radii:
            raise ConfigError("ViewpointExperiment needs at least one view model and one hasher")
        for hasher, radii in self.radii:
            if not radii or any(r < 0 for r in radii):
                raise ConfigError(f"ViewpointExperiment.radii for {hasher!r} must list radii >= 0, got {radii}")
        EditFamily("encoding", 1.0, self.encoding)  # validates the transform names and parameters


def _hash_views(scene: Image.Image, model: ViewModel, count: int, experiment: ViewpointExperiment,
                hashers: Sequence[Hasher], rng: np.random.Generator) -> list[list[PerceptualHash]]:
    """Per hasher, the hashes of ``count`` views of ``scene`` (each drawn, rendered, encoded, then hashed)."""
    encode = EditFamily("encoding", 1.0, experiment.encoding)
    out: list[list[PerceptualHash]] = [[] for _ in hashers]
    for _ in range(count):
        view = render_view(scene, model.draw(rng, experiment.scene_size), experiment.capture_size)
        sent = encode.draw(rng).apply(view, rng).image
        for i, hasher in enumerate(hashers):
            out[i].append(hasher.hash(sent))
    return out


def _scene_proportion(counts: Sequence[int], per_scene: int) -> dict[str, Any]:
    """Pooled rate over scenes with the between-scene interval; Wilson on the pooled counts when every scene
    gave the same count (the between-scene variance is then 0 and says nothing; Wilson treats views as
    independent, which views of one scene are not)."""
    out = clustered_proportion(list(counts), [per_scene] * len(counts))
    if len(set(counts)) == 1 and sum(counts) > 0:
        pooled = proportion(int(sum(counts)), per_scene * len(counts))
        out.update(ci_low=pooled.low, ci_high=pooled.high,
                   ci_method=f"Wilson on pooled counts (every one of {len(counts)} scenes gave {counts[0]} of {per_scene})")
    return out


def run_viewpoint_surveillance(experiment: ViewpointExperiment, rng: np.random.Generator) -> list[dict[str, Any]]:
    """One row per view model, hasher, radius and entries per target.

    Columns: ``surveillance_rate`` (victims' views of the target scene that
    match one of its poisoned entries, pooled over scenes) with a 95% interval
    from the between-scene variance (:func:`~e2escan.metrics.rates.clustered_proportion`;
    conditional on the scene generator and view model; Wilson on the pooled
    counts when every scene gave the same count, e.g. none), the scenes' own
    2.5/50/97.5 percentiles,
    and ``innocent_false_match_rate``: views of the other scenes that match the
    target's entries, per target scene, pooled the same way (every target
    scene is tested against the same pool of other scenes' views, so those
    replicates overlap and that interval is indicative only). Both are
    fractions in [0, 1]; the matching rule is Hamming distance <= ``radius``.

    Randomness: the scenes from one seed drawn from ``rng``; per view model,
    one generator for the adversary's views and one for the victims'.
    """
    hashers = [get_hasher(name) for name, _ in experiment.radii]
    scene_rng, *model_rngs = rng.spawn(1 + len(experiment.view_models))
    scene_seed = int(scene_rng.integers(0, 2**63))
    scenes = [synthetic_scene(image_rng(scene_seed, i), experiment.scene_size) for i in range(experiment.scenes)]
    rows: list[dict[str, Any]] = []
    for (model_name, model), model_rng in zip(experiment.view_models, model_rngs):
        adversary_rng, victim_rng = model_rng.spawn(2)
        adversary = [_hash_views(s, model, experiment.adversary_views, experiment, hashers, adversary_rng) for s in scenes]
        victim = [_hash_views(s, model, experiment.victim_views, experiment, hashers, victim_rng) for s in scenes]
        for h, (hasher_name, radii) in enumerate(experiment.radii):
            own = [HashArray.from_hashes(adversary[s][h]) for s in range(experiment.scenes)]
            views = HashArray.from_hashes(view for scene in victim for view in scene[h])  # scene by scene
            for k in experiment.entries_per_target:
                # nearest[s][v, i]: distance from view i of scene v to the nearest of scene s's first k entries
                nearest = [HammingIndex(entries[:k], threads=1).knn(views, 1)[1].reshape(experiment.scenes, -1)
                           for entries in own]
                for radius in radii:
                    within = [(d <= radius).sum(axis=1) for d in nearest]  # [target scene][victim scene]
                    hits = [int(within[s][s]) for s in range(experiment.scenes)]
                    false = [int(within[s].sum()) - hits[s] for s in range(experiment.scenes)]
                    caught = _scene_proportion(hits, experiment.victim_views)
                    innocent = _scene_proportion(false, experiment.victim_views * (experiment.scenes - 1))
                    rows.append({
                        "view_model": model_name,
                        "hasher": hasher_name,
                        "bits": hashers[h].bits,
                        "radius": radius,
                        "entries_per_target": k,
                        "scenes": experiment.scenes,
                        "victim_views_per_scene": experiment.victim_views,
                        "surveillance_rate": caught["rate"],
                        "surveillance_ci95_low": caught["ci_low"],
                        "surveillance_ci95_high": caught["ci_high"],
                        "surveillance_scene_p2_5": caught["replicate_p2_5"],
                        "surveillance_scene_median": caught["replicate_p50"],
                        "surveillance_scene_p97_5": caught["replicate_p97_5"],
                        "surveillance_ci_method": caught["ci_method"],
                        "innocent_views_per_scene": experiment.victim_views * (experiment.scenes - 1),
                        "innocent_false_matches": int(sum(false)),
                        "innocent_false_match_rate": innocent["rate"],
                        "innocent_ci95_low": innocent["ci_low"],
                        "innocent_ci95_high": innocent["ci_high"],
                        "innocent_ci_method": innocent["ci_method"],
                    })
    return rows
