"""The ``sigflow`` command line, end to end on the shipped synthetic records."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import numpy as np
import pytest

from sigflow.cli import CSV_COLUMNS, main, run_detection
from sigflow.ecg import example_records, segment_beats


def test_help_explains_both_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "detect" in out and "demo" in out and "RECORD.csv" in out


def test_console_script_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "sigflow.cli", "detect", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--train" in result.stdout and "--out" in result.stdout


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_detect_writes_a_csv_and_png_per_record(tmp_path, capsys):
    records = example_records()[:2]
    code = main(
        [
            "detect",
            *records,
            "--out",
            str(tmp_path),
            "--max-iter",
            "40",
            "--finetune-iter",
            "20",
            "-q",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "AUROC" in out
    for record in records:
        name = record.replace("\\", "/").rsplit("/", 1)[-1]
        rows = _read(tmp_path / f"{name}.csv")
        assert tuple(rows[0].keys()) == CSV_COLUMNS
        beats = segment_beats(record)
        assert len(rows) == len(beats)
        np.testing.assert_array_equal([int(r["sample"]) for r in rows], beats.samples)
        assert [r["label"] for r in rows] == beats.labels.tolist()
        p = np.array([float(r["pvalue"]) for r in rows])
        assert np.all((p > 0) & (p <= 1))
        flags = np.array([int(r["flag"]) for r in rows])
        assert set(np.unique(flags)) <= {0, 1}
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_detect_with_training_records_normal_only(tmp_path):
    train, test = example_records()[:2], example_records()[2]
    code = main(
        [
            "detect",
            test,
            "--train",
            *train,
            "--normal-only",
            "--out",
            str(tmp_path),
            "--max-iter",
            "40",
            "--finetune-iter",
            "0",
            "--no-plot",
            "-q",
        ]
    )
    assert code == 0
    name = test.replace("\\", "/").rsplit("/", 1)[-1]
    assert (tmp_path / f"{name}.csv").exists()
    assert not (tmp_path / f"{name}.png").exists()


def test_demo_runs_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--max-iter", "40", "--finetune-iter", "0", "--no-plot", "-q"]) == 0
    out = capsys.readouterr().out
    assert "AUROC" in out and "average precision" in out
    assert len(list((tmp_path / "sigflow-out").glob("*.csv"))) == len(example_records())


def test_missing_record_is_a_clear_error(tmp_path, capsys):
    assert main(["detect", str(tmp_path / "nope"), "--out", str(tmp_path), "-q"]) == 1
    err = capsys.readouterr().err
    assert "sigflow: error:" in err and "nope" in err


def test_records_with_the_same_name_are_refused_before_any_work(tmp_path, capsys):
    record = example_records()[0]
    out = tmp_path / "out"
    assert main(["detect", record, record, "--out", str(out), "-q", "--no-plot"]) == 1
    err = capsys.readouterr().err
    assert "same name would write the same files" in err and "synth01" in err
    assert not out.exists()


def test_refinement_runs_only_on_known_normal_training_beats(tmp_path):
    # unlabelled training beats include abnormal ones, which a likelihood refinement would
    # learn too: the command line leaves it out unless the training beats are known normal
    record = example_records()[:1]
    common = dict(out=tmp_path, plot=False, quiet=True, max_iter=5, stream=io.StringIO())
    unsupervised = run_detection(record, **common)["detector"][-1]
    assert unsupervised.finetune_iter == 0 and unsupervised.finetune_stats_ is None
    explicit = run_detection(record, finetune_iter=3, **common)["detector"][-1]
    assert explicit.finetune_iter == 3 and explicit.finetune_stats_["n_iter"] <= 3
