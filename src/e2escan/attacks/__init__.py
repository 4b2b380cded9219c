"""Attacks on perceptual-hash scanning (placeholder while the package is assembled)."""

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
from .quality import psnr, ssim

__all__ = [
    "EVERYDAY_EDITS",
    "PoisoningExperiment",
    "ProtocolUnderTest",
    "audit_digests",
    "choose_poison",
    "estimate_true_matches",
    "minimal_split_view",
    "opened_count_test",
    "psnr",
    "public_digest",
    "revealed_probability",
    "run_poisoning_experiment",
    "run_protocol_poisoning",
    "run_voucher_counting",
    "split_view",
    "ssim",
    "voucher_side_channels",
]
