"""Named sets of paper settings for `python -m trainers.run --preset NAME`.

A preset maps `"section.field"` (a `RunConfig` field) to a value; explicit
flags override it. A value that depends on the data's modality is a
`ByModality`; a key `"method:section.field"` applies to that method only (e.g.
L2I's V2 settings). Every value's source is in docs/presets.md (and its test
checks that the page lists every value).
"""

import dataclasses

from datasets.registry import dataset_names, get_dataset


@dataclasses.dataclass(frozen=True)
class ByModality:
    """A preset value that depends on the data set's modality.

    Example:

    >>> ByModality(image=0.1, text=1.0).resolve("text")
    1.0
    """

    tabular: object = None
    image: object = None
    text: object = None

    def resolve(self, modality):
        return getattr(self, modality)


# HPL, authors' code (sxq11/Heteroscedastic-Pseudo-Labels: utkface/ and
# sts/main_ours.py); tabular data get the image values.
HPL_REFERENCE = {
    "training.methods": ("supervised", "pseudo_label", "hpl"),
    "ssl.unlabeled_weight": ByModality(tabular=10.0, image=10.0, text=1.0),
    "ssl.rampup_fraction": 0.0,
    "hpl.loss_form": "reference",
    "hpl.input_form": "reference",
    "training.learning_rate": 1e-4,
    "hpl.head_learning_rate": 1e-3,
    "training.weight_decay": ByModality(tabular=1e-3, image=1e-3, text=1e-5),
    "hpl.meta_weight_decay": ByModality(tabular=0.0, image=0.0, text=1e-5),
    "training.lr_decay_epochs": ByModality(tabular=10, image=10),
    "training.lr_decay_factor": 0.1,
    "hpl.meta_lr_decay": ByModality(tabular=True, image=True, text=False),
    "hpl.meta_period": 5,
    "hpl.unroll": "adam",
    "hpl.meta_learning_rate": 1e-4,
    "hpl.outer_log_variance_weight": ByModality(tabular=0.1, image=0.1, text=1.0),
    "training.batch_size": 32,
    "training.unlabeled_batch_size": 32,
    "training.epochs": ByModality(tabular=30, image=30, text=200),
    "pseudo_labels.pseudo_label_mode": "training",
    "hpl.holdout_mode": "training",
    "hpl.meta_order": "phi_first",
}

# HPL, the paper's text where it differs from the code (eq. 3/5 sums, the SGD
# unroll of eq. 7 at every step, Algorithm 1's order, g(r, yhat) of Sec. 3.4);
# the paper is silent on what stays from the reference.
HPL_PAPER = dict(
    HPL_REFERENCE,
    **{
        "hpl.loss_form": "paper",
        "hpl.unroll": "sgd",
        "hpl.meta_period": 1,
        "hpl.meta_order": "simultaneous",
        "hpl.input_form": "paper",
    },
)

# L2I, Algorithm 1 with the reference code's schedule
# (WeiHongLee/Learning-to-impute, Regression/train-L2I-L.py and -O.py).
L2I_REFERENCE = {
    "training.methods": ("mean_teacher", "l2i_v1", "l2i_v2"),
    "l2i.imputer": "mean_teacher",
    "mean_teacher.ema_decay": 0.999,
    "mean_teacher.ema_warmup": True,
    "ssl.unlabeled_weight": 1.0,
    "ssl.rampup_fraction": 0.4,
    "l2i.step": "algorithm1",
    "l2i.unroll": "full",
    "l2i.unroll_loss": "unlabeled",
    "l2i.imputation_learning_rate": 1.0,
    "l2i_v1:l2i.unroll_rate_factor": 1.0,
    "l2i_v2:l2i.unroll_rate_factor": 10.0,
    "l2i_v1:l2i.tanh_unlabeled": False,
    "l2i_v2:l2i.tanh_unlabeled": True,
    "training.batch_size": 128,
    "training.unlabeled_batch_size": 128,
}

# PP-SSL, Table S1 (the synthetic protocol; Appendix D.1).
PPSSL_PAPER = {
    "training.methods": ("only_labeled", "ssl", "ppi_fixed", "ppi_closed_form")
    + ("ppssl",),
    "data.num_labels": 20,
    "data.validation_ratio": 0.1,
    "data.test_ratio": 0.395,
    "training.learning_rate": 1e-3,
    "training.batch_size": 256,
    "training.unlabeled_batch_size": 256,
    "training.epochs": 3000,
    "ppssl.lambda_value": 1.0,
    "ppssl.lambda_diameter": 1.0,
    "ppssl.closed_form_at": "ppi_py",
    "ssl.unlabeled_weight": 1.0,
    "ssl.rampup_fraction": 0.0,
}

# The trainer's defaults where the modality changes what serves best, applied
# before a preset and explicit flags (docs/trainer.md, "Defaults by modality";
# evidence in BENCHMARKS.md). A modality left `None` keeps the field's default.
MODALITY_DEFAULTS = {
    # rotated_fashion_mnist / rotated_mnist validation: PseudoLabel with weight 1
    # and a 10 % ramp-up beat Supervised (the tabular default 0.3 / 20 % came
    # from California Housing).
    "ssl.unlabeled_weight": ByModality(image=1.0),
    "ssl.rampup_fraction": ByModality(image=0.1),
}

PRESETS = {
    "hpl_reference": HPL_REFERENCE,
    "hpl_paper": HPL_PAPER,
    "l2i_reference": L2I_REFERENCE,
    "ppssl_paper": PPSSL_PAPER,
}


def modality_defaults(explicit):
    """The `MODALITY_DEFAULTS` of the run's data set that no flag overrides.

    A data set whose modality is only known once loaded (`tfds:`) keeps the
    fields' defaults, and so does an unknown name (the data section refuses it
    with the list of valid names).

    Example:

    >>> modality_defaults({"data.dataset": "rotated_mnist"})["ssl.rampup_fraction"]
    0.1
    >>> modality_defaults({"data.dataset": "california_housing"})
    {}
    """
    dataset = explicit.get("data.dataset", "california_housing")
    modality = get_dataset(dataset).modality if dataset in dataset_names() else None
    if modality is None:
        return {}
    values = {k: v.resolve(modality) for k, v in MODALITY_DEFAULTS.items()}
    return {k: v for k, v in values.items() if v is not None and k not in explicit}


def preset_values(name, explicit):
    """The values preset `name` sets, resolved for the run's data set.

    Args:
        name: a `PRESETS` name, or `None` (no values).
        explicit: the flags the user gave (`"section.field" -> value`): the
            data set decides `ByModality` values.

    Returns:
        `"section.field"` (or `"method:section.field"`) -> value.

    Raises:
        ValueError: if a value depends on a modality that is only known after
            loading (a `tfds:` data set).
    """
    if name is None:
        return {}
    dataset = explicit.get("data.dataset", PRESETS[name].get("data.dataset"))
    modality = get_dataset(dataset or "california_housing").modality
    values = {}
    for key, value in PRESETS[name].items():
        if isinstance(value, ByModality):
            if modality is None:
                raise ValueError(
                    f"--preset {name} sets {key} per modality, which "
                    f"{dataset} only shows once loaded: give it explicitly."
                )
            value = value.resolve(modality)
        if value is not None:
            values[key] = value
    return values
