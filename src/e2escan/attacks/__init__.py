"""Attacks on perceptual-hash scanning: detection avoidance, false-flag collisions, poisoning, protocol leakage."""

from ..images.quality import SsimReference, psnr, ssim
from .collision import CollisionResult, collide, targeted_flag_probability
from .evasion import GENERIC_GRID, PDQ_MIN_QUALITY, BlackBoxParams, EvasionResult, evade, whitebox_supported
from .poisoning import (
    EVERYDAY_EDITS,
    PoisoningExperiment,
    ProtocolUnderTest,
    choose_poison,
    opened_count_test,
    revealed_probability,
    run_poisoning_experiment,
    run_protocol_poisoning,
)
from .protocol_leakage import (
    audit_digests,
    estimate_true_matches,
    minimal_split_view,
    public_digest,
    run_voucher_counting,
    split_view,
    voucher_side_channels,
)

__all__ = [
    "EVERYDAY_EDITS", "GENERIC_GRID", "PDQ_MIN_QUALITY", "BlackBoxParams", "CollisionResult", "EvasionResult",
    "PoisoningExperiment", "ProtocolUnderTest", "SsimReference", "audit_digests", "choose_poison", "collide",
    "estimate_true_matches", "evade", "minimal_split_view", "opened_count_test", "psnr", "public_digest",
    "revealed_probability", "run_poisoning_experiment", "run_protocol_poisoning", "run_voucher_counting",
    "split_view", "ssim", "targeted_flag_probability", "voucher_side_channels", "whitebox_supported",
]
