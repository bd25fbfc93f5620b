"""TensorBoard HParams of a run (keras_ssr.hparams), read back and in a browser."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import metadata

from keras_ssr.hparams import config_markdown, hparam_value, write_hparams


def _events(log_dir):
    (path,) = [os.path.join(log_dir, f) for f in os.listdir(log_dir)]
    return list(tf.compat.v1.train.summary_iterator(path))


def _write_runs(root):
    for method in ("supervised", "pseudo_label"):
        for seed in (0, 1):
            write_hparams(
                root / "run" / method / f"seed_{seed}" / "hparams",
                {
                    "dataset": "houses",
                    "method": method,
                    "label_ratio": 0.05,
                    "seed": seed,
                    "unlabeled_weight": None if method == "supervised" else 0.3,
                    "hidden_units": (16, 8),
                },
                {"validation": {"mse": 0.5 + seed}, "test": {"mae": 0.25 * (1 + seed)}},
                config={"dataset": "houses", "methods": ("supervised", "pseudo_label")},
            )


def test_hparams_metrics_and_config_are_written(tmp_path):
    _write_runs(tmp_path)
    events = _events(tmp_path / "run" / "pseudo_label" / "seed_1" / "hparams")
    values = {}
    for event in events:
        for value in event.summary.value:
            values[value.tag] = value
    start = metadata.parse_session_start_info_plugin_data(
        values[metadata.SESSION_START_INFO_TAG].metadata.plugin_data.content
    )
    hparams = {k: v.WhichOneof("kind") for k, v in start.hparams.items()}
    assert start.hparams["method"].string_value == "pseudo_label"
    assert start.hparams["seed"].number_value == 1.0
    assert start.hparams["label_ratio"].number_value == 0.05
    assert start.hparams["unlabeled_weight"].number_value == 0.3
    assert start.hparams["hidden_units"].string_value == "16,8"
    assert hparams["dataset"] == "string_value"
    assert tf.make_ndarray(values["validation/mse"].tensor) == pytest.approx(1.5)
    assert tf.make_ndarray(values["test/mae"].tensor) == pytest.approx(0.5)
    text = tf.make_ndarray(values["run_config"].tensor).item().decode()
    assert "| methods | supervised,pseudo_label |" in text


def test_hparam_values_and_markdown():
    assert hparam_value(None) == "none" and hparam_value(True) is True
    assert hparam_value(3) == 3 and hparam_value([1, 2]) == "1,2"
    assert config_markdown({"a": {"b": 1}, "c": "x|y"}).splitlines()[2:] == [
        "| a.b | 1 |",
        "| c | x/y |",
    ]


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(url, seconds=90):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {seconds} s")


def _chromium(url, *args):
    profile = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"chromium-{os.getpid()}")
    command = [
        shutil.which("chromium"),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1400,900",
        "--virtual-time-budget=15000",
        *args,
        url,
    ]
    subprocess.run(command, check=True, timeout=120, capture_output=True)
    shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("pdftotext")),
    reason="needs Debian's chromium and poppler-utils (pdftotext): apt-get install "
    "--no-install-recommends chromium poppler-utils",
)
def test_hparams_dashboard_shows_the_runs_in_a_browser(tmp_path):
    """TensorBoard's HParams dashboard, rendered by headless Chromium, lists
    the hparams, the methods and the metrics. The dashboard lives in a shadow
    DOM that `--dump-dom` does not serialise, so the page is printed to PDF
    (what the browser drew) and its text extracted with pdftotext."""
    _write_runs(tmp_path)
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(tmp_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--load_fast",
            "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for(f"{url}/data/plugins_listing")
        _chromium(f"{url}/#hparams", f"--screenshot={tmp_path / 'hparams.png'}")
        pdf = tmp_path / "hparams.pdf"
        _chromium(f"{url}/#hparams", "--no-pdf-header-footer", f"--print-to-pdf={pdf}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert (tmp_path / "hparams.png").stat().st_size > 10_000
    # The sidebar truncates long names ("validation/ms"); the table lists the
    # hparams that differ between runs (method, seed) and their values.
    for shown in (
        "label_ratio",
        "pseudo_label",
        "supervised",
        "validation/m",
        "test/mae",
        "TABLE VIEW",
        "Trial ID",
    ):
        assert shown in text, f"{shown!r} not on the HParams page:\n{text}"
