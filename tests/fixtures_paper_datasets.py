"""Writes small fixture trees in the exact on-disk formats of the paper data sets.

UTKFace (file names `[age]_[gender]_[race]_[datetime].jpg.chip.jpg`, HPL/UCVME
CSV tables, RankUp's meta/*.csv), IMDB-WIKI-DIR / AgeDB-DIR tables, STS-B TSV
files (GLUE header) and a prepared TFDS `glue/stsb` folder. Images are tiny
real JPEGs (`tf.io.encode_jpeg`) of one flat colour that encodes the row's age,
so a test can check that every image stays aligned with its label.
"""

import numpy as np
import tensorflow as tf

GLUE_HEADER = (
    "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\t"
    "sentence1\tsentence2\tscore"
)
GLUE_TEST_HEADER = GLUE_HEADER.rsplit("\t", 1)[0]
MALFORMED_NAME = "39_1_20170116174525125.jpg.chip.jpg"  # 3 fields, as in the archive


def age_colour(age):
    """The flat pixel value a fixture image of this age gets (0-255)."""
    return int(age * 2) % 256


def write_jpeg(path, value, size=(10, 12)):
    """Writes a real JPEG of one grey value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((*size, 3), value, dtype="uint8")
    path.write_bytes(tf.io.encode_jpeg(pixels, quality=95).numpy())


def write_corrupt_jpegs(truncated, garbage):
    """A truncated JPEG (first half of a real one) and a non-image .jpg file."""
    write_jpeg(truncated, 100)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    garbage.parent.mkdir(parents=True, exist_ok=True)
    garbage.write_bytes(b"this is not a jpeg" * 20)


def utkface_rows(num_train=18, num_val=6, num_test=6, seed=0):
    """Well-formed UTKFace file names with ages 21-60 and TRAIN/VAL/TEST."""
    rng = np.random.default_rng(seed)
    splits = ["TRAIN"] * num_train + ["VAL"] * num_val + ["TEST"] * num_test
    rows = []
    for i, split in enumerate(splits):
        age, gender, race = int(rng.integers(21, 61)), i % 2, i % 5
        stamp = 20170116170000000 + 7919 * i
        rows.append((f"{age}_{gender}_{race}_{stamp}.jpg.chip.jpg", age, split))
    return rows


def write_utkface_images(image_dir, rows):
    for file_name, age, _ in rows:
        write_jpeg(image_dir / file_name, age_colour(age))


def write_hpl_csv(path, rows, age_shift=0, crlf=False):
    """HPL's utkface.csv / UCVME's FileList.csv (`age_shift=21` as UCVME)."""
    lines = ["index,Unnamed: 0,FileName,age,SPLIT"]
    for i, (file_name, age, split) in enumerate(rows):
        lines.append(f"{1000 + i},{3000 + 2 * i},{file_name},{age - age_shift},{split}")
    _write_lines(path, lines, crlf)


def write_ucvme_ssl_csv(path, rows, labeled):
    lines = ["FileName,age,SPLIT,SSL_SPLIT"]
    for i, (file_name, age, split) in enumerate(rows):
        tag = "LABELED" if i in labeled else "UNLABELED"
        lines.append(f"{file_name},{age},{split},{tag}")
    _write_lines(path, lines)


def write_rankup_meta(root, train_rows, test_rows):
    for name, rows in (("train", train_rows), ("test", test_rows)):
        lines = ["file_name,label"] + [f"{f},{a}" for f, a, _ in rows]
        _write_lines(root / "meta" / f"{name}.csv", lines)


def write_dir_table(root, csv_file, rows, split_column="split"):
    """DIR table `age,path,split` (or SPLIT); rows (path, age, split)."""
    lines = [f"age,path,{split_column}"]
    for rel_path, age, split in rows:
        lines.append(f"{age},{rel_path},{split}")
        write_jpeg(root / rel_path, age_colour(age))
    _write_lines(root / csv_file, lines)


def stsb_rows(num, seed, first_index=0):
    """GLUE-style rows (sentence1, sentence2, score); some contain quotes."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(num):
        s1 = f'"Quoted" man {first_index + i} plays a guitar.'
        s2 = f"A man's {first_index + i} guitar is played \"loudly."
        rows.append((s1, s2, round(float(rng.uniform(0, 5)), 3)))
    return rows


def write_glue_tsv(path, rows, with_score=True, crlf=False):
    lines = [GLUE_HEADER if with_score else GLUE_TEST_HEADER]
    for i, (s1, s2, score) in enumerate(rows):
        cells = [
            str(i),
            "main-captions",
            "MSRvid",
            "2012test",
            f"{i:04d}",
            "none",
            "none",
            s1,
            s2,
        ]
        if with_score:
            cells.append(f"{score:.3f}")
        lines.append("\t".join(cells))
    _write_lines(path, lines, crlf)


def write_prepared_tfds_stsb(data_dir, splits):
    """A prepared TFDS `glue/stsb` (same features) from {split: rows}."""
    import tensorflow_datasets as tfds

    class Glue(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("2.0.0")
        BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="stsb")]

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "sentence1": tfds.features.Text(),
                        "sentence2": tfds.features.Text(),
                        "label": tfds.features.Scalar(np.float32),
                        "idx": tfds.features.Scalar(np.int32),
                    }
                ),
            )

        def _split_generators(self, dl_manager):
            return {
                name: self._generate_examples(rows) for name, rows in splits.items()
            }

        def _generate_examples(self, rows):
            for i, (s1, s2, score) in enumerate(rows):
                yield i, {"sentence1": s1, "sentence2": s2, "label": score, "idx": i}

    Glue(config="stsb", data_dir=str(data_dir)).download_and_prepare()


def _write_lines(path, lines, crlf=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    end = "\r\n" if crlf else "\n"
    path.write_bytes((end.join(lines) + end).encode("utf-8"))
