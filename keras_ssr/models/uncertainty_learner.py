"""`UncertaintyLearner`: HPL's g_phi, the log-variance of each pseudo-label."""

import keras

INPUT_FORMS = ("reference", "paper")


@keras.saving.register_keras_serializable(package="keras_ssr")
class UncertaintyLearner(keras.layers.Layer):
    """One-hidden-layer MLP giving the log-variance z = log sigma^2 of pseudo-labels.

    This is the uncertainty-learner g_phi of HPL (section 3.4): it maps a
    prediction r_j = f(strong(x_j)) and a pseudo-label yhat_j = f(weak(x_j)) to
    z_j, which weights the unlabeled loss as `exp(-z) * (yhat - r)^2 + z`
    (eq. 3). Both inputs are stop-gradient inside `call`: g_phi reads the
    regression model but never trains it.

    The output is clamped with a hard clip to `log_variance_range`, only as an
    overflow guard for `exp(-z)` (float32 overflows at exp(89)). A clip was
    chosen over a smooth `lo + (hi - lo) * sigmoid(.)` because inside the range
    it is the identity, so the layer is exactly the reference MLP there (a
    sigmoid squashing would rescale gradients everywhere, e.g. 5x at z = 0 for
    (-10, 10)). The price: outside the range the gradient w.r.t. phi is zero, so
    samples whose z saturates stop teaching g_phi. At the default (-10, 10) the
    weights exp(-z) are already 2e4 / 5e-5, so a healthy learner stays inside.
    Pass `log_variance_range=None` to disable the clamp.

    Args:
        hidden_units: width of the hidden ReLU layer. Defaults to 128 (reference).
        input_form: `"reference"` feeds `[r - yhat, r]` (the authors' code, the
            default); `"paper"` feeds `[r, yhat]` (section 3.4's z = g(r, yhat)).
        log_variance_range: `(low, high)` clip of the output z, or `None`.
            Defaults to `(-10.0, 10.0)`.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: tuple `(predictions, pseudo_labels)`, each of shape `(batch, 1)`.

    Returns:
        z of shape `(batch, 1)`.

    Example:

    >>> learner = UncertaintyLearner(hidden_units=8)
    >>> r = keras.ops.ones((4, 1))
    >>> yhat = keras.ops.zeros((4, 1))
    >>> tuple(learner((r, yhat)).shape)
    (4, 1)

    References:
        - Heteroscedastic pseudo-labels with bi-level uncertainty learning for
          semi-supervised regression (HPL), sections 3.2-3.4, eq. 3-4.
          Reference code: sxq11/Heteroscedastic-Pseudo-Labels.
    """

    def __init__(
        self,
        hidden_units=128,
        input_form="reference",
        log_variance_range=(-10.0, 10.0),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if input_form not in INPUT_FORMS:
            raise ValueError(
                f"input_form must be one of {INPUT_FORMS}, got {input_form!r}."
            )
        if log_variance_range is not None:
            low, high = (float(v) for v in log_variance_range)
            if not low < high:
                raise ValueError(
                    "log_variance_range must be (low, high) with low < high, "
                    f"got {log_variance_range!r}."
                )
            log_variance_range = (low, high)
        self.hidden_units = hidden_units
        self.input_form = input_form
        self.log_variance_range = log_variance_range
        dense_args = dict(
            kernel_initializer="glorot_normal",
            bias_initializer="zeros",
            dtype=self.dtype_policy,
        )
        self.hidden = keras.layers.Dense(
            hidden_units, activation="relu", name="hidden", **dense_args
        )
        self.log_variance = keras.layers.Dense(1, name="log_variance", **dense_args)

    def build(self, input_shape):
        self.hidden.build((None, 2))
        self.log_variance.build((None, self.hidden_units))

    def call(self, inputs):
        predictions, pseudo_labels = inputs
        r = keras.ops.stop_gradient(predictions)
        yhat = keras.ops.stop_gradient(pseudo_labels)
        if self.input_form == "reference":
            features = keras.ops.concatenate([r - yhat, r], axis=-1)
        else:
            features = keras.ops.concatenate([r, yhat], axis=-1)
        z = self.log_variance(self.hidden(features))
        if self.log_variance_range is not None:
            z = keras.ops.clip(z, *self.log_variance_range)
        return z

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_units": self.hidden_units,
                "input_form": self.input_form,
                "log_variance_range": self.log_variance_range,
            }
        )
        return config
