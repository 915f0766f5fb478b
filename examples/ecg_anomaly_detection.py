"""Flag abnormal heartbeats in ECG records with a flow-based anomaly detector.

Learns what normal beats look like on some records and scores every beat of
records it has never seen (cross-validation grouped by record, so the test
patients are unseen). By default it runs on sigflow's synthetic example
records; pass MIT-BIH record paths to use real data::

    python examples/ecg_anomaly_detection.py
    python examples/ecg_anomaly_detection.py ../shared/data/mitdb/{101,106,119,208} --max-iter 300

It prints AUROC and average precision (abnormal = not N) overall and for N
against each of S, V and F (anomaly score: ``-score_samples``, the negative
log-likelihood, pooled over the folds), and saves 30 s of the first record's
trace, beats coloured by anomaly score and ringed where they lie above the
threshold of the detector that scored them (set on its training beats, as
``sigflow detect`` sets it), to ``ecg_scores.png``, and a histogram of all
held-out beats' scores by class to ``ecg_histogram.png``.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import GroupKFold

from sigflow.ecg import (
    example_records,
    load_beats,
    load_record,
    make_beat_detector,
    plot_score_histogram,
    plot_scores,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", nargs="*", help="WFDB record paths (default: the examples)")
    parser.add_argument("--max-iter", type=int, default=None, help="training steps per block")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run in seconds (tiny fits; the scores mean little)")
    args = parser.parse_args(argv)
    records = args.records or example_records()
    if len(records) < 2:
        parser.error("give at least two records: each is scored by a detector fitted on "
                     "the normal beats of the others")

    X, y, groups, samples = load_beats(records, return_samples=True)
    print(f"{len(X)} beats from {len(set(groups))} records:",
          {c: int((y == c).sum()) for c in "NSVFQ" if (y == c).any()})
    if len(set(groups)) < 2:
        parser.error(f"the records hold beats from only {len(set(groups))} distinct record "
                     "name(s); give at least two different records")
    if not (y == "N").any():
        parser.error("no beat is annotated as normal (N): the detector learns from normal "
                     "beats, so the records need beat annotations")

    params = {"random_state": 0, "device": args.device}
    if args.quick:
        params.update(max_iter=20, finetune_iter=0, n_score_draws=2)
    if args.max_iter is not None:
        params["max_iter"] = args.max_iter
    scores = np.zeros(len(X))
    thresholds = np.zeros(len(X))  # the threshold of the detector that scored each beat
    n_splits = min(5, len(set(groups)))
    for train, test in GroupKFold(n_splits=n_splits).split(X, y, groups):
        train = train[y[train] == "N"]  # learn normal beats only
        det = make_beat_detector(**params).fit(X[train])
        scores[test] = -det.score_samples(X[test])  # higher = more abnormal
        thresholds[test] = -det[-1].offset_  # flagged above it

    abnormal = (y != "N") & (y != "Q")
    keep = y != "Q"
    print(f"AUROC {roc_auc_score(abnormal[keep], scores[keep]):.3f}  "
          f"AP {average_precision_score(abnormal[keep], scores[keep]):.3f}")
    for c in "SVF":
        m = (y == "N") | (y == c)
        if (y == c).any():
            print(f"  N vs {c}: AUROC {roc_auc_score(y[m] == c, scores[m]):.3f}")

    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        print("matplotlib not installed: no plots (pip install sigflow[plot])")
        return
    first = groups[0]
    m = groups == first
    rec = load_record(records[0])
    threshold = float(thresholds[m][0])  # one fold scored the whole record
    fig = plot_scores(rec.signal[:, rec.lead_index("MLII") or 0], rec.fs, samples[m], scores[m],
                      threshold=threshold, labels=y[m], duration=30, lead="MLII",
                      title=f"record {first}: beats coloured by anomaly score "
                            f"(-log-likelihood; flagged above {threshold:.4g})")
    fig.savefig("ecg_scores.png", dpi=120, bbox_inches="tight")
    # the folds' detectors have thresholds of their own: none is drawn for the pooled beats
    fig = plot_score_histogram(scores[keep], y[keep],
                               title="held-out beats of all folds (Q left out, as in the "
                                     "metrics)")
    fig.savefig("ecg_histogram.png", dpi=120, bbox_inches="tight")
    print("saved ecg_scores.png and ecg_histogram.png")


if __name__ == "__main__":
    main()
