"""benchmarks.gain_sweep / gain_summary: the backbone swap and the table arithmetic."""

import json

import numpy as np
import pytest

from benchmarks import gain_summary
from benchmarks.gain_sweep import cnn_filters, parse_args
from keras_ssr.data.regression_data import RegressionData
from keras_ssr.data.split import SSRSplit
from trainers import modality
from trainers.config import RunConfig


def tiny_images():
    return RegressionData(
        x=np.zeros((20, 12, 12, 1), "uint8"),
        y=np.arange(20, dtype="float32"),
        feature_names=("pixels",),
        name="tiny",
        modality="image",
    )


def test_cnn_filters_swaps_the_backbone_and_restores_it():
    data, config = tiny_images(), RunConfig(dataset="tiny")
    split = SSRSplit.from_size(20, label_ratio=0.5, seed=0)
    original = modality._backbone
    with cnn_filters((4, 8)):
        swapped = modality._backbone("small_cnn", data, split, config)
    assert swapped.filters == (4, 8)
    assert modality._backbone is original
    assert original("small_cnn", data, split, config).filters == (32, 64, 128)


def test_cosine_needs_steps_and_decays_to_zero():
    with pytest.raises(SystemExit):
        parse_args(["--cosine", "--epochs", "2"])
    _, config = parse_args(
        [
            "--cosine",
            "--epochs",
            "2",
            "--steps-per-epoch",
            "5",
            "--learning-rate",
            "0.1",
        ]
    )
    schedule = config.learning_rate
    assert float(schedule(0)) == pytest.approx(0.1)
    assert float(schedule(5)) == pytest.approx(0.05)  # half-way: (1 + cos(pi/2)) / 2
    assert float(schedule(10)) == pytest.approx(0.0, abs=1e-7)


def test_final_table_gap_closed_by_hand(tmp_path):
    maes = {"supervised": 10.0, "fully_supervised": 4.0, "pseudo_label": 8.0}
    with open(tmp_path / "log.test.jsonl", "w") as file:
        for method, mae in maes.items():
            for seed in range(3):
                test = {"mae": mae + 0.5 * seed, "mse": mae**2}
                line = {"dataset": "d", "method": method, "seed": seed, "test": test}
                file.write(json.dumps(line) + "\n")
    rows = gain_summary.final_rows(str(tmp_path / "log.jsonl"))
    pl = next(r for r in rows if r.startswith("| pseudo_label"))
    # Gap closed: (10.5 - 8.5) / (10.5 - 4.5) = 1/3; paired difference -2 +- 0.
    assert pl.endswith("| -2.000 ± 0.000 | 33% |")
    assert "| 8.500 ± 0.500 |" in pl
