"""``e2escan demo``: a short conversation and what each party (and the server) saw."""

from __future__ import annotations

import argparse
import hashlib

from ..messenger.demo import run_demo
from ..report import format_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="send a short E2EE conversation and show what the server saw")
    p.add_argument("--relay-db", metavar="PATH", help="persist the relay in this SQLite file (default: in memory)")
    p.add_argument("--seed", type=int, default=0, help="seed of the demo images (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
