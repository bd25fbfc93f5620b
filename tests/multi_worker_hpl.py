"""Worker process of `test_distribution`'s MultiWorkerMirroredStrategy test.

Usage: `python tests/multi_worker_hpl.py OUT.npz` with `TF_CONFIG` set. Each
worker feeds its half of the fixed global batch of `global_batches()` for a
few HPL steps and saves its final weights to `OUT.npz`.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

# The strategy must exist before any other TensorFlow op runs.
STRATEGY = (
    tf.distribute.MultiWorkerMirroredStrategy() if __name__ == "__main__" else None
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_ssr.methods.hpl import HPL  # noqa: E402
from tests.helpers import compiled, linear_problem, make_batch, make_regressor  # noqa: E402

STEPS = 3


def global_batches():
    """`STEPS` distinct three-stream batches (the global batches)."""
    x, y = linear_problem()
    return [make_batch(x, y, seed=s) for s in range(STEPS)]


def stacked(batches):
    return tf.nest.map_structure(lambda *t: tf.stack(t), *batches)


def build_hpl():
    """A seeded HPL with bilevel steps every step and an Adam unroll."""
    keras.utils.set_random_seed(5)
    return compiled(
        HPL, make_regressor(), optimizer=keras.optimizers.Adam(1e-2), unroll="adam"
    )


def final_weights(model):
    weights = model.regressor.weights + model.uncertainty_learner.weights
    return [np.asarray(w) for w in weights]


def _worker_dataset(context):
    """This worker's half (along the batch axis) of every global batch."""
    index, count = context.input_pipeline_id, context.num_input_pipelines

    def half(t):
        size = t.shape[1] // count
        return t[:, index * size : (index + 1) * size]

    data = tf.nest.map_structure(half, stacked(global_batches()))
    return tf.data.Dataset.from_tensor_slices(data)


def main(out):
    keras.config.disable_traceback_filtering()
    with STRATEGY.scope():
        model = build_hpl()  # SSRModel handles Keras' multi-worker logs
    dataset = STRATEGY.distribute_datasets_from_function(_worker_dataset)
    model.fit(dataset, epochs=1, steps_per_epoch=STEPS, verbose=0, shuffle=False)
    np.savez(out, *final_weights(model))


if __name__ == "__main__":
    main(sys.argv[1])
