"""The guide's example method, added as the guide says (its file + one
registry line), trains from the CLI with its own flag: no trainer edit."""

import json
import pathlib
import re

from keras_ssr.methods import registry

GUIDE = pathlib.Path(__file__).parents[1] / "docs" / "adding_a_method.md"


def test_the_guide_example_runs_through_the_unchanged_trainer(tmp_path, monkeypatch):
    code = re.search(r"```python\n(.*?)```", GUIDE.read_text(), re.S).group(1)
    namespace = {}
    exec(compile(code, str(GUIDE), "exec"), namespace)  # the method's file
    entry = registry.MethodEntry(namespace["ConsistencyDemo"])  # the registry line
    monkeypatch.setitem(registry.METHODS, "consistency_demo", entry)
    from trainers.cli import build_parser
    from trainers.run import main

    assert "--temperature" in build_parser().format_help()
    argv = ["--methods", "consistency_demo", "--temperature", "2.0",
            "--epochs", "1", "--steps-per-epoch", "2", "--verbose", "0",
            f"--output-dir={tmp_path}/runs", f"--export-dir={tmp_path}/sm",
            "--run-name=g"]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((tmp_path / "runs" / "g" / "results.json").read_text())
    assert results["config"]["methods"]["consistency_demo"]["temperature"] == 2.0
    assert results["records"][0]["method"] == "consistency_demo"
    assert (
        tmp_path / "sm" / "g" / "consistency_demo" / "1" / "saved_model.pb"
    ).exists()


def test_the_example_validates_its_flag_before_training(monkeypatch, capsys):
    code = re.search(r"```python\n(.*?)```", GUIDE.read_text(), re.S).group(1)
    namespace = {}
    exec(compile(code, str(GUIDE), "exec"), namespace)
    entry = registry.MethodEntry(namespace["ConsistencyDemo"])
    monkeypatch.setitem(registry.METHODS, "consistency_demo", entry)
    import pytest

    from trainers.cli import parse_args

    with pytest.raises(SystemExit) as info:
        parse_args(["--methods", "consistency_demo", "--temperature", "-1"])
    assert info.value.code == 2
    assert "temperature must be a finite number" in capsys.readouterr().err
