"""Plots of the PP-SSL experiments: test MSE per group, lambda trajectories."""

import numpy as np

from experiments.ppssl.linear_runs import GROUPS


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
            ax.set_xlabel("bias of group B" if experiment == "synthetic" else "n_B")
            ax.set_ylabel("test MSE")
            ax.set_yscale("log")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_lambda(trajectories, experiment, path, closed_form_at=("ppi_py",)):
    """PP-SSL's lambda (seed mean) against steps: a panel per variant, a line
    per setting, and in the same colour the seed-mean closed-form lambda at
    each point of `closed_form_at` (dotted, dash-dotted, dashed)."""
    plt = _pyplot()
    variants = list(dict.fromkeys(t["variant"] for t in trajectories.values() if t))
    styles = dict(zip(closed_form_at, (":", "-.", "--", (0, (1, 4))), strict=False))
    fig, axes = plt.subplots(
        1, max(1, len(variants)), figsize=(6 * max(1, len(variants)), 4), squeeze=False
    )
    for ax, variant in zip(axes[0], variants, strict=False):
        for label, traj in trajectories.items():
            if traj and traj["variant"] == variant:
                steps = np.array(traj["step"]) + 1
                line = ax.plot(steps, traj["mean_lambda"], label=label)[0]
                for at, style in styles.items():
                    value = traj["closed_form_mean"][at]
                    ax.axhline(value, color=line.get_color(), ls=style, lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("PP-SSL lambda (mean over seeds)")
        ax.set_ylim(-0.02, 1.02)
        legend = ", ".join(f"{_style_name(s)} {at}" for at, s in styles.items())
        ax.set_title(f"{experiment} ({variant}); closed form: {legend}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _style_name(style):
    return {":": "dotted", "-.": "dash-dot", "--": "dashed"}.get(style, "sparse dots")
