"""Train the dense-output demo models shipped in ``xai/assets/``, deterministically.

- ``shapes_segmenter.keras``: a tiny fully convolutional segmenter (:func:`xai.testing.
  shapes_segmenter`) trained on :func:`xai.scenes.make_scenes` (two objects of different classes
  per image, 5 pixel classes: background + the 4 shapes), per-pixel cross-entropy.
- ``shapes_detector.keras``: a tiny dense-head anchor detector (:func:`xai.boxes.shapes_detector`)
  returning raw ``bbox_regression`` and ``cls_logits`` per anchor (RetinaNet's layout, no NMS),
  trained with sigmoid cross-entropy on IoU-matched anchors and smooth-L1 box deltas.

Each run merges its entries into ``xai/assets/models.json`` (command, sha256, sizes, metrics).
Seeds are fixed and TensorFlow's op determinism is on. Usage (from the repository root)::

    python datasets/train_dense_models.py                       # both
    python datasets/train_dense_models.py --models segmenter
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # a script, not the library

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from xai.scenes import SEGMENTATION_CLASSES, make_scenes  # noqa: E402
from xai.testing import shapes_segmenter  # noqa: E402

DATA_SEED = 0


def segmentation_metrics(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> dict:
    """Pixel accuracy and mean IoU over the 5 classes (background included)."""
    pred = model.predict(images.astype(np.float32), batch_size=100, verbose=0).argmax(-1)
    k = len(SEGMENTATION_CLASSES)
    ious = []
    for c in range(k):
        inter = np.sum((pred == c) & (labels == c))
        union = np.sum((pred == c) | (labels == c))
        ious.append(inter / union if union else 1.0)
    return {
        "pixel_accuracy": round(float(np.mean(pred == labels)), 4),
        "mean_iou": round(float(np.mean(ious)), 4),
        "iou_per_class": {n: round(float(v), 4) for n, v in zip(SEGMENTATION_CLASSES, ious)},
    }


def _training_record(args: argparse.Namespace) -> dict:
    """What both records share: the data and the training settings."""
    return {
        "dataset": "xai.scenes.make_scenes (two objects of different classes per image)",
        "trained_on": {"split": "train", "num_images": args.num_train, "data_seed": DATA_SEED},
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "image_size": 64,
    }


def train_segmenter(args: argparse.Namespace) -> tuple[keras.Model, dict, float]:
    keras.utils.set_random_seed(args.seed)
    train = make_scenes(args.num_train, seed=DATA_SEED, split="train")
    test = make_scenes(args.num_test, seed=DATA_SEED, split="test")
    model = shapes_segmenter(name="shapes_segmenter")
    steps = args.epochs * -(-args.num_train // args.batch_size)
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(args.learning_rate, steps, alpha=0.02)
        ),
        loss="sparse_categorical_crossentropy",
    )
    start = time.perf_counter()
    model.fit(
        np.asarray(train.images, np.float32),
        np.asarray(train.labels),
        batch_size=args.batch_size,
        epochs=args.epochs,
        shuffle=True,
        verbose=2 if args.verbose else 0,
    )
    seconds = time.perf_counter() - start
    shipped = shapes_segmenter(name="shapes_segmenter")
    shipped.set_weights(model.get_weights())
    metrics = segmentation_metrics(shipped, np.asarray(test.images), np.asarray(test.labels))
    record = {
        "file": "shapes_segmenter.keras",
        "task": "semantic segmentation",
        **_training_record(args),
        "class_names": list(SEGMENTATION_CLASSES),
        "input": {
            "shape": [64, 64, 3],
            "dtype": "float32",
            "color": "RGB",
            "value_range": [0, 255],
            "preprocessing": "none: Rescaling(1/255) is the model's first layer",
        },
        "output": "per-pixel softmax probabilities (N, 64, 64, 5) (Softmax layer "
        "'probabilities' after a bilinear x4 upsampling of the 16x16 'seg_logits')",
        "feature_layer": "features_relu",
        "num_params": int(shipped.count_params()),
        "test": {"split": "test", "num_images": args.num_test, **metrics},
        "train_seconds": round(seconds, 1),
    }
    return shipped, record, seconds


def train_detector(args: argparse.Namespace) -> tuple[keras.Model, dict, float]:
    from xai import boxes

    keras.utils.set_random_seed(args.seed)
    train = make_scenes(args.num_train, seed=DATA_SEED, split="train")
    test = make_scenes(args.num_test, seed=DATA_SEED, split="test")
    anchors = boxes.shapes_anchors()
    cls_t, box_t, weight = boxes.assign_anchors(
        anchors, np.asarray(train.boxes), np.asarray(train.object_classes) - 1, num_classes=4
    )
    model = boxes.shapes_detector(name="shapes_detector")
    images = keras.Input((64, 64, 3), name="image")
    out = model(images)
    trainer = keras.Model(images, [out["bbox_regression"], out["cls_logits"]])
    steps = args.epochs * -(-args.num_train // args.batch_size)

    def box_loss(y_true, y_pred):
        w = tf.cast(tf.reduce_any(y_true != 0.0, axis=-1), tf.float32)
        err = tf.reduce_sum(keras.losses.huber(y_true[..., None], y_pred[..., None]), -1)
        return tf.reduce_sum(err * w, -1) / tf.maximum(tf.reduce_sum(w, -1), 1.0)

    def cls_loss(y_true, y_pred):
        ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y_true, logits=y_pred)
        return tf.reduce_sum(ce, axis=(1, 2)) / 4.0

    trainer.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(args.learning_rate, steps, alpha=0.02)
        ),
        loss=[box_loss, cls_loss],
    )
    del weight
    start = time.perf_counter()
    trainer.fit(
        np.asarray(train.images, np.float32),
        [box_t, cls_t],
        batch_size=args.batch_size,
        epochs=args.epochs,
        shuffle=True,
        verbose=2 if args.verbose else 0,
    )
    seconds = time.perf_counter() - start
    shipped = boxes.shapes_detector(name="shapes_detector")
    shipped.set_weights(model.get_weights())
    metrics = boxes.detection_recall(
        shipped, np.asarray(test.images), test.boxes, test.object_classes - 1
    )
    record = {
        "file": "shapes_detector.keras",
        "task": "object detection (raw dense outputs, no NMS)",
        **_training_record(args),
        "class_names": list(SEGMENTATION_CLASSES[1:]),
        "input": {"shape": [64, 64, 3], "dtype": "float32", "value_range": [0, 255]},
        "output": "dict: bbox_regression (N, 128, 4) center_xywh deltas to the anchors (keras "
        "encode_box_to_deltas, as keras-hub RetinaNet) and cls_logits (N, 128, 4) per anchor; "
        "anchors: xai.boxes.shapes_anchors()",
        "feature_layer": "features",
        "num_params": int(shipped.count_params()),
        "test": {"split": "test", "num_images": args.num_test, **metrics},
        "train_seconds": round(seconds, 1),
    }
    return shipped, record, seconds


TRAINERS = {"segmenter": train_segmenter, "detector": train_detector}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(TRAINERS), default=sorted(TRAINERS))
    parser.add_argument("--output-dir", type=Path, default=ROOT / "xai" / "assets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=4000)
    parser.add_argument("--num-test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    tf.config.experimental.enable_op_determinism()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = args.output_dir / "models.json"
    manifest = {"dataset": "xai.datasets.make_shapes", "models": {}}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    command = "python datasets/train_dense_models.py " + " ".join(
        f"--{k.replace('_', '-')} {v}"
        for k, v in sorted(vars(args).items())
        if k in ("seed", "num_train", "num_test", "epochs", "batch_size", "learning_rate")
    )
    for key in args.models:
        model, record, seconds = TRAINERS[key](args)
        path = args.output_dir / record["file"]
        model.save(path)
        keras.saving.load_model(path)  # loads with the safe defaults
        record["command"] = command + f" --models {key}"
        record["file_bytes"] = path.stat().st_size
        record["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        record["versions"] = {"tensorflow": tf.__version__, "keras": keras.__version__}
        manifest["models"][key] = record
        print(
            f"{key}: {path.name} {record['num_params']} params, "
            f"{record['file_bytes'] / 1024:.0f} KiB, trained in {seconds:.0f} s; test "
            f"{json.dumps(record['test'])}",
            flush=True,
        )
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
