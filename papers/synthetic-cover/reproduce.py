"""Synthetic vouchers: how well do they hide an account's matches below the threshold, and at what cost?

An account uploads ``n`` distinct images a day for ``d`` days (``N = n d``);
``R < t`` of them match the database. Each image is sent as a synthetic
voucher with probability ``p`` (the device's secret coin). The server opens the
outer layer of every matching voucher (real or synthetic) and of every
synthetic voucher, and below ``t`` it cannot tell which is which. It observes
``K``, the number of opened vouchers.

Two cover models:

* ``uncapped``: every image may go synthetic, so ``K = R + Bin(N - R, p)``.
* ``capped``: as in this repository's ``tpsi-ad`` (and the paper's bound
  ``s_max``), the device sends at most ``s`` distinct synthetic images, then
  stops. With ``X ~ Bin(N, p)`` images that want to go synthetic, ``T = min(X,
  s)`` do; with the matching images at uniformly random places in the upload
  order, the synthetic ones are a uniformly random ``T``-subset of the ``N``
  images, so ``K = R + T - H`` with ``H ~ Hypergeometric(N, R, T)`` (the
  synthetic images that are matching ones, which open anyway).

A synthetic voucher never counts toward ``t`` (the detectable hash sorts it
out), and a matching image sent synthetically is lost: detection waits for
``t`` genuine matches.

Every number is exact (binomial and hypergeometric probabilities computed here
with numpy from a table of log-factorials; the library's tail
``e2escan.metrics.false_flag_probability`` serves as an oracle for the
uncapped tails). A seeded simulation of the device's sequential rule checks
the capped model and the detection delay.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from e2escan.metrics import false_flag_probability
from e2escan.protocols import get_protocol
from e2escan.results import save_figure, write_csv, write_json

PROTOCOL = get_protocol("tpsi-ad")
PRESET = PROTOCOL.Params.from_toml(Path(__file__).resolve().parents[2] / "protocols" / "tpsi-ad.toml")
APPLE_THRESHOLD = PROTOCOL.threshold(PRESET)  # 30, Apple's initial threshold
CAPACITY = PROTOCOL.synthetic_capacity(PRESET)  # s = 32 distinct synthetic images per account
PRESET_PROBABILITY = PROTOCOL.synthetic_probability(PRESET)  # 0.002
THRESHOLDS = (APPLE_THRESHOLD, 10)
HORIZONS_DAYS = (1, 7, 30, 90, 365)
QUICK_HORIZONS_DAYS = (1, 30, 365)
IMAGES_PER_DAY = (2, 10, 50)  # 10 is the headline rate; 2 and 50 bracket it
QUICK_IMAGES_PER_DAY = (10,)
HEADLINE_RATE = 10
MATCHES_PER_DAY = 1  # an offender account's matching uploads per day (detection delay)
P_RANGE = (0.001, 0.5)
P_POINTS_FULL, P_POINTS_QUICK = 28, 8
FPR = 0.01  # false-positive rate at which the server's best test is read
ORDER = math.sqrt(10.0)  # "same order of magnitude": within a factor sqrt(10) either side
MODELS = ("uncapped", "capped")


# --- exact distributions -----------------------------------------------------


def _log_factorials(n_max: int) -> np.ndarray:
    """``log(k!)`` for k = 0..n_max (natural logarithms)."""
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n_max + 1, dtype=float)))])


def _binomial_pmf(n: int, p: float, lf: np.ndarray) -> np.ndarray:
    """P[Bin(n, p) = k] for k = 0..n (array of length n + 1)."""
    k = np.arange(n + 1)
    if p == 0.0:
        return (k == 0).astype(float)
    log = lf[n] - lf[k] - lf[n - k] + k * math.log(p) + (n - k) * math.log1p(-p)
    return np.exp(log)


def _synthetic_count_pmf(n_images: int, p: float, cap: int | None, lf: np.ndarray) -> np.ndarray:
    """P[T = tau], T the number of synthetic images: Bin(N, p), or min(Bin(N, p), cap)."""
    pmf = _binomial_pmf(n_images, p, lf)
    if cap is None or cap >= n_images:
        return pmf
    capped = pmf[: cap + 1].copy()
    capped[cap] = max(0.0, 1.0 - pmf[:cap].sum())
    return capped


def opened_pmf(n_images: int, matches: int, p: float, cap: int | None, lf: np.ndarray) -> np.ndarray:
    """P[K = k] for k = 0..N: the number of opened vouchers of an account with ``matches`` real matches."""
    out = np.zeros(n_images + 1)
    if cap is None:
        out[matches:] = _binomial_pmf(n_images - matches, p, lf)
        return out
    t_pmf = _synthetic_count_pmf(n_images, p, cap, lf)
    rest = n_images - matches
    for tau, weight in enumerate(t_pmf):
        if weight == 0.0:
            continue
        h = np.arange(max(0, tau - rest), min(matches, tau) + 1)
        log_h = (
            lf[matches] - lf[h] - lf[matches - h]
            + lf[rest] - lf[tau - h] - lf[rest - tau + h]
            - (lf[n_images] - lf[tau] - lf[n_images - tau])
        )
        np.add.at(out, matches + tau - h, weight * np.exp(log_h))
    return out


# --- what the server learns ---------------------------------------------------


def total_variation(a: np.ndarray, b: np.ndarray) -> float:
    """Total-variation distance: the best test's advantage, max over tests of TPR - FPR."""
    return float(0.5 * np.abs(a - b).sum())


def tpr_at_fpr(alt: np.ndarray, null: np.ndarray, fpr: float) -> float:
    """Power of the most powerful (randomised Neyman-Pearson) test of ``null`` against ``alt`` at level ``fpr``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(null > 0, alt / np.where(null > 0, null, 1.0), np.inf)
    order = np.argsort(-ratio, kind="stable")
    spent, power = 0.0, 0.0
    for k in order:
        if alt[k] == 0.0 and null[k] > 0.0:
            break
        if spent + null[k] <= fpr:
            spent += null[k]
            power += alt[k]
        else:
            power += alt[k] * (fpr - spent) / null[k]
            break
    return float(min(power, 1.0))


def estimator_stats(pmfs: np.ndarray, n_images: int, expected_synthetic: float) -> dict[str, np.ndarray | float]:
    """Error of the server's estimates of R from K, for every R = 0..t-1 (rows of ``pmfs``).

    Returns the RMSE of the moment estimator ``(K - E[T]) / (1 - E[T] / N)``
    (unbiased: ``E[K | R] = E[T] + R (1 - E[T] / N)``) per R; and, under a
    uniform prior on R in 0..t-1 (0..N if N < t - 1), the RMSE of the
    posterior mean and the probability that the most probable R is the true one.
    """
    t = pmfs.shape[0]
    k = np.arange(pmfs.shape[1])
    scale = 1.0 - expected_synthetic / n_images
    mean = pmfs @ k
    var = pmfs @ (k.astype(float) ** 2) - mean**2
    r = np.arange(t)
    joint = pmfs / t
    evidence = joint.sum(axis=0)
    seen = evidence > 0
    post_mean = np.where(seen, (r @ joint) / np.where(seen, evidence, 1.0), 0.0)
    bayes_mse = float((joint * (r[:, None] - post_mean[None, :]) ** 2).sum())
    return {
        "moment_rmse": np.sqrt(np.maximum(var, 0.0)) / scale,
        "moment_bias": (mean - expected_synthetic) / scale - r,
        "bayes_rmse": math.sqrt(bayes_mse),
        "map_exact": float(joint.max(axis=0).sum()),
    }


# --- detection delay ----------------------------------------------------------


def detection_delay(threshold: int, p: float, match_share: float, cap: int | None) -> dict[str, float]:
    """Expected uploads, matching uploads and opened vouchers until ``threshold`` genuine matches.

    Each upload matches with probability ``match_share``; an upload goes
    synthetic with probability ``p`` while fewer than ``cap`` did (always, if
    ``cap`` is None); a matching upload sent synthetically is lost. Exact:
    closed forms without a cap, a dynamic programme over (genuine, synthetic)
    counts with one. Matching uploads = ``match_share`` x uploads (Wald).
    """
    q, t = match_share, threshold
    if cap is None:
        uploads = t / (q * (1.0 - p))
        synthetic = p * uploads
    else:
        # E[uploads] and E[final synthetic count] from state (g genuine, c synthetic).
        up = np.zeros(cap + 1)  # row g = t: nothing left to wait for
        syn = np.arange(cap + 1, dtype=float)
        for g in range(t - 1, -1, -1):
            new_up = np.empty(cap + 1)
            new_syn = np.empty(cap + 1)
            new_up[cap] = (t - g) / q
            new_syn[cap] = cap
            leave = q * (1.0 - p) + p
            for c in range(cap - 1, -1, -1):
                new_up[c] = (1.0 + q * (1.0 - p) * up[c] + p * new_up[c + 1]) / leave
                new_syn[c] = (q * (1.0 - p) * syn[c] + p * new_syn[c + 1]) / leave
            up, syn = new_up, new_syn
        uploads, synthetic = float(up[0]), float(syn[0])
    return {
        "uploads_to_detection": uploads,
        "matching_uploads_to_detection": q * uploads,
        "extra_matching_uploads": q * uploads - t,
        "opened_at_detection": t + synthetic,
    }


# --- the sweep ----------------------------------------------------------------


def _probabilities(quick: bool) -> np.ndarray:
    return np.geomspace(*P_RANGE, P_POINTS_QUICK if quick else P_POINTS_FULL)


def _cap(model: str) -> int | None:
    return CAPACITY if model == "capped" else None


def _expected_synthetic(n_images: int, p: float, cap: int | None, lf: np.ndarray) -> float:
    pmf = _synthetic_count_pmf(n_images, p, cap, lf)
    return float(pmf @ np.arange(pmf.size))


def _setting(n_images: int, t: int, p: float, model: str, lf: np.ndarray) -> dict:
    """Everything the server learns from K at one (N, t, p, cover model)."""
    PROTOCOL.Params(threshold=t, synthetic_probability=float(p), synthetic_capacity=CAPACITY)  # validates p
    cap = _cap(model)
    # R ranges over 0..t-1, but an account cannot hold more matches than images.
    pmfs = np.array([opened_pmf(n_images, r, float(p), cap, lf) for r in range(min(t, n_images + 1))])
    expected = _expected_synthetic(n_images, float(p), cap, lf)
    return {"pmfs": pmfs, "expected_synthetic": expected, "stats": estimator_stats(pmfs, n_images, expected)}


def _reference_matches(t: int) -> tuple[int, ...]:
    return (1, t // 2, t - 1)


def _advantage(pmfs: np.ndarray, r: int) -> tuple[float, float]:
    """(TV advantage, TPR at FPR 0.01) of R = r against R = 0; NaN where the account has fewer than r images."""
    if r >= pmfs.shape[0]:
        return float("nan"), float("nan")
    return total_variation(pmfs[r], pmfs[0]), tpr_at_fpr(pmfs[r], pmfs[0], FPR)


def _rmse_at(stats: dict, r: int) -> float:
    rmse = stats["moment_rmse"]
    return float(rmse[r]) if r < rmse.size else float("nan")


def _sweep(quick: bool, lf: np.ndarray) -> tuple[list[dict], list[dict]]:
    advantage_rows, estimate_rows = [], []
    rates = QUICK_IMAGES_PER_DAY if quick else IMAGES_PER_DAY
    horizons = QUICK_HORIZONS_DAYS if quick else HORIZONS_DAYS
    for n_day in rates:
        for days in horizons:
            n_images = n_day * days
            for t in THRESHOLDS:
                for model in MODELS:
                    for p in _probabilities(quick):
                        s = _setting(n_images, t, float(p), model, lf)
                        base = {
                            "images_per_day": n_day, "days": days, "images": n_images, "threshold": t,
                            "cover": model, "capacity": _cap(model) or "", "synthetic_probability": float(p),
                            "expected_synthetic": s["expected_synthetic"],
                            "expected_synthetic_over_t": s["expected_synthetic"] / t,
                        }
                        for r in _reference_matches(t):
                            tv, tpr = _advantage(s["pmfs"], r)
                            advantage_rows.append(base | {"real_matches": r, "advantage_tv": tv, "tpr_at_fpr_0.01": tpr})
                        st = s["stats"]
                        estimate_rows.append(base | {
                            "r_half": t // 2, "r_max": t - 1,
                            "moment_rmse_r0": _rmse_at(st, 0),
                            "moment_rmse_rhalf": _rmse_at(st, t // 2),
                            "moment_rmse_rmax": _rmse_at(st, t - 1),
                            "max_abs_moment_bias": float(np.max(np.abs(st["moment_bias"]))),
                            "bayes_rmse_uniform_prior": st["bayes_rmse"],
                            "prior_rmse_uniform": math.sqrt((min(t, n_images + 1) ** 2 - 1) / 12.0),
                            "p_exact_count_uniform_prior": st["map_exact"],
                        })
    return advantage_rows, estimate_rows


def _delay_rows(quick: bool) -> list[dict]:
    rows = []
    for n_day in QUICK_IMAGES_PER_DAY if quick else IMAGES_PER_DAY:
        q = MATCHES_PER_DAY / n_day
        for t in THRESHOLDS:
            for model in MODELS:
                for p in _probabilities(quick):
                    d = detection_delay(t, float(p), q, _cap(model))
                    rows.append({
                        "images_per_day": n_day, "matches_per_day": MATCHES_PER_DAY, "threshold": t,
                        "cover": model, "capacity": _cap(model) or "", "synthetic_probability": float(p),
                        **d,
                        "days_to_detection_without_cover": t / MATCHES_PER_DAY,
                        "days_to_detection": d["uploads_to_detection"] / n_day,
                        "extra_days": d["extra_matching_uploads"] / MATCHES_PER_DAY,
                    })
    return rows


def _apple_rows(quick: bool, lf: np.ndarray) -> list[dict]:
    """The cover where Apple's wording puts it: expected synthetic vouchers over the period = t (x or / sqrt 10)."""
    rows = []
    for n_day in QUICK_IMAGES_PER_DAY if quick else IMAGES_PER_DAY:
        for days in QUICK_HORIZONS_DAYS if quick else HORIZONS_DAYS:
            n_images = n_day * days
            for t in THRESHOLDS:
                for reading, factor in (("p N = t / sqrt(10)", 1 / ORDER), ("p N = t", 1.0), ("p N = t sqrt(10)", ORDER)):
                    p = factor * t / n_images
                    row = {"images_per_day": n_day, "days": days, "images": n_images, "threshold": t,
                           "r_half": t // 2, "r_max": t - 1,
                           "apple_reading": reading, "synthetic_probability": p, "reachable": p < 1.0}
                    for model in MODELS:
                        keys = ("advantage_tv_r1", "advantage_tv_rhalf", "advantage_tv_rmax",
                                "tpr_at_fpr_0.01_rmax", "moment_rmse_rhalf", "p_exact_count_uniform_prior",
                                "extra_matching_uploads", "expected_synthetic")
                        if p >= 1.0:
                            values = dict.fromkeys(keys, float("nan"))
                        else:
                            s = _setting(n_images, t, p, model, lf)
                            pm = s["pmfs"]
                            values = dict(zip(keys, (
                                _advantage(pm, 1)[0], _advantage(pm, t // 2)[0],
                                _advantage(pm, t - 1)[0], _advantage(pm, t - 1)[1],
                                _rmse_at(s["stats"], t // 2), s["stats"]["map_exact"],
                                detection_delay(t, p, MATCHES_PER_DAY / n_day, _cap(model))["extra_matching_uploads"],
                                s["expected_synthetic"],
                            )))
                        row |= {f"{model}_{k}": v for k, v in values.items()}
                    rows.append(row)
    return rows


# --- checks: a library oracle and a seeded simulation --------------------------------


def _oracle_check(lf: np.ndarray) -> float:
    """Largest relative gap between our uncapped tail P[K >= k] and the library's binomial tail."""
    worst = 0.0
    for n_images, r, p in ((300, 29, 0.01), (3650, 15, 0.003), (18250, 1, 0.05)):
        pmf = opened_pmf(n_images, r, p, None, lf)
        tail = np.cumsum(pmf[::-1])[::-1]
        ks = np.arange(r + 1, n_images + 1, max(1, n_images // 50))
        lib = np.asarray(false_flag_probability(n_images - r, p, ks - r), dtype=float)
        keep = lib > 1e-250
        worst = max(worst, float(np.max(np.abs(tail[ks][keep] - lib[keep]) / lib[keep])))
    return worst


def _simulate_opened(rng: np.random.Generator, n_images: int, r: int, p: float, cap: int | None, reps: int) -> np.ndarray:
    """K over ``reps`` accounts, by the device's sequential rule (first ``cap`` wanting images go synthetic)."""
    wants = rng.random((reps, n_images)) < p
    synthetic = wants if cap is None else wants & (np.cumsum(wants, axis=1) <= cap)
    matching = np.zeros((reps, n_images), dtype=bool)
    if r:
        places = np.argsort(rng.random((reps, n_images)), axis=1)[:, :r]
        np.put_along_axis(matching, places, True, axis=1)
    return (synthetic | matching).sum(axis=1)


def _simulate_delay(rng: np.random.Generator, t: int, p: float, q: float, cap: int | None, reps: int, horizon: int) -> np.ndarray:
    """Uploads until ``t`` genuine matches, per simulated account (the sequential rule, as above)."""
    wants = rng.random((reps, horizon)) < p
    synthetic = wants if cap is None else wants & (np.cumsum(wants, axis=1) <= cap)
    genuine = (rng.random((reps, horizon)) < q) & ~synthetic
    count = np.cumsum(genuine, axis=1)
    if not np.all(count[:, -1] >= t):
        raise RuntimeError("simulation horizon too short for the detection delay; raise it")
    return np.argmax(count >= t, axis=1) + 1


def _simulation_rows(quick: bool, seed: int, lf: np.ndarray) -> list[dict]:
    reps = 4_000 if quick else 40_000
    opened_rng, delay_rng = (np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(seed).spawn(2))
    rows = []
    t = APPLE_THRESHOLD
    n_images = HEADLINE_RATE * 30
    for model in MODELS:
        cap = _cap(model)
        for p in (0.01, 0.1):
            for r in (0, t - 1):
                sim = _simulate_opened(opened_rng, n_images, r, p, cap, reps)
                exact = opened_pmf(n_images, r, p, cap, lf)
                k = np.arange(exact.size)
                mean, sd = float(exact @ k), math.sqrt(float(exact @ k**2) - float(exact @ k) ** 2)
                empirical = np.bincount(sim, minlength=exact.size) / reps
                rows.append({
                    "check": "opened vouchers K", "cover": model, "images": n_images, "threshold": t,
                    "synthetic_probability": p, "real_matches": r, "replicates": reps,
                    "exact_mean": mean, "simulated_mean": float(sim.mean()),
                    "simulated_mean_ci95_half": 1.96 * float(sim.std(ddof=1)) / math.sqrt(reps),
                    "exact_sd": sd, "simulated_sd": float(sim.std(ddof=1)),
                    "tv_simulated_vs_exact": total_variation(empirical, exact),
                })
        for p in (0.01, 0.3):
            q = MATCHES_PER_DAY / HEADLINE_RATE
            exact = detection_delay(t, p, q, cap)["uploads_to_detection"]
            sim = _simulate_delay(delay_rng, t, p, q, cap, reps // 4, horizon=int(6 * exact) + 200)
            rows.append({
                "check": "uploads to detection", "cover": model, "images": "", "threshold": t,
                "synthetic_probability": p, "real_matches": "", "replicates": reps // 4,
                "exact_mean": exact, "simulated_mean": float(sim.mean()),
                "simulated_mean_ci95_half": 1.96 * float(sim.std(ddof=1)) / math.sqrt(reps // 4),
                "exact_sd": "", "simulated_sd": float(sim.std(ddof=1)), "tv_simulated_vs_exact": "",
            })
    return rows


# --- the figure ---------------------------------------------------------------------


def _tradeoff_figure(adv: list[dict], est: list[dict], delay: list[dict], t: int, quick: bool) -> Figure:
    """Advantage, estimation error and detection delay against p, with Apple's range marked on each curve."""
    fig = Figure(figsize=(8, 10.5))
    ax_adv, ax_err, ax_delay = fig.subplots(3, 1, sharex=True)
    horizons = QUICK_HORIZONS_DAYS if quick else HORIZONS_DAYS
    colours = dict(zip(HORIZONS_DAYS, ("tab:purple", "tab:blue", "tab:green", "tab:orange", "tab:red")))
    styles = {"uncapped": "-", "capped": "--"}
    for days in horizons:
        n_images = HEADLINE_RATE * days
        for model in MODELS:
            def pick(rows: list[dict], **eq) -> list[dict]:
                return [row for row in rows if all(row[k] == v for k, v in eq.items())]
            a = pick(adv, images_per_day=HEADLINE_RATE, days=days, threshold=t, cover=model, real_matches=t - 1)
            e = pick(est, images_per_day=HEADLINE_RATE, days=days, threshold=t, cover=model)
            label = f"{days} d ({n_images:,} images), {model}" + (f" s = {CAPACITY}" if model == "capped" else "")
            for ax, rows, key in ((ax_adv, a, "advantage_tv"), (ax_err, e, "moment_rmse_rhalf")):
                p = np.array([row["synthetic_probability"] for row in rows])
                y = np.array([row[key] for row in rows])
                ax.plot(p, y, styles[model], color=colours[days], label=label, linewidth=1.1)
                band = (p * n_images >= t / ORDER) & (p * n_images <= t * ORDER)
                if model == "uncapped" and band.any():
                    ax.plot(p[band], y[band], "-", color=colours[days], linewidth=5, alpha=0.35)
                    if t / n_images < 1:
                        ax.plot([t / n_images], [np.interp(np.log(t / n_images), np.log(p), y)], "o",
                                color=colours[days], markersize=5)
    for model in MODELS:
        rows = [row for row in delay if row["images_per_day"] == HEADLINE_RATE and row["threshold"] == t and row["cover"] == model]
        ax_delay.plot([row["synthetic_probability"] for row in rows], [row["extra_days"] for row in rows], styles[model],
                      color="black", label=f"{model}" + (f" (s = {CAPACITY})" if model == "capped" else ""))
    for ax in (ax_adv, ax_err, ax_delay):
        ax.set_xscale("log")
        ax.axvline(PRESET_PROBABILITY, color="grey", linestyle=":", linewidth=0.8)
        ax.grid(True, which="major", alpha=0.3)
    ax_adv.set_ylim(0, 1.02)
    ax_adv.set_ylabel(f"server's advantage\n(TV distance, R = {t - 1} vs R = 0)")
    ax_adv.set_title(
        f"Synthetic cover at t = {t}, {HEADLINE_RATE} images/day. Thick segment: Apple's wording\n"
        f"(expected synthetic vouchers within a factor sqrt(10) of t; dot: exactly t). Dotted: preset p = {PRESET_PROBABILITY:g}",
        fontsize=9,
    )
    ax_adv.legend(fontsize=6, ncol=2, loc="lower left")
    ax_err.set_yscale("log")
    ax_err.axhline(math.sqrt((t * t - 1) / 12.0), color="grey", linewidth=0.8, linestyle="-.")
    ax_err.set_ylabel(f"RMSE of the server's estimate\nof R (R = {t // 2}); dash-dot: guessing")
    ax_delay.set_yscale("log")
    ax_delay.set_ylabel(f"extra days to detection\n({MATCHES_PER_DAY} matching upload/day)")
    ax_delay.set_xlabel("synthetic probability p (per upload)")
    ax_delay.legend(fontsize=7)
    return fig


def reproduce(out_dir: Path, *, quick: bool, seed: int) -> None:
    out_dir = Path(out_dir)
    n_max = max(IMAGES_PER_DAY) * max(HORIZONS_DAYS)  # the oracle check uses the largest account
    lf = _log_factorials(n_max)
    advantage, estimates = _sweep(quick, lf)
    delay = _delay_rows(quick)
    apple = _apple_rows(quick, lf)
    simulation = _simulation_rows(quick, seed, lf)
    write_csv(out_dir / "advantage.csv", advantage)
    write_csv(out_dir / "estimate.csv", estimates)
    write_csv(out_dir / "delay.csv", delay)
    write_csv(out_dir / "apple_range.csv", apple)
    write_csv(out_dir / "simulation_check.csv", simulation)
    for t in THRESHOLDS:
        save_figure(_tradeoff_figure(advantage, estimates, delay, t, quick), out_dir, f"tradeoff_t{t}")
    write_json(out_dir / "summary.json", {
        "paper": "synthetic-cover",
        "mode": "quick" if quick else "full",
        "seed": seed,
        "seed_used": "simulation_check.csv only; every other number is exact",
        "preset": {"threshold": APPLE_THRESHOLD, "synthetic_capacity": CAPACITY,
                   "synthetic_probability": PRESET_PROBABILITY},
        "grid": {"synthetic_probability": [P_RANGE[0], P_RANGE[1], P_POINTS_QUICK if quick else P_POINTS_FULL],
                 "days": list(QUICK_HORIZONS_DAYS if quick else HORIZONS_DAYS),
                 "images_per_day": list(QUICK_IMAGES_PER_DAY if quick else IMAGES_PER_DAY),
                 "thresholds": list(THRESHOLDS)},
        "max_relative_gap_to_library_binomial_tail": _oracle_check(lf),
        "max_tv_simulated_vs_exact": max(r["tv_simulated_vs_exact"] for r in simulation if r["tv_simulated_vs_exact"] != ""),
    })
