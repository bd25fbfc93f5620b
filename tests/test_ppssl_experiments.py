import dataclasses
import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from experiments.ppssl import cli
from experiments.ppssl import runs as pe
from keras_ssr.callbacks.lambda_trajectory import LambdaTrajectory
from keras_ssr.data.target_scaler import TargetScaler
from keras_ssr.methods.ppi_closed_form import (
    CLOSED_FORM_POINTS,
    linear_closed_form_lambda,
)
from keras_ssr.methods.ppssl import PPSSL
from keras_ssr.models.ssr_regressor import SSRRegressor
from trainers import results

P = 3  # features of the hand-made problems


@pytest.fixture
def float64():
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx("float32")


def _problem(rng, n=8, big_n=40):
    """A hand-made standardised problem (teacher off by 1 where x0 > 0)."""
    w = np.array([1.0, -0.5, 0.3])

    def rows(k):
        x = rng.normal(size=(k, P))
        return (
            np.c_[x, np.ones(k)],
            x @ w + 0.5 * rng.normal(size=k),
            x @ w + (x[:, 0] > 0),
        )

    a_l, y_l, t_l = rows(n)
    a_u, _, t_u = rows(big_n)
    a_t, y_t, t_t = rows(30)
    return pe.Problem(
        a_l, y_l, t_l, a_u, t_u, None, None, a_t, y_t, (a_t[:, 0] > 0).astype(int),
        TargetScaler(0.0, 1.0), t_t,
    )  # fmt: skip


def _keras_model(spec, theta0, lr, optimizer):
    mode = {"adaptive": "adaptive", "ssl": "ssl", "fixed": "fixed"}[spec.kind]
    kwargs = {"unlabeled_weight": spec.value} if mode == "ssl" else {}
    if mode == "fixed":
        kwargs["lambda_value"] = spec.value
    model = PPSSL(SSRRegressor(keras.layers.Identity()), lambda_mode=mode, **kwargs)
    model.build((None, P))
    opt = keras.optimizers.Adam(lr) if optimizer == "adam" else keras.optimizers.SGD(lr)
    model.compile(optimizer=opt)
    model.build_optimizers()
    model.regressor.head.kernel.assign(theta0[:-1, None])
    model.regressor.head.bias.assign(theta0[-1:])
    return model


def _keras_batch(problem, rows_l, rows_u):
    def take(a, rows):
        return tf.constant(a if rows is None else a[rows[0]])

    x_u = take(problem.a_u[:, :-1], rows_u)
    return {
        "labeled": (take(problem.a_l[:, :-1], rows_l), take(problem.y_l, rows_l)),
        "unlabeled": (x_u, x_u),
        "holdout": (take(problem.a_l[:, :-1], rows_l), take(problem.y_l, rows_l)),
        "teacher": (take(problem.t_l, rows_l), take(problem.t_u, rows_u)),
    }


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_batched_linear_trainer_replays_ppssl_train_step(float64, optimizer):
    """The sweep's vectorised trainer is PPSSL.train_step on a linear student:
    same batches (labeled 5 of 8, unlabeled 16 of 40), 2 epochs, weights and
    lambda equal to 1e-9 for every method kind."""
    problem = _problem(np.random.default_rng(0))
    protocol = pe.Protocol(optimizer, 0.05, 2, 5, 16, patience=None)
    specs = [
        pe.RunSpec("ppssl", "adaptive", 1.0),
        pe.RunSpec("fixed", "fixed", 0.5),
        pe.RunSpec("ssl", "ssl", 0.5),
    ]
    theta0 = np.array([0.2, -0.1, 0.3, 0.05])
    batches = []
    runs = pe.train_linear_runs(
        [problem], specs, protocol, seed=3, theta0=theta0,
        on_step=lambda rows_l, rows_u: batches.append((rows_l, rows_u)),
    )  # fmt: skip
    assert len(batches) == 2 * 3 and runs.epochs_run == 2  # ceil(40 / 16) steps
    for k, spec in enumerate(specs):
        model = _keras_model(spec, theta0, 0.05, optimizer)
        lambdas = []
        for rows_l, rows_u in batches:
            logs = model.train_step(_keras_batch(problem, rows_l, rows_u))
            lambdas.append(float(logs["lambda_step"]))
        theta = np.r_[
            model.regressor.head.kernel.numpy()[:, 0], model.regressor.head.bias.numpy()
        ]
        np.testing.assert_allclose(runs.theta[0, k], theta, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(runs.lambdas[0, k], lambdas, rtol=1e-9)
    assert runs.lambdas[0, 0, 0] == 1.0 and len(set(runs.lambdas[0, 0])) > 2


def _tiny_protocol():
    return dataclasses.replace(pe.SYNTHETIC_PROTOCOL, epochs=6, patience=3)


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("sweep"))
    out = pe.run_experiment(
        "synthetic", (0, 1), best_fixed_lambda=True, values=(3.0,),
        protocol=_tiny_protocol(), run_dir=run_dir, verbose=0,
        closed_form_at=("ppi_py", "ppi_minimizer"),
    )  # fmt: skip
    return out, run_dir


def test_sweep_writes_table_json_csv_predictions_and_plots(tiny_sweep):
    out, run_dir = tiny_sweep
    for name in ("results.json", "results.csv", "predictions.npz"):
        assert os.path.getsize(os.path.join(run_dir, name)) > 0
    for name in ("mse_synthetic.png", "lambda_synthetic.png"):
        with open(os.path.join(run_dir, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # 1 bias x 2 indicator variants x 2 seeds x (teacher + 5 methods + a
    # second closed-form point + 11 lambdas)
    assert len(out["records"]) == 2 * 2 * (1 + 6 + 11)
    with open(os.path.join(run_dir, "results.json")) as f:
        saved = json.load(f)
    assert saved["records"] == json.loads(json.dumps(out["records"]))
    settings = {r["setting"] for r in out["records"]}
    assert settings == {"bias=3 indicator", "bias=3 no_indicator"}
    table = pe.format_tables(out["aggregates"], "synthetic")
    assert table.count("best_fixed_lambda") == 2 and "fixed_lambda_0.3" not in table
    assert "| total" in table and "| B" in table and "| lambda (mean)" in table
    assert table.count("closed-form lambda (seed mean) at ppi_py") == 2


def test_per_group_mse_matches_saved_predictions(tiny_sweep):
    out, run_dir = tiny_sweep
    saved = np.load(os.path.join(run_dir, "predictions.npz"))
    records = [r for r in out["records"] if r["setting"] == "bias=3 indicator"]
    methods = [r["method"] for r in records if r["seed"] == 0][1:]  # after teacher
    pred = saved["bias=3 indicator/predictions"].astype("float64")
    y, groups = saved["bias=3 indicator/targets"], saved["bias=3 indicator/groups"]
    for r in records:
        i = r["seed"]
        yhat = (saved["bias=3 indicator/teacher"][i] if r["method"] == "teacher"
                else pred[i, methods.index(r["method"])])  # fmt: skip
        b = groups[i] == 1
        assert r["mse_total"] == pytest.approx(np.mean((yhat - y[i]) ** 2), rel=1e-5)
        assert r["mse_B"] == pytest.approx(np.mean((yhat[b] - y[i][b]) ** 2), rel=1e-5)
        assert r["mse_A"] == pytest.approx(
            np.mean((yhat[~b] - y[i][~b]) ** 2), rel=1e-5
        )
    # the teacher is the true model: off by the bias (3) on group B only
    teacher = [r for r in records if r["method"] == "teacher"]
    assert all(r["mse_B"] > 9 > 2 > r["mse_A"] for r in teacher)


def test_best_fixed_lambda_is_the_argmin_and_lambda_is_recorded(tiny_sweep):
    out, _ = tiny_sweep
    for setting in {r["setting"] for r in out["records"]}:
        aggs = {a["method"]: a for a in out["aggregates"] if a["setting"] == setting}
        fixed = {lam: aggs[f"fixed_lambda_{lam:.1f}"]["mse_total_mean"]
                 for lam in pe.FIXED_LAMBDAS}  # fmt: skip
        best = min(fixed, key=fixed.get)
        assert aggs["best_fixed_lambda"]["lambda_value"] == pytest.approx(best)
        assert aggs["best_fixed_lambda"]["mse_total_mean"] == min(fixed.values())
        seeds = [r for r in out["records"] if r["setting"] == setting]
        mean = np.mean([r["mse_total"] for r in seeds if r["method"] == "ssl"])
        assert aggs["ssl"]["mse_total_mean"] == pytest.approx(mean)
        trajectory = out["trajectories"][setting]
        assert trajectory["mean_lambda"][0] == 1.0  # PP-SSL starts at 1
        assert all(0.0 <= v <= 1.0 for v in trajectory["mean_lambda"])
        assert len(trajectory["step"]) >= 6 * trajectory["steps_per_epoch"] - 4 * 4


def test_california_problem_follows_table_s2():
    small = pe.california_problem(1, seed=0)
    full = pe.california_problem(51, seed=0)
    assert small.a_l.shape == (102, 9) and small.a_test.shape == (4108, 9)
    assert small.a_u.shape == full.a_u.shape == (16328, 9)
    np.testing.assert_array_equal(small.a_u, full.a_u)  # only the teacher changes
    assert np.abs(small.a_u[:, :-1]).max() <= pe.CALIFORNIA_INPUT_CLIP
    assert np.isin(small.groups_test, (0, 1)).all() and 0.3 < small.groups_test.mean()


def _streaming(rng, k, hidden_teacher):
    """Linear-Gaussian rows; y = x w + 0.8 z + noise, z hidden from the student.
    The teacher predicts x w + 0.2 (the part the student can learn, as the
    synthetic experiment's oracle) or x w + 0.2 + 0.8 z (it knows z), plus
    its own independent error (std 0.4)."""
    x = rng.normal(size=(k, P))
    z, noise = rng.normal(size=k), 0.5 * rng.normal(size=k)
    clean = x @ np.array([1.0, -0.5, 0.3]) + 0.2
    y = clean + 0.8 * z + noise
    known = clean + 0.8 * z if hidden_teacher else clean
    teacher = known + 0.4 * rng.normal(size=k)
    return np.c_[x, np.ones(k)], y, teacher


def test_online_lambda_tracks_the_variance_optimal_lambda_at_the_optimum():
    """Fresh labeled batches (32 of 20,000 rows), unlabeled 256: the online
    lambda ends near the closed form at the least-squares optimum theta*.
    A teacher that knows z (its residual at theta* is correlated with the
    student's) keeps lambda ~0.7; for the oracle of the learnable part the
    pseudo-label residual at theta* is only the teacher's own error,
    independent of the label residual, so the variance-optimal lambda there
    is ~0, although far from theta* (at 0) it is > 0.5: lambda falls
    towards 0 as training converges (the synthetic experiment's "collapse")."""
    rng = np.random.default_rng(0)
    problems, closed = [], {}
    for hidden in (True, False):
        a_l, y_l, t_l = _streaming(rng, 20_000, hidden)
        a_u, _, t_u = _streaming(rng, 20_000, hidden)
        problems.append(pe.Problem(a_l, y_l, t_l, a_u, t_u, None, None, a_l[:2],
                                   y_l[:2], np.zeros(2), TargetScaler(0.0, 1.0),
                                   t_l[:2]))  # fmt: skip
        star = np.linalg.lstsq(a_l, y_l, rcond=None)[0]
        closed[hidden] = [
            linear_closed_form_lambda(a_l[:, :-1], y_l, t_l, a_u[:, :-1], t_u, at)
            for at in (star, np.zeros(P + 1))
        ]
    protocol = pe.Protocol("sgd", 0.02, 1, 32, 256, patience=None)
    runs = pe.train_linear_runs(problems, [pe.RunSpec("ppssl", "adaptive")], protocol)
    late = runs.lambdas[:, 0, -200:].mean(axis=1)
    assert closed[True][0] == pytest.approx(0.64 / 0.8 / 2, abs=0.1)  # n/N = 1 here
    assert late[0] == pytest.approx(0.64 / 0.8 / (1 + 32 / 256), abs=0.1)
    assert closed[False][0] < 0.05 and closed[False][1] > 0.4  # at theta*; at 0 (n = N)
    assert late[1] < 0.15


def test_lambda_trajectory_callback_logs_every_step(tmp_path):
    problem = _problem(np.random.default_rng(1))
    batches = [_keras_batch(problem, None, np.array([[*range(i, i + 16)]]))
               for i in (0, 8, 16, 24)]  # fmt: skip
    stacked = tf.nest.map_structure(lambda *t: tf.stack(t), *batches)
    dataset = tf.data.Dataset.from_tensor_slices(stacked)
    spec = pe.RunSpec("ppssl", "adaptive", 1.0)
    model = _keras_model(spec, np.zeros(P + 1), 0.05, "sgd")
    expected = []
    replay = _keras_model(spec, np.zeros(P + 1), 0.05, "sgd")
    for batch in batches:
        expected.append(float(replay.lambda_variable.numpy()))
        replay.train_step(batch)
    callback = LambdaTrajectory(str(tmp_path))
    history = model.fit(
        dataset, epochs=2, verbose=0, callbacks=[callback], shuffle=False
    )
    assert callback.values[:4] == pytest.approx(expected, rel=1e-5)
    assert len(callback.values) == 8 and callback.values[0] == 1.0
    assert history.history["lambda_step"][-1] == pytest.approx(callback.values[-1])
    assert history.history["lambda"][0] == pytest.approx(np.mean(expected), rel=1e-5)
    events = glob.glob(os.path.join(tmp_path, "events.out.tfevents.*"))
    steps = [
        (e.step, tf.make_ndarray(v.tensor).item())
        for record in tf.data.TFRecordDataset(events)
        for e in [tf.compat.v1.Event.FromString(record.numpy())]
        for v in e.summary.value
        if v.tag == "ppssl/lambda"
    ]
    assert [s for s, _ in steps] == list(range(8))
    assert [v for _, v in steps] == pytest.approx(callback.values, rel=1e-6)


def test_results_table_and_tensorboard_show_group_metrics(tmp_path):
    metrics = {"mae": 1.0, "mse": 2.0, "rmse": 1.4, "r2": 0.5}
    result = type("R", (), {})()
    result.__dict__.update(
        method="m", seed=0, best_epoch=3, validation=metrics, test=metrics,
        test_groups={"A": dict(metrics, mse=1.0), "B": dict(metrics, mse=5.0)},
        tensorboard_dir=str(tmp_path),
    )  # fmt: skip
    records = [results.record(result), dict(results.record(result), seed=1)]
    records[1]["test_B_mse"] = 7.0
    table = results.format_table(results.aggregate(records))
    assert "A MSE" in table and "B MSE" in table and "test MSE" in table
    assert "6.0000 +- 1.4142" in table  # B: mean, std of (5, 7)
    log_dir = results.write_group_summaries(result)
    events = glob.glob(os.path.join(log_dir, "events.out.tfevents.*"))
    tags = {
        v.tag: (e.step, tf.make_ndarray(v.tensor).item())
        for record in tf.data.TFRecordDataset(events)
        for e in [tf.compat.v1.Event.FromString(record.numpy())]
        for v in e.summary.value
    }
    assert tags["test/B/mse"] == (3, pytest.approx(5.0))
    assert tags["test/total/mse"] == (3, pytest.approx(2.0))


def test_cli_runs_a_sweep(tmp_path):
    argv = "california --seeds 0 --sweep 51,1 --methods ppssl,ssl --epochs 3"
    argv += f" --lambda-diameter 0.5 --output-dir {tmp_path} --run-name x --verbose 0"
    assert cli.main(argv.split()) == 0
    with open(tmp_path / "x" / "results.json") as f:
        saved = json.load(f)
    assert saved["config"]["protocol"]["epochs"] == 3
    assert saved["config"]["protocol"]["lambda_diameter"] == 0.5
    assert [r["method"] for r in saved["records"]] == ["teacher", "ppssl", "ssl"] * 2
    assert {r["setting"] for r in saved["records"]} == {"n_B=51", "n_B=1"}
    assert (tmp_path / "x" / "mse_california.png").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        ("synthetic --seeds 0-x", "--seeds '0-x'"),
        ("synthetic --methods ppssl,hpl", "unknown hpl"),
        ("synthetic --sweep 0.5,-1", "must be >= 0"),
        ("california --sweep 51,2.5", "integers from 0 to 51"),
        ("synthetic --closed-form-at ppi", "--closed-form-at 'ppi'"),
        ("synthetic --closed-form-at ppi_py,ppi_py", "distinct points"),
        ("synthetic --epochs 0", "--epochs 0: must be >= 1"),
        ("synthetic --lambda-diameter 0", "must be > 0"),
        ("synthetic --ppi-lambda 1.5", "must be in [0, 1]"),
        ("mnist", "invalid choice: 'mnist'"),
    ],
)
def test_cli_rejects_bad_flags_with_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(argv.split())
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_records_hold_mean_lambda_and_every_closed_form_point(tiny_sweep):
    """`mean_lambda` is the mean of the per-step lambdas the run trained with
    (replayed here), the closed-form rows train with the per-seed closed form
    at their point, and the teacher record holds every point's lambda."""
    out, _ = tiny_sweep
    problem = pe.synthetic_problem(3.0, 1, include_indicator=False)
    specs = pe.method_specs(("ppssl", "ppi_closed_form"), _tiny_protocol())
    runs = pe.train_linear_runs(
        [pe.synthetic_problem(3.0, s, False) for s in (0, 1)],
        specs,
        _tiny_protocol(),
    )
    lambdas = runs.lambdas[1, 0]
    seed1 = {
        r["method"]: r
        for r in out["records"]
        if r["setting"] == "bias=3 no_indicator" and r["seed"] == 1
    }
    assert seed1["ppssl"]["mean_lambda"] == pytest.approx(np.nanmean(lambdas))
    assert seed1["ppssl"]["mean_lambda"] != seed1["ppssl"]["final_lambda"]
    for at in CLOSED_FORM_POINTS:
        expected = problem.closed_form_lambda(at)
        assert seed1["teacher"][f"closed_form_lambda_{at}"] == pytest.approx(expected)
    closed = seed1["ppi_closed_form"]
    assert closed["final_lambda"] == closed["mean_lambda"]
    assert closed["final_lambda"] == pytest.approx(problem.closed_form_lambda("ppi_py"))
    other = seed1["ppi_closed_form_at_ppi_minimizer"]["final_lambda"]
    assert other == pytest.approx(problem.closed_form_lambda("ppi_minimizer"))
    assert other > closed["final_lambda"] + 0.1  # the two points differ here


def test_results_table_leaves_out_group_columns_when_there_are_many_groups():
    record = {"method": "m", "seed": 0}
    record.update({f"test_{m}": 1.0 for m in ("mae", "mse", "rmse", "r2")})
    record.update({f"test_digit{i}_mse": float(i) for i in range(10)})
    table = results.format_table(results.aggregate([record]))
    assert "digit0" not in table and "test MAE" in table
    record = {k: v for k, v in record.items() if not k.startswith("test_digit")}
    record.update({f"test_g{i}_mse": float(i) for i in range(5)})
    assert "g4 MSE" in results.format_table(results.aggregate([record]))


def test_claims_pair_ppssl_with_ssl_and_each_closed_form_row(tiny_sweep):
    from benchmarks.ppssl_claims import claims, format_claims

    out, _ = tiny_sweep
    rows = claims(out["records"], out["aggregates"])
    assert [r["setting"] for r in rows] == ["bias=3 indicator", "bias=3 no_indicator"]
    seeds = [r for r in out["records"] if r["setting"] == "bias=3 indicator"]

    def total(method):
        return np.array([r["mse_total"] for r in seeds if r["method"] == method])

    diff = total("ppssl") - total("ppi_closed_form_at_ppi_minimizer")
    mean, sem = rows[0]["vs_ppi_closed_form_at_ppi_minimizer"]
    assert mean == pytest.approx(diff.mean())
    assert sem == pytest.approx(diff.std(ddof=1) / np.sqrt(2))
    assert set(rows[0]) >= {"vs_ppi_closed_form", "ppssl_mean_lambda"}
    assert "total: PP-SSL - ppi_closed_form" in format_claims(rows)
