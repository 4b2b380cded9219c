"""The black-box search (Jain, Crețu and de Montjoye, USENIX Security 2022), for any hash.

Natural-evolution-strategies (NES) gradient estimation with antithetic
Gaussian samples, then a signed-gradient step. The objective is the
Hamming distance returned by the hasher itself, which is the only thing
the attacker observes. Perturbations are smooth: a ``grid x grid`` array
upsampled bilinearly to the image size and added equally to the three
colour channels (every hash here reads luminance only, and smooth changes
are what a downsampling hash sees).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..hashing import AverageHasher, DctHasher, DifferenceHasher, Hasher, PdqHasher, WaveletHasher
from .search import HashSearch, SearchStopped, upsample
from .whitebox import PDQ_COEFFICIENTS

__all__ = ["GENERIC_GRID", "BlackBoxParams", "default_grid", "run_nes"]

#: A perturbation grid chosen without knowing the hash (same for every hasher): what an attacker who
#: only queries, and does not know the hash's internal resolution, would use.
GENERIC_GRID = 32


@dataclass(frozen=True)
class BlackBoxParams:
    """Tuning of the NES black-box search; the defaults suit 64- to 256-bit hashes on 64-512 px images.

    ``grid``: cells along the longer side of the perturbation grid (upsampled
    to the image); ``None`` matches the hash's own resolution: ``hash_size``
    for the imagehash hashers, 16 (its DCT block) for PDQ. That default makes
    the attack query-only but algorithm-aware (it knows the hash's
    resolution); :data:`GENERIC_GRID` is the choice of an attacker who does not;
    ``samples``: hash queries per gradient estimate (``samples // 2``
    antithetic pairs); ``sigma``: exploration scale and ``step``: signed step,
    both in grey levels on the grid.
    """

    grid: int | None = None
    samples: int = 10
    sigma: float = 12.0
    step: float = 3.0

    def __post_init__(self) -> None:
        if self.grid is not None and (isinstance(self.grid, bool) or not isinstance(self.grid, int) or self.grid < 2):
            raise ConfigError(f"BlackBoxParams: grid must be None or an int >= 2, got {self.grid!r}")
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 2 or self.samples % 2:
            raise ConfigError(f"BlackBoxParams: samples must be an even int >= 2, got {self.samples!r}")
        for name, value in (("sigma", self.sigma), ("step", self.step)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 256:
                raise ConfigError(f"BlackBoxParams: {name} must be a number in (0, 256) grey levels, got {value!r}")


def default_grid(hasher: Hasher) -> int:
    """The perturbation grid matching a hash's resolution (see :class:`BlackBoxParams`); 16 for other hashers."""
    if isinstance(hasher, PdqHasher):
        return PDQ_COEFFICIENTS
    if isinstance(hasher, (AverageHasher, DifferenceHasher, DctHasher, WaveletHasher)) and hasher.hash_size >= 2:
        return hasher.hash_size
    return 16


def _grid_shape(search: HashSearch, grid: int | None) -> tuple[int, int]:
    """Grid cells along each axis: ``grid`` along the longer side, proportionally along the other."""
    if grid is None:
        grid = default_grid(search.hasher)
    longer = max(search.height, search.width)
    gh = max(2, min(search.height, round(grid * search.height / longer)))
    gw = max(2, min(search.width, round(grid * search.width / longer)))
    return gh, gw


def run_nes(search: HashSearch, params: BlackBoxParams, rng: np.random.Generator) -> None:
    """Signed-gradient ascent on ``search.objective`` with NES gradient estimates, until the search stops.

    Each round spends ``params.samples`` queries on antithetic samples
    ``z +- sigma u`` (u standard normal on the grid), estimates the gradient as
    ``sum (f(z + sigma u) - f(z - sigma u)) u``, moves every grid cell by
    ``step`` in the direction of the estimate's sign, projects back into the
    SSIM bound and spends one query on the new iterate. Samples that happen
    to score best are kept too (:meth:`HashSearch.evaluate`). When every
    sample ties (a plateau of the integer objective), ``sigma`` doubles for
    the next round, up to 8 times its initial value.
    """
    gh, gw = _grid_shape(search, params.grid)
    z = np.zeros((gh, gw), dtype=np.float64)
    sigma = params.sigma
    up = lambda grid_values: upsample(grid_values, search.height, search.width)
    try:
        while True:
            noise = rng.standard_normal((params.samples // 2, gh, gw))
            diffs = np.empty(noise.shape[0])
            for i, u in enumerate(noise):
                diffs[i] = search.evaluate(up(z + sigma * u)) - search.evaluate(up(z - sigma * u))
            if not diffs.any():
                sigma = min(2.0 * sigma, 8.0 * params.sigma)
                continue
            sigma = params.sigma
            gradient = np.tensordot(diffs, noise, axes=1)
            z = z + params.step * np.sign(gradient)
            delta = search.project(up(z))
            # keep z consistent with the projection (projection is a uniform scaling)
            scale = _scale_between(delta, up(z))
            z = z * scale
            search.evaluate(delta)
    except SearchStopped:
        return


def _scale_between(scaled: np.ndarray, full: np.ndarray) -> float:
    norm = float(np.vdot(full, full))
    return 1.0 if norm == 0.0 else float(np.vdot(scaled, full)) / norm

