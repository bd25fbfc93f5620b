"""Method names -> `SSRModel` classes, for the trainer and user code."""

import functools

from keras_ssr.methods.hpl import HPL
from keras_ssr.methods.l2i import L2I
from keras_ssr.methods.mean_teacher import MeanTeacher
from keras_ssr.methods.ppssl import PPSSL
from keras_ssr.methods.pseudo_label import PseudoLabel
from keras_ssr.methods.supervised import Supervised

METHODS = {
    "supervised": Supervised,
    "pseudo_label": PseudoLabel,
    "mean_teacher": MeanTeacher,
    "hpl": HPL,
    # HPL ablation "UL without BLO": g_phi trained jointly on the inner loss.
    "hpl_joint": functools.partial(HPL, bilevel=False),
    "l2i_v1": functools.partial(L2I, variant="v1"),
    "l2i_v2": functools.partial(L2I, variant="v2"),
    # Prediction-powered methods: they need a fixed teacher (see the trainer).
    "ppssl": PPSSL,
    "ppi_fixed": functools.partial(PPSSL, lambda_mode="fixed"),
    "ppi_closed_form": functools.partial(PPSSL, lambda_mode="closed_form"),
    "ssl": functools.partial(PPSSL, lambda_mode="ssl"),
    "only_labeled": functools.partial(PPSSL, lambda_mode="only_labeled"),
}


def method_names():
    """Registered method names, sorted."""
    return sorted(METHODS)


def get_method(name):
    """The `SSRModel` class (or a partial of one) registered under `name`.

    Args:
        name: a registered method name, e.g. `"pseudo_label"`.

    Example:

    >>> get_method("supervised").__name__
    'Supervised'
    """
    if name not in METHODS:
        raise ValueError(
            f"Unknown method {name!r}. Valid methods: {', '.join(method_names())}."
        )
    return METHODS[name]
