"""Train the demo CNN with a custom ``tf.GradientTape`` loop that reads intermediate activations.

``xai.TrainingTap(model, layers=...)`` returns ``(logits, {layer: activation})`` from *one* forward
pass with gradients flowing, so the training step below can put an L1 penalty on feature maps and
log how sparse they are without running the model twice (BatchNormalization is updated once,
Dropout draws once, exactly as in ``model(x, training=True)``).

The model is the demo CNN (``xai.testing.shapes_cnn``, the architecture of
``xai/assets/shapes_cnn.keras``): RGB images in 0-255, ``Rescaling(1/255)`` inside, Conv-BN-ReLU
blocks with three max-pools, ``last_conv -> last_bn -> last_relu``, global average pooling and a
softmax head. It is
trained from scratch on the seeded shapes dataset made in memory (``xai.datasets.make_shapes``).
Two epochs on 1024 cluttered images are only the start of training (accuracy is still close to
chance; the shipped model trains 10 epochs on 12,000 images): the point here is the training step.

Usage (from the repository root)::

    python examples/train_with_tap.py                    # 2 epochs, 1024 images of 64x64
    python examples/train_with_tap.py --num-images 256 --image-size 32 --l1 0
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # a script, not the library

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import xai  # noqa: E402
from xai.datasets import CLASS_NAMES, make_shapes  # noqa: E402
from xai.testing import shapes_cnn  # noqa: E402

TAPPED = ["relu1", "relu3", "last_relu"]


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--num-images", type=int, default=1024, help="training images")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument(
        "--l1", type=float, default=1e-5, help="weight of the activation L1 penalty"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    train = make_shapes(args.num_images, seed=args.seed, image_size=args.image_size, split="train")
    val = make_shapes(
        max(args.num_images // 4, 8), seed=args.seed, image_size=args.image_size, split="val"
    )
    dataset = (
        tf.data.Dataset.from_tensor_slices(
            (np.asarray(train.images, np.float32), np.asarray(train.labels))
        )
        .shuffle(len(train.labels), seed=args.seed)
        .batch(args.batch_size)
    )

    model = shapes_cnn(args.image_size, len(CLASS_NAMES))  # the shipped architecture, untrained
    tap = xai.TrainingTap(model, layers=TAPPED)  # built once; shares the model's variables
    optimizer = keras.optimizers.Adam(args.learning_rate)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)  # the tap gives logits
    l1 = tf.constant(args.l1, tf.float32)

    @tf.function
    def train_step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, dict[str, tf.Tensor]]:
        with tf.GradientTape() as tape:
            logits, acts = tap(x, training=True)  # one forward pass: logits and activations
            ce = loss_fn(y, logits)
            penalty = tf.add_n([tf.reduce_mean(tf.abs(a)) for a in acts.values()])
            loss = ce + l1 * penalty
        grads = tape.gradient(loss, tap.trainable_variables)
        optimizer.apply_gradients(zip(grads, tap.trainable_variables))
        correct = tf.reduce_sum(
            tf.cast(
                tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(y, tf.int32)),
                tf.float32,
            )
        )
        sparsity = {
            k: tf.reduce_mean(tf.cast(tf.equal(a, 0.0), tf.float32)) for k, a in acts.items()
        }
        return ce, correct, sparsity

    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_accuracy": []}
    history.update({f"sparsity/{k}": [] for k in TAPPED})
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        losses, correct, seen = [], 0.0, 0
        sparsity = {k: [] for k in TAPPED}
        for x, y in dataset:
            ce, hits, sp = train_step(x, y)
            losses.append(float(ce))
            correct += float(hits)
            seen += int(y.shape[0])
            for k, v in sp.items():
                sparsity[k].append(float(v))
        probabilities = model.predict(np.asarray(val.images, np.float32), batch_size=256, verbose=0)
        history["loss"].append(float(np.mean(losses)))
        history["accuracy"].append(correct / seen)
        history["val_accuracy"].append(float(np.mean(probabilities.argmax(1) == val.labels)))
        for k in TAPPED:
            history[f"sparsity/{k}"].append(float(np.mean(sparsity[k])))
        zeros = ", ".join(f"{k} {history[f'sparsity/{k}'][-1]:.0%}" for k in TAPPED)
        print(
            f"epoch {epoch}/{args.epochs}: loss {history['loss'][-1]:.4f}, accuracy "
            f"{history['accuracy'][-1]:.3f}, val_accuracy {history['val_accuracy'][-1]:.3f}, "
            f"zeros: {zeros} ({time.perf_counter() - start:.1f} s)"
        )
    return history


if __name__ == "__main__":
    main()
