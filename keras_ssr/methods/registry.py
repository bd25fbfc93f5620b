"""Method names -> `SSRModel` classes: the one place a method name is decoded.

A trainer asks an entry (`get_method(name)`) what the method needs (its class
declarations: `uses_unlabeled`, `uses_teacher`, `uses_holdout`,
`raw_unlabeled_view`, `labels_all_rows`, `config_sections`), builds its
keyword arguments from the configuration sections (`MethodEntry.kwargs`) and
constructs it. Adding a method is one line here (see docs/adding_a_method.md).
"""

import dataclasses

from keras_ssr.methods.clss import CLSS
from keras_ssr.methods.hpl import HPL
from keras_ssr.methods.l2i import L2I
from keras_ssr.methods.mean_teacher import MeanTeacher
from keras_ssr.methods.pi_model import PiModel
from keras_ssr.methods.ppssl import PPSSL
from keras_ssr.methods.pseudo_label import PseudoLabel
from keras_ssr.methods.rankup import RankUp
from keras_ssr.methods.simregmatch import SimRegMatch
from keras_ssr.methods.ssdkl import SSDKL
from keras_ssr.methods.supervised import Supervised
from keras_ssr.methods.temporal_ensembling import TemporalEnsembling
from keras_ssr.methods.tnnr import TNNR
from keras_ssr.methods.ucvme import UCVME


@dataclasses.dataclass(frozen=True)
class MethodEntry:
    """A registered method: a class, fixed constructor arguments, declarations.

    Calling the entry constructs the method; the class's declarations (e.g.
    `entry.uses_teacher`) are read through the entry, which may override
    `labels_all_rows`.

    Args:
        cls: the `SSRModel` subclass.
        fixed: constructor arguments fixed by this entry (e.g. a variant);
            they override what the configuration gives.
        labels_all_rows: train with every training row labeled (the
            Fully-supervised upper bound).

    Example:

    >>> entry = MethodEntry(PPSSL, {"lambda_mode": "fixed"})
    >>> entry.uses_teacher, entry.__name__
    (True, 'PPSSL')
    """

    cls: type
    fixed: dict = dataclasses.field(default_factory=dict)
    labels_all_rows: bool = False

    def __call__(self, regressor, **kwargs):
        return self.cls(regressor, **{**kwargs, **self.fixed})

    def __getattr__(self, name):
        if name.startswith("__") and name != "__name__":
            raise AttributeError(name)
        return getattr(self.cls, name)

    def kwargs(self, sections, total_steps=None):
        """Constructor arguments from the configuration's sections.

        Args:
            sections: `section name -> ConfigSection` instance (every section
                in `config_sections` must be there).
            total_steps: the run's training steps (for ramp-ups).
        """
        kwargs = {}
        for section in self.cls.config_sections:
            kwargs.update(sections[section.name].to_kwargs(total_steps))
        return kwargs


METHODS = {
    "supervised": MethodEntry(Supervised),
    "fully_supervised": MethodEntry(Supervised, labels_all_rows=True),
    "pseudo_label": MethodEntry(PseudoLabel),
    "mean_teacher": MethodEntry(MeanTeacher),
    "hpl": MethodEntry(HPL),
    # HPL ablation "UL without BLO": g_phi trained jointly on the inner loss.
    "hpl_joint": MethodEntry(HPL, {"bilevel": False}),
    "l2i_v1": MethodEntry(L2I, {"variant": "v1"}),
    "l2i_v2": MethodEntry(L2I, {"variant": "v2"}),
    # Prediction-powered methods and their baselines, on a fixed teacher.
    "ppssl": MethodEntry(PPSSL),
    "ppi_fixed": MethodEntry(PPSSL, {"lambda_mode": "fixed"}),
    "ppi_closed_form": MethodEntry(
        PPSSL, {"lambda_mode": "closed_form", "lambda_value": None}
    ),
    "ssl": MethodEntry(PPSSL, {"lambda_mode": "ssl"}),
    "only_labeled": MethodEntry(
        PPSSL, {"lambda_mode": "only_labeled", "lambda_value": 0.0}
    ),
    # Baselines of the HPL paper (issue 12).
    "pi_model": MethodEntry(PiModel),
    "temporal_ensembling": MethodEntry(TemporalEnsembling),
    "simregmatch": MethodEntry(SimRegMatch),
    "rankup": MethodEntry(RankUp),
    "rankup_no_rda": MethodEntry(RankUp, {"rda": False}),
    "ssdkl": MethodEntry(SSDKL),
    "tnnr": MethodEntry(TNNR),
    "ucvme": MethodEntry(UCVME),
    "clss": MethodEntry(CLSS),
}


def method_names():
    """Registered method names, sorted."""
    return sorted(METHODS)


def get_method(name):
    """The `MethodEntry` registered under `name` (call it to construct).

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


def config_sections(names=None):
    """The distinct `ConfigSection` classes of the methods `names` (default:
    every registered method), in registry order."""
    sections = {}
    for name in names or METHODS:
        for section in get_method(name).cls.config_sections:
            sections.setdefault(section.name, section)
    return tuple(sections.values())
