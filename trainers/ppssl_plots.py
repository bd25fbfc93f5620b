"""Plots of the PP-SSL experiments: test MSE per group, lambda trajectories."""

import numpy as np

from trainers.ppssl_linear_runs import GROUPS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_mse(aggregates, experiment, path):
    """MSE (mean +- s.e.) against bias / n_B, one panel per group and variant."""
    plt = _pyplot()
    shown = [a for a in aggregates if not a["method"].startswith("fixed_lambda_")]
    variants = list(dict.fromkeys(a["variant"] for a in shown))
    methods = list(dict.fromkeys(a["method"] for a in shown))
    fig, axes = plt.subplots(
        len(variants), 3, figsize=(13, 3.6 * len(variants)), squeeze=False
    )
    for row, variant in enumerate(variants):
        for col, group in enumerate(GROUPS):
            ax = axes[row][col]
            for method in methods:
                pts = sorted(
                    (a["value"], a[f"mse_{group}_mean"], a[f"mse_{group}_sem"])
                    for a in shown
                    if a["variant"] == variant and a["method"] == method
                )
                x, y, e = (np.array(v) for v in zip(*pts, strict=True))
                style = "--" if method in ("teacher", "best_fixed_lambda") else "-"
                ax.errorbar(
                    x, y, yerr=e, fmt=style + "o", ms=3, capsize=2, label=method
                )
            ax.set_title(f"{group} ({variant})")
            ax.set_xlabel(
                "bias of group B" if experiment == "ppssl_synthetic" else "n_B"
            )
            ax.set_ylabel("test MSE")
            ax.set_yscale("log")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_lambda(trajectories, experiment, path):
    """PP-SSL's lambda (seed mean) against steps: a panel per variant, a line
    per setting, the seed-mean closed-form lambda dotted in the same colour."""
    plt = _pyplot()
    variants = list(dict.fromkeys(t["variant"] for t in trajectories.values() if t))
    fig, axes = plt.subplots(
        1, max(1, len(variants)), figsize=(6 * max(1, len(variants)), 4), squeeze=False
    )
    for ax, variant in zip(axes[0], variants, strict=False):
        for label, traj in trajectories.items():
            if traj and traj["variant"] == variant:
                steps = np.array(traj["step"]) + 1
                line = ax.plot(steps, traj["mean_lambda"], label=label)[0]
                ax.axhline(traj["closed_form_mean"], color=line.get_color(), ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("PP-SSL lambda (mean over seeds)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{experiment} ({variant}); dotted: closed form")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
