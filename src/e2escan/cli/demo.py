"""``e2escan demo``: a short conversation and what each party (and the server) saw."""

from __future__ import annotations

import argparse
import hashlib

from ..messenger.demo import run_demo
from ..report import format_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="send a short E2EE conversation and show what the server saw",
                       description="Three devices exchange end-to-end encrypted messages and an image through the "
                                   "relay; prints what each device decrypted and what the relay stored.")
    p.add_argument("--relay-db", metavar="PATH", help="persist the relay in this SQLite file (default: in memory)")
    p.add_argument("--seed", type=int, default=0, help="seed of the demo images (default 0)")
    p.add_argument("--adversarial-relay", action="store_true",
                   help="instead, play each attack a malicious relay can try (replay, replay under another name, "
                   "reordering, dropping, a bundle without a one-time prekey, a reordered voucher, an invalid "
                   "table cell) and show what the devices did; exits 1 if any guarantee failed")
    p.set_defaults(func=run)


def run_adversarial() -> int:
    from ..messenger.adversarial import run_adversarial_relay

    outcomes = run_adversarial_relay()
    rows = [(o.attack, o.relay_did, o.devices_did, "held" if o.held else "FAILED") for o in outcomes]
    print(format_table(rows, ["attack", "what the relay did", "what the devices did", "guarantee"],
                       "A malicious relay against the devices"))
    print()
    print("The relay can always refuse service and sees all metadata; it cannot make a device accept a message "
          "twice or under another name, nor read anything.")
    return 0 if all(o.held for o in outcomes) else 1


def _check_relay_db(path: str) -> None:
    """A relay file must be a folder-free, writable path holding nothing or an SQLite database."""
    import os
    from pathlib import Path

    from ..errors import ConfigError
    from ..outputs import check_writable

    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"--relay-db {path}: is a folder; give a file name for the relay's SQLite database")
    check_writable(p.parent if str(p.parent) else Path("."), flag="--relay-db")
    if p.exists():
        with p.open("rb") as fh:
            head = fh.read(16)
        if head and head != b"SQLite format 3\x00":
            raise ConfigError(f"--relay-db {path}: exists and is not an SQLite database; choose a new file name")
        if not os.access(p, os.W_OK):
            raise ConfigError(f"--relay-db {path}: is not writable")


def run(args: argparse.Namespace) -> int:
    if args.adversarial_relay:
        return run_adversarial()
    from ..errors import ConfigError

    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed}: must be >= 0")
    if args.relay_db is not None:
        _check_relay_db(args.relay_db)
    result = run_demo(args.relay_db, args.seed)
    rows = []
    for name, messages in result.received.items():
        for m in messages:
            att = "-" if m.attachment is None else f"{len(m.attachment):,} B sha256:{hashlib.sha256(m.attachment).hexdigest()[:12]}"
            rows.append((name, m.sender, m.body.decode(), att))
    print(format_table(rows, ["device", "from", "decrypted text", "decrypted attachment"], "What each device decrypted"))
    print()
    vrows = [
        (ev.seq, f"{ev.at:.0f}s", ev.kind, ev.sender or "-", ev.recipient or "-", ev.size, (ev.data or b"")[:8].hex() or "-")
        for ev in result.view
    ]
    print(format_table(vrows, ["seq", "time", "event", "from", "to", "bytes", "first bytes"], "What the relay saw (its ServerView)"))
    print()
    total = sum(ev.size for ev in result.view)
    print(f"The relay observed {len(result.view)} events and {total:,} bytes: ids, times, sizes and ciphertext.")
    if result.plaintext_leaks:
        print("PLAINTEXT FOUND IN THE SERVER VIEW:")
        for leak in result.plaintext_leaks:
            print("  " + leak)
        return 1
    print("No plaintext (message text or attachment bytes) appears anywhere in the server's view.")
    return 0
