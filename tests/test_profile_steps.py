"""ProfileSteps and op_profile: traces of real steps, phases, flag parsing."""

import keras
import numpy as np
import pytest

from keras_ssr.callbacks.profile_steps import ProfileSteps, parse_profile_steps
from keras_ssr.op_profile import phase_of, read_op_profile


def test_parse_profile_steps_and_its_errors():
    assert parse_profile_steps("5,7") == (5, 7)
    assert parse_profile_steps(" 3 ") == (3, 3)
    for bad in ("0,2", "7,5", "a,b", "1,2,3", ""):
        with pytest.raises(ValueError, match="(?i)profile"):
            parse_profile_steps(bad)


def test_phase_of_reads_tape_and_optimizer_scopes():
    assert (
        phase_of("StatefulPartitionedCall/gradient_tape/conv/Conv2DBackpropInput", "X")
        == "backward"
    )
    assert phase_of("StatefulPartitionedCall/AddN_3", "AddN") == "backward"
    assert phase_of("StatefulPartitionedCall/adam/Sqrt_4", "Sqrt") == "update"
    assert (
        phase_of("StatefulPartitionedCall/phi_adam/Mul", "Mul", ("adam", "phi_adam"))
        == "update"
    )
    assert phase_of("StatefulPartitionedCall/model/dense/MatMul", "MatMul") == "forward"


def test_callback_profiles_the_span_and_prints_the_table(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.normal(size=(64, 1)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(name="adam"), loss="mse")
    callback = ProfileSteps(tmp_path, start=3, stop=5)
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[callback], verbose=0)
    assert callback.profile is not None
    phases = callback.profile.by_phase
    assert phases["forward"] > 0 and phases["backward"] > 0 and phases["update"] > 0
    assert any("MatMul" in op for op in callback.profile.by_type)
    assert "Profile of training steps 3-5" in capsys.readouterr().out
    again = read_op_profile(tmp_path)
    assert again.by_type == callback.profile.by_type


def test_trainer_flag_profiles_the_steps_it_names(tmp_path, capsys):
    from trainers.cli import parse_args
    from trainers.run import main

    with pytest.raises(SystemExit):
        parse_args(["--profile-steps", "5,3"])
    argv = ["--methods", "supervised", "--epochs", "1", "--steps-per-epoch", "5",
            "--profile-steps", "2,3", "--verbose", "0",
            f"--output-dir={tmp_path}/runs", f"--export-dir={tmp_path}/sm",
            "--run-name=p"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Profile of training steps 2-3" in printed and "backward" in printed
    traces = list((tmp_path / "runs" / "p").rglob("*.xplane.pb"))
    assert traces
