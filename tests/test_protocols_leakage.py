"""Each server holds exactly what its LEAKAGE profile declares, and tpsi-ad vouchers say nothing more.

Statistical bound used below: under the null hypothesis "features carry no
information about the label", the balanced accuracy of any fixed classifier
on ``n_pos`` positive and ``n_neg`` negative held-out samples has mean 1/2 and
standard deviation ``0.5 * sqrt(1/(4 n_pos) + 1/(4 n_neg))``. A classifier
trained on separate data is fixed with respect to the held-out half, so we
require held-out balanced accuracy below ``1/2 + 4.5 sd`` (one-sided
p < 3.4e-6 per classifier; with the ~110 classifiers tried below the
family-wise false-alarm rate stays below 0.04%). With 1,800 vouchers the
bound is about 0.58 for matching vs non-matching.
"""

from __future__ import annotations

import numpy as np
import pytest

from e2escan.hashing import HashArray
from e2escan.protocols import PROTOCOLS, get_protocol

BITS = 64
Z = 4.5


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_server_records_hold_exactly_the_declared_names(name: str) -> None:
    rng = np.random.default_rng(3)
    db = HashArray.random(20, BITS, rng)
    proto = get_protocol(name)
    kwargs = {} if name in ("plaintext", "psi-exact") else {
        "threshold": 2, "synthetic_probability": 0.3, "synthetic_capacity": 6
    }
    params = proto.Params(**kwargs)
    server, public = proto.server_setup(db, params)
    client = proto.client(public, params)
    lk = proto.LEAKAGE
    # Non-matching images (some sent synthetically), then database members until the threshold is met
    # (a member sent synthetically does not count, hence the loop).
    images = [*HashArray.random(5, BITS, rng), *db]
    for i, h in enumerate(images):
        server.ingest("acct", client.scan(h, payload=b"%d" % i))
        over = server.reveal("acct").over_threshold
        for record in server.observed("acct"):
            assert set(record) == lk.voucher_keys(over), (name, i)
        assert set(server.account_view("acct")) == lk.account_keys(over)
        if over and i > 6:
            break
    assert server.reveal("acct").over_threshold


def _features(voucher: bytes) -> list[float]:
    """Everything a classifier could use from the raw bytes: length, byte statistics per field."""
    v = np.frombuffer(voucher, dtype=np.uint8).astype(float)
    feats = [len(voucher), v.mean(), v.std(), np.unpackbits(v.astype(np.uint8)).mean()]
    feats += list(np.histogram(v, bins=16, range=(0, 256))[0] / len(v))
    for part in np.array_split(v, 8):
        feats += [part.mean(), part.std()]
    return feats


def _inner_features(inner: tuple) -> list[float]:
    x, y, dhf, adct = inner
    feats = []
    for s in (x, y, *dhf):
        a = np.frombuffer(s, dtype=np.uint8).astype(float)
        feats += [a.mean(), a[-1], a[0]]
    a = np.frombuffer(adct, dtype=np.uint8).astype(float)
    feats += [a.mean(), a.std(), a[:32].mean(), a[32:56].mean()]
    return feats


def _balanced_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return 0.5 * (pred[y == 1].mean() + (1 - pred[y == 0]).mean())


def _bound(y: np.ndarray) -> float:
    n1, n0 = int(y.sum()), int((1 - y).sum())
    return 0.5 + Z * 0.5 * np.sqrt(1 / (4 * n1) + 1 / (4 * n0))


def _logistic(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray) -> np.ndarray:
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-9
    a, b = (xtr - mu) / sd, (xte - mu) / sd
    w = np.zeros(a.shape[1])
    c = 0.0
    weights = np.where(ytr == 1, 0.5 / ytr.mean(), 0.5 / (1 - ytr.mean()))
    for _ in range(400):
        p = 1 / (1 + np.exp(-(a @ w + c)))
        g = weights * (p - ytr)
        w -= 0.1 * (a.T @ g / len(ytr) + 1e-3 * w)
        c -= 0.1 * g.mean()
    return ((b @ w + c) > 0).astype(float)


def _check_no_classifier_beats_chance(x: np.ndarray, y: np.ndarray, split: np.ndarray, what: str) -> None:
    xtr, ytr, xte, yte = x[split], y[split], x[~split], y[~split]
    bound = _bound(yte)
    acc = _balanced_accuracy(_logistic(xtr, ytr, xte), yte)
    assert acc < bound, f"{what}: logistic regression reaches balanced accuracy {acc:.3f} >= {bound:.3f}"
    for j in range(x.shape[1]):  # every single-feature threshold rule, tuned on the training half
        cuts = np.quantile(xtr[:, j], np.linspace(0.05, 0.95, 19))
        best = max(
            ((_balanced_accuracy((sgn * (xtr[:, j] - cut) > 0).astype(float), ytr), cut, sgn)
             for cut in cuts for sgn in (1, -1)),
            key=lambda t: t[0],
        )
        _, cut, sgn = best
        acc = _balanced_accuracy((sgn * (xte[:, j] - cut) > 0).astype(float), yte)
        assert acc < bound, f"{what}: threshold on feature {j} reaches {acc:.3f} >= {bound:.3f}"


@pytest.fixture(scope="module")
def tpsi_run():
    """300 accounts below the threshold (t = 3): 2 matching and 4 non-matching images each."""
    rng = np.random.default_rng(11)
    db = HashArray.random(150, BITS, rng)
    proto = get_protocol("tpsi-ad")
    params = proto.Params(threshold=3, synthetic_probability=0.3, synthetic_capacity=8, payload_size=64)
    server, public = proto.server_setup(db, params)
    rows = []  # (account, voucher, is_match, is_synthetic)
    for a in range(300):
        client = proto.client(public, params)
        members = rng.choice(len(db), 2, replace=False)
        images = [(db[int(i)], 1) for i in members] + [(h, 0) for h in HashArray.random(4, BITS, rng)]
        for k in rng.permutation(len(images)):
            h, match = images[k]
            payload = bytes(rng.integers(0, 256, 64, dtype=np.uint8))
            voucher = client.scan(h, payload=payload)
            server.ingest(f"acct{a}", voucher)
            rows.append((a, voucher, match, int(client.last_was_synthetic)))
    return server, params, rows


def test_tpsi_ad_stays_below_threshold(tpsi_run) -> None:
    server, _, rows = tpsi_run
    for a in {r[0] for r in rows}:
        assert not server.reveal(f"acct{a}").over_threshold


def test_tpsi_ad_raw_vouchers_do_not_reveal_matches(tpsi_run) -> None:
    _, _, rows = tpsi_run
    assert len(rows) >= 1000
    x = np.array([_features(r[1]) for r in rows])
    y = np.array([r[2] for r in rows], dtype=float)
    assert len({len(r[1]) for r in rows}) == 1
    split = np.array([r[0] % 2 == 0 for r in rows])  # split by account
    _check_no_classifier_beats_chance(x, y, split, "matching vs non-matching (raw voucher bytes)")


def test_tpsi_ad_opened_vouchers_do_not_reveal_real_matches(tpsi_run) -> None:
    server, _, rows = tpsi_run
    feats, labels, split = [], [], []
    observed = {a: list(server.observed(f"acct{a}")) for a in {r[0] for r in rows}}
    counters: dict[int, int] = {}
    for a, voucher, match, synthetic in rows:
        i = counters.get(a, 0)
        counters[a] = i + 1
        record = observed[a][i]
        assert record["length"] == len(voucher)
        if not record["opened"]:
            continue
        assert record["opened_pairs"] == 1
        feats.append(_features(voucher) + _inner_features(record["inner_layer"]))
        labels.append(1.0 if (match and not synthetic) else 0.0)
        split.append(a % 2 == 0)
    y = np.array(labels)
    assert y.sum() > 100 and (1 - y).sum() > 100
    _check_no_classifier_beats_chance(np.array(feats), y, np.array(split), "real vs synthetic (opened vouchers)")


def test_tpsi_ad_open_rates_are_the_declared_ones(tpsi_run) -> None:
    server, params, rows = tpsi_run
    opened = []
    counters: dict[int, int] = {}
    for a, _, match, synthetic in rows:
        i = counters.get(a, 0)
        counters[a] = i + 1
        opened.append((match, synthetic, bool(server.observed(f"acct{a}")[i]["opened"])))
    # A voucher opens iff it matches or is synthetic; nothing else makes it open.
    assert all(o == bool(m or s) for m, s, o in opened)
    # Non-matching images open at the synthetic rate p (binomial, 4 sd).
    nonmatch = np.array([o for m, _, o in opened if not m], dtype=float)
    p = params.synthetic_probability
    assert abs(nonmatch.mean() - p) < Z * np.sqrt(p * (1 - p) / len(nonmatch))
