"""Grid search over the beat detector's key parameters, cross-validated by record.

Each candidate is fitted on the normal (N) beats of the training records only and
scored by ROC AUC on all beats of the held-out records (labels +1 normal, -1 abnormal;
the detector's ``decision_function`` is higher for normal beats), so the choice is
made for patients the detector has not seen. By default it runs on sigflow's
synthetic example records (8 candidates x 3 folds: about a minute on 2 CPU cores, most of
it in the candidates with the likelihood refinement); pass MIT-BIH records to use
real data::

    python examples/ecg_grid_search.py
    python examples/ecg_grid_search.py ../shared/data/mitdb/{101,106,119,208,209,223} --folds 3

Keep the records used here apart from the records you finally report on: the
scores of the best candidate are optimistic for the records that chose it.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.model_selection import GridSearchCV, GroupKFold

from sigflow.ecg import example_records, load_beats, make_beat_detector
from sigflow.estimators import CalibrationWarning


def normal_only_splits(y, groups, n_splits):
    """GroupKFold by record, with the training side reduced to its normal beats."""
    splits = []
    for train, test in GroupKFold(n_splits=n_splits).split(y, y, groups):
        splits.append((train[y[train] == 1], test))
    return splits


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", nargs="*", help="WFDB record paths (default: the examples)")
    parser.add_argument("--folds", type=int, default=None,
                        help="GroupKFold splits (default: min(5, number of records))")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per fit (1 is fastest for these small fits and "
                             "avoids stalls on a busy machine)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run in seconds: 2 tiny candidates, 2 folds")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    records = args.records or example_records()

    X, labels, groups = load_beats(records)
    keep = labels != "Q"  # unclassifiable beats are neither normal nor abnormal
    X, labels, groups = X[keep], labels[keep], groups[keep]
    y = np.where(labels == "N", 1, -1)
    n_splits = args.folds or (2 if args.quick else min(5, len(set(groups))))
    print(f"{len(X)} beats from {len(set(groups))} records:",
          {c: int((labels == c).sum()) for c in "NSVF" if (labels == c).any()},
          f"| GroupKFold({n_splits}) by record, fit on N beats only")

    grid = {
        "detector__n_blocks": [2, 4],
        "detector__hidden_layer_sizes": [(32, 32), (64, 64)],
        "detector__finetune_iter": [0, 100],
    }
    tiny = {}
    if args.quick:
        grid = {"detector__n_blocks": [1, 2]}
        tiny = {"hidden_layer_sizes": (8, 8), "max_iter": 20, "finetune_iter": 0,
                "n_score_draws": 2}
    search = GridSearchCV(
        make_beat_detector(random_state=0, device=args.device, **tiny),
        grid,
        scoring="roc_auc",  # positive class +1 = normal, scored by decision_function
        cv=normal_only_splits(y, groups, n_splits),
        n_jobs=args.n_jobs,
        refit=False,
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # Each fold's detector warns that its threshold rests on few calibration rows (the
        # example records are short); ROC AUC ranks the scores and does not use it.
        warnings.simplefilter("ignore", CalibrationWarning)
        search.fit(X, y)
    print(f"{len(search.cv_results_['params'])} candidates x {n_splits} folds "
          f"in {time.perf_counter() - t0:.0f} s\n")

    res = search.cv_results_
    order = np.argsort(res["rank_test_score"])
    print(f"{'rank':>4}  {'AUROC':>6}  {'std':>5}  {'fit (s)':>7}  parameters")  # per fold
    for i in order:
        params = {k.replace("detector__", ""): v for k, v in res["params"][i].items()}
        print(f"{res['rank_test_score'][i]:4d}  {res['mean_test_score'][i]:6.3f}  "
              f"{res['std_test_score'][i]:5.3f}  {res['mean_fit_time'][i]:7.2f}  {params}")
    print(f"\nbest: {search.best_params_} (mean held-out AUROC {search.best_score_:.3f})")


if __name__ == "__main__":
    main()
