"""Train the two demo models shipped in ``xai/assets/`` on the shapes dataset, deterministically.

- ``shapes_cnn.keras``: trained on the clean variant; it should look at the object.
- ``shortcut_cnn.keras``: trained on the shortcut variant, where a class-coloured corner marker
  is a better cue than the (small, faint, half the time random) object; it learns the marker, so
  it is right on the shortcut ``test`` split and wrong on the ``swapped`` split.

Both are small functional CNNs that take uint8-range float RGB images (0-255; the rescaling is the
model's first layer) and end in ``last_conv -> last_bn -> last_relu -> GlobalAveragePooling2D ->
Dense(softmax)``. The data are made in memory with ``xai.datasets.make_shapes`` (nothing is
downloaded). Running the script twice gives the same weights, bit for bit, on the same machine and
versions: seeds are fixed and TensorFlow's op determinism is on. About 4-5 minutes per model on
2 busy CPU cores.

Usage (from the repository root)::

    python datasets/train_demo_models.py            # both models, into xai/assets/
    python datasets/train_demo_models.py --models clean --output-dir /tmp/models
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

from xai.datasets import CLASS_NAMES, make_shapes  # noqa: E402
from xai.testing import shapes_cnn  # noqa: E402
from xai.vit import shapes_vit  # noqa: E402

MODELS = {
    "clean": {"file": "shapes_cnn.keras", "variant": "clean"},
    "shortcut": {"file": "shortcut_cnn.keras", "variant": "shortcut"},
    # A small class-token Vision Transformer (xai.vit.shapes_vit) on the clean variant.
    "vit": {"file": "shapes_vit.keras", "variant": "clean", "arch": "vit"},
}
# Seeds of the data: each model's training/validation data and the shared evaluation data.
# The evaluation splits use their own derived seeds inside make_shapes (split="test"/"swapped").
DATA_SEED = 0
VIT_ARCHITECTURE = (
    "ViT: 8x8 patches (Conv2D), class token, 3 pre-norm blocks of width 64 with 4 heads, "
    "class-token head; xai.vit.shapes_vit"
)


def build_model(image_size: int, num_classes: int, name: str, arch: str = "cnn") -> keras.Model:
    """The shipped architectures (one definition for every user): :func:`xai.testing.shapes_cnn`
    and :func:`xai.vit.shapes_vit`."""
    if arch == "vit":
        return shapes_vit(image_size, num_classes, name=name)
    return shapes_cnn(image_size, num_classes, name=name)


def accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> float:
    probabilities = model.predict(images.astype(np.float32), batch_size=250, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


def evaluation_sets(args: argparse.Namespace) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The held-out sets every model is scored on."""
    sets = {}
    for key, variant, split in (
        ("clean_test", "clean", "test"),
        ("shortcut_test", "shortcut", "test"),
        ("shortcut_swapped", "shortcut", "swapped"),
    ):
        data = make_shapes(
            args.num_test, seed=DATA_SEED, image_size=args.image_size, variant=variant, split=split
        )
        sets[key] = (np.asarray(data.images), np.asarray(data.labels))
    return sets


def train_one(key: str, args: argparse.Namespace, evals: dict) -> tuple[keras.Model, dict, float]:
    spec = MODELS[key]
    keras.utils.set_random_seed(args.seed)
    train = make_shapes(
        args.num_train,
        seed=DATA_SEED,
        image_size=args.image_size,
        variant=spec["variant"],
        split="train",
    )
    val = make_shapes(
        args.num_val,
        seed=DATA_SEED,
        image_size=args.image_size,
        variant=spec["variant"],
        split="val",
    )
    name = Path(spec["file"]).stem
    arch = spec.get("arch", "cnn")
    model = build_model(args.image_size, len(CLASS_NAMES), name, arch)
    steps = args.epochs * -(-args.num_train // args.batch_size)
    if arch == "vit":  # transformers want a warm-up and decoupled weight decay
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, steps, alpha=0.02, warmup_target=args.learning_rate, warmup_steps=steps // 10
        )
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=0.05)
    else:
        schedule = keras.optimizers.schedules.CosineDecay(args.learning_rate, steps, alpha=0.02)
        optimizer = keras.optimizers.Adam(schedule)
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    history = model.fit(
        np.asarray(train.images),  # uint8; the model casts to float32 and rescales
        np.asarray(train.labels),
        validation_data=(np.asarray(val.images), np.asarray(val.labels)),
        batch_size=args.batch_size,
        epochs=args.epochs,
        shuffle=True,
        verbose=2 if args.verbose else 0,
    )
    seconds = time.perf_counter() - start

    # Ship an uncompiled copy: same weights, no optimizer state (smaller, nothing to warn about).
    shipped = build_model(args.image_size, len(CLASS_NAMES), name, arch)
    shipped.set_weights(model.get_weights())
    accuracies = {k: round(accuracy(shipped, x, y), 4) for k, (x, y) in evals.items()}
    record = {
        "file": spec["file"],
        "trained_on": {
            "variant": spec["variant"],
            "split": "train",
            "num_images": args.num_train,
            "data_seed": DATA_SEED,
            "validation": {"split": "val", "num_images": args.num_val},
        },
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "image_size": args.image_size,
        "class_names": list(CLASS_NAMES),
        "input": {
            "shape": [args.image_size, args.image_size, 3],
            "dtype": "float32",
            "color": "RGB",
            "value_range": [0, 255],
            "preprocessing": "none: Rescaling(1/255) is the model's first layer",
        },
        "output": "softmax probabilities (Dense 'predictions' with activation='softmax')",
        **(
            {"architecture": VIT_ARCHITECTURE, "cam_layer": "block2_attention:input"}
            if arch == "vit"
            else {"last_conv_layer": "last_conv", "feature_layer": "last_relu"}
        ),
        "num_params": int(shipped.count_params()),
        "test_accuracy": accuracies,
        "val_accuracy": round(float(history.history["val_accuracy"][-1]), 4),
        "test_sets": {
            "num_images": args.num_test,
            "data_seed": DATA_SEED,
            "clean_test": "make_shapes(variant='clean', split='test')",
            "shortcut_test": "make_shapes(variant='shortcut', split='test'): "
            "marker of the true class",
            "shortcut_swapped": "make_shapes(variant='shortcut', split='swapped'): same scenes, "
            "marker of another class",
        },
    }
    return shipped, record, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    parser.add_argument("--output-dir", type=Path, default=ROOT / "xai" / "assets")
    parser.add_argument("--seed", type=int, default=0, help="training seed (weights, shuffling)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-train", type=int, default=12000)
    parser.add_argument("--num-val", type=int, default=500)
    parser.add_argument("--num-test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--verbose", action="store_true", help="print Keras' per-epoch log")
    args = parser.parse_args(argv)

    tf.config.experimental.enable_op_determinism()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = args.output_dir / "models.json"
    manifest = {}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8")).get("models", {})

    evals = evaluation_sets(args)
    command = "python datasets/train_demo_models.py " + " ".join(
        f"--{k.replace('_', '-')} {v}"
        for k, v in sorted(vars(args).items())
        if k
        in (
            "seed",
            "image_size",
            "num_train",
            "num_val",
            "num_test",
            "epochs",
            "batch_size",
            "learning_rate",
        )
    )
    failures = 0
    for key in args.models:
        model, record, seconds = train_one(key, args, evals)
        path = args.output_dir / record["file"]
        model.save(path)
        # The shipped file must load with the safe defaults and score the same.
        loaded = keras.saving.load_model(path)
        reloaded = {k: round(accuracy(loaded, x, y), 4) for k, (x, y) in evals.items()}
        same = all(reloaded[k] == record["test_accuracy"][k] for k in reloaded)
        failures += not same
        record["command"] = command + f" --models {key}"
        record["file_bytes"] = path.stat().st_size
        record["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        record["versions"] = {"tensorflow": tf.__version__, "keras": keras.__version__}
        manifest[key] = record
        acc = record["test_accuracy"]
        print(
            f"{key:9s} {path.name}: clean_test={acc['clean_test']:.4f} "
            f"shortcut_test={acc['shortcut_test']:.4f} "
            f"shortcut_swapped={acc['shortcut_swapped']:.4f} val={record['val_accuracy']:.4f} | "
            f"{record['num_params']} params, {record['file_bytes'] / 1024:.0f} KiB, "
            f"trained in {seconds:.0f} s | "
            f"reload {'matches' if same else 'DIFFERS: ' + str(reloaded)}",
            flush=True,
        )

    manifest_path.write_text(
        json.dumps({"dataset": "xai.datasets.make_shapes", "models": manifest}, indent=2) + "\n",
        encoding="utf-8",
    )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
