import csv
import dataclasses
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.methods.registry import get_method
from trainers import run as run_module
from trainers.run import main, parse_args

FAST = ["--epochs", "2", "--steps-per-epoch", "3", "--verbose", "0"]


def test_default_cli_path_end_to_end(tmp_path, capsys):
    out, exp = str(tmp_path / "runs"), str(tmp_path / "savedmodels")
    assert (
        main(FAST + ["--output-dir", out, "--export-dir", exp, "--run-name", "r"]) == 0
    )
    printed = capsys.readouterr().out
    for method in ("supervised", "pseudo_label", "mean_teacher"):
        assert method in printed
    assert "test MAE" in printed and "test R2" in printed
    results = json.load(open(os.path.join(out, "r", "results.json")))
    assert results["config"]["data"]["dataset"] == "california_housing"
    assert results["config"]["data"]["label_ratio"] == 0.05
    assert [r["method"] for r in results["records"]] == [
        "supervised",
        "pseudo_label",
        "mean_teacher",
    ]
    for record in results["records"]:
        assert record["test_mae"] > 0 and -1 < record["test_r2"] < 1
        assert record["best_epoch"] in (1, 2)
    rows = list(csv.DictReader(open(os.path.join(out, "r", "results.csv"))))
    assert len(rows) == 6 and {r["kind"] for r in rows} == {"seed", "mean_std"}
    for method in ("supervised", "pseudo_label", "mean_teacher"):
        tb = os.path.join(out, "r", "tensorboard", method, "seed_0")
        assert glob.glob(os.path.join(tb, "train", "events.out.tfevents.*"))
        assert glob.glob(os.path.join(tb, "validation", "events.out.tfevents.*"))
        assert os.path.exists(os.path.join(exp, "r", method, "1", "saved_model.pb"))


def test_seeds_aggregate_mean_and_std(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "runs")
    args = FAST + [
        "--methods",
        "supervised",
        "--seeds",
        "0-1",
        "--num-labels",
        "50",
        "--output-dir",
        out,
        "--export-dir",
        str(tmp_path / "sm"),
        "--run-name",
        "s",
        "--hidden-units",
        "8",
    ]
    main(args)
    results = json.load(open(os.path.join(out, "s", "results.json")))
    maes = [r["test_mae"] for r in results["records"]]
    agg = results["aggregates"][0]
    assert agg["num_seeds"] == 2
    assert agg["test_mae_mean"] == pytest.approx(np.mean(maes))
    assert agg["test_mae_std"] == pytest.approx(np.std(maes, ddof=1))
    assert " +- " in capsys.readouterr().out
    assert results["exports"]["supervised"]["seed"] in (0, 1)


def test_fully_supervised_labels_every_training_row(tmp_path):
    config = parse_args(FAST + ["--methods", "fully_supervised"])
    from datasets import load_dataset
    from keras_ssr.methods.registry import get_method
    from trainers.experiment import make_split

    data = load_dataset("california_housing")
    split = make_split(data, config, 0, get_method("fully_supervised"))
    assert len(split.unlabeled) == 0 and len(split.labeled) == 14448


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--dataset", "mnist"],
            "unknown dataset 'mnist'; valid: agedb_dir, california",
        ),
        (["--methods", "supervised,fixmatch"], "unknown method(s) fixmatch; valid:"),
        (["--label-ratio", "1.5"], "--label-ratio 1.5 is outside (0.0, 1.0]"),
        (["--label-ratio", "0"], "--label-ratio 0.0 is outside (0.0, 1.0]"),
        (["--seeds", "a-b"], "--seeds 'a-b': use"),
        (["--label-ratio", "0.1", "--num-labels", "5"], "give only one of"),
    ],
)
def test_bad_flags_exit_with_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_label_count_above_train_size_is_refused(tmp_path, capsys):
    argv = FAST + ["--num-labels", "999999", "--output-dir", str(tmp_path)]
    assert main(argv) == 2
    assert "num_labels=999999 is outside [1, 14448]" in capsys.readouterr().err
    with pytest.raises(ValueError, match="Use a smaller --num-labels"):
        run_module.run(parse_args(argv))


def test_help_lists_flags(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in (
        "--dataset",
        "--methods",
        "--label-ratio",
        "--num-labels",
        "--seeds",
        "--epochs",
        "--batch-size",
        "--output-dir",
        "--export-dir",
    ):
        assert flag in text


def test_hpl_cli_on_synthetic_data_with_diagnostics(tmp_path):
    out = str(tmp_path / "runs")
    argv = FAST + [
        "--dataset", "synthetic_two_group", "--methods", "hpl,hpl_joint",
        "--unroll", "adam", "--meta-period", "2", "--outer-log-variance-weight", "0.1",
        "--hpl-loss-form", "paper", "--uncertainty-input", "paper",
        "--head-learning-rate", "0.01", "--benchmark-mode",
        "--output-dir", out, "--export-dir", str(tmp_path / "sm"), "--run-name", "h",
    ]  # fmt: skip
    assert main(argv) == 0
    results = json.load(open(os.path.join(out, "h", "results.json")))
    assert results["config"]["methods"]["hpl"]["unroll"] == "adam"
    assert results["config"]["methods"]["hpl"]["meta_period"] == 2
    for method in ("hpl", "hpl_joint"):
        diag = os.path.join(out, "h", "tensorboard", method, "seed_0", "diagnostics")
        assert glob.glob(os.path.join(diag, "events.out.tfevents.*"))
    # Per-group test metrics for datasets with groups.
    assert (
        "test_A_mse" in results["records"][0] and "test_B_mse" in results["records"][0]
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--meta-period", "0"], "meta_period must be >= 1, got 0"),
        (["--unroll", "lbfgs"], "invalid choice: 'lbfgs'"),
        (["--log-variance-range=5,1"], "low must be < high"),
    ],
)
def test_bad_hpl_flags(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert message in capsys.readouterr().err


def test_l2i_cli_flags_reach_the_model(tmp_path):
    config = parse_args(
        ["--methods", "l2i_v1,l2i_v2", "--l2i-imputer", "mean_teacher",
         "--l2i-unroll", "head", "--l2i-unroll-learning-rate", "0.05",
         "--imputation-learning-rate", "0.5", "--l2i-tanh-unlabeled"]
    )  # fmt: skip
    kwargs = get_method("l2i_v2").kwargs(config.methods, total_steps=400)
    assert kwargs["imputer"] == "mean_teacher" and kwargs["unroll"] == "head"
    assert kwargs["unroll_learning_rate"] == 0.05
    assert kwargs["imputation_learning_rate"] == 0.5 and kwargs["tanh_unlabeled"]
    out = str(tmp_path / "runs")
    argv = FAST + ["--methods", "l2i_v1,l2i_v2", "--l2i-unroll", "head",
                   "--output-dir", out, "--export-dir", str(tmp_path / "sm"),
                   "--run-name", "l"]  # fmt: skip
    assert main(argv) == 0
    records = json.load(open(os.path.join(out, "l", "results.json")))["records"]
    assert [r["method"] for r in records] == ["l2i_v1", "l2i_v2"]


def test_holdout_fraction_sets_aside_a_disjoint_split():
    from keras_ssr.data.split import holdout_split

    labeled = np.arange(100, 140)
    rows, holdout = holdout_split(labeled, 0.25, seed=0)
    assert len(holdout) == 10 and len(rows) == 30
    assert set(rows).isdisjoint(holdout) and set(rows) | set(holdout) == set(labeled)
    assert holdout_split(labeled, 0.0, seed=0) == (labeled, None)
    with pytest.raises(ValueError, match="leaves no labeled rows"):
        holdout_split(labeled[:1], 0.5, seed=0)
    config = parse_args(["--holdout-fraction", "0.2", "--imputer", "mean_teacher"])
    assert config.data.holdout_fraction == 0.2
    assert config.methods["l2i"].imputer == "mean_teacher"


def test_hpl_flags_reach_the_model_kwargs():
    config = parse_args(
        ["--unroll", "adam", "--meta-period", "5", "--hpl-loss-form", "paper",
         "--uncertainty-input", "paper", "--log-variance-range=-3,4",
         "--head-learning-rate", "0.01", "--outer-log-variance-weight", "0.1",
         "--meta-learning-rate", "0.002", "--unroll-learning-rate", "0.05",
         "--rampup-fraction", "0.5", "--epochs", "4"]
    )  # fmt: skip
    kwargs = get_method("hpl").kwargs(config.methods, total_steps=40)
    assert kwargs == {
        "unlabeled_weight": 0.3, "rampup_steps": 20, "unroll": "adam",
        "unroll_learning_rate": 0.05, "meta_period": 5, "meta_learning_rate": 0.002,
        "outer_log_variance_weight": 0.1, "loss_form": "paper", "input_form": "paper",
        "log_variance_range": (-3.0, 4.0), "head_learning_rate": 0.01,
        "pseudo_label_mode": "inference", "meta_weight_decay": 0.0,
        "meta_lr_decay": False, "meta_order": "simultaneous",
        "holdout_mode": "inference",
    }  # fmt: skip
    assert get_method("supervised").kwargs(config.methods, 40) == {}
    assert get_method("mean_teacher").kwargs(config.methods, 40)["ema_decay"] == 0.99


def test_prediction_powered_methods_from_the_cli(tmp_path):
    out = str(tmp_path / "runs")
    argv = FAST + [
        "--methods", "only_labeled,ssl,ppi_fixed,ppi_closed_form,ppssl",
        "--pretrain-size", "200", "--ppi-lambda", "0.5",
        "--output-dir", out, "--export-dir", str(tmp_path / "sm"), "--run-name", "p",
    ]  # fmt: skip
    assert main(argv) == 0
    records = json.load(open(os.path.join(out, "p", "results.json")))["records"]
    assert len(records) == 5 and all(r["test_mae"] > 0 for r in records)
    for method in ("ppi_fixed", "ppssl"):
        train = os.path.join(out, "p", "tensorboard", method, "seed_0", "train")
        tags = set()
        for path in glob.glob(os.path.join(train, "events.out.tfevents.*")):
            for event in tf.compat.v1.train.summary_iterator(path):
                tags |= {v.tag for v in event.summary.value}
        assert "epoch_lambda" in tags
    # PP-SSL's lambda, every step (FAST: 2 epochs x 3 steps), Table S8 style.
    steps = []
    lambda_dir = os.path.join(out, "p", "tensorboard", "ppssl", "seed_0", "lambda")
    for path in glob.glob(os.path.join(lambda_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            steps += [
                event.step for v in event.summary.value if v.tag == "ppssl/lambda"
            ]
    assert sorted(steps) == list(range(6))


def test_teacher_pretrain_rows_leave_the_unlabeled_set():
    from datasets import load_dataset
    from trainers.experiment import make_split
    from trainers.teacher_setup import prepare_teacher

    data = load_dataset("california_housing")
    config = parse_args(["--pretrain-size", "300"])
    ppssl = get_method("ppssl")
    split = make_split(data, config, 0, ppssl)
    teacher, reduced = prepare_teacher(ppssl, data, split, config.teacher, seed=0)
    assert len(reduced.unlabeled) == len(split.unlabeled) - 300
    assert set(reduced.unlabeled) < set(split.unlabeled)
    np.testing.assert_array_equal(reduced.labeled, split.labeled)
    assert teacher.predict(data.x[:5]).shape[0] == 5
    assert prepare_teacher(get_method("hpl"), data, split, config.teacher, 0) == (
        None,
        split,
    )
    config = parse_args(["--pretrain-size", "3000000"])
    with pytest.raises(ValueError, match="--pretrain-size 3000000 must be in"):
        prepare_teacher(get_method("ssl"), data, split, config.teacher, seed=0)
    with pytest.raises(SystemExit):
        parse_args(["--pretrain-size", "0"])


def test_flag_reference_in_docs_is_current():
    """docs/trainer.md's flag table is generated from the config sections."""
    import pathlib

    from trainers.cli import FLAGS_END, FLAGS_START, flag_table

    text = (pathlib.Path(__file__).parents[1] / "docs" / "trainer.md").read_text()
    current = text.split(FLAGS_START, 1)[1].split(FLAGS_END, 1)[0]
    assert current.strip() == flag_table().strip(), (
        "docs/trainer.md is stale: run `python -m trainers.cli`"
    )


def test_every_flag_is_a_config_field_and_bad_numbers_are_refused(capsys):
    """Flags come from the sections; NaN/inf and out-of-range values exit 2."""
    from trainers.cli import build_parser
    from trainers.config import all_sections

    dests = {a.dest for a in build_parser()._actions if a.dest not in ("help",)}
    fields = {
        f"{s.name}.{f.name}"
        for s in all_sections()
        for f in dataclasses.fields(s)
        if f.metadata.get("cli", True)
    }
    assert dests - {"preset"} == fields
    for argv in (
        ["--epochs", "0"],
        ["--batch-size", "0"],
        ["--unlabeled-weight", "-1"],
        ["--learning-rate", "nan"],
        ["--learning-rate", "inf"],
        ["--unlabeled-weight", "nan"],
        ["--dropout", "1"],
    ):
        with pytest.raises(SystemExit) as info:
            parse_args(argv)
        assert info.value.code == 2, argv
        assert "error:" in capsys.readouterr().err
