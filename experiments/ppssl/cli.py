"""`python -m experiments.ppssl`: the PP-SSL paper's sweeps from the command line.

Example:

    python -m experiments.ppssl synthetic --best-fixed-lambda --seeds 0-29
    python -m experiments.ppssl california --sweep 51,1 --methods ppssl,ssl
"""

import argparse
import dataclasses
import os
import sys
import time

from experiments.ppssl import runs
from keras_ssr.methods.ppi_closed_form import (
    CLOSED_FORM_POINTS,
    DEFAULT_CLOSED_FORM_POINT,
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m experiments.ppssl",
        description="PP-SSL paper experiments: linear students, every method, "
        "fixed lambda and seed of a setting trained as one batch.",
    )
    add = parser.add_argument
    add(
        "experiment",
        choices=runs.EXPERIMENTS,
        help="synthetic: Appendix D.1 / Table S1 / Fig. 1 / Table S9 (bias of "
        "group B); california: Appendix E / Table S2 / Fig. 3 (n_B)",
    )
    add("--seeds", default="0", help="'0', '0,1,2' or a range '0-29'")
    add(
        "--methods",
        default=",".join(runs.METHODS),
        help=f"comma-separated subset of {', '.join(runs.METHODS)}",
    )
    add(
        "--best-fixed-lambda",
        action="store_true",
        help="also train fixed lambda in {0, 0.1, ..., 1} and add the "
        "best_fixed_lambda row (the paper's oracle, chosen on test)",
    )
    add(
        "--sweep",
        default=None,
        help="comma-separated biases (synthetic, >= 0; default "
        f"{_text(runs.SYNTHETIC_BIASES)}) or n_B values (california, integers "
        f"0-51; default {_text(runs.CALIFORNIA_NUM_B)})",
    )
    add(
        "--epochs",
        type=int,
        default=None,
        help="epochs instead of the paper's (synthetic 3000, california 1000)",
    )
    add(
        "--closed-form-at",
        default=DEFAULT_CLOSED_FORM_POINT,
        help="comma-separated points of the PPI++ closed form, of "
        f"{', '.join(CLOSED_FORM_POINTS)}: ppi_closed_form uses the first, "
        "each further point adds a row ppi_closed_form_at_<point> "
        f"(default {DEFAULT_CLOSED_FORM_POINT})",
    )
    add(
        "--lambda-diameter",
        type=float,
        default=1.0,
        help="D of PP-SSL's AdaGrad lambda step (eq. 12; paper 1)",
    )
    add(
        "--ppi-lambda",
        type=float,
        default=1.0,
        help="the constant lambda of ppi_fixed, in [0, 1] (1: plain PPI)",
    )
    add("--output-dir", default="runs", help="parent of the run directory")
    add(
        "--run-name",
        default=None,
        help="run directory name (default ppssl_<experiment>_<time>)",
    )
    add("--verbose", type=int, choices=(0, 1), default=1)
    return parser


def parse_args(argv=None):
    """Parsed and validated arguments; bad values exit with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.seeds = _seeds(args.seeds)
        args.methods = _methods(args.methods)
        args.sweep = _sweep(args.sweep, args.experiment)
        args.closed_form_at = _points(args.closed_form_at)
        _check_numbers(args)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv=None):
    """Runs the sweep; returns the exit status (2 for bad input)."""
    args = parse_args(argv)
    paper = runs.default_protocol(args.experiment)
    protocol = dataclasses.replace(
        paper,
        epochs=args.epochs or paper.epochs,
        lambda_diameter=args.lambda_diameter,
        ppi_lambda=args.ppi_lambda,
    )
    name = args.run_name or (
        f"ppssl_{args.experiment}_{time.strftime('%Y%m%d-%H%M%S')}"
    )
    try:
        runs.run_experiment(
            args.experiment,
            args.seeds,
            methods=args.methods,
            best_fixed_lambda=args.best_fixed_lambda,
            values=args.sweep,
            protocol=protocol,
            run_dir=os.path.join(args.output_dir, name),
            verbose=args.verbose,
            closed_form_at=args.closed_form_at,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _seeds(text):
    try:
        if "-" in text:
            low, high = (int(v) for v in text.split("-"))
            seeds = tuple(range(low, high + 1))
        else:
            seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise ValueError(f"--seeds {text!r}: use '0', '0,1,2' or '0-29'") from None
    if not seeds or min(seeds) < 0:
        raise ValueError(f"--seeds {text!r}: give one or more seeds >= 0")
    return seeds


def _methods(text):
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in methods if m not in runs.METHODS]
    if unknown or not methods:
        raise ValueError(
            f"--methods {text!r}: unknown {', '.join(unknown) or '(none given)'}; "
            f"use a comma-separated subset of {', '.join(runs.METHODS)}"
        )
    return methods


def _sweep(text, experiment):
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--sweep {text!r}: use comma-separated numbers") from None
    if experiment == "synthetic" and min(values) < 0:
        raise ValueError(f"--sweep {text!r}: the biases of group B must be >= 0")
    if experiment == "california" and not all(
        v.is_integer() and 0 <= v <= 51 for v in values
    ):
        raise ValueError(f"--sweep {text!r}: n_B values are integers from 0 to 51")
    return values


def _points(text):
    points = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in points if p not in CLOSED_FORM_POINTS]
    if bad or not points or len(set(points)) < len(points):
        raise ValueError(
            f"--closed-form-at {text!r}: use distinct points of "
            f"{', '.join(CLOSED_FORM_POINTS)}, comma-separated"
        )
    return points


def _check_numbers(args):
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs {args.epochs}: must be >= 1")
    if not args.lambda_diameter > 0:
        raise ValueError(f"--lambda-diameter {args.lambda_diameter}: must be > 0")
    if not 0 <= args.ppi_lambda <= 1:
        raise ValueError(f"--ppi-lambda {args.ppi_lambda}: must be in [0, 1]")


def _text(values):
    return ",".join(f"{v:g}" for v in values)
