"""Callback benchmark: the per-epoch cost of ExplainCallback / ActivationRecorder during ``fit``.

The question: what does watching the model cost per epoch, compared with explaining the probe set
once with ``explain()``? Target: at most 1.2x, with no retracing from epoch to epoch.

Model: the demo CNN (``xai/assets/shapes_cnn.keras`` when it is there, else the same architecture
built here with fresh weights), 64x64 shapes images (``xai.datasets.make_shapes``), a probe batch
of ``--probe`` images. Each configuration runs its own ``fit`` of ``--epochs`` epochs. At every
epoch end the callback's ``on_epoch_end`` is timed, and right after it, at the same weights and
under the same machine load, one call of a warm ``Explainer.explain`` on the probe set (the
reference: the same method, compiled once beforehand). The ratio reported is the median over
epochs 2..N of (callback cost / reference); epoch 1 includes the one trace and is shown apart.
Trace counts come from ``Engine.trace_count`` / ``ActivationRecorder.trace_count``.

Run:  python bench/bench_callbacks.py            (writes bench/results/callbacks.md and .json)
      python bench/bench_callbacks.py --quick    (fewer epochs, 32x32 images; a smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
ASSET = Path(__file__).resolve().parents[1] / "xai" / "assets" / "shapes_cnn.keras"


def demo_model(image_size: int):
    """The shipped demo CNN, or its architecture with fresh weights (and where it came from)."""
    import keras

    if ASSET.exists() and image_size == 64:
        return keras.saving.load_model(ASSET, compile=False), f"shipped {ASSET.name}"
    keras.utils.set_random_seed(0)
    L = keras.layers
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = L.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    for i, filters in enumerate((16, 32, 64), start=1):
        x = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = L.BatchNormalization(name=f"bn{i}")(x)
        x = L.ReLU(name=f"relu{i}")(x)
        x = L.MaxPooling2D(2, name=f"pool{i}")(x)
    x = L.Conv2D(64, 3, padding="same", activation="relu", name="last_conv")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(4, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="shapes_cnn"), "demo architecture, fresh weights"


class Timer:
    """Drives one xai callback from inside ``fit`` and times it.

    At each epoch end: the callback's ``on_epoch_end`` (what training waits for), then, once its
    background writes are done, one call of ``reference`` (so the two never overlap). The time
    the writer thread spends is measured by wrapping the callback's ``_write``.
    """

    def __init__(self, callback, reference) -> None:
        import keras

        self.callback = callback
        self.reference = reference
        self.blocking: list[float] = []
        self.writing: list[float] = []
        self.base: list[float] = []
        self.timing = True  # False: drive the callback only (for the whole-fit comparison)
        timer = self
        write = callback._write

        def timed_write(*args):
            t = time.perf_counter()
            write(*args)
            timer.writing.append(time.perf_counter() - t)

        callback._write = timed_write

        class Driver(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                callback.set_model(self.model)
                callback.on_train_begin(logs)

            def on_epoch_end(self, epoch, logs=None):
                if not timer.timing:
                    callback.on_epoch_end(epoch, logs)
                    return
                t = time.perf_counter()
                callback.on_epoch_end(epoch, logs)
                timer.blocking.append(time.perf_counter() - t)
                for future in list(callback._pending):
                    future.result()
                t = time.perf_counter()
                timer.reference()
                timer.base.append(time.perf_counter() - t)

            def on_train_end(self, logs=None):
                callback.on_train_end(logs)

        self.driver = Driver()


def median_ms(values) -> float:
    return round(statistics.median(values) * 1e3, 2)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="32x32 images, 4 epochs")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument(
        "--repeats", type=int, default=3, help="fit pairs (with/without) per configuration"
    )
    ap.add_argument("--probe", type=int, default=16, help="probe images explained each epoch")
    ap.add_argument("--train", type=int, default=128, help="training images per epoch")
    args = ap.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    import xai
    from xai.callbacks import ActivationRecorder, ExplainCallback
    from xai.datasets import make_shapes

    size = 32 if args.quick else 64
    epochs = 4 if args.quick else args.epochs
    model, source = demo_model(size)
    model.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    train = make_shapes(args.train, seed=0, image_size=size, split="train")
    probe = np.asarray(make_shapes(args.probe, seed=0, image_size=size, split="test").images)
    x = np.asarray(train.images, np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, np.asarray(train.labels))).batch(32)

    # Context: a cold explain() (tap + trace) and a plain epoch.
    t0 = time.perf_counter()
    xai.explain(model, probe, "gradcam")
    cold = time.perf_counter() - t0
    model.fit(ds, epochs=1, verbose=0)
    t0 = time.perf_counter()
    model.fit(ds, epochs=1, verbose=0)
    plain_epoch = time.perf_counter() - t0

    layers = ["relu1", "relu2", "relu3", "last_conv"]
    tap = xai.Tap.build(model, layers)
    forward = tf.function(
        lambda t: tap.model(t, training=False),
        input_signature=[tf.TensorSpec((None, size, size, 3))],
    )

    def forward_reference():
        [a.numpy() for a in forward(tf.constant(probe, tf.float32))]

    def explain_reference(method, params):
        explainer = xai.Explainer(model)
        return lambda: explainer.explain(probe, method, progress=False, **params)

    tmp = Path(tempfile.mkdtemp(prefix="xai_bench_callbacks_"))
    sg = {"num_samples": 8}
    configs = [
        ("gradcam -> TensorBoard", lambda d: ExplainCallback(probe, log_dir=d), ("gradcam", {})),
        ("gradcam -> PNG files", lambda d: ExplainCallback(probe, output_dir=d), ("gradcam", {})),
        (
            "gradcam -> TensorBoard + PNG",
            lambda d: ExplainCallback(probe, log_dir=d / "tb", output_dir=d / "png"),
            ("gradcam", {}),
        ),
        (
            "gradcam -> TensorBoard + PNG, background_writes=False",
            lambda d: ExplainCallback(
                probe, log_dir=d / "tb", output_dir=d / "png", background_writes=False
            ),
            ("gradcam", {}),
        ),
        (
            "smoothgrad(8) -> TensorBoard",
            lambda d: ExplainCallback(probe, "smoothgrad", log_dir=d, **sg),
            ("smoothgrad", {**sg, "seed": 0}),
        ),
        (
            "ActivationRecorder, stats of 4 layers -> .npz",
            lambda d: ActivationRecorder(probe, layers, output_dir=d),
            None,
        ),
    ]

    rows = []
    for k, (label, make, ref_spec) in enumerate(configs):
        reference = forward_reference if ref_spec is None else explain_reference(*ref_spec)
        reference()  # compiled once, before timing
        reference()
        callback = make(tmp / f"config{k}")
        timer = Timer(callback, reference)
        model.fit(ds, epochs=epochs, callbacks=[timer.driver], verbose=0)  # epoch 1 traces
        first_epoch = timer.blocking[0]
        del timer.blocking[0], timer.writing[0], timer.base[0]
        base = statistics.median(timer.base)
        rows.append(
            {
                "config": label,
                "reference": "forward pass through the tap"
                if ref_spec is None
                else f"explain({ref_spec[0]})",
                "first_epoch_ms": round(first_epoch * 1e3, 2),
                "blocking_ms": median_ms(timer.blocking),
                "writer_ms": median_ms(timer.writing) if timer.writing else 0.0,
                "reference_ms": round(base * 1e3, 2),
                "ratio_blocking": round(
                    statistics.median(c / b for c, b in zip(timer.blocking, timer.base)), 3
                ),
                "ratio_blocking_plus_writer": round(
                    (
                        statistics.median(timer.blocking)
                        + (statistics.median(timer.writing) if timer.writing else 0.0)
                    )
                    / base,
                    3,
                ),
                "trace_count": callback.trace_count,
            }
        )
        print(rows[-1], flush=True)

    res = {
        "model": f"{model.name} ({source}), {size}x{size}, {model.count_params()} params",
        "probe": args.probe,
        "epochs": epochs,
        "train_images": args.train,
        "cold_explain_s": round(cold, 3),
        "plain_epoch_s": round(plain_epoch, 3),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, "
            f"TF {tf.__version__}, Keras {keras.__version__}"
        ),
        "rows": rows,
    }
    name = "callbacks_quick" if args.quick else "callbacks"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    md = [
        f"# Callback benchmark: {res['model']}, probe of {args.probe} images",
        "",
        f"{res['machine']}. A plain epoch of {args.train} images (no callback) takes "
        f"{plain_epoch:.2f} s; "
        f"a cold `xai.explain()` of the probe set (tap + trace) {cold:.2f} s.",
        "",
        "Columns, per epoch (medians over epochs 2..N of a fit of "
        f"{epochs} epochs): *blocking* = time in the callback's `on_epoch_end`, "
        "what training waits "
        "for (the explanation on the current weights); *writer* = wall time the callback's "
        "background thread spends rendering overlays and writing files/events (it overlaps the "
        "next epoch's training; its CPU share is small, the rest is waiting on fsync); "
        "*reference* = "
        "one warm `Explainer.explain` of the probe set with the same method (for the recorder: one "
        "warm compiled forward pass returning the same activations), timed right after the writes "
        "finished, at the same weights. Target: blocking <= 1.2 x reference, one trace per fit "
        "(trace counts are for the whole fit; SmoothGrad compiles two step kinds, "
        "each traced once).",
        "",
        "| configuration | epoch 1 (ms, incl. trace) | blocking (ms) | writer (ms) "
        "| reference (ms) "
        "| blocking / reference | (blocking + writer) / reference | traces |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['config']} | {r['first_epoch_ms']} | {r['blocking_ms']} | {r['writer_ms']} | "
            f"{r['reference_ms']} | {r['ratio_blocking']} | {r['ratio_blocking_plus_writer']} | "
            f"{r['trace_count']} |"
        )
    md += ["", "Command: `python bench/bench_callbacks.py`" + (" --quick" if args.quick else "")]
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
