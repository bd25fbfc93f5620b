"""Two tiny `GeneratorBasedBuilder`s: a table with a NaN target and an image set.

Both generate their rows from a seed (no files, no download) and are prepared
into a temporary data dir by the tests (`prepare`).
"""

import numpy as np
import tensorflow_datasets as tfds

HOUSE_SPLITS = {"train": 30, "test": 10}
FACE_SPLITS = {"train": 12, "validation": 4}


def house_rows(split, count):
    """Rows of TinyHouses: price = 3 rooms + 10 (garden), some prices NaN."""
    rng = np.random.default_rng(0 if split == "train" else 1)
    for i in range(count):
        rooms = float(rng.integers(1, 6))
        garden = str(rng.choice(["yes", "no"]))
        price = 3 * rooms + (10.0 if garden == "yes" else 0.0)
        if split == "train" and i % 3 == 0:
            price = float("nan")  # no target: an unlabeled row
        yield (
            i,
            {
                "features": {"rooms": rooms, "garden": garden},
                "price": np.float32(price),
                "id": i,
            },
        )


class TinyHouses(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "features": tfds.features.FeaturesDict(
                        {
                            "rooms": tfds.features.Scalar(np.float32),
                            "garden": tfds.features.Text(),
                        }
                    ),
                    "price": tfds.features.Scalar(np.float32),
                    "id": tfds.features.Scalar(np.int64),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {s: house_rows(s, n) for s, n in HOUSE_SPLITS.items()}

    def _generate_examples(self):  # the splits above are generators already
        raise NotImplementedError


def face_image(age):
    """An 8x6 grey image whose value encodes the age."""
    return np.full((8, 6, 1), 4 * age, dtype=np.uint8)


class TinyFaces(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("2.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 6, 1)),
                    "age": tfds.features.Scalar(np.int32),
                    "name": tfds.features.Text(),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {s: self._faces(s, n) for s, n in FACE_SPLITS.items()}

    def _faces(self, split, count):
        offset = 0 if split == "train" else 40
        for i in range(count):
            age = offset + i
            yield i, {"image": face_image(age), "age": age, "name": f"p{age}"}

    def _generate_examples(self):
        raise NotImplementedError


def prepare(builder_class, data_dir):
    """Prepares a builder into `data_dir`; returns the builder."""
    builder = builder_class(data_dir=str(data_dir))
    builder.download_and_prepare()
    return builder
