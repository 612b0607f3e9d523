"""One benchmark cell in a fresh process: one library x one model x one method (used by
bench_peers.py).

Runs under the project venv (``lib == "xai"``) or under ``bench/.venvs/peers`` (tf-keras-vis,
xplique), so it imports nothing from ``xai`` unless ``lib == "xai"``. It only imports the timing and
memory helpers of ``bench_core`` (stdlib at import time).

    python bench/peer_runner.py SPEC.json
    # prints one JSON line; writes the maps to spec["maps_out"]

Sequence (all in this process):

1. build the model from ``keras.utils.set_random_seed(0)`` (same weights in both venvs: same
   Keras/TF; a checksum of the weights is reported), load the inputs the parent saved (.npy);
2. one plain forward pass of the batch (``tf.function``, ``training=False``): its argmax is the
   target class of every library; ``floor_mib`` = VmRSS and ``forward_peak_mib`` = VmHWM after it;
3. first-call latency: construct the explainer and explain ONE image (tracing/cloning included);
4. ``warmup`` calls on the full batch, then ``repeats`` runs interleaved with a plain forward pass
   of the same batch (ratio = method / forward, median over runs);
5. ``peak_mib`` = VmHWM of the whole process at the end (never reset: what the user's process
   needs).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import rss_mib, timed  # noqa: E402

LAYERS = {"mobilenetv2": "out_relu", "resnet50": "conv5_block3_out", "demo": "last_conv"}


def build_model(name: str, logits: bool = False):
    import keras

    if name == "demo":
        model = keras.models.load_model(os.environ["XAI_DEMO_MODEL"], compile=False)
        if logits:  # same Dense weights without the softmax
            dense = model.layers[-1]
            z = keras.ops.add(keras.ops.matmul(dense.input, dense.kernel), dense.bias)
            model = keras.Model(model.inputs[0], z)
        return model
    keras.utils.set_random_seed(0)
    app = {"mobilenetv2": keras.applications.MobileNetV2, "resnet50": keras.applications.ResNet50}[
        name
    ]
    # classifier_activation=None draws the same initial weights (same seed, same layer order)
    return app(weights=None, **({"classifier_activation": None} if logits else {}))


def checksum(model) -> float:
    import numpy as np

    return float(sum(np.abs(w).astype(np.float64).sum() for w in model.get_weights()))


# ------------------------------------------------------------------------------- the libraries
def make_xai(model, method, params, batch, layer, logits=False):
    import xai

    explainer = xai.Explainer(model)
    info = {}

    def run(x, preds):
        e = explainer.explain(x, method, batch_size=batch, **params)
        _ = e.heatmap  # timed: the heatmaps at input size, as the peers return them
        info["layer"] = e.layer
        return e.raw[0]

    return run, info


def make_tf_keras_vis(model, method, params, batch, layer, logits=False):
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    if method in ("gradcam", "gradcam_plus_plus", "scorecam"):
        if method == "gradcam":
            from tf_keras_vis.gradcam import Gradcam as Cls
        elif method == "gradcam_plus_plus":
            from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus as Cls
        else:
            from tf_keras_vis.scorecam import Scorecam as Cls
        # ":logits" variant: the model already ends in logits, no modifier, no clone
        cam = (
            Cls(model, clone=False)
            if logits
            else Cls(model, model_modifier=ReplaceToLinear(), clone=True)
        )
        extra = {"max_N": params["max_channels"]} if method == "scorecam" else {}
        if method == "scorecam":
            extra["batch_size"] = batch

        def run(x, preds):
            # seek_penultimate_conv_layer=False: otherwise tf-keras-vis replaces a non-Conv layer
            # (out_relu, conv5_block3_out) by the nearest Conv before it
            # (Conv_1, conv5_block3_3_conv)
            return cam(
                CategoricalScore(list(map(int, preds))),
                x,
                penultimate_layer=layer,
                seek_penultimate_conv_layer=False,
                **extra,
            )

        return run, {
            "layer": layer,
            "call": (
                f"{Cls.__name__}(model, ReplaceToLinear(), clone=True)(..., "
                f"penultimate_layer={layer!r}, seek_penultimate_conv_layer=False, {extra})"
            ),
        }
    if method == "smoothgrad":
        from tf_keras_vis.saliency import Saliency

        sal = (
            Saliency(model, clone=False)
            if logits
            else Saliency(model, model_modifier=ReplaceToLinear(), clone=True)
        )

        def run(x, preds):
            # identity gradient_modifier (the default is abs, applied per sample before the mean;
            # xai and xplique average signed gradients); channels kept, reduced later like xai's
            return sal(
                CategoricalScore(list(map(int, preds))),
                x,
                smooth_samples=params["num_samples"],
                smooth_noise=params["noise_level"],
                gradient_modifier=lambda g: g,
                keepdims=True,
                normalize_map=False,
            )

        return run, {
            "call": (
                f"Saliency(...)(smooth_samples={params['num_samples']}, "
                f"smooth_noise={params['noise_level']}, gradient_modifier=identity, keepdims=True)"
            )
        }
    raise NotImplementedError(f"tf-keras-vis has no {method}")


def make_xplique(model, method, params, batch, layer, logits=False):
    import numpy as np
    from xplique import attributions as A

    if method == "gradcam":
        e = A.GradCAM(model, batch_size=batch, conv_layer=layer)
    elif method == "gradcam_plus_plus":
        e = A.GradCAMPP(model, batch_size=batch, conv_layer=layer)
    elif method == "smoothgrad":
        e = A.SmoothGrad(
            model,
            batch_size=batch,
            nb_samples=params["num_samples"],
            noise=params["sigma"],
            reducer=None,
        )
    elif method == "integrated_gradients":
        e = A.IntegratedGradients(
            model, batch_size=batch, steps=params["num_steps"], baseline_value=0.0, reducer=None
        )
    else:
        raise NotImplementedError(f"xplique has no {method}")
    n_out = model.outputs[0].shape[-1]

    def run(x, preds):
        return np.asarray(e.explain(x, np.eye(n_out, dtype=np.float32)[preds]))

    return run, {
        "layer": layer,
        "call": f"{type(e).__name__}(model, batch_size={batch}, ...)",
        "params": {k: v for k, v in params.items()},
    }


FACTORIES = {"xai": make_xai, "tf-keras-vis": make_tf_keras_vis, "xplique": make_xplique}
MODULES = {"xai": "xai", "tf-keras-vis": "tf_keras_vis", "xplique": "xplique"}


def base(lib: str) -> str:
    """The library behind a benchmark name: "xplique@resolved:logits" -> "xplique"."""
    return lib.split(":")[0].split("@")[0]


def version(lib: str) -> str:
    return getattr(__import__(MODULES[base(lib)]), "__version__", "?")


def head_to_head(spec: dict) -> None:
    """Several libraries on one model in ONE process (peers' venv, xai from the source tree),
    runs interleaved: forward, lib 1, lib 2, ... per repeat; the fairest speed comparison on a
    shared machine. No memory figures (one process holds every explainer)."""
    import numpy as np
    import tensorflow as tf

    model = build_model(spec["model"])
    x = np.load(spec["inputs"])
    xt = tf.constant(x)
    forward = tf.function(
        lambda t: model(t, training=False), input_signature=[tf.TensorSpec((None, *x.shape[1:]))]
    )
    preds = np.asarray(forward(xt)).argmax(-1)
    runs = {}
    for lib in spec["libs"]:
        runs[lib], _ = FACTORIES[base(lib)](
            model, spec["method"], spec["params"][lib], len(x), LAYERS[spec["model"]]
        )
        runs[lib](x, preds)  # warm-up
    times = {"forward": [], **{lib: [] for lib in runs}}
    for _ in range(spec["repeats"]):
        times["forward"].append(timed(lambda: forward(xt).numpy()))
        for lib, run in runs.items():
            times[lib].append(timed(lambda run=run: run(x, preds)))
    med = statistics.median
    out = {
        lib: {
            "ms_per_image": 1000 * med(t) / len(x),
            "ratio": med([a / f for a, f in zip(t, times["forward"])]),
        }
        for lib, t in times.items()
    }
    versions = {lib: version(lib) for lib in runs}
    print(
        json.dumps(
            {
                "head_to_head": out,
                "runs_s": times,
                "versions": versions,
                "loadavg": os.getloadavg(),
            }
        )
    )


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    if spec["lib"] == "h2h":
        return head_to_head(spec)
    import numpy as np
    import tensorflow as tf

    lib = spec["lib"]
    model = build_model(spec["model"], logits=spec.get("logits", False))
    x = np.load(spec["inputs"])
    batch = len(x)
    xt = tf.constant(x)
    forward = tf.function(
        lambda t: model(t, training=False), input_signature=[tf.TensorSpec((None, *x.shape[1:]))]
    )
    preds = np.asarray(forward(xt)).argmax(-1)
    floor, forward_peak = rss_mib("VmRSS"), rss_mib("VmHWM")

    t0 = time.perf_counter()
    run, info = FACTORIES[base(lib)](
        model,
        spec["method"],
        spec["params"],
        batch,
        LAYERS[spec["model"]],
        spec.get("logits", False),
    )
    run(x[:1], preds[:1])
    first = time.perf_counter() - t0
    for _ in range(spec["warmup"]):
        run(x, preds)
    fwd, meth = [], []
    maps = None
    for _ in range(spec["repeats"]):  # interleaved with the forward pass
        fwd.append(timed(lambda: forward(xt).numpy()))
        t0 = time.perf_counter()
        maps = run(x, preds)
        meth.append(time.perf_counter() - t0)
    np.save(spec["maps_out"], np.asarray(maps, dtype=np.float32))
    med = statistics.median
    out = {
        "ms_per_image": 1000 * med(meth) / batch,
        "forward_ms_per_image": 1000 * med(fwd) / batch,
        "ratio": med([m / f for m, f in zip(meth, fwd)]),
        "runs_s": meth,
        "forward_runs_s": fwd,
        "first_call_s": first,
        "floor_mib": floor,
        "forward_peak_mib": forward_peak,
        "peak_mib": rss_mib("VmHWM"),
        "weights_checksum": checksum(model),
        "preds": preds.tolist(),
        "loadavg": os.getloadavg(),
        "versions": {"tensorflow": tf.__version__, "keras": __import__("keras").__version__},
        **{k: v for k, v in info.items() if k != "params"},
    }
    if not lib.startswith("xai"):
        out["versions"][lib] = version(lib)
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
