"""`python -m trainers.run`: train, compare, report and export keras-ssr methods.

With no arguments it runs the embedded default job (California Housing, 5 %
labels, seed 0, Supervised vs PseudoLabel vs MeanTeacher). See `--help`.
"""

import dataclasses
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from keras_ssr.cpu_threads import set_cpu_threads  # noqa: E402
from keras_ssr.export import export_regressor, next_version_dir  # noqa: E402
from trainers import results  # noqa: E402
from trainers.cli import parse_args  # noqa: E402
from trainers.distribution import check_jit_compile, is_chief, make_strategy  # noqa: E402
from trainers.experiment import (  # noqa: E402
    TrainingDiverged,
    load_data,
    train_and_evaluate,
)

__all__ = ["main", "parse_args", "run"]


def run(config):
    """Runs every method x seed of `config`; returns the results dict.

    Raises:
        TrainingDiverged: after exporting the diverged method's last good
            weights (its `export` attribute is set to the SavedModel path).
    """
    strategy = make_strategy(config.distribution.strategy)  # first: multi-worker
    check_jit_compile(config.distribution.jit_compile, strategy)
    data = load_data(config)
    print(data.describe(), flush=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_name = config.output.run_name or f"{config.data.dataset}_{stamp}"
    if not is_chief(strategy):  # other workers write to a scratch directory
        scratch = tempfile.mkdtemp()
        config = dataclasses.replace(
            config,
            output=dataclasses.replace(
                config.output,
                output_dir=scratch,
                export_dir=scratch,
                write_checkpoints=False,
            ),
        )
    run_dir = os.path.join(config.output.output_dir, run_name)
    os.makedirs(run_dir, exist_ok=True)
    records, best = [], {}
    for method in config.training.methods:
        for seed in config.training.seeds:
            print(f"\n== {method}, seed {seed} ==", flush=True)
            try:
                result = train_and_evaluate(
                    method, data, config, seed, run_dir, strategy
                )
            except TrainingDiverged as error:
                error.export = _export_last_good(error, config, run_name, data)
                raise
            results.write_group_summaries(result)
            results.write_run_hparams(result, config)
            records.append(results.record(result))
            if (
                method not in best
                or result.validation["mse"] < best[method].validation["mse"]
            ):
                best[method] = result
    exports = _export_best(best, config, run_name, data)
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


def _export_best(best, config, run_name, data):
    """Exports each method's best-validation seed; returns method -> path/seed."""
    exports = {}
    for method, result in best.items():
        path = _export(result.regressor, config, run_name, method, data)
        exports[method] = {"path": path, "seed": result.seed}
    return exports


def _export_last_good(error, config, run_name, data):
    """Exports a diverged run's last good weights; returns the path or `None`."""
    if error.regressor is None:
        return None
    return _export(error.regressor, config, run_name, error.method, data)


def _export(regressor, config, run_name, method, data):
    """Exports `regressor` as the next version of `method`; returns the path."""
    path = next_version_dir(os.path.join(config.output.export_dir, run_name, method))
    export_regressor(regressor, path, data)
    return path


def _print_summary(config, data, aggregates, run_dir, paths, exports):
    budget = config.data
    if budget.num_labels:
        labels = f"{budget.num_labels} labels"
    elif budget.label_ratio is not None:
        labels = f"{budget.label_ratio:.0%} labels"
    else:
        labels = "every training row with a target labeled"
    seeds = ",".join(map(str, config.training.seeds))
    title = (
        f"\n{data.name}: test metrics in target units ({data.target_name}), "
        f"{labels}, seeds {seeds}"
    )
    print(results.format_table(aggregates, title=title))
    print(f"\nresults:     {paths[0]}\n             {paths[1]}")
    print(f"tensorboard: tensorboard --logdir {os.path.join(run_dir, 'tensorboard')}")
    for method, export in exports.items():
        print(f"savedmodel:  {export['path']}  ({method}, seed {export['seed']})")


def main(argv=None):
    """CLI entry point; returns the exit status (2 for bad input)."""
    config = parse_args(argv)
    threads = config.distribution
    set_cpu_threads(threads.intra_op_threads, threads.inter_op_threads)
    if config.output.verbose == 0:
        keras.config.disable_interactive_logging()
    try:
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
