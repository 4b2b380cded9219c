"""Database poisoning: re-purposing a scanning database to find who holds a chosen (non-abuse) image.

Hooda, Labunets, Kohno and Fernandes show that an adversary who can add
entries to the perceptual-hash database of a client-side scanning system can
use it for physical surveillance. Their abstracts report surveillance rates of
more than 40% by poisoning 5% of the database ("Re-purposing Perceptual
Hashing based Client Side Scanning for Physical Surveillance", arXiv:2212.04107,
2022) and more than 30% at 0.2% ("Experimental Analyses of the Physical
Surveillance Risks in Client-Side Content Scanning", NDSS 2024); only the
abstracts were read here, so the rate's definition is not known.

Two measurements live here, and neither is their rate:

* per-copy detection of one circulating image (:func:`run_poisoning_experiment`,
  in :mod:`.experiment`): the victims' images are edited copies of the adversary's image;
* surveillance of a place (:func:`run_viewpoint_surveillance`, in :mod:`.viewpoints`):
  the victims' images are distinct views of a synthetic scene, and the
  adversary poisons the database with views of its own.

The circulating-image model, one target image at a time:

* The target circulates as copies made by everyday edits (:data:`EVERYDAY_EDITS`,
  :mod:`.edits`): forwarded unchanged, re-encoded by a messenger, cropped,
  captioned, ... Each copy is the target after one chain drawn from an :class:`EditFamily`.
* The adversary knows the edit model. It makes its own copies of the target
  (``attacker`` copies, from its own generator) and spends its budget of
  ``k = round(fraction * database_size)`` entries greedily, each time on the
  hash of one of its copies that covers most of its not yet covered copies
  under the protocol's matching rule (:func:`choose_poison`, :mod:`.entries`:
  exact equality, or Hamming radius ``r``).
* A victim's copy is detected when the protocol counts it as a match
  (:func:`matches_any`). The per-copy detection rate ``q`` is measured on an
  independent set of victim copies.
* What an account holding ``m`` copies reveals, and which copies it holds, is
  the holder model of :mod:`.holders`; :func:`run_protocol_poisoning`
  (:mod:`.protocol_runs`) measures the same with the real protocol code, a check
  of the protocol implementation against the model, not of the model.

All simulation randomness comes from the ``numpy.random.Generator`` passed in;
keys and blinding inside the protocols come from the OS and change no outcome.
"""

from __future__ import annotations

from ...protocols.tpsi_ad import seeded_coin
from .edits import EVERYDAY_EDITS, CopySet, EditFamily, Uniform, make_copies, with_weights
from .entries import choose_poison, matches_any, poisoned_database
from .experiment import DEFAULT_PROTOCOLS, PoisoningExperiment, PoisoningResults, run_poisoning_experiment
from .holders import (
    DEDUP_MODES,
    HolderModelCheck,
    HolderPool,
    OpenedCountTest,
    check_holder_model,
    draw_holder_copies,
    holder_revealed_probability,
    opened_count_test,
    revealed_probability,
    simulate_revealed,
)
from .protocol_runs import OTHER_MARK, TARGET_MARK, ProtocolPoisoningRun, ProtocolUnderTest, run_protocol_poisoning
from .viewpoints import VIEW_MODELS, VIEW_RADII, ViewpointExperiment, run_viewpoint_surveillance
from .viewpoints import _scene_proportion as _scene_proportion

__all__ = [
    "DEDUP_MODES", "DEFAULT_PROTOCOLS", "EVERYDAY_EDITS", "OTHER_MARK", "TARGET_MARK", "VIEW_MODELS", "VIEW_RADII",
    "CopySet", "EditFamily", "HolderModelCheck", "HolderPool", "OpenedCountTest", "PoisoningExperiment",
    "PoisoningResults", "ProtocolPoisoningRun", "ProtocolUnderTest", "Uniform", "ViewpointExperiment",
    "check_holder_model", "choose_poison", "draw_holder_copies", "holder_revealed_probability", "make_copies",
    "matches_any", "opened_count_test", "poisoned_database", "revealed_probability", "run_poisoning_experiment",
    "run_protocol_poisoning", "run_viewpoint_surveillance", "seeded_coin", "simulate_revealed", "with_weights",
]
