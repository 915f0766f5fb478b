"""Abnormal heartbeats in the UCR ECG5000 data set: the flow detector next to its peers.

ECG5000 holds 5,000 heartbeats of 140 samples (one patient's long ECG, BIDMC congestive heart
failure database, each beat z-normalised). This follows the usual novelty protocol: fit on the
normal beats (class 1) of the 500-beat training file only, then rank the 4,500 test beats,
abnormal (classes 2-5) against normal, by AUROC and average precision. Every method sees the
same features, the beats projected on the 10 leading principal components of the training
beats (fitted on them alone); IsolationForest also runs on the raw beats.

The data are not shipped with sigflow (see ``data/README.md``); point the script at a folder
with the UCR archive's ``ECG5000_TRAIN.txt`` and ``ECG5000_TEST.txt`` (or the test beats as
``ECG5000_TEST_binary_float32.npz``, arrays ``X`` and ``y_abnormal``)::

    python examples/ucr_ecg5000.py --data ../shared/data/ecg5000
    SIGFLOW_SHARED_DATA=../shared/data python examples/ucr_ecg5000.py

About half a minute on one core, most of it the flow's fit (20 s); ``--quick`` is a smoke
run in seconds.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from sigflow import FlowAnomalyDetector


def load(folder):
    """(normal training beats, test beats, test labels: 1 = abnormal)."""
    folder = Path(folder)
    train_file = folder / "ECG5000_TRAIN.txt"
    if not train_file.is_file():
        raise SystemExit(f"{train_file} not found: give --data the folder that holds the "
                         "ECG5000 files (see data/README.md)")
    train = np.loadtxt(train_file)
    normal = train[train[:, 0] == 1, 1:]
    packed = folder / "ECG5000_TEST_binary_float32.npz"
    if packed.is_file():  # the test beats with 0/1 labels
        test = np.load(packed)
        return normal, np.asarray(test["X"], dtype=np.float64), np.asarray(test["y_abnormal"])
    text = folder / "ECG5000_TEST.txt"  # the UCR archive's file: class in column 0
    if not text.is_file():
        raise SystemExit(f"neither {packed.name} nor {text.name} is in {folder} (see "
                         "data/README.md)")
    test = np.loadtxt(text)
    return normal, test[:, 1:], (test[:, 0] != 1).astype(int)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shared = os.environ.get("SIGFLOW_SHARED_DATA")
    parser.add_argument("--data", default=str(Path(shared) / "ecg5000") if shared else None,
                        help="folder with the ECG5000 files (default: $SIGFLOW_SHARED_DATA/"
                             "ecg5000)")
    parser.add_argument("--components", type=int, default=10,
                        help="principal components kept (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run in seconds (a tiny flow; its scores mean little)")
    args = parser.parse_args(argv)
    if args.data is None:
        parser.error("no data folder: pass --data or set SIGFLOW_SHARED_DATA")
    normal, X_test, y_test = load(args.data)
    print(f"{len(normal)} normal training beats; {len(X_test)} test beats, "
          f"{int(y_test.sum())} abnormal ({100 * y_test.mean():.0f} %)")

    flow = {"random_state": 0, "device": "cpu"}
    if args.quick:
        flow.update(n_blocks=2, hidden_layer_sizes=(16,), max_iter=30, finetune_iter=0)
    methods = {
        "sigflow FlowAnomalyDetector": lambda: FlowAnomalyDetector(**flow),
        "IsolationForest": lambda: IsolationForest(random_state=0),
        "LocalOutlierFactor (novelty, k=20)": lambda: LocalOutlierFactor(novelty=True),
        "OneClassSVM (rbf, nu=0.1)": lambda: make_pipeline(StandardScaler(),
                                                           OneClassSVM(nu=0.1)),
    }
    rows = []
    for name, make in methods.items():
        model = make_pipeline(PCA(args.components, random_state=0), make())
        start = time.process_time()
        with warnings.catch_warnings():
            # 292 normal beats leave the flow's threshold few calibration rows; the ranking
            # measured here does not use the threshold
            warnings.filterwarnings("ignore", message="contamination='auto' is calibrated")
            model.fit(normal)
        fit_s = time.process_time() - start
        rows.append((name, -model.score_samples(X_test), fit_s))
    start = time.process_time()
    raw = IsolationForest(random_state=0).fit(normal)
    rows.append(("IsolationForest, raw beats", -raw.score_samples(X_test),
                 time.process_time() - start))

    header = f"{'method (PCA features unless said)':36s}  {'AUROC':>6}  {'AP':>6}"
    print(f"\n{header}  {'fit CPU (s)':>11}")
    for name, score, fit_s in rows:
        print(f"{name:36s}  {roc_auc_score(y_test, score):6.3f}  "
              f"{average_precision_score(y_test, score):6.3f}  {fit_s:11.1f}")


if __name__ == "__main__":
    main()
