"""The result of an explanation: raw maps plus metadata; heatmaps and pictures derived on demand."""

from __future__ import annotations

import base64
import errno
import functools
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import postprocess
from .errors import XaiValueError, bad_type, bad_value
from .inspection import InputInfo
from .postprocess import Display


def heatmaps_at(
    raw: np.ndarray,
    size: Sequence[int],
    display: postprocess.Display,
    channel_axis: int | None,
    fused: bool = False,
) -> np.ndarray:
    """The one rule from raw maps ``(N, ...)`` to heatmaps ``(N, *size)`` in [0, 1].

    Used by :class:`Explanation` (at input resolution) and by ``xai export`` (at each image's
    original size), so the two cannot diverge. A fused map (several layers) is already normalised
    at input resolution: it is only resized and normalised again.
    """
    if fused:
        return postprocess.normalize(postprocess.resize(raw, size))
    return postprocess.heatmap(raw, size, display, channel_axis)


@dataclass(frozen=True, eq=False)
class ExplainedInput:
    """Everything an :class:`Explanation` holds for one model input.

    Attributes:
        raw: the raw, signed, float32 map ``(N, ...)`` (see :attr:`Explanation.raw`).
        info: the input's layout.
        image: the input as given, for a 2-D image input (else None).
        signal: the input as given, for a sequence input (else None).
        fused: whether ``raw`` fuses several layers' normalised maps.
    """

    raw: np.ndarray
    info: InputInfo
    image: np.ndarray | None = None
    signal: np.ndarray | None = None
    fused: bool = False


@dataclass(frozen=True, eq=False)
class Explanation:
    """An immutable explanation of ``N`` samples.

    Attributes:
        method: registry name of the method.
        params: every parameter the method ran with (defaults included, and the seed).
        layer: tapped layer path(s) for layer-space methods, else None.
        inputs: what belongs to each model input, grouped (:class:`ExplainedInput`: its raw map,
            layout, the input as given, whether its map is fused); ``raw``, ``inputs_info``,
            ``image_inputs``, ``signal_inputs`` and ``fused`` read them per input.
        layer_maps: raw map per tapped layer at its native resolution (CAMs only).
        targets: int32 ``(N,)`` explained class per sample (-1 when a callable chose the score).
        scores: float32 ``(N,)`` the explained score (class logit) per sample.
        logits: float32 ``(N, K)`` logits of the explained output.
        probabilities: float32 ``(N, C)`` the model's probabilities, or None for a linear head.
        display: the recipe that turns ``raw`` into heatmaps.
        value_range: display range of float image inputs (None: 0-255 for uint8, 0-1 for float).
        class_names: optional names for class indices.
        target: for a structured target (``xai.targets.region``/``box``/``drise``), what it was:
            its kind, class, mask source or box (JSON-able); None for class indices and callables.
    """

    method: str
    params: Mapping[str, Any]
    layer: tuple[str, ...] | None
    inputs: tuple[ExplainedInput, ...]
    targets: np.ndarray
    scores: np.ndarray
    logits: np.ndarray
    probabilities: np.ndarray | None
    display: Display
    value_range: tuple[float, float] | None = None
    layer_maps: Mapping[str, np.ndarray] = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None
    target: Mapping[str, Any] | None = None

    # ------------------------------------------------------------------------------ per input
    @property
    def raw(self) -> tuple[np.ndarray, ...]:
        """Raw, signed, float32 attributions per model input: ``(N, *layer_spatial)`` for CAMs
        (fused at input resolution when several layers map to one input), ``(N, *input_shape)``
        for input-space methods."""
        return tuple(i.raw for i in self.inputs)

    @property
    def inputs_info(self) -> tuple[InputInfo, ...]:
        """Layout of each model input."""
        return tuple(i.info for i in self.inputs)

    @property
    def image_inputs(self) -> tuple[np.ndarray | None, ...]:
        """The explained inputs as given (before ``preprocess``) for 2-D image inputs, None for
        other inputs; :attr:`images` converts them for display on first use."""
        return tuple(i.image for i in self.inputs)

    @property
    def signal_inputs(self) -> tuple[np.ndarray | None, ...]:
        """The explained inputs as given for sequence inputs (one spatial axis and a channel axis,
        e.g. ``(N, L, C)`` for Conv1D), None for others; :meth:`plot` draws them."""
        return tuple(i.signal for i in self.inputs)

    @property
    def fused(self) -> tuple[bool, ...]:
        """Whether each input's map fuses several layers (then already normalised)."""
        return tuple(i.fused for i in self.inputs)

    # ------------------------------------------------------------------------------ arrays
    def __len__(self) -> int:
        return len(self.targets)

    @property
    def attributions(self) -> np.ndarray | tuple[np.ndarray, ...]:
        """Raw, signed float32 attributions (for multi-input models a tuple, one per input)."""
        return self.raw[0] if len(self.raw) == 1 else self.raw

    @property
    def predictions(self) -> np.ndarray:
        """Predicted class per sample (argmax of the class logits; ``[-z, z]`` for binary heads)."""
        if self.probabilities is not None:
            return self.probabilities.argmax(axis=1).astype(np.int64)
        # a dense output (segmentation map, per-anchor logits): the class per position
        return self.logits.argmax(axis=1 if self.logits.ndim <= 2 else -1).astype(np.int64)

    @functools.cached_property
    def images(self) -> tuple[np.ndarray | None, ...]:
        """Display images per input, uint8 RGB ``(N, H, W, 3)``, or None for non-image inputs."""
        from . import viz

        return tuple(
            None if x is None else viz.to_display(x, value_range=self.value_range)
            for x in self.image_inputs
        )

    @functools.cached_property
    def _heatmaps(self) -> tuple[np.ndarray, ...]:
        fused = self.fused or (False,) * len(self.raw)
        return tuple(
            heatmaps_at(raw, info.spatial, self.display, info.channel_axis, f)
            for raw, info, f in zip(self.raw, self.inputs_info, fused)
        )

    @property
    def heatmap(self) -> np.ndarray | tuple[np.ndarray, ...]:
        """float32 ``(N, *spatial)`` in [0, 1] at input resolution (a tuple for multi-input models).

        Constant maps are zeros, never NaN.
        """
        return self._heatmaps[0] if len(self._heatmaps) == 1 else self._heatmaps

    def heatmap_for(self, input_index: int = 0) -> np.ndarray:
        """The heatmap of one model input."""
        self._check_input(input_index)
        return self._heatmaps[input_index]

    def _check_input(self, input_index: int) -> None:
        if (
            isinstance(input_index, bool)
            or not isinstance(input_index, (int, np.integer))
            or not (0 <= input_index < len(self.raw))
        ):
            raise bad_value("input_index", f"an int in [0, {len(self.raw) - 1}]", input_index)

    # ------------------------------------------------------------------------------ pictures
    def overlay(
        self, alpha: float = 0.4, colormap: str = "jet", *, input_index: int = 0
    ) -> np.ndarray:
        """Heatmaps blended over the input images: uint8 RGB ``(N, H, W, 3)``.

        Args:
            alpha: weight of the colour map (0 = the image, 1 = the colour map).
            colormap: OpenCV colour map name (see ``xai.viz.COLORMAPS``).
            input_index: which model input (multi-input models).
        """
        from . import viz

        self._check_input(input_index)
        images = self.images[input_index]
        if images is None:
            raise XaiValueError(
                "overlay() needs 2-D image inputs (N, H, W, 1|3|4); this explanation's input "
                f"{input_index} has spatial shape {self.inputs_info[input_index].spatial}. Use "
                ".heatmap for the map itself, or .plot() for a figure."
            )
        heat = self._heatmaps[input_index]
        if heat.shape[1:] != images.shape[1:3]:
            heat = postprocess.resize(heat, images.shape[1:3])
        return viz.overlay(images, heat, alpha=alpha, colormap=colormap)

    def label(self, index: int) -> str:
        """A short caption for sample ``index``: target class (name) and probability or score."""
        t = int(self.targets[index])
        name = (
            self.class_names[t]
            if self.class_names is not None and 0 <= t < len(self.class_names)
            else (str(t) if t >= 0 else "custom score")
        )
        if self.probabilities is not None and t >= 0:
            return f"{name} (p={self.probabilities[index, t]:.2f})"
        return f"{name} (score={self.scores[index]:.3g})"

    def plot(
        self,
        index: int = 0,
        ax: Any = None,
        *,
        alpha: float = 0.4,
        colormap: str = "jet",
        input_index: int = 0,
    ) -> Any:
        """A matplotlib Figure of sample ``index`` (image | heatmap | overlay); never calls show().

        With ``ax`` given, draws only the overlay (or, for 1-D inputs, the heatmap) into it.
        Sequence inputs ``(N, L, C)`` are drawn as their signal (one line per channel) over the
        heatmap's colours; other non-image inputs as the heatmap alone.
        """

        self._check_input(input_index)
        if not isinstance(index, (int, np.integer)) or not -len(self) <= index < len(self):
            raise bad_value("index", f"an int in [0, {len(self) - 1}]", index)
        from .viz.plot import plot_explanation, plot_map

        title = f"{self.method}: {self.label(index)}"
        heat = self._heatmaps[input_index][index]
        images = self.images[input_index]
        if images is None:
            return plot_map(
                heat, title=title, ax=ax, colormap=colormap, signal=self._signal(index, input_index)
            )
        over = self.overlay(alpha, colormap, input_index=input_index)[index]
        image = images[index]
        if heat.shape != image.shape[:2]:
            heat = postprocess.resize(heat[None], image.shape[:2])[0]
        return plot_explanation(image, heat, over, title=title, ax=ax, colormap=colormap)

    def _signal(self, index: int, input_index: int) -> np.ndarray | None:
        """Sample ``index`` of a sequence input as ``(L, C)`` (channels last), or None."""
        signals = self.signal_inputs[input_index] if input_index < len(self.signal_inputs) else None
        axis = self.inputs_info[input_index].channel_axis
        if signals is None or axis is None:
            return None
        return np.moveaxis(np.asarray(signals[index]), axis - 1, -1)

    # ------------------------------------------------------------------------------ slicing
    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> Explanation:
        """A new Explanation of a subset of the samples (an int keeps the batch axis)."""
        if isinstance(index, (int, np.integer)):
            if not -len(self) <= index < len(self):
                raise IndexError(
                    f"index {index} out of range for an Explanation of {len(self)} samples"
                )
            index = slice(int(index), int(index) + 1 if index != -1 else None)
        elif not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == bool or not np.issubdtype(index.dtype, np.integer):
                raise bad_type("index", "an int, a slice or a sequence of ints", index)

        def take(a: Any) -> Any:
            return None if a is None else a[index]

        return replace(
            self,
            inputs=tuple(
                replace(i, raw=take(i.raw), image=take(i.image), signal=take(i.signal))
                for i in self.inputs
            ),
            layer_maps={k: take(v) for k, v in self.layer_maps.items()},
            targets=take(self.targets),
            scores=take(self.scores),
            logits=take(self.logits),
            probabilities=take(self.probabilities),
        )

    # ------------------------------------------------------------------------------ export
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready metadata (no arrays except the per-sample vectors)."""
        return {
            "method": self.method,
            "params": dict(self.params),
            "layer": list(self.layer) if self.layer else None,
            "display": self.display.to_dict(),
            "num_samples": len(self),
            "targets": self.targets.tolist(),
            "predictions": self.predictions.tolist() if self.logits.ndim <= 2 else None,
            "scores": self.scores.tolist(),
            "probabilities": None if self.probabilities is None else self.probabilities.tolist(),
            "class_names": list(self.class_names) if self.class_names else None,
        } | ({"target": dict(self.target)} if self.target is not None else {})

    def save(
        self, directory: str | Path, *, alpha: float = 0.4, colormap: str = "jet"
    ) -> list[Path]:
        """Write overlay PNGs, raw ``.npy`` attributions, heatmaps and ``manifest.json`` atomically.

        All or nothing: every picture is computed before the first file is written, each file is
        written atomically, and if a write fails the files this call wrote are removed again.

        Returns:
            The paths written (the manifest last).

        Raises:
            NotADirectoryError: ``directory`` is an existing file (nothing is written).
            XaiValueError: bad ``alpha`` or ``colormap``.
        """
        from . import io, viz

        style = viz.OverlayStyle.checked(alpha, colormap)
        out = Path(directory)
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(
                errno.ENOTDIR,
                "`directory` must be a folder (existing or to create), but it is a file; "
                "choose another path",
                str(out),
            )
        # Everything that can fail before writing is computed first.
        items: list[tuple[str, Any, Any]] = []
        for j in range(len(self.raw)):
            suffix = "" if len(self.raw) == 1 else f"_input{j}"
            items.append((f"attributions{suffix}.npy", io.write_npy, self.raw[j]))
            items.append((f"heatmaps{suffix}.npy", io.write_npy, self._heatmaps[j]))
            if self.images[j] is not None:
                overlays = self.overlay(style.alpha, style.colormap, input_index=j)
                items.extend(
                    (f"overlay{suffix}_{i:04d}.png", io.write_png, o)
                    for i, o in enumerate(overlays)
                )
        items.extend(self._extra_files())
        manifest = self.to_dict() | {
            "files": [name for name, _, _ in items],
            "overlay": {"alpha": alpha, "colormap": colormap},
        }
        items.append(("manifest.json", io.write_json, manifest))
        written: list[Path] = []
        try:
            for name, write, value in items:
                written.append(write(out / name, value))
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        return written

    def _extra_files(self) -> list[tuple[str, Any, Any]]:
        """More ``(name, writer, value)`` files for :meth:`save` (subclasses: token pages)."""
        return []

    def _repr_html_(self) -> str:
        from . import io

        cells = []
        if self.images[0] is not None:
            for i, o in enumerate(self.overlay()[:8]):
                data = base64.b64encode(io.encode_png(o)).decode("ascii")
                cells.append(
                    '<figure style="display:inline-block;margin:2px">'
                    f'<img src="data:image/png;base64,{data}" '
                    'style="width:160px;image-rendering:pixelated"/>'
                    '<figcaption style="font-size:11px">'
                    f"{html.escape(self.label(i))}</figcaption></figure>"
                )
        more = f" (first 8 of {len(self)})" if len(self) > 8 and cells else ""
        layer = html.escape(", ".join(self.layer)) if self.layer else "input"
        return (
            f"<div><b>Explanation</b> method={html.escape(self.method)}, layer={layer}, "
            f"{len(self)} sample(s){more}<br/>{''.join(cells)}</div>"
        )

    def __repr__(self) -> str:
        shapes = ", ".join(str(r.shape) for r in self.raw)
        return (
            f"Explanation(method={self.method!r}, samples={len(self)}, layer={self.layer}, "
            f"attributions={shapes})"
        )
