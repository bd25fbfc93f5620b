"""`RunConfig`: every setting of a training run, with the embedded defaults."""

import dataclasses


@dataclasses.dataclass
class RunConfig:
    """Settings of `python -m trainers.run`; the CLI flags map onto these fields.

    The defaults are the embedded default job: California Housing, 5 % labels,
    seed 0, Supervised vs PseudoLabel vs MeanTeacher, a few minutes on 2 CPU
    cores.
    """

    dataset: str = "california_housing"
    # How a dataset is read (on-disk datasets) and what model/views it gets.
    data_dir: str | None = None
    protocol: str | None = None
    image_size: int | None = None
    on_corrupt: str | None = None
    backbone: str = "auto"
    resnet_weights: str | None = None
    glove: str | None = None
    augment_ops: str = "auto"
    randaugment_ops: int = 3
    randaugment_magnitude: float = 4.0
    synonym_source: str = "auto"
    synonym_file: str | None = None
    synonym_replace: float = 0.3
    synonym_insert: float = 0.1
    methods: tuple = ("supervised", "pseudo_label", "mean_teacher")
    label_ratio: float | None = 0.05
    num_labels: int | None = None
    seeds: tuple = (0,)
    epochs: int = 40
    steps_per_epoch: int | None = None
    batch_size: int = 64
    unlabeled_batch_size: int = 256
    learning_rate: float = 1e-3
    hidden_units: tuple = (256, 128)
    dropout: float = 0.0
    input_clip: float | None = None
    unlabeled_weight: float = 0.3
    rampup_fraction: float = 0.2
    ema_decay: float = 0.99
    weak_noise: float = 0.05
    strong_noise: float = 0.2
    strong_dropout: float = 0.2
    unroll: str = "sgd"
    unroll_learning_rate: float | None = None
    meta_period: int = 1
    meta_learning_rate: float = 1e-4
    outer_log_variance_weight: float = 0.0
    hpl_loss_form: str = "reference"
    uncertainty_input: str = "reference"
    log_variance_range: tuple = (-10.0, 10.0)
    head_learning_rate: float | None = None
    l2i_imputer: str = "pseudo_label"
    l2i_unroll: str = "full"
    l2i_unroll_learning_rate: float | None = None
    imputation_learning_rate: float = 1.0
    l2i_tanh_unlabeled: bool = False
    holdout_fraction: float = 0.0
    teacher: str = "linear_pretrain"
    pretrain_size: int = 500
    ppi_lambda: float | None = None
    lambda_diameter: float = 1.0
    closed_form_at: str = "ppi"
    experiment: str | None = None
    best_fixed_lambda: bool = False
    sweep: tuple | None = None
    experiment_epochs: int | None = None
    benchmark_mode: bool = False
    validation_ratio: float = 0.1
    test_ratio: float = 0.2
    output_dir: str = "runs"
    export_dir: str = "savedmodels"
    run_name: str | None = None
    verbose: int = 1
    strategy: str = "auto"
    jit_compile: bool = False
    deterministic: bool = False
    checkpoint_every: int = 200
    resume: bool = False
    write_checkpoints: bool = True

    def to_dict(self):
        return dataclasses.asdict(self)
