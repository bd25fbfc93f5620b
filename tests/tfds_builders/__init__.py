"""Tiny TFDS builders for the tests of `datasets.tfds_data` (a package of their
own: TFDS needs builders defined in a package module, not a loose script)."""
