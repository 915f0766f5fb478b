"""ECG workflow: WFDB records and EDF files, R peaks, beat features, synthetic ECG and plots.

From WFDB records (MIT-BIH or any other) or EDF/BDF files to a feature matrix of heartbeats
ready for an anomaly detector, with AAMI beat classes and record groups for
cross-validation across patients. This subpackage does not import torch.

Examples
--------
>>> from sigflow.ecg import example_records, load_beats
>>> X, y, groups = load_beats(example_records())
>>> X.dtype, X.shape[1]
(dtype('float64'), 31)
"""

from ._aami import AAMI_CLASSES, AAMI_MAP, aami_class
from ._beats import Beats, load_beats, segment_beats
from ._detector import make_beat_detector
from ._example_data import example_records
from ._filters import bandpass_ecg
from ._plots import plot_score_histogram, plot_scores, score_color_norm
from ._record import ECGRecord, RecordFormatError, load_record
from ._rpeaks import detect_r_peaks, rpeak_accuracy
from ._synthetic import EXAMPLE_RECORDS, make_synthetic_ecg, write_synthetic_record

__all__ = [
    "AAMI_CLASSES",
    "AAMI_MAP",
    "Beats",
    "ECGRecord",
    "EXAMPLE_RECORDS",
    "RecordFormatError",
    "aami_class",
    "bandpass_ecg",
    "detect_r_peaks",
    "example_records",
    "load_beats",
    "load_record",
    "make_beat_detector",
    "make_synthetic_ecg",
    "plot_score_histogram",
    "plot_scores",
    "score_color_norm",
    "rpeak_accuracy",
    "segment_beats",
    "write_synthetic_record",
]
