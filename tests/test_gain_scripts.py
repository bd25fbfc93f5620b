"""gain_sweep / gain_summary: backbone flags, cosine schedule, table arithmetic."""

import json

import numpy as np
import pytest

from benchmarks import gain_summary
from benchmarks.gain_sweep import parse_args
from keras_ssr.data.regression_data import RegressionData
from keras_ssr.data.split import SSRSplit
from keras_ssr.modalities import get_modality


def test_cnn_filters_and_lstm_units_reach_the_backbones():
    _, config = parse_args(["--cnn-filters", "4,8", "--lstm-units", "3", "--tag", "t"])
    data = RegressionData(
        x=np.zeros((20, 12, 12, 1), "uint8"),
        y=np.arange(20, dtype="float32"),
        feature_names=("pixels",),
        name="tiny",
        modality="image",
    )
    split = SSRSplit.from_size(20, label_ratio=0.5, seed=0)
    image = get_modality("image")(config.model, config.views)
    assert image.backbone("small_cnn", data, split).filters == (4, 8)
    texts = RegressionData(
        x=np.array(["a good film", "a bad film"] * 5, dtype=object),
        y=np.arange(10, dtype="float32"),
        feature_names=("text",),
        name="texts",
        modality="text",
    )
    text = get_modality("text")(config.model, config.views)
    split = SSRSplit.from_size(10, label_ratio=0.5, seed=0)
    assert text.backbone("bilstm", texts, split).lstm_units == 3


def test_cosine_schedule_decays_to_zero_and_refuses_a_second_schedule():
    _, config = parse_args(
        ["--lr-schedule", "cosine", "--epochs", "2", "--learning-rate", "0.1"]
    )
    schedule = config.training.optimizer(5)._learning_rate
    assert float(schedule(0)) == pytest.approx(0.1)
    assert float(schedule(5)) == pytest.approx(0.05)  # half-way: (1 + cos(pi/2)) / 2
    assert float(schedule(10)) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(SystemExit):
        parse_args(["--lr-schedule", "cosine", "--lr-decay-epochs", "3"])


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
