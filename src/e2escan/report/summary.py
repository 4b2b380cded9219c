"""The readable end-of-run table, and the comparison of two results folders."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScenarioError
from ..metrics.probability import fisher_exact, mcnemar_exact
from ..metrics.run import Attacks, PooledMetrics, Rate, RunSummary
from .run_tables import read_run_summary
from .tables import format_table


def _rate(entry: Rate) -> str:
    return f"{entry.count:,} of {entry.of:,}"


def _ci(entry: Rate) -> str:
    if entry.of == 0:
        return "-"
    return f"{entry.rate:.3g}  [{entry.ci_low:.3g}, {entry.ci_high:.3g}]"


def format_summary(summary: RunSummary) -> str:
    """The end-of-run table printed by ``e2escan run``."""
    head, headers, rows = summary_table(summary)
    return format_table(rows, headers, head)


def _attack_rows(att: Attacks | None) -> list[tuple[str, str, str]]:
    rows = []
    if att is not None and (e := att.evasion) is not None:
        rows.append(("evasion: attacked known images missed", _rate(e.evaded),
                     f"{_ci(e.evaded)}; target distance {e.min_distance}, SSIM >= {e.min_ssim}"))
    if att is not None and (col := att.collision) is not None:
        rows.append(("collision: crafted images matching", _rate(col.crafted_images_matching),
                     f"{_ci(col.crafted_images_matching)}; SSIM >= {col.min_ssim}, {col.max_queries} queries"))
        rows.append(("collision: target accounts flagged", _rate(col.targets_flagged), _ci(col.targets_flagged)))
    if att is not None and (p := att.poisoning) is not None:
        rows.append(("poisoning: holders of the target revealed", _rate(p.holders_revealed),
                     f"{_ci(p.holders_revealed)}; {p.poison_entries} of {p.database_entries} entries poisoned"))
    return rows


def _leakage_rows(m: PooledMetrics) -> list[tuple[str, str, str]]:
    from ..metrics.leakage import feature_label

    rows = []
    tests = [t for t in m.leakage_test if t]
    if len(tests) == 1:
        t = tests[0]
        rows.append(("leakage on unflagged accounts", f"{t.heldout_advantage:.3f}",
                     f"held-out advantage [{t.ci_low:.2f}, {t.ci_high:.2f}], {t.positives} offenders vs "
                     f"{t.negatives:,} innocent; any of {t.features} ServerView features: {t.p_text()} "
                     f"(max over features, {t.permutations} permutations; chance is 0); strongest: "
                     f"{feature_label(t.best_feature)}"))
    elif tests:
        small = sum(t.p_value <= 0.05 for t in tests)
        held = float(np.median([t.heldout_advantage for t in tests]))
        rows.append(("leakage on unflagged accounts", f"{held:.3f}",
                     f"median held-out advantage over {len(tests)} replicates; max-over-features p <= 0.05 in "
                     f"{small} of them"))
    audit = [r for r in m.leakage_audit if r["features"]]
    if audit:
        top = min(audit, key=lambda r: r["p_value"])
        verdict = "undeclared LEAK" if any(r["verdict"] == "LEAK" for r in audit) else "nothing beyond LEAKAGE"
        if top["statistic"] > 0:
            what = f"strongest {top['family']}: {top['strongest_feature']} (chance {top['chance_advantage']:.3f}, p={top['p_value']:.2g})"
        else:
            what = f"no feature of {len(audit)} families differs from the ideal world"
        rows.append(("audit battery (real vs ideal view)", f"{top['advantage']:.3f}", f"{verdict}: {what}"))
    vl = [r for r in m.leakage if r.feature == "voucher_length"]
    if vl:
        rows.append(("voucher length: match vs non-match", f"{vl[0].advantage:.3f}", "advantage (0 = indistinguishable)"))
    return rows


def summary_table(summary: RunSummary) -> tuple[str, list[str], list[tuple[str, str, str]]]:
    """(heading, column headers, rows) of the headline table (the terminal table and report.html)."""
    m = summary.metrics
    pi, ac, rv, c = m.per_image, m.accounts, m.review, summary.costs
    params = ", ".join(f"{k}={v}" for k, v in summary.protocol_params_set.items()) or "defaults"
    head = (f"{summary.scenario}: protocol {summary.protocol} ({params}), hasher {summary.hasher}, "
            f"{ac.accounts_per_replicate:,} accounts x {summary.replicates} "
            f"replicate{'s' if summary.replicates != 1 else ''}, seed {summary.seed}")
    rows = [
        ("images sent", f"{pi.images:,}", f"{pi.known_images:,} known, {pi.innocent_images:,} innocent"),
        ("per-image false-positive rate", _rate(pi.false_positive), _ci(pi.false_positive)),
        ("per-image false-negative rate", _rate(pi.false_negative), _ci(pi.false_negative)),
        ("innocent accounts flagged", _rate(ac.innocent_flagged), _ci(ac.innocent_flagged)),
        ("innocent accounts wrongly confirmed", _rate(ac.innocent_falsely_confirmed), _ci(ac.innocent_falsely_confirmed)),
        ("offenders flagged", _rate(ac.offenders_flagged), _ci(ac.offenders_flagged)),
        ("offenders detected (confirmed)", _rate(ac.offenders_detected), _ci(ac.offenders_detected)),
        ("days to detection (mean)", "-" if ac.days_to_detection_mean is None else f"{ac.days_to_detection_mean:.2f}", ""),
        ("review cases / reviewer hours", f"{rv.cases_reviewed:,}", f"{rv.reviewer_hours:.1f} h, backlog {rv.backlog_at_end:,}"),
    ]
    rows += _attack_rows(m.attacks) + _leakage_rows(m)

    def fmt(v: float | None, unit: str) -> str:
        return "-" if v is None else f"{v:.3g} {unit}"

    if summary.engine == "statistical":
        model = m.model or {}
        rows += [
            ("model: P(innocent image matches)", f"{model.get('p_innocent_image_false_match', float('nan')):.3g}",
             f"radius {model.get('radius')}, {model.get('popular_images_matching')} popular images match"),
            ("model: P(known image matches)", f"{model.get('recall_known', float('nan')):.3g}",
             f"calibration {model.get('calibration')}"),
            ("simulation time", fmt(c.simulation_wall_s, "s"), "statistical path: costs are not simulated"),
        ]
    else:
        rows += [
            ("client cost per image", fmt(c.client_hash_ms_per_image, "ms hash"),
             fmt(c.client_voucher_ms_per_image, "ms voucher")),
            ("server cost per voucher", fmt(c.server_ingest_ms_per_voucher, "ms"), ""),
            ("bytes per message", f"{c.envelope_bytes_mean or 0:.0f} B envelope",
             f"+{c.voucher_bytes_per_message or 0:.0f} B voucher, {c.blob_bytes_mean or 0:.0f} B per attachment"),
        ]
    method = pi.false_positive.ci_method or "Wilson"
    label = ("detail (95% CI, between-replicate variance)" if method.startswith("between")
             else "detail (95% Wilson CI, conditional on this replicate's database and viral draws)"
             if summary.replicates == 1 else "detail (95% CI)")
    return head, ["measure", "value", label], rows


#: The rates ``compare`` tests, by name (``section.metric``) and how to read each from pooled metrics.
COMPARED: tuple[tuple[str, Callable[[PooledMetrics], Rate]], ...] = (
    ("per_image.false_positive", lambda m: m.per_image.false_positive),
    ("per_image.false_negative", lambda m: m.per_image.false_negative),
    ("accounts.innocent_flagged", lambda m: m.accounts.innocent_flagged),
    ("accounts.innocent_falsely_confirmed", lambda m: m.accounts.innocent_falsely_confirmed),
    ("accounts.offenders_flagged", lambda m: m.accounts.offenders_flagged),
    ("accounts.offenders_detected", lambda m: m.accounts.offenders_detected),
)


def load_summary(folder: str | Path) -> RunSummary:
    """The pooled summary of an ``e2escan run`` results folder."""
    path = Path(folder) / "summary.json"
    if not path.exists():
        raise ScenarioError(f"{folder}: no summary.json (not an `e2escan run` results folder, or the run did not finish)")
    return read_run_summary(path)


def _units(folder: Path, metric: str) -> dict[tuple[int, str], bool] | None:
    """Per-unit outcomes of a rate metric, keyed by (replicate, account or image uid); None without per-unit rows."""
    section, key = metric.split(".")
    out: dict[tuple[int, str], bool] = {}
    reps = sorted((folder / "runs").glob("rep-*"))
    if not reps:
        return None
    for rep in reps:
        r = int(rep.name.split("-")[1])
        table = rep / ("images.csv" if section == "per_image" else "accounts.csv")
        if not table.exists():
            return None
        with table.open() as fh:
            for row in csv.DictReader(fh):
                if section == "per_image":
                    known = row["kind"] == "known"
                    match = row["oracle_match"] == "True"
                    if key == "false_positive" and not known:
                        out[(r, row["uid"])] = match
                    elif key == "false_negative" and known:
                        out[(r, row["uid"])] = not match
                else:
                    offender = row["offender"] == "True"
                    flagged, confirmed = row["flagged_day"] != "", row["confirmed_day"] != ""
                    wanted = {"innocent_flagged": (not offender, flagged),
                              "innocent_falsely_confirmed": (not offender, confirmed),
                              "offenders_flagged": (offender, flagged),
                              "offenders_detected": (offender, confirmed)}[key]
                    if wanted[0]:
                        out[(r, row["account"])] = wanted[1]
    return out


def compare(dir_a: str | Path, dir_b: str | Path, out: str | Path | None = None) -> tuple[str, list[dict]]:
    """A table of headline metrics side by side, with the difference and a stated two-sided test.

    Runs with the same seed share their population and traffic, so their
    outcomes are paired unit by unit (account or image): those get McNemar's
    exact test on the discordant units. Otherwise (different seeds, or no
    per-unit rows) Fisher's exact test on the pooled counts, which treats
    every unit as independent. "DIFFERENT" means p < 0.05 for that metric
    alone (no correction over the metrics).
    """
    a, b = load_summary(dir_a), load_summary(dir_b)
    paired_runs = a.seed == b.seed and a.replicates == b.replicates
    rows: list[dict[str, Any]] = []
    for metric, read in COMPARED:
        ea, eb = read(a.metrics), read(b.metrics)
        overlap = not (ea.ci_high < eb.ci_low or eb.ci_high < ea.ci_low)
        ua = _units(Path(dir_a), metric) if paired_runs else None
        ub = _units(Path(dir_b), metric) if paired_runs else None
        if ua is not None and ub is not None and ua.keys() == ub.keys():
            only_a = sum(ua[u] and not ub[u] for u in ua)
            only_b = sum(ub[u] and not ua[u] for u in ua)
            test, p = f"McNemar, paired ({only_a} vs {only_b} discordant)", mcnemar_exact(only_a, only_a + only_b)
        else:
            test, p = "Fisher, independent", fisher_exact(ea.count, ea.of, eb.count, eb.of)
        rows.append({"metric": metric, "a": ea.rate, "a_ci_low": ea.ci_low, "a_ci_high": ea.ci_high,
                     "b": eb.rate, "b_ci_low": eb.ci_low, "b_ci_high": eb.ci_high,
                     "difference": eb.rate - ea.rate, "cis_overlap": overlap, "test": test, "p_value": p})
    ra, rb = a.metrics.review, b.metrics.review
    rows.append({"metric": "review.reviewer_hours", "a": ra.reviewer_hours, "b": rb.reviewer_hours,
                 "difference": rb.reviewer_hours - ra.reviewer_hours})
    rows.append({"metric": "review.cases_reviewed", "a": ra.cases_reviewed, "b": rb.cases_reviewed,
                 "difference": rb.cases_reviewed - ra.cases_reviewed})
    ca, cb = a.costs.numbers(), b.costs.numbers()
    for key in ("client_voucher_ms_per_image", "server_ingest_ms_per_voucher", "voucher_bytes_per_message"):
        va, vb = ca[key], cb[key]
        if va is not None and vb is not None:
            rows.append({"metric": f"costs.{key}", "a": va, "b": vb, "difference": vb - va})

    def cell(v):
        return "-" if v is None or v == "" else (f"{v:.4g}" if isinstance(v, float) else str(v))

    def verdict(r: dict) -> str:
        if "p_value" not in r:
            return ""
        return f"{'DIFFERENT' if r['p_value'] < 0.05 else 'no evidence'} (p = {r['p_value']:.2g}; {r['test']})"

    table = format_table(
        [(r["metric"], cell(r["a"]), cell(r["b"]), cell(r["difference"]), verdict(r)) for r in rows],
        ["metric", "A", "B", "B - A", "two-sided test, 5% per metric"],
        f"A = {dir_a} ({a.scenario}, {a.protocol} {a.protocol_params_set})\nB = {dir_b} ({b.scenario}, {b.protocol} {b.protocol_params_set})",
    )
    if out is not None:
        label_a, label_b = run_labels(dir_a, dir_b)
        _compare_figure(rows, Path(out), label_a, label_b)
    return table, rows


def run_labels(dir_a: str | Path, dir_b: str | Path) -> tuple[str, str]:
    """Short labels naming what differs between two runs' scenarios (e.g. "protocol.params.threshold = 3")."""
    import tomllib

    from ..outputs import flatten

    try:
        sa, sb = (flatten(tomllib.loads((Path(d) / "scenario.toml").read_text())) for d in (dir_a, dir_b))
    except (OSError, ValueError):
        return str(dir_a), str(dir_b)
    keys = [k for k in sorted(set(sa) | set(sb)) if sa.get(k) != sb.get(k) and k not in ("name", "description")]
    if not keys:
        return f"A: {Path(dir_a).name}", f"B: {Path(dir_b).name} (same scenario)"

    def label(side: dict, tag: str) -> str:
        text = ", ".join(f"{k.split('.')[-1] if k.startswith('protocol.params.') else k} = {side.get(k, '-')}"
                         for k in keys[:3])
        return f"{tag}: {text}" + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")

    return label(sa, "A"), label(sb, "B")


def _compare_figure(rows: list[dict], out: Path, label_a: str, label_b: str) -> None:
    _compare_figure_runs([(label_a, "a", rows), (label_b, "b", rows)], out, f"{label_a}  vs  {label_b}")
    from ..results import write_csv

    write_csv(out / "compare.csv", rows, fieldnames=["metric", "a", "a_ci_low", "a_ci_high", "b", "b_ci_low", "b_ci_high",
                                                     "difference", "cis_overlap", "test", "p_value"])


def _compare_figure_runs(series: list[tuple[str, str, list[dict]]], out: Path, title: str) -> None:
    """Rates with their intervals, one marker series per run: (label, side "a"/"b" of the rows, rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..results import save_figure

    fig, ax = plt.subplots(figsize=(6.4, 3.6 + 0.2 * max(0, len(series) - 2)))
    step = 0.6 / max(1, len(series) - 1)
    metrics = None
    for n, (label, side, rows) in enumerate(series):
        rate_rows = [r for r in rows if "cis_overlap" in r]
        metrics = [r["metric"] for r in rate_rows]
        y = np.arange(len(rate_rows)) + (n * step - 0.3 if len(series) > 1 else 0.0)
        vals = np.array([r[side] for r in rate_rows], dtype=float)
        lo = np.array([r[f"{side}_ci_low"] for r in rate_rows], dtype=float)
        hi = np.array([r[f"{side}_ci_high"] for r in rate_rows], dtype=float)
        ax.errorbar(vals, y, xerr=[np.maximum(vals - lo, 0), np.maximum(hi - vals, 0)], fmt="o", color=f"C{n}",
                    label=label, capsize=3)
    ax.set_yticks(np.arange(len(metrics or [])))
    ax.set_yticklabels(metrics or [], fontsize=7)
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_xlim(0, 1.1)  # rates: no negative ticks, room for the intervals at 1
    ax.set_xlabel("rate (95% CI; see compare.csv and each summary's ci_method)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    save_figure(fig, out, "compare")
    plt.close(fig)


def compare_runs(dir_a: str | Path, others: list[str | Path], out: str | Path) -> str:
    """A against each of several runs: one table per pair (as :func:`compare`), one CSV with a ``run`` column
    naming B, and one figure with every run."""
    from ..results import write_csv

    tables, all_rows, series = [], [], []
    for n, other in enumerate(others):
        table, rows = compare(dir_a, other, None)
        label_a, label_b = run_labels(dir_a, other)
        tables.append(table)
        if n == 0:
            series.append((label_a, "a", rows))
        series.append((label_b.replace("B:", f"{chr(ord('B') + n)}:", 1), "b", rows))
        all_rows += [{**r, "run": str(other)} for r in rows]
    _compare_figure_runs(series, Path(out), f"{len(others) + 1} runs against A = {dir_a}")
    write_csv(Path(out) / "compare.csv", all_rows,
              fieldnames=["run", "metric", "a", "a_ci_low", "a_ci_high", "b", "b_ci_low", "b_ci_high", "difference",
                          "cis_overlap", "test", "p_value"])
    return "\n\n".join(tables)
