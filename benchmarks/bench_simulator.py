"""Faithful-path throughput against the cost of its parts measured alone, in the same run.

Per image, the faithful path renders the attachment, hashes it on the device,
makes a voucher, sends message + attachment through the ratchet and relay,
ingests the voucher, and delivers. This script measures:

* ``sim``: images per second of ``run_faithful`` on an image-only scenario
  (every message carries an image, one recipient, no groups);
* ``parts``: the same per-image work called directly, one part at a time, on
  the same images: render + hash + voucher + Device.send + Device.receive +
  server ingest.

The ratio sim / parts is the simulator's own overhead (target: at most 1.2x).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import time

from PIL import Image

from e2escan.hashing import HashArray, get_hasher
from e2escan.messenger import Device, Relay
from e2escan.protocols import get_protocol
from e2escan.sim.content import ContentSource
from e2escan.sim.faithful import make_payload, run_faithful, spawn_streams
from e2escan.sim.population import build_population
from e2escan.sim.scenario import Scenario
from e2escan.sim.traffic import TrafficPlanner


def scenario(accounts: int, days: int) -> Scenario:
    return Scenario.from_dict({
        "name": "bench", "seed": 3, "days": days,
        "population": {"accounts": accounts, "offender_share": 0.1, "mean_contacts": 4, "group_share": 0.0},
        "traffic": {"messages_per_day": 5, "image_share": 1.0, "forward_share": 0.1},
        "content": {"database_size": 50, "image_size": 128, "encoding": "png", "offender_known_share": 0.5},
        "hasher": {"name": "pdq"},
        "protocol": {"name": "tpsi-ad", "params": {"threshold": 3, "synthetic_probability": 0.01}},
    })


def parts(s: Scenario) -> tuple[float, int]:
    """The per-image work of the same plan, each part called directly."""
    streams = spawn_streams(s, 0)
    pop = build_population(s.population, streams["population"])
    planner = TrafficPlanner(s, pop, streams["traffic"])
    content = ContentSource(s.content, s.traffic, streams["content"])
    hasher = get_hasher("pdq")
    proto = get_protocol(s.protocol.name)
    params = s.protocol.params
    database = HashArray.from_hashes(hasher.hash(img) for img in content.known_images())
    server, public = proto.server_setup(database, params)
    relay = Relay()
    devices = [Device.register(pop.ids[i], relay) for i in range(len(pop))]
    clients = [proto.client(public, params) for _ in range(len(pop))]
    plan = [m for d in range(s.days) for m in planner.day(d)]
    total = 0.0
    images = 0
    for m in plan:
        t0 = time.perf_counter()
        data = content.render(m.image)
        h = hasher.hash(Image.open(io.BytesIO(data)))
        voucher = clients[m.sender].scan(h, payload=make_payload(m.image.uid, data, params.payload_size))
        devices[m.sender].send(pop.ids[m.recipients[0]], b"body", attachment=data)
        server.ingest(pop.ids[m.sender], voucher)
        total += time.perf_counter() - t0
        images += 1
    t0 = time.perf_counter()
    for d in devices:
        d.receive()
    total += time.perf_counter() - t0
    return total, images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=60)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    s = scenario(args.accounts, args.days)
    parts(scenario(10, 1))  # warm-up: imports, first-use allocations
    sims, bases, loops = [], [], []
    for _ in range(args.repeats):
        base, n2 = parts(s)
        t0 = time.perf_counter()
        run = run_faithful(s, cache_dir=None)
        sims.append(time.perf_counter() - t0)
        loops.append(run.wall["days_s"])
        bases.append(base)
    n = len(run.images)
    sim, base = min(sims), min(bases)
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, Python {platform.python_version()}")
    print(f"faithful path: {n} images in {sim:.2f} s  ({n / sim:.1f} images/s, {1000 * sim / n:.2f} ms/image, "
          "including setup: database hashing, server setup, device registration)")
    print(f"parts alone:   {n2} images in {base:.2f} s  ({n2 / base:.1f} images/s, {1000 * base / n2:.2f} ms/image)")
    loop = min(loops)
    print(f"faithful path, simulated days only (setup excluded): {loop:.2f} s ({1000 * loop / n:.2f} ms/image)")
    print(f"ratio faithful path (days only) / sum of parts: {loop / base:.2f}x")
    print(f"ratio faithful path (with setup) / sum of parts: {sim / base:.2f}x")


if __name__ == "__main__":
    main()
