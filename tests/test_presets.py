"""`--preset`: values applied, explicit flags win, per-modality and per-method
values resolved, results.json records it, docs/presets.md lists every value."""

import json
import pathlib

import pytest

from trainers.cli import build_parser, parse_args
from trainers.presets import PRESETS, ByModality

DOCS = pathlib.Path(__file__).parents[1] / "docs" / "presets.md"


def test_help_lists_the_four_presets(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    assert "--preset {hpl_paper,hpl_reference,l2i_reference,ppssl_paper}" in text
    assert set(PRESETS) == {
        "hpl_reference",
        "hpl_paper",
        "l2i_reference",
        "ppssl_paper",
    }


def test_every_preset_key_is_a_flag_and_is_documented():
    dests = {a.dest for a in build_parser()._actions}
    docs = DOCS.read_text()
    for name, values in PRESETS.items():
        assert f"`{name}`" in docs
        for key in values:
            field = key.split(":")[-1]
            assert field in dests, (name, key)
            assert f"`{field}`" in docs, (name, key)


def test_preset_values_by_modality_and_explicit_overrides():
    image = parse_args(["--preset", "hpl_reference", "--dataset", "rotated_mnist"])
    assert image.methods["ssl"].unlabeled_weight == 10.0
    assert image.methods["hpl"].outer_log_variance_weight == 0.1
    assert image.training.lr_decay_epochs == 10 and image.training.batch_size == 32
    text = parse_args(
        ["--preset", "hpl_reference", "--dataset", "vader_sentiment", "--epochs", "3"]
    )
    assert text.methods["ssl"].unlabeled_weight == 1.0
    assert text.methods["hpl"].outer_log_variance_weight == 1.0
    assert text.training.lr_decay_epochs is None and text.training.epochs == 3
    assert text.preset["overrides"] == {"training.epochs": 3}
    assert text.preset["values"]["training.epochs"] == 200
    paper = parse_args(["--preset", "hpl_paper"])
    assert paper.methods["hpl"].loss_form == "paper"
    assert (
        paper.methods["hpl"].unroll == "sgd" and paper.methods["hpl"].meta_period == 1
    )
    assert ByModality(text=2).resolve("image") is None


def test_per_method_values_and_their_override():
    config = parse_args(["--preset", "l2i_reference"])
    v1, v2 = (config.method_sections(m)["l2i"] for m in ("l2i_v1", "l2i_v2"))
    assert (v1.unroll_rate_factor, v1.tanh_unlabeled) == (1.0, False)
    assert (v2.unroll_rate_factor, v2.tanh_unlabeled) == (10.0, True)
    assert config.methods["l2i"].step == "algorithm1"
    forced = parse_args(["--preset", "l2i_reference", "--l2i-unroll-rate-factor", "3"])
    for method in ("l2i_v1", "l2i_v2"):
        assert forced.method_sections(method)["l2i"].unroll_rate_factor == 3.0
    assert "l2i.unroll_rate_factor" in forced.preset["overrides"]


def test_results_json_records_the_preset(tmp_path):
    from trainers.run import main

    argv = ["--preset", "ppssl_paper", "--dataset", "synthetic_two_group",
            "--methods", "ppssl", "--epochs", "1", "--steps-per-epoch", "2",
            "--pretrain-size", "100", "--verbose", "0",
            f"--output-dir={tmp_path}/runs", f"--export-dir={tmp_path}/sm",
            "--run-name=p"]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads((tmp_path / "runs" / "p" / "results.json").read_text())
    preset = saved["config"]["preset"]
    assert preset["name"] == "ppssl_paper"
    assert preset["values"]["data.num_labels"] == 20
    assert preset["overrides"]["training.epochs"] == 1
    assert saved["config"]["data"]["num_labels"] == 20


def test_modality_defaults_apply_under_flags_and_presets():
    from trainers.presets import MODALITY_DEFAULTS

    image = parse_args(["--dataset", "rotated_mnist"])
    assert image.methods["ssl"].unlabeled_weight == 1.0
    assert image.methods["ssl"].rampup_fraction == 0.1
    assert image.preset["modality_defaults"] == {
        k: v.image for k, v in MODALITY_DEFAULTS.items()
    }
    tabular = parse_args(["--dataset", "california_housing"])
    assert tabular.methods["ssl"].unlabeled_weight == 0.3  # the field's default
    assert tabular.preset["modality_defaults"] == {}
    flag = parse_args(["--dataset", "rotated_mnist", "--unlabeled-weight", "2"])
    assert flag.methods["ssl"].unlabeled_weight == 2.0
    assert "ssl.unlabeled_weight" not in flag.preset["modality_defaults"]
    preset = parse_args(["--dataset", "rotated_mnist", "--preset", "hpl_reference"])
    assert preset.methods["ssl"].unlabeled_weight == 10.0  # the preset wins
    assert preset.methods["ssl"].rampup_fraction == 0.0
    tfds = parse_args(["--dataset", "tfds:anything", "--target", "y"])
    assert tfds.preset["modality_defaults"] == {}
