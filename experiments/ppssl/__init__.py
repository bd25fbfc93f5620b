"""The PP-SSL paper's experiments: `python -m experiments.ppssl --help`."""
