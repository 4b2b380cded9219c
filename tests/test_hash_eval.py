"""``e2escan hash-eval`` end to end on tiny corpora, and the evaluation against a direct computation."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from e2escan import __version__
from e2escan.cli import main
from e2escan.errors import ConfigError
from e2escan.hashing import get_hasher, parse_hasher_specs
from e2escan.hashing.evaluation import evaluate_hashers, transform_rng, unrelated_pairs
from e2escan.images import open_corpus, parse_transform_set, synthetic_corpus

EXPECTED_FILES = {
    "distances.csv", "roc.csv", "thresholds.csv", "unrelated.csv", "summary.json", "manifest.json",
    "distances.png", "distances.svg", "roc.png", "roc.svg",
}  # fmt: skip


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_hash_eval_cli_writes_every_file(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["hash-eval", "--corpus", "synthetic:6", "--hasher", "dhash,pdq", "--transforms", "jpeg:quality=40;flip",
            "--out", str(out), "--seed", "3", "--image-size", "64x64"]  # fmt: skip
    assert main(argv) == 0
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == EXPECTED_FILES  # and the folder claim
    printed = capsys.readouterr().out
    assert "synthetic:6: 6 images, 2 transforms, 15 unrelated pairs" in printed and "pdq" in printed

    summary = json.loads((out / "summary.json").read_text())
    assert summary["corpus"] == "synthetic:6" and summary["images"] == 6 and summary["seed"] == 3
    assert [h["spec"] for h in summary["hashers"]] == ["dhash", "pdq"]
    assert [t["spec"] for t in summary["transforms"]] == ["jpeg:quality=40", "flip"]
    assert summary["provenance"]["version"] == __version__ and summary["provenance"]["git_commit"]
    assert set(summary["hashers"][1]["thresholds"]) == {"0.001", "1e-06", "1e-09", "1e-12"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["config"]["hashers"] == ["dhash", "pdq"]

    distances = _read_csv(out / "distances.csv")
    for hasher in ("dhash", "pdq"):
        for transform in ("-", "jpeg:quality=40", "flip"):
            rows = [r for r in distances if r["hasher"] == hasher and r["transform"] == transform]
            assert sum(int(r["count"]) for r in rows) == (15 if transform == "-" else 6)
    roc = _read_csv(out / "roc.csv")
    pdq_all = [r for r in roc if r["hasher"] == "pdq" and r["transform"] == "all"]
    assert len(pdq_all) == 257 and float(pdq_all[-1]["tpr"]) == 1.0 and float(pdq_all[-1]["fpr"]) == 1.0
    thresholds = _read_csv(out / "thresholds.csv")
    assert {r["method"] for r in thresholds} == {"empirical", "tail-fit", "tail-fit-normal"}
    # 15 pairs cannot measure an FPR of 1e-3: the empirical threshold is left empty.
    assert all(r["threshold"] == "" for r in thresholds if r["method"] == "empirical" and r["target_fpr"] == "0.001")


def test_results_do_not_depend_on_workers(tmp_path):
    outputs = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        argv = ["hash-eval", "--corpus", "synthetic:5", "--hasher", "phash", "--transforms", "quick",
                "--out", str(out), "--workers", workers, "--image-size", "48x48", "--no-figures"]  # fmt: skip
        assert main(argv) == 0
        outputs.append({name: (out / name).read_text() for name in ("distances.csv", "roc.csv", "thresholds.csv")})
    assert outputs[0] == outputs[1]


def test_evaluation_equals_direct_computation():
    corpus = synthetic_corpus(4, seed=9, size=(64, 64))
    hashers = parse_hasher_specs("ahash,pdq")
    chains = parse_transform_set("noise:sigma=8;crop:fraction=0.8,position=random")
    result = evaluate_hashers(corpus, hashers, chains, seed=5)
    for ev, hasher in zip(result.per_hasher, hashers):
        originals = [hasher.hash(corpus.load(i)) for i in range(4)]
        for t, chain in enumerate(chains):
            direct = [
                originals[i].distance(hasher.hash(chain.apply(corpus.load(i), transform_rng(5, i, t)).image))
                for i in range(4)
            ]
            np.testing.assert_array_equal(ev.matched[chain.spec], direct)
        unrelated = [originals[i].distance(originals[j]) for i in range(4) for j in range(i + 1, 4)]
        np.testing.assert_array_equal(ev.unrelated_counts, np.bincount(unrelated, minlength=hasher.bits + 1))


def test_directory_corpus_with_bad_files(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        synthetic_corpus(3, seed=1, size=(40, 40)).load(i).save(images / f"{i}.png")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "out"
    assert main(["hash-eval", "--corpus", str(images), "--hasher", "dhash", "--transforms", "grey",
                 "--out", str(out), "--no-figures"]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 3
    assert [s["name"] for s in summary["skipped"]] == ["broken.jpg"]
    assert "skipped 1 file(s)" in capsys.readouterr().out


def test_errors_and_pair_sampling(tmp_path):
    with pytest.raises(ConfigError, match="at least 2 are needed"):
        evaluate_hashers(synthetic_corpus(1, size=(32, 32)), [get_hasher("dhash")], [])
    with pytest.raises(ConfigError, match="listed more than once"):
        evaluate_hashers(synthetic_corpus(2, size=(32, 32)), [get_hasher("dhash"), get_hasher("dhash")], [])
    assert main(["hash-eval", "--corpus", "synthetic:0", "--out", str(tmp_path)]) == 1
    first, second, sampled = unrelated_pairs(1000, 5000, np.random.default_rng(0))
    assert sampled and first.size == 5000 and (first != second).all()
    first, second, sampled = unrelated_pairs(10, 5000, np.random.default_rng(0))
    assert not sampled and first.size == 45 and (first < second).all()
    assert open_corpus("synthetic:3").spec == "synthetic:3"


def test_hash_eval_explains_none_and_warns_on_thin_thresholds(tmp_path, capsys):
    """8 images give 28 unrelated pairs: every threshold either is 'none' (explained) or rests on < 100 pairs."""
    assert main(["hash-eval", "--corpus", "synthetic:8", "--hasher", "ahash,pdq", "--transforms", "identity",
                 "--no-figures", "--out", str(tmp_path / "he")]) == 0
    printed = capsys.readouterr().out
    notes = [line for line in printed.splitlines() if line.startswith(("ahash:", "pdq:"))]
    assert len(notes) == 2
    for line in notes:
        assert "'none' = even an exact match" in line or ("rests on" in line and "fewer than 100" in line)


def test_quality_filter_equals_direct_computation():
    """min_quality drops every PDQ pair with a hash below it, counts the drops, and leaves other hashers alone."""
    corpus = synthetic_corpus(10, seed=4, size=(64, 64))
    hashers = parse_hasher_specs("pdq,dhash")
    chains = parse_transform_set("blur:radius=1.5;flip")
    pdq = hashers[0]
    originals = [pdq.hash_with_quality(corpus.load(i)) for i in range(10)]
    floor = 80  # qualities here: 100 for most images, 31 to 78 for a few smooth ones
    result = evaluate_hashers(corpus, hashers, chains, seed=2, min_quality=floor)
    ev_pdq, ev_dhash = result.per_hasher
    assert 0 < ev_pdq.discarded["original"] == sum(q < floor for _, q in originals) < 9
    for t, chain in enumerate(chains):
        copies = [pdq.hash_with_quality(chain.apply(corpus.load(i), transform_rng(2, i, t)).image) for i in range(10)]
        assert ev_pdq.discarded[chain.spec] == sum(q < floor for _, q in copies)
        direct = [h.distance(c) for (h, q), (c, qc) in zip(originals, copies) if q >= floor and qc >= floor]
        np.testing.assert_array_equal(ev_pdq.matched[chain.spec], direct)
    kept = [h for h, q in originals if q >= floor]
    unrelated = [a.distance(b) for k, a in enumerate(kept) for b in kept[k + 1 :]]
    np.testing.assert_array_equal(ev_pdq.unrelated_counts, np.bincount(unrelated, minlength=257))
    assert ev_dhash.discarded == {} and ev_dhash.n_unrelated == 45  # no quality score: never filtered
    unfiltered = evaluate_hashers(corpus, hashers, chains, seed=2)
    assert unfiltered.per_hasher[0].n_unrelated == 45 and unfiltered.per_hasher[0].discarded == {}
    with pytest.raises(ConfigError, match="no unrelated pair left"):
        evaluate_hashers(corpus, [pdq], chains, seed=2, min_quality=101)
    with pytest.raises(ConfigError, match="min_quality must be an int"):
        evaluate_hashers(corpus, [pdq], chains, min_quality=49.5)
