"""Noise smoothing as a wrapper over any registered method (SmoothGrad and its variants).

``smooth(base)`` averages the base method's raw maps over ``num_samples`` noisy copies of each
input (Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise"):

* noise ``eps_k ~ N(0, sigma^2)`` with ``sigma = noise_level * (max(x) - min(x))`` per image and per
  model input (PAIR's convention; the paper recommends 10-20 %);
* ``aggregate="mean"`` (SmoothGrad), ``"mean_squared"`` (SmoothGrad², Hooker et al. 2019) or
  ``"variance"`` (VarGrad, Adebayo et al. 2018);
* samples are processed one at a time over the batch, so peak memory does not grow with
  ``num_samples``; the noise of sample ``k`` is drawn from ``(seed, k)`` alone, so an image gets the
  same noise whatever batch it is in (batch invariance) and the same seed gives the same result;
* the target class is resolved on the clean input (the noisy copies may be predicted differently),
  and the reported logits/scores are those of the clean input.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import tensorflow as tf

from ..engine import Engine
from ..errors import bad_value
from .registry import Method, MethodResult, get, register
from .scoring import clean_targets, reported_targets

Aggregate = Literal["mean", "mean_squared", "variance"]
AGGREGATES = ("mean", "mean_squared", "variance")


_SMOOTHGRAD = "Smilkov et al., SmoothGrad: removing noise by adding noise, arXiv:1706.03825, 2017"
_REFERENCES = {
    "mean": _SMOOTHGRAD,
    "mean_squared": "Hooker et al., A Benchmark for Interpretability Methods in Deep Neural "
    "Networks, NeurIPS 2019 (SmoothGrad-Squared); " + _SMOOTHGRAD,
    "variance": "Adebayo et al., Local Explanation Methods for Deep Neural Networks Lack "
    "Sensitivity to Parameter Values, ICLR workshop 2018 (VarGrad); " + _SMOOTHGRAD,
}


def noise_scale(x: np.ndarray, noise_level: float) -> np.ndarray:
    """Per-sample noise sigma ``noise_level * (max - min)``, shaped to broadcast against ``x``."""
    flat = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    span = flat.max(axis=1) - flat.min(axis=1) if flat.shape[1] else np.zeros(len(x), np.float32)
    return (noise_level * span).reshape((len(x),) + (1,) * (np.ndim(x) - 1)).astype(np.float32)


def sample_noise_tensor(
    shape: tuple[int, ...], seed: int, sample: int, input_index: int
) -> tf.Tensor:
    """Standard normal noise of one sample's ``shape``, a pure function of its arguments."""
    s = tf.constant([seed % (2**31 - 1), sample * 1009 + input_index], dtype=tf.int64)
    return tf.random.stateless_normal(shape, seed=s, dtype=tf.float32)


def inner_seed(seed: int, sample: int) -> int:
    """Seed handed to a stochastic wrapped method for noise sample ``sample``."""
    return int((int(seed) * 1_000_003 + 7919 * (sample + 1)) % (2**31 - 1))


def _validate(num_samples: Any, noise_level: Any, aggregate: Any) -> None:
    if (
        isinstance(num_samples, bool)
        or not isinstance(num_samples, (int, np.integer))
        or num_samples < 1
    ):
        raise bad_value(
            "num_samples", "a positive int", num_samples, "SmoothGrad uses 20-50 samples."
        )
    if (
        isinstance(noise_level, bool)
        or not isinstance(noise_level, (int, float, np.floating, np.integer))
        or not math.isfinite(noise_level)
        or noise_level < 0
    ):
        raise bad_value(
            "noise_level",
            "a finite float >= 0 (a fraction of each image's value range)",
            noise_level,
            "0.1-0.2 is typical.",
        )
    if aggregate not in AGGREGATES:
        raise bad_value("aggregate", "one of " + ", ".join(repr(a) for a in AGGREGATES), aggregate)


def smooth(
    base: str | Method,
    *,
    num_samples: int = 25,
    noise_level: float = 0.15,
    aggregate: Aggregate = "mean",
    name: str | None = None,
) -> Method:
    """Wrap ``base`` in noise smoothing; the result is a :class:`Method` usable with ``explain``.

    Args:
        base: a registered method name or Method (CAMs and integrated gradients included).
        num_samples: default number of noisy copies per input.
        noise_level: default noise sigma as a fraction of each image's value range.
        aggregate: default aggregation, ``"mean"``, ``"mean_squared"`` or ``"variance"``.
        name: registry/display name; defaults to ``"smooth(<base>)"``.

    Returns:
        A new (unregistered) Method; pass it to ``xai.explain(method=...)`` or ``register`` it.
    """
    inner = get(base)
    _validate(num_samples, noise_level, aggregate)

    def compute(
        engine: Engine,
        inputs: list[np.ndarray],
        targets: Any,
        *,
        seed: int,
        num_samples: int,
        noise_level: float,
        aggregate: str,
        **base_params: Any,
    ) -> MethodResult:
        _validate(num_samples, noise_level, aggregate)
        clean = [np.asarray(x, dtype=np.float32) for x in inputs]
        logits = engine.forward(clean)
        resolved, scores = clean_targets(engine, logits, targets)
        sigmas = [tf.constant(noise_scale(x, noise_level)) for x in clean]
        # The deterministic gradient methods only hand their inputs to the engine (which takes
        # tensors); other methods do NumPy maths on them and get arrays.
        inner_takes_tensors = (
            inner.space == "input" and inner.family == "gradient" and not inner.stochastic
        )
        clean_t = [tf.constant(x) for x in clean]
        total: list[np.ndarray] | None = None
        total_sq: list[np.ndarray] | None = None
        last: MethodResult | None = None
        for k in range(num_samples):
            # One multi-threaded TF expression per input; the tensor goes to the engine as is (no
            # copy to NumPy and back). Methods that do NumPy maths on their inputs get it converted.
            noisy = [
                x + s * sample_noise_tensor(x.shape[1:], seed, k, j)
                for j, (x, s) in enumerate(zip(clean_t, sigmas))
            ]
            if not inner_takes_tensors:
                noisy = [t.numpy() for t in noisy]
            if inner.stochastic:  # e.g. RISE or IG with a noise baseline: one seed per sample
                base_params["seed"] = inner_seed(seed, k)
            last = inner.compute(engine, noisy, resolved, **base_params)
            if total is None:
                # The mean is accumulated in float32 (the maps' own precision); the variance needs
                # float64 to survive the cancellation in E[x^2] - E[x]^2.
                acc = np.float32 if aggregate == "mean" else np.float64
                total = [np.zeros(m.shape, acc) for m in last.maps]
                total_sq = [np.zeros(m.shape, acc) for m in last.maps]
            for i, m in enumerate(last.maps):
                np.add(total[i], m, out=total[i])  # in place, no temporary copy
                if aggregate != "mean":
                    np.add(total_sq[i], np.square(m, dtype=np.float64), out=total_sq[i])  # type: ignore[index]
        assert total is not None and total_sq is not None and last is not None
        n = float(num_samples)
        if aggregate == "mean":
            out = [t / n for t in total]
        elif aggregate == "mean_squared":
            out = [t / n for t in total_sq]
        else:
            out = [np.maximum(sq / n - (t / n) ** 2, 0.0) for t, sq in zip(total, total_sq)]
        resolved_out = reported_targets(resolved, len(logits))
        return MethodResult(
            maps=[o.astype(np.float32) for o in out],
            logits=logits,
            targets=resolved_out,
            scores=scores,
        )

    return Method(
        name=name or f"smooth({inner.name})",
        compute=compute,
        space=inner.space,
        stochastic=True,
        defaults={
            **inner.defaults,
            "num_samples": num_samples,
            "noise_level": noise_level,
            "aggregate": aggregate,
        },
        display=inner.display,
        reference=_REFERENCES[aggregate],
        summary=f"{inner.name} averaged over noisy copies of the input ({aggregate})",
        base=inner.name,
        family="smooth",
        needs_layer=inner.needs_layer,
        knobs=inner.knobs,
    )


register(smooth("saliency", name="smoothgrad"))
register(smooth("saliency", aggregate="mean_squared", name="smoothgrad_squared"))
register(smooth("saliency", aggregate="variance", name="vargrad"))
