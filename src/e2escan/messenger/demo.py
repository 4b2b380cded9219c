"""A short conversation through the full messenger path, and what each party observed.

Used by ``e2escan demo``. Everything the server saw comes from the relay's
:class:`ServerView`; the check at the end searches it (and, with a file-backed
relay, the SQLite file) for every plaintext that was sent.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .device import Device, Received
from .relay import Relay, ViewEvent


class SimulatedClock:
    """Deterministic timestamps: each reading advances by ``step`` seconds."""

    def __init__(self, start: float = 0.0, step: float = 1.0) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def demo_image(seed: int, size: int = 96) -> bytes:
    """A small PNG with a seeded gradient and blocks (a stand-in for a photo)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = (x * rng.uniform(0.5, 2.5) + y * rng.uniform(0.5, 2.5)) % 256
    img = np.stack([base, np.roll(base, size // 3, axis=0), 255 - base], axis=-1)
    for _ in range(4):
        x0, y0 = rng.integers(0, size - 16, 2)
        img[y0 : y0 + 16, x0 : x0 + 16] = rng.integers(0, 256, 3)
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class DemoResult:
    sent: list[tuple[str, str, bytes, bytes | None]]  # sender, recipient, body, attachment
    received: dict[str, list[Received]]
    view: list[ViewEvent]
    plaintext_leaks: list[str]


def run_demo(path: str | Path | None = None, seed: int = 0) -> DemoResult:
    relay = Relay(path, clock=SimulatedClock())
    devices = {name: Device.register(name, relay, one_time_prekeys=5) for name in ("alice", "bob", "carol")}
    script: list[tuple[str, list[str], bytes, bytes | None]] = [
        ("alice", ["bob"], b"Hi Bob, photos from the trip", demo_image(seed)),
        ("alice", ["bob"], b"and one more", demo_image(seed + 1)),
        ("bob", ["alice"], b"Lovely! Sending you mine", demo_image(seed + 2)),
        ("carol", ["alice", "bob"], b"Group: dinner at 8?", None),
        ("alice", ["carol", "bob"], b"Yes! Map attached", demo_image(seed + 3)),
        ("bob", ["alice", "carol"], b"See you there", None),
    ]
    sent: list[tuple[str, str, bytes, bytes | None]] = []
    received: dict[str, list[Received]] = {name: [] for name in devices}
    for sender, recipients, body, attachment in script:
        devices[sender].send_group(recipients, body, attachment)
        sent.extend((sender, r, body, attachment) for r in recipients)
        for r in recipients:
            received[r].extend(devices[r].receive())
    view = list(relay.view)
    leaks = find_plaintext_in_view(view, [s[2] for s in sent] + [s[3] for s in sent if s[3]])
    if path is not None:
        relay.close()
        raw = Path(path).read_bytes()
        leaks += [f"relay file contains plaintext {p[:20]!r}" for p in {s[2] for s in sent} if p in raw]
    return DemoResult(sent, received, view, leaks)


def find_plaintext_in_view(view: list[ViewEvent], plaintexts: list[bytes]) -> list[str]:
    """Every (event, plaintext) pair where a sent plaintext (or a 16-byte window of it) appears in the view."""
    leaks = []
    for p in plaintexts:
        probes = {p} if len(p) <= 16 else {p[i : i + 16] for i in range(0, len(p) - 15, max(1, len(p) // 64))}
        for ev in view:
            if ev.data and any(probe in ev.data for probe in probes):
                leaks.append(f"event {ev.seq} ({ev.kind}) contains plaintext {p[:20]!r}")
    return leaks
