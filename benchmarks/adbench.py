"""Benchmark sigflow.FlowAnomalyDetector against scikit-learn and PyOD on ADBench sets.

Run from the repository root::

    python benchmarks/adbench.py                      # 9 sets, 2 protocols, 3 seeds
    python benchmarks/adbench.py --quick              # 1 seed, 3 small sets: a smoke test
    python benchmarks/adbench.py --protocols novelty --out novelty.json
    python benchmarks/adbench.py --report novelty.json unsupervised.json
    python benchmarks/adbench.py --timing             # fit of 50,000 x 10 points only

Data: the ADBench ``.npz`` files (``X``, ``y`` with 1 = anomaly) in
``$SIGFLOW_SHARED_DATA/adbench`` (default ``../shared/data/adbench`` next to the
repository). They are read in place, never copied.

Protocols (GUIDE section 5):

* ``novelty``: fit on a random half of the normal points; test on the other half plus
  all anomalies.
* ``unsupervised`` (ADBench's): stratified 70/30 split; fit on the 70 % including its
  anomalies; test on the 30 %.

Every method sees the same split and the same preprocessing: a ``StandardScaler``
fitted on the training part. Scores are oriented "higher = more abnormal":
``-score_samples`` for scikit-learn and sigflow, ``decision_function`` for PyOD (ECOD and
COPOD one test row at a time: scored as one batch, the test rows enter their ECDFs). Peers
that select a hyper-parameter do so on the training rows only (GaussianMixture: size and
regularisation by cross-validated likelihood). AUROC and average precision treat
anomalies as the positive class. Results of each (protocol, dataset, seed) are appended to
the JSON file ``--out`` as soon as they exist, so a long run can be reported on part way
(``--report``).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KernelDensity, LocalOutlierFactor
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM
from threadpoolctl import threadpool_limits

import sigflow
from sigflow import FlowAnomalyDetector

REPO = Path(__file__).resolve().parents[1]
DATASETS = (
    "4_breastw",
    "6_cardio",
    "7_Cardiotocography",
    "15_Hepatitis",
    "28_pendigits",
    "29_Pima",
    "31_satimage-2",
    "38_thyroid",
    "42_WBC",
)
QUICK_DATASETS = ("42_WBC", "4_breastw", "38_thyroid")
PROTOCOLS = ("novelty", "unsupervised")
METHODS = ("sigflow", "IForest", "LOF", "OCSVM", "GMM", "KDE", "KNN", "ECOD", "COPOD")

# The per-dataset AUROC table of the ADBench paper (Han et al., NeurIPS 2022, appendix)
# could not be retrieved from a source we could check, so none of its numbers are quoted.
# The only per-dataset numbers found are a development result file in the ADBench
# repository (Minqi824/ADBench, result/AUCROC_DB_test_Tabular_None_None_unsupervise.csv,
# commit 6a9c8b0): unsupervised setting (no labelled anomalies), 3 seeds, PyOD defaults,
# on the DAMI versions of three of our sets (WBC_withoutdupl_v10, Hepatitis_withoutdupl_16,
# Pima_withoutdupl_35). Means over its 3 seeds, rounded to 3 decimals; not the paper's table.
ADBENCH_REPO_DEV = {
    "29_Pima": dict(IForest=0.724, OCSVM=0.669, COPOD=0.691, ECOD=0.631, KNN=0.734, LOF=0.657),
    "15_Hepatitis": dict(IForest=0.687, OCSVM=0.677, COPOD=0.821, ECOD=0.752, KNN=0.528, LOF=0.380),
    "42_WBC": dict(IForest=0.989, OCSVM=0.990, COPOD=0.991, ECOD=0.991, KNN=0.905, LOF=0.543),
}


def data_dir():
    root = os.environ.get("SIGFLOW_SHARED_DATA")
    base = Path(root) if root else REPO.parent / "shared" / "data"
    return base / "adbench"


def load(name):
    with np.load(data_dir() / f"{name}.npz") as d:
        X = np.asarray(d["X"], dtype=np.float64)
        y = np.asarray(d["y"]).astype(int).ravel()
    return X, y


def split(X, y, protocol, seed):
    rng = np.random.default_rng(seed)
    if protocol == "novelty":
        normal = rng.permutation(np.flatnonzero(y == 0))
        half = len(normal) // 2
        train = normal[:half]
        test = np.concatenate([normal[half:], np.flatnonzero(y == 1)])
        return X[train], X[test], y[test]
    X_tr, X_te, _, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
    return X_tr, X_te, y_te


# --- methods: each returns an "abnormality" score on X_test (higher = more abnormal) ----


def _sigflow(X_tr, X_te, seed, params):
    det = FlowAnomalyDetector(random_state=seed, **params).fit(X_tr)
    return -det.score_samples(X_te)


def _iforest(X_tr, X_te, seed, params):
    return -IsolationForest(random_state=seed).fit(X_tr).score_samples(X_te)


def _lof(X_tr, X_te, seed, params):
    k = min(20, len(X_tr) - 1)
    return -LocalOutlierFactor(n_neighbors=k, novelty=True).fit(X_tr).score_samples(X_te)


def _ocsvm(X_tr, X_te, seed, params):
    return -OneClassSVM().fit(X_tr).score_samples(X_te)


def _gmm(X_tr, X_te, seed, params):
    """Full-covariance GMM; ``n_components`` (1, 2, 4, 6, 8, 10) and ``reg_covar`` (1e-3 to 1,
    added to every covariance's diagonal, on standardised data) chosen together by the 3-fold
    cross-validated log-likelihood of the training rows.

    (BIC with ``reg_covar=1e-4`` rewarded nearly singular components on small or
    discrete-valued sets, such as Hepatitis' 33 rows in 19 dimensions, while sigflow
    smooths its training data: a handicap, not the model's ability.)
    """
    from sklearn.model_selection import GridSearchCV

    ks = [k for k in (1, 2, 4, 6, 8, 10) if 3 * k <= len(X_tr)] or [1]
    grid = {"n_components": ks, "reg_covar": [1e-3, 1e-2, 1e-1, 1.0]}
    search = GridSearchCV(
        GaussianMixture(covariance_type="full", random_state=seed), grid,
        cv=min(3, len(X_tr)), error_score=-np.inf,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(X_tr)
    return -search.best_estimator_.score_samples(X_te)


def _kde(X_tr, X_te, seed, params):
    """Gaussian KDE, bandwidth by Scott's rule (on standardized data)."""
    return -KernelDensity(bandwidth="scott").fit(X_tr).score_samples(X_te)


def _pyod(cls, one_row_at_a_time=False):
    def run(X_tr, X_te, seed, params):
        # PyOD: decision_function is higher for more abnormal samples.
        model = cls().fit(X_tr)
        if one_row_at_a_time:
            # ECOD and COPOD score a batch by recomputing their ECDFs on the training rows
            # joined with the whole batch: the test rows (in the novelty protocol every
            # anomaly) would shape each other's scores. Each row is scored with the
            # training rows alone, as a detector in use would score a new sample.
            return np.array([model.decision_function(X_te[i:i + 1])[0]
                             for i in range(len(X_te))])
        return model.decision_function(X_te)

    return run


def _methods():
    from pyod.models.copod import COPOD
    from pyod.models.ecod import ECOD
    from pyod.models.knn import KNN

    return {
        "sigflow": _sigflow,
        "IForest": _iforest,
        "LOF": _lof,
        "OCSVM": _ocsvm,
        "GMM": _gmm,
        "KDE": _kde,
        "KNN": _pyod(KNN),
        "ECOD": _pyod(ECOD, one_row_at_a_time=True),
        "COPOD": _pyod(COPOD, one_row_at_a_time=True),
    }


def evaluate(y, score):
    score = np.asarray(score, dtype=np.float64)
    bad = ~np.isfinite(score)
    if bad.any():  # NaN and +inf count as the most abnormal, -inf as the least
        finite = score[~bad]
        top = finite.max() + 1.0 if finite.size else 1.0
        bottom = finite.min() - 1.0 if finite.size else -1.0
        score = np.where(np.isnan(score) | (score > 0), top, score)
        score = np.where(np.isfinite(score), score, bottom)
    return roc_auc_score(y, score), average_precision_score(y, score), int(bad.sum())


# --- bookkeeping ----------------------------------------------------------------------


def _git(*args):
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def environment():
    diff = _git("diff", "HEAD", "--", "sigflow")
    untracked = _git("ls-files", "--others", "--exclude-standard", "--", "sigflow")
    cpu = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import pyod

    sigflow_path = Path(sigflow.__file__).resolve().parent
    in_repo = sigflow_path.is_relative_to(REPO)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cores": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "gpu": torch.cuda.is_available(),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        # sigflow imported from elsewhere (a snapshot on PYTHONPATH): the repository's
        # commit and working tree say nothing about the code measured.
        "sigflow_path": str(sigflow_path),
        "sigflow_commit": _git("log", "-1", "--format=%h", "--", "sigflow") if in_repo else None,
        "sigflow_worktree_diff_sha1": (
            hashlib.sha1(diff.encode()).hexdigest()[:10] if diff and in_repo else ""
        ),
        "sigflow_untracked": untracked.split() if in_repo else [],
        "versions": {
            "python": platform.python_version(),
            "sigflow": getattr(sigflow, "__version__", "?"),
            "torch": torch.__version__,
            "scikit-learn": sklearn.__version__,
            "pyod": pyod.__version__,
            "numpy": np.__version__,
        },
    }


def run_benchmark(args):
    methods = _methods()
    selected = args.methods.split(",") if args.methods else list(METHODS)
    flow_params = json.loads(args.flow_params) if args.flow_params else {}
    out = Path(args.out)
    doc = {"env": environment(), "flow_params": flow_params, "results": []}
    print(json.dumps(doc["env"]), flush=True)
    for protocol in args.protocols.split(","):
        for seed in args.seeds:
            for name in args.datasets:
                X, y = load(name)
                X_tr, X_te, y_te = split(X, y, protocol, seed)
                scaler = StandardScaler().fit(X_tr)
                X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
                for method in selected:
                    t0 = time.perf_counter()
                    score = methods[method](X_tr, X_te, seed, flow_params)
                    seconds = time.perf_counter() - t0
                    auroc, ap, n_bad = evaluate(y_te, score)
                    row = dict(
                        protocol=protocol,
                        dataset=name,
                        seed=seed,
                        method=method,
                        auroc=auroc,
                        ap=ap,
                        seconds=seconds,
                        n_train=len(X_tr),
                        n_test=len(X_te),
                        n_nonfinite=n_bad,
                    )
                    doc["results"].append(row)
                    print(
                        f"{protocol:12s} seed {seed} {name:20s} {method:8s} "
                        f"AUROC {auroc:.3f} AP {ap:.3f} {seconds:7.1f} s"
                        + (f" ({n_bad} non-finite)" if n_bad else ""),
                        flush=True,
                    )
                    tmp = out.with_suffix(".tmp")
                    tmp.write_text(json.dumps(doc, indent=1))
                    tmp.replace(out)
    doc["env"]["load_average_end"] = os.getloadavg()
    out.write_text(json.dumps(doc, indent=1))
    print(report([out]))


def report(paths, drop=()):
    rows, envs, seen = [], [], set()
    for p in paths:
        doc = json.loads(Path(p).read_text())
        envs.append(doc["env"])
        label = doc.get("label") or (
            f"sigflow {json.dumps(doc['flow_params'])}" if doc.get("flow_params") else None
        )
        for r in doc["results"]:
            if label and r["method"] == "sigflow":
                r = {**r, "method": label}
            key = (r["protocol"], r["dataset"], r["seed"], r["method"])
            if key not in seen:  # files may overlap; a seeded run gives the same result
                seen.add(key)
                rows.append(r)
    lines = []
    for protocol in PROTOCOLS:
        prot = [r for r in rows if r["protocol"] == protocol and r["method"] not in drop]
        # keep only (dataset, seed) runs that every method finished: the same splits for all
        names = {r["method"] for r in prot}
        done = {}
        for r in prot:
            done.setdefault((r["dataset"], r["seed"]), set()).add(r["method"])
        prot = [r for r in prot if done[r["dataset"], r["seed"]] == names]
        if not prot:
            continue
        datasets = [d for d in DATASETS if any(r["dataset"] == d for r in prot)]
        seeds = sorted({r["seed"] for r in prot})
        for m in dict.fromkeys(r["method"] for r in prot):  # label methods run on fewer seeds
            own = sorted({r["seed"] for r in prot if r["method"] == m})
            if own != seeds:
                label = f"{m} (seed {','.join(map(str, own))})"
                prot = [{**r, "method": label} if r["method"] == m else r for r in prot]
        methods = list(dict.fromkeys(r["method"] for r in prot))
        for metric, title in (("auroc", "AUROC"), ("ap", "average precision")):
            lines.append(f"\n### {protocol}: {title} (mean over seeds {seeds})\n")
            lines.append("| dataset | seeds | " + " | ".join(methods) + " |")
            lines.append("|---|---:|" + "---:|" * len(methods))
            means = {m: [] for m in methods}
            for d in datasets:
                cells = []
                vals = {}
                for m in methods:
                    v = [r[metric] for r in prot if r["dataset"] == d and r["method"] == m]
                    vals[m] = np.mean(v) if v else np.nan
                    means[m].append(vals[m])
                best = np.nanmax(list(vals.values()))
                for m in methods:
                    v = vals[m]
                    cell = "" if np.isnan(v) else f"{v:.3f}"
                    cells.append(f"**{cell}**" if v == best else cell)
                n_seeds = len({r["seed"] for r in prot if r["dataset"] == d})
                lines.append(f"| {d} | {n_seeds} | " + " | ".join(cells) + " |")
            avg = {m: np.mean(means[m]) for m in methods}
            best = max(avg.values())
            cells = [(f"**{avg[m]:.3f}**" if avg[m] == best else f"{avg[m]:.3f}") for m in methods]
            lines.append("| **mean** | | " + " | ".join(cells) + " |")

            def per_set(m, d, metric=metric, prot=prot):
                return np.mean([r[metric] for r in prot if r["dataset"] == d and r["method"] == m])

            rank = {
                m: np.mean(
                    [1 + sum(per_set(o, d) > per_set(m, d) for o in methods) for d in datasets]
                )
                for m in methods
            }
            lines.append("| mean rank | | " + " | ".join(f"{rank[m]:.1f}" for m in methods) + " |")
            if len(seeds) > 1:  # is the mean's order the same on every seed?
                for s in seeds:
                    by = {}
                    for m in methods:
                        v = [r[metric] for r in prot if r["seed"] == s and r["method"] == m]
                        by[m] = np.mean(v) if v else np.nan
                    top = np.nanmax(list(by.values()))
                    cells = [
                        "" if np.isnan(by[m])
                        else f"**{by[m]:.3f}**" if by[m] == top else f"{by[m]:.3f}"
                        for m in methods
                    ]
                    lines.append(f"| mean, seed {s} | | " + " | ".join(cells) + " |")
        t = {m: np.mean([r["seconds"] for r in prot if r["method"] == m]) for m in methods}
        lines.append(
            f"\nMean time per fit+score ({protocol}), s: "
            + ", ".join(f"{m} {t[m]:.2f}" for m in methods)
        )
        if protocol == "unsupervised":
            lines.append(reference_table(prot, datasets))
    return "\n".join(lines)


def reference_table(prot, datasets):
    peers = ("IForest", "LOF", "OCSVM", "KNN", "ECOD", "COPOD")
    lines = [
        "\n### unsupervised: AUROC, ours / ADBench repository development file "
        "(not the paper's table; see ADBENCH_REPO_DEV)\n"
    ]
    lines.append("| dataset | " + " | ".join(peers) + " |")
    lines.append("|---|" + "---:|" * len(peers))
    for d in datasets:
        if d not in ADBENCH_REPO_DEV:
            continue
        cells = []
        for m in peers:
            v = [r["auroc"] for r in prot if r["dataset"] == d and r["method"] == m]
            ours = f"{np.mean(v):.3f}" if v else "-"
            cells.append(f"{ours} / {ADBENCH_REPO_DEV[d][m]:.3f}")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def timing(args):
    """Fit FlowAnomalyDetector (defaults) on 50,000 x 10 points from a Gaussian mixture."""
    rng = np.random.default_rng(0)
    n, d = 50_000, 10
    centers = rng.normal(scale=3.0, size=(5, d))
    X = centers[rng.integers(0, 5, size=n)] + rng.normal(size=(n, d)) @ rng.normal(
        scale=0.5, size=(d, d)
    )
    load0 = os.getloadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    det = FlowAnomalyDetector(random_state=0).fit(X)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    det.score_samples(X)
    score_s = time.perf_counter() - t0
    result = dict(
        n=n,
        d=d,
        fit_seconds=fit_s,
        fit_cpu_seconds=fit_cpu,  # all threads together; near wall x threads when idle
        score_seconds=score_s,
        torch_threads=torch.get_num_threads(),
        load_before=load0,
        load_after=os.getloadavg(),
        env=environment(),
    )
    print(json.dumps(result, indent=1))
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1 seed, 3 small sets")
    p.add_argument("--seeds", default="3", help="a count (3: seeds 0,1,2) or a list: 0,2")
    p.add_argument("--datasets", default="", help="comma-separated names (default: all nine)")
    p.add_argument("--protocols", default=",".join(PROTOCOLS))
    p.add_argument("--methods", default="", help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--flow-params", default="", help="JSON of FlowAnomalyDetector parameters")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads (default 1; --timing: 2)"
    )
    p.add_argument("--out", default="adbench_results.json", help="JSON results file")
    p.add_argument("--report", nargs="+", metavar="JSON", help="only print tables from JSON files")
    p.add_argument("--drop", default="", help="--report: leave out these methods (comma list)")
    p.add_argument("--timing", action="store_true", help="only time a 50,000 x 10 fit")
    args = p.parse_args(argv)
    if args.report:
        print(report(args.report, drop=tuple(filter(None, args.drop.split(",")))))
        return
    n_threads = args.threads or (2 if args.timing else 1)
    torch.set_num_threads(n_threads)
    # BLAS threads too (GaussianMixture, KDE): oversubscribed BLAS threads stall under load
    threadpool_limits(n_threads)
    if args.timing:
        timing(args)
        return
    if args.quick:
        args.seeds = "1"
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.seeds = seeds if "," in args.seeds else list(range(seeds[0]))
    if args.datasets:
        args.datasets = [d for d in DATASETS if any(s in d for s in args.datasets.split(","))]
    else:
        args.datasets = list(QUICK_DATASETS if args.quick else DATASETS)
    run_benchmark(args)


if __name__ == "__main__":
    main()
