"""Training jobs that log through writers hf-summary does not control, each watched by ``start_watch``:
``python foreign_job.py '<json config>'``.

``config["framework"]`` picks the job: ``keras`` (``model.fit`` with Keras' ``TensorBoard`` callback), ``tf_summary``
(a custom loop writing scalars, images, text and a traced graph with ``tf.summary``), ``clu`` (a Flax loop logging
through ``clu.metric_writers``) or ``flax`` (the same loop through ``flax.metrics.tensorboard.SummaryWriter``). It
logs to ``config["logdir"]``, prints ``epoch N`` after each epoch (so a test can preempt it at a known point), sleeps
``sleep`` seconds between epochs, and at the end stops its watcher and prints ``watcher exit STATUS``.
``HF_ENDPOINT`` and ``HF_TOKEN`` come from the environment.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from hf_summary.watch import start_watch


def keras_fit(config: dict) -> None:
    import keras

    keras.utils.set_random_seed(0)
    x, y = np.random.default_rng(0).normal(size=(2, 48, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss="mse")

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            print(f"epoch {epoch}", flush=True)
            time.sleep(config.get("sleep", 0.0))

    board = keras.callbacks.TensorBoard(config["logdir"], histogram_freq=1, write_graph=True, update_freq="batch")
    model.fit(x[:32], y[:32], validation_data=(x[32:], y[32:]), batch_size=8, epochs=config["epochs"], verbose=0,
              callbacks=[board, Progress()])


def tf_summary_loop(config: dict) -> None:
    import tensorflow as tf

    writer = tf.summary.create_file_writer(config["logdir"])
    weights = tf.Variable(tf.ones((4, 2)))

    @tf.function
    def step_fn(x):
        return tf.reduce_sum(tf.matmul(x, weights))

    rng = np.random.default_rng(0)
    with writer.as_default():
        for epoch in range(config["epochs"]):
            if epoch == 0:
                tf.summary.trace_on(graph=True)
            loss = step_fn(tf.constant(rng.normal(size=(3, 4)), dtype=tf.float32))
            if epoch == 0:
                tf.summary.trace_export("step_fn", step=0)
            tf.summary.scalar("loss", loss, step=epoch)
            tf.summary.image("sample", rng.uniform(size=(2, 8, 8, 3)).astype("float32"), step=epoch, max_outputs=2)
            tf.summary.text("note", f"epoch **{epoch}**", step=epoch)
            tf.summary.histogram("weights", weights, step=epoch)
            writer.flush()
            print(f"epoch {epoch}", flush=True)
            time.sleep(config.get("sleep", 0.0))
    writer.close()


def flax_loop(config: dict, write) -> None:
    """A Flax linear model trained by SGD; ``write(step, scalars, images, histograms)`` logs each epoch."""
    import jax
    import jax.numpy as jnp
    from flax import linen as nn

    model = nn.Dense(2)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 4)), dtype=jnp.float32)
    y = jnp.ones((16, 2))
    params = model.init(jax.random.PRNGKey(0), x)

    @jax.jit
    def train_step(params):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((model.apply(p, x) - y) ** 2))(params)
        return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads), loss

    for epoch in range(config["epochs"]):
        params, loss = train_step(params)
        kernel = np.asarray(params["params"]["kernel"])
        write(epoch, {"loss": float(loss), "lr": 0.1}, {"kernel_image": kernel[None, :, :, None]}, {"kernel": kernel})
        print(f"epoch {epoch}", flush=True)
        time.sleep(config.get("sleep", 0.0))


def clu_loop(config: dict) -> None:
    from clu import metric_writers

    writer = metric_writers.create_default_writer(config["logdir"], just_logging=False)

    def write(step, scalars, images, histograms):
        writer.write_scalars(step, scalars)
        writer.write_images(step, images)
        writer.write_histograms(step, histograms)
        writer.write_texts(step, {"note": f"epoch {step}"})
        writer.flush()

    writer.write_hparams({"lr": 0.1, "model": "dense"})
    flax_loop(config, write)
    writer.close()


def flax_tensorboard_loop(config: dict) -> None:
    from flax.metrics import tensorboard

    writer = tensorboard.SummaryWriter(config["logdir"])

    def write(step, scalars, images, histograms):
        for tag, value in scalars.items():
            writer.scalar(tag, value, step)
        for tag, value in images.items():
            writer.image(tag, value[0], step)
        for tag, value in histograms.items():
            writer.histogram(tag, value, step)
        writer.text("note", f"epoch {step}", step)
        writer.flush()

    writer.hparams({"lr": 0.1})
    flax_loop(config, write)
    writer.close()


JOBS = {"keras": keras_fit, "tf_summary": tf_summary_loop, "clu": clu_loop, "flax": flax_tensorboard_loop}


def main(config: dict) -> None:
    watcher = start_watch(config["logdir"], config["repo_id"], commit_every=config.get("commit_every", 0.02),
                          assets=["*.yaml"])
    print(f"watcher {watcher.pid}", flush=True)
    JOBS[config["framework"]](config)
    print(f"watcher exit {watcher.stop(timeout=240)}", flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
