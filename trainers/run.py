"""`python -m trainers.run`: train, compare, report and export keras-ssr methods.

With no arguments it runs the embedded default job (California Housing, 5 %
labels, seed 0, Supervised vs PseudoLabel vs MeanTeacher). See `--help`.
"""

import argparse
import dataclasses
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from datasets import dataset_names  # noqa: E402
from keras_ssr.export import export_regressor, next_version_dir  # noqa: E402
from keras_ssr.methods.registry import method_names  # noqa: E402
from trainers import results  # noqa: E402
from trainers.config import RunConfig  # noqa: E402
from trainers.distribution import (  # noqa: E402
    STRATEGIES,
    check_jit_compile,
    is_chief,
    make_strategy,
)
from trainers.experiment import (  # noqa: E402
    FULLY_SUPERVISED,
    TrainingDiverged,
    train_and_evaluate,
)
from trainers.modality import add_modality_flags, input_spec, load_data  # noqa: E402


def parse_args(argv=None):
    """Parses CLI flags into a `RunConfig` (errors exit with a usage message)."""
    defaults = RunConfig()
    parser = argparse.ArgumentParser(
        prog="python -m trainers.run",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--dataset",
        default=defaults.dataset,
        help=f"one of: {', '.join(dataset_names())}",
    )
    add(
        "--methods",
        default=",".join(defaults.methods),
        help=f"comma-separated, from: {', '.join(all_method_names())}",
    )
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument(
        "--label-ratio",
        type=float,
        default=None,
        help="fraction of training rows labeled, in (0, 1] "
        f"(default {defaults.label_ratio} unless --num-labels)",
    )
    labels.add_argument(
        "--num-labels",
        type=int,
        default=None,
        help="number of labeled training rows instead of a ratio",
    )
    add("--seeds", default="0", help="seeds: '0', '0,1,2' or a range '0-4'")
    add("--epochs", type=int, default=defaults.epochs)
    add(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="default: one pass over the larger of the labeled/unlabeled sets",
    )
    add(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="labeled (and hold-out) batch size, global over replicas",
    )
    add("--unlabeled-batch-size", type=int, default=defaults.unlabeled_batch_size)
    add("--learning-rate", type=float, default=defaults.learning_rate)
    add(
        "--hidden-units",
        default=",".join(map(str, defaults.hidden_units)),
        help="MLP backbone widths, comma-separated",
    )
    add("--dropout", type=float, default=defaults.dropout)
    add(
        "--input-clip",
        type=float,
        default=defaults.input_clip,
        help="clip standardised inputs to [-c, c] (robust to extreme raw values)",
    )
    add(
        "--unlabeled-weight",
        type=float,
        default=defaults.unlabeled_weight,
        help="lambda, the weight of the unlabeled loss",
    )
    add(
        "--rampup-fraction",
        type=float,
        default=defaults.rampup_fraction,
        help="fraction of training over which lambda ramps up linearly from 0",
    )
    add("--ema-decay", type=float, default=defaults.ema_decay, help="Mean Teacher EMA")
    add(
        "--weak-noise",
        type=float,
        default=defaults.weak_noise,
        help="weak view: Gaussian noise in feature standard deviations",
    )
    add("--strong-noise", type=float, default=defaults.strong_noise)
    add(
        "--strong-dropout",
        type=float,
        default=defaults.strong_dropout,
        help="strong view: probability a feature is replaced by its mean",
    )
    _add_hpl_flags(parser, defaults)
    _add_l2i_flags(parser, defaults)
    _add_ppi_flags(parser, defaults)
    _add_robustness_flags(parser, defaults)
    add_modality_flags(parser, defaults)
    add(
        "--holdout-fraction",
        type=float,
        default=defaults.holdout_fraction,
        help="0: hold-out batches resample the labeled rows; >0: set this "
        "fraction of labeled rows aside as a separate hold-out split (HPL, L2I)",
    )
    add(
        "--benchmark-mode",
        action="store_true",
        help="give diagnostics (not training) the unlabeled ground truth",
    )
    add(
        "--output-dir",
        default=defaults.output_dir,
        help="runs root: <output-dir>/<run>/ gets results, TensorBoard, checkpoints",
    )
    add(
        "--export-dir",
        default=defaults.export_dir,
        help="SavedModels go to <export-dir>/<run>/<method>/<version>/",
    )
    add("--run-name", default=None, help="default: <dataset>_<date>-<time>")
    add(
        "--verbose",
        type=int,
        default=defaults.verbose,
        choices=(0, 1, 2),
        help="Keras fit verbosity (1: progress bars)",
    )
    args = parser.parse_args(argv)
    try:
        return _to_config(args)
    except ValueError as error:
        parser.error(str(error))


def _add_hpl_flags(parser, defaults):
    hpl = parser.add_argument_group("HPL (methods hpl, hpl_joint)")
    add = hpl.add_argument
    add(
        "--unroll",
        choices=("sgd", "adam"),
        default=defaults.unroll,
        help="unrolled head step: sgd (paper eq. 7) or adam (reference code)",
    )
    add(
        "--unroll-learning-rate",
        type=float,
        default=None,
        help="step size of the unrolled step (default: the head's learning rate)",
    )
    add(
        "--meta-period",
        type=int,
        default=defaults.meta_period,
        help="bilevel step every N steps (reference: 5)",
    )
    add(
        "--meta-learning-rate",
        type=float,
        default=defaults.meta_learning_rate,
        help="Adam learning rate of g_phi",
    )
    add(
        "--outer-log-variance-weight",
        type=float,
        default=defaults.outer_log_variance_weight,
        help="lambda2: outer loss adds -lambda2 * mean(g_phi) on the hold-out batch",
    )
    add(
        "--hpl-loss-form",
        choices=("reference", "paper"),
        default=defaults.hpl_loss_form,
        help="reference: means, exp(-z)/2; paper: sums (eq. 3, 5)",
    )
    add(
        "--uncertainty-input",
        choices=("reference", "paper"),
        default=defaults.uncertainty_input,
        help="g_phi input: reference [r - yhat, r] or paper (r, yhat)",
    )
    add(
        "--log-variance-range",
        default="-10,10",
        help="clamp of z = log sigma^2, as low,high (write --log-variance-range=-5,5)",
    )
    add(
        "--head-learning-rate",
        type=float,
        default=None,
        help="separate Adam learning rate for the head (paper: 10x the backbone's)",
    )


def _add_l2i_flags(parser, defaults):
    l2i = parser.add_argument_group("L2I (methods l2i_v1, l2i_v2)")
    add = l2i.add_argument
    add(
        "--l2i-imputer",
        "--imputer",
        choices=("pseudo_label", "mean_teacher"),
        default=defaults.l2i_imputer,
        help="psi: the imputing function",
    )
    add(
        "--l2i-unroll",
        choices=("full", "head"),
        default=defaults.l2i_unroll,
        help="unroll every trainable weight (paper) or only the head (cheap)",
    )
    add(
        "--l2i-unroll-learning-rate",
        type=float,
        default=None,
        help="eta, the unrolled SGD step (default: the optimizer's learning rate)",
    )
    add(
        "--imputation-learning-rate",
        type=float,
        default=defaults.imputation_learning_rate,
        help="eta_z, V1's step on the imputed labels",
    )
    add(
        "--l2i-tanh-unlabeled",
        action="store_true",
        help="V2 reference form: tanh on both sides of the unlabeled loss",
    )


def _add_ppi_flags(parser, defaults):
    ppi = parser.add_argument_group(
        "PP-SSL (methods ppssl, ppi_fixed, ppi_closed_form, ssl, only_labeled)"
    )
    add = ppi.add_argument
    add(
        "--teacher",
        default=defaults.teacher,
        help="linear_pretrain (least squares on --pretrain-size unlabeled rows, "
        "removed from the unlabeled set) or a SavedModel / .keras path",
    )
    add("--pretrain-size", type=int, default=defaults.pretrain_size)
    add(
        "--ppi-lambda",
        type=float,
        default=None,
        help="lambda of ppi_fixed (default 1: plain PPI)",
    )
    add(
        "--lambda-diameter",
        type=float,
        default=defaults.lambda_diameter,
        help="D of PP-SSL's AdaGrad lambda step (eq. 12)",
    )
    add(
        "--closed-form-at",
        choices=("ppi", "supervised", "current"),
        default=defaults.closed_form_at,
        help="where ppi_closed_form evaluates the PPI++ closed form",
    )
    add(
        "--experiment",
        choices=("ppssl_synthetic", "ppssl_california"),
        default=None,
        help="run a PP-SSL paper sweep (trainers/ppssl_experiments.py) instead",
    )
    add(
        "--best-fixed-lambda",
        action="store_true",
        help="--experiment: also sweep fixed lambda in {0, 0.1, ..., 1} (oracle row)",
    )
    add(
        "--sweep",
        default=None,
        help="--experiment: biases or n_B values, comma-separated (default: paper's)",
    )
    add(
        "--experiment-epochs",
        type=int,
        default=None,
        help="--experiment: epochs instead of the paper's (3000 / 1000)",
    )


def _add_robustness_flags(parser, defaults):
    group = parser.add_argument_group("distribution, XLA, checkpoints")
    add = group.add_argument
    add(
        "--strategy",
        choices=STRATEGIES,
        default=defaults.strategy,
        help="auto: MirroredStrategy when >1 GPU is visible; multi_worker: "
        "MultiWorkerMirroredStrategy from the TF_CONFIG environment variable",
    )
    add(
        "--jit-compile",
        action="store_true",
        help="XLA-compile the train step (one device only)",
    )
    add(
        "--deterministic",
        action="store_true",
        help="seeds + TF op determinism: reruns give identical results "
        "(slower; disables XLA)",
    )
    add(
        "--checkpoint-every",
        type=int,
        default=defaults.checkpoint_every,
        help="save the full training state every N steps (and at every epoch "
        "end) to <output-dir>/<run>/checkpoints/; 0: epoch ends only",
    )
    add(
        "--resume",
        action="store_true",
        help="continue the run --run-name from its latest checkpoints",
    )


def all_method_names():
    return method_names() + [FULLY_SUPERVISED]


def _to_config(args):
    values = vars(args).copy()
    values["methods"] = _parse_methods(args.methods)
    values["seeds"] = _parse_seeds(args.seeds)
    values["hidden_units"] = tuple(int(u) for u in args.hidden_units.split(","))
    values["log_variance_range"] = _parse_range(args.log_variance_range)
    values["sweep"] = _parse_sweep(args.sweep)
    if args.resume and not args.run_name:
        raise ValueError("--resume needs the --run-name of the run to continue")
    if args.resume and args.strategy == "multi_worker":
        raise ValueError(
            "--resume is not supported with --strategy multi_worker yet: "
            "restart the workers without --resume"
        )
    if args.checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every {args.checkpoint_every} must be >= 0")
    if args.meta_period < 1:
        raise ValueError(f"--meta-period {args.meta_period} must be >= 1")
    if args.dataset not in dataset_names():
        raise ValueError(
            f"unknown dataset {args.dataset!r}; valid: {', '.join(dataset_names())}"
        )
    if args.label_ratio is None and args.num_labels is None:
        values["label_ratio"] = RunConfig.label_ratio
    if values["label_ratio"] is not None and not 0 < values["label_ratio"] <= 1:
        raise ValueError(f"--label-ratio {values['label_ratio']} is outside (0, 1]")
    return RunConfig(**values)


def _parse_methods(text):
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in methods if m not in all_method_names()]
    if unknown or not methods:
        raise ValueError(
            f"unknown method(s) {', '.join(unknown) or '(none given)'}; "
            f"valid: {', '.join(all_method_names())}"
        )
    return methods


def _parse_sweep(text):
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--sweep {text!r}: use comma-separated numbers") from None


def _parse_range(text):
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--log-variance-range {text!r}: use 'low,high'") from None
    if not low < high:
        raise ValueError(f"--log-variance-range {text!r}: low must be < high")
    return (low, high)


def _parse_seeds(text):
    try:
        if "-" in text:
            low, high = (int(v) for v in text.split("-"))
            return tuple(range(low, high + 1))
        return tuple(int(s) for s in text.split(","))
    except ValueError:
        raise ValueError(f"--seeds {text!r}: use '0', '0,1,2' or '0-4'") from None


def run(config):
    """Runs every method x seed of `config`; returns the results dict.

    Raises:
        TrainingDiverged: after exporting the diverged method's last good
            weights (its `export` attribute is set to the SavedModel path).
    """
    strategy = make_strategy(config.strategy)  # first: multi-worker needs it
    check_jit_compile(config.jit_compile, strategy)
    data = load_data(config)
    run_name = config.run_name or f"{config.dataset}_{time.strftime('%Y%m%d-%H%M%S')}"
    if not is_chief(strategy):  # other workers write to a scratch directory
        scratch = tempfile.mkdtemp()
        config = dataclasses.replace(
            config, output_dir=scratch, export_dir=scratch, write_checkpoints=False
        )
    run_dir = os.path.join(config.output_dir, run_name)
    os.makedirs(run_dir, exist_ok=True)
    records, best = [], {}
    for method in config.methods:
        for seed in config.seeds:
            print(f"\n== {method}, seed {seed} ==", flush=True)
            try:
                result = train_and_evaluate(
                    method, data, config, seed, run_dir, strategy
                )
            except TrainingDiverged as error:
                error.export = _export_last_good(error, config, run_name, data)
                raise
            results.write_group_summaries(result)
            records.append(results.record(result))
            if (
                method not in best
                or result.validation["mse"] < best[method].validation["mse"]
            ):
                best[method] = result
    exports = _export_best(best, config, run_name, input_spec(data))
    aggregates = results.aggregate(records)
    paths = results.write_results(
        run_dir, config.to_dict(), records, aggregates, exports
    )
    _print_summary(config, data, aggregates, run_dir, paths, exports)
    return {
        "run_dir": run_dir,
        "records": records,
        "aggregates": aggregates,
        "exports": exports,
    }


def _export_best(best, config, run_name, spec):
    """Exports each method's best-validation seed; returns method -> path/seed."""
    exports = {}
    for method, result in best.items():
        path = _export(result.regressor, config, run_name, method, spec)
        exports[method] = {"path": path, "seed": result.seed}
    return exports


def _export_last_good(error, config, run_name, data):
    """Exports a diverged run's last good weights; returns the path or `None`."""
    if error.regressor is None:
        return None
    return _export(error.regressor, config, run_name, error.method, input_spec(data))


def _export(regressor, config, run_name, method, spec):
    """Exports `regressor` as the next version of `method`; returns the path."""
    path = next_version_dir(os.path.join(config.export_dir, run_name, method))
    export_regressor(regressor, path, spec)
    return path


def _print_summary(config, data, aggregates, run_dir, paths, exports):
    labels = (
        f"{config.num_labels} labels"
        if config.num_labels
        else f"{config.label_ratio:.0%} labels"
    )
    title = (
        f"\n{data.name}: test metrics in target units ({data.target_name}), "
        f"{labels}, seeds {','.join(map(str, config.seeds))}"
    )
    print(results.format_table(aggregates, title=title))
    print(f"\nresults:     {paths[0]}\n             {paths[1]}")
    print(f"tensorboard: tensorboard --logdir {os.path.join(run_dir, 'tensorboard')}")
    for method, export in exports.items():
        print(f"savedmodel:  {export['path']}  ({method}, seed {export['seed']})")


def main(argv=None):
    """CLI entry point; returns the exit status (2 for bad input)."""
    config = parse_args(argv)
    if config.verbose == 0:
        keras.config.disable_interactive_logging()
    try:
        if config.experiment:
            from trainers.ppssl_experiments import run_from_config

            run_from_config(config)
            return 0
        run(config)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        if error.export:
            print(f"last good SavedModel: {error.export}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
