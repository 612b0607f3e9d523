"""The export itself: ``export()`` in named stages over the loader, the explainer and the writer."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import _validation, io, models_io, viz
from .. import methods as methods_mod
from .. import targets as targets_mod
from .._version import __version__
from ..errors import OutputStorageError, XaiValueError, bad_value
from ..preprocessing import Preprocess, get_preprocess
from .batches import _local_engine, _Plan, _run
from .journal import (
    CONFIG_NAME,
    MANIFEST_NAME,
    _check_output_dir,
    _clean_temporaries,
    _done_set,
    _locked,
    _plain,
    _repair_tail,
)
from .loader import _Loader
from .naming import output_dirs
from .options import FORMATS, _load_class_names, _parse_formats, _parse_image_size, _resolve_targets
from .summary import ExportSummary
from .walk import _walk
from .writer import _Writer

log = logging.getLogger("xai.export")


def _model_input(
    model: Any, image_size: tuple[int, int] | None, data_format: str
) -> tuple[tuple[int, int], int, bool]:
    """(size, channels, channels_first) of a single-image-input model."""
    if len(model.inputs) != 1:
        raise XaiValueError(
            f"export explains models with one image input; this model has {len(model.inputs)} "
            "inputs. Use xai.explain() with a list of arrays for multi-input models."
        )
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3:
        raise XaiValueError(
            f"export explains image models, with inputs (height, width, channels); this model's "
            f"input has shape {shape}. Use xai.explain() for other inputs."
        )
    channels_first = data_format == "channels_first"
    channels = shape[0] if channels_first else shape[2]
    spatial = shape[1:] if channels_first else shape[:2]
    if channels not in (1, 3):
        raise XaiValueError(
            f"export feeds RGB (3 channels) or grey (1 channel) images; the model expects "
            f"{channels} channels (input shape {shape})."
        )
    if image_size is not None:
        fixed = [(s, i) for s, i in zip(spatial, image_size) if s is not None and s != i]
        if fixed:
            raise bad_value(
                "image_size",
                f"the model's input size {spatial[0]}x{spatial[1]} (or leave it out)",
                f"{image_size[0]}x{image_size[1]}",
            )
        return image_size, int(channels), channels_first
    if None in spatial:
        raise XaiValueError(
            f"The model accepts images of any size (input shape {shape}); pass --image-size HxW "
            "(image_size=(h, w)) to choose the size images are resized to."
        )
    return (int(spatial[0]), int(spatial[1])), int(channels), channels_first


def export(
    model: Any,
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    targets: Any = "predicted",
    batch_size: int = 32,
    image_size: Any = None,
    preprocess: str | Callable[[np.ndarray], Any] | None = "none",
    class_names: Sequence[str] | str | os.PathLike | None = None,
    formats: Sequence[str] | str = FORMATS,
    overwrite: bool = False,
    unsafe: bool = False,
    alpha: float = 0.4,
    colormap: str = "jet",
    png_compression: int | None = None,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    max_pixels: int | None = None,
    orientation: str = "exif",
    jit_compile: Any = "auto",
    strategy: Any = None,
    workers: int = 4,
    progress: bool = True,
    engine: str = "local",
    address: str | None = None,
    actors: int = 1,
    gpus_per_actor: float = 0,
    cpus_per_actor: float | None = None,
) -> ExportSummary:
    """Explain every image under ``input_dir`` and write heatmaps and a manifest to ``output_dir``.

    See the module documentation for the output layout, the manifest's columns and resuming.

    Args:
        model: a Keras model, an :class:`~xai.explainer.Explainer` (its compiled steps are reused),
            or a path to a ``.keras``/``.h5`` file or a TensorFlow SavedModel folder.
        input_dir: folder of images (nested folders are walked; symbolic links to folders are
            followed once, loops are listed as skipped).
        output_dir: where to write; created if missing. Must be new, empty, or an earlier export
            with the same settings (resumed) unless ``overwrite``.
        method: a registered method name (``xai.methods.available()``). CAM methods need a Keras
            model file; a SavedModel supports the input-gradient methods only.
        layer: CAM layer path; None auto-selects (recorded in the manifest).
        targets: ``"predicted"``, one class index or class name for every image, a path to a CSV
            with a path column (``path``/``file``/...) and a target column
            (``target``/``label``/...; paths relative to the CSV's folder or to ``input_dir``),
            or a mapping ``{relative path: class}``.
        batch_size: images per compiled step (the global batch with several devices).
        image_size: ``(height, width)``, ``"HxW"`` or an int; needed when the model accepts any
            size; otherwise it must match the model.
        preprocess: a preset from :data:`xai.preprocessing.PRESETS` (``"none"``, ``"unit"``,
            ``"symmetric"``, ``"caffe"``, ``"torch"``), ``"module:function"``,
            ``"file.py:function"`` or a callable on float32 RGB batches in ``[0, 255]``.
        class_names: names of the classes (index = class) or a path to a text file with one per
            line; used for labels in the manifest and for class-name targets.
        formats: any of ``"overlay"``, ``"heatmap"``, ``"raw"``.
        overwrite: replace an earlier export with other settings (or write into a non-empty
            folder that is not an export).
        unsafe: load model files with Lambda layers (trusted files only).
        alpha: overlay opacity of the colour map, in [0, 1].
        colormap: colour map name (``xai.viz.COLORMAPS``).
        png_compression: zlib level of the overlay and heatmap PNGs: None (OpenCV's default,
            level 1), 0 (no compression: about 10x faster to encode, files about 1.5-2x larger;
            worth it when encoding, not the model, limits the export, e.g. large photos) to 9
            (smallest files). The pixels are the same at every level.
        seed: seed of stochastic methods (recorded; the same seed gives the same files).
        params: the method's own parameters, e.g. ``{"num_samples": 25}``.
        max_pixels: largest image (height x width) read; default ``xai.io.MAX_PIXELS``.
        orientation: ``"exif"`` (default) explains and draws every image upright, as viewers show
            it (its EXIF orientation applied); ``"stored"`` keeps the stored pixels. The file's
            EXIF orientation tag is recorded in each manifest row.
        jit_compile: ``"auto"``, True or False (see :class:`~xai.explainer.Explainer`).
        strategy: a ``tf.distribute.MirroredStrategy`` to spread batches over several GPUs.
        workers: threads that colour, encode and write the outputs (per actor with Ray).
        progress: show a progress bar (tqdm) with images/s.
        engine: ``"local"`` (this process) or ``"ray"``: the same export on a Ray cluster
            (``pip install 'xai[ray]'``), over Ray Data with a pool of actors that each load the
            model from ``model`` (which must then be a path every node can read) and write into
            ``output_dir`` (a folder every node can write: a shared file system on a cluster).
            Same inputs, outputs, manifest, summary and resuming as the local engine; see
            :mod:`xai.export.ray_engine`.
        address: Ray only: the cluster to join (``"auto"``, ``"head-node:6379"``,
            ``"ray://..."``); None starts a local Ray for the run (unless this process already
            called ``ray.init``, whose Ray is used).
        actors: Ray only: actors in the pool, each with its own copy of the model.
        gpus_per_actor: Ray only: GPUs per actor (fractions share a GPU; TensorFlow's memory
            growth is switched on in each actor).
        cpus_per_actor: Ray only: CPUs Ray reserves per actor, which is also how many cores its
            TensorFlow computes on (Ray sets ``OMP_NUM_THREADS``); None: on a one-node Ray its
            CPUs split among the actors, on a cluster 1 (enough with a GPU per actor; give
            CPU-only actors their cores).

    Returns:
        An :class:`ExportSummary` (``exit_code`` is 0 when no image failed).

    Raises:
        XaiValueError / XaiTypeError: bad arguments, an unloadable model, a method the model
            cannot support, or an output folder that must not be written (the message says why
            and what to do). Failures of single images never raise: they are manifest rows.
    """
    started = time.perf_counter()
    m = methods_mod.get(method)
    fmt = _parse_formats(formats)
    if orientation not in io.ORIENTATIONS:
        raise bad_value("orientation", "'exif' or 'stored'", orientation)
    batch_size = _validation.positive_int("batch_size", batch_size)
    workers = _validation.positive_int("workers", workers)
    seed = _validation.seed(seed)
    style = viz.OverlayStyle.checked(alpha, colormap, png_compression)
    size_arg = _parse_image_size(image_size)
    pre = get_preprocess(preprocess)
    names = _load_class_names(class_names)
    run_params = dict(params or {})
    m.resolve_params(run_params)  # unknown parameter names fail now, with close matches
    src, out = _check_folders(input_dir, output_dir)
    ray_options = _check_engine(
        engine, model, strategy, address, actors, gpus_per_actor, cpus_per_actor
    )

    explainer, model_path = _explainer_for(model, layer, jit_compile, names, unsafe, strategy)
    if names is None:
        names = explainer.class_names
    size, channels, channels_first = _check_model(explainer, m, size_arg, pre)
    fixed_target, target_map, target_desc = _resolve_targets(targets, src, names)
    e0 = _preflight(
        explainer,
        m,
        (size, channels, channels_first),
        fixed_target,
        target_map,
        names,
        seed,
        run_params,
    )
    resolved_params = _plain(dict(e0.params))
    layer_paths = list(e0.layer) if e0.layer else None
    settings = _plain(
        {
            "input_dir": str(src.resolve()),
            "model": models_io.fingerprint(explainer.model),
            "method": m.name,
            "params": resolved_params,
            "layer": layer_paths,
            "targets": target_desc,
            "image_size": list(size),
            "preprocess": pre.spec,
            "formats": list(fmt),
            "alpha": float(alpha),
            "colormap": str(colormap).strip().lower(),
            "png_compression": None if png_compression is None else int(png_compression),
            "class_names": list(names) if names else None,
            "max_pixels": max_pixels,
            # None for the stored pixels, what exports made before this setting did (they resume)
            "orientation": None if orientation == "stored" else orientation,
        }
    )

    try:
        _check_output_dir(out, settings, overwrite, dry_run=True)  # refuse before creating anything
        out.mkdir(parents=True, exist_ok=True)
        with _locked(out):
            done = _open_output(out, settings, overwrite, model_path, batch_size)
            out_stat = os.stat(out)
            entries = _walk(src, {(out_stat.st_dev, out_stat.st_ino)})
            plan = _Plan(
                explainer=explainer,
                method=m,
                out=out,
                formats=fmt,
                batch_size=batch_size,
                seed=seed,
                params=run_params,
                fixed_target=fixed_target,
                target_map=target_map,
                names=names,
                row_params=resolved_params,
                layer=layer_paths,
                strategy=strategy,
                workers=workers,
                progress=progress,
                settings=settings,
                taken_dirs=output_dirs([e.rel for e in entries if e.status is None]),
            )
            loader = _Loader(
                size, channels, channels_first, pre, "overlay" in fmt, max_pixels, orientation
            )
            writer = _Writer(
                out,
                e0.display,
                e0.inputs_info[0].channel_axis,
                bool(e0.fused and e0.fused[0]),
                style,
            )
            if ray_options is None:
                run_engine = _local_engine(loader, writer)
            else:
                from .ray_engine import _xai_location, actor_spec, ray_engine

                spec = actor_spec(
                    plan,
                    model_path=str(Path(os.fspath(model)).resolve()),
                    fingerprint=settings["model"],
                    unsafe=unsafe,
                    layer=layer,
                    jit_compile=jit_compile,
                    class_names=names,
                    preprocess=preprocess,
                    layout=(size, channels, channels_first),
                    max_pixels=max_pixels,
                    orientation=orientation,
                    writer=(writer.display, writer.channel_axis, writer.fused, style),
                    threads=workers,
                    xai_location=None if ray_options.address else _xai_location(),
                )
                run_engine = ray_engine(spec, ray_options)
            return _run(plan, run_engine, entries, done, started)
    except OSError as error:  # the output folder itself: full, read-only, not a folder, ...
        raise OutputStorageError.from_os_error(error, out) from error


# ------------------------------------------------------------------------ the stages of export()


def _check_folders(input_dir: Any, output_dir: Any) -> tuple[Path, Path]:
    """The input folder (must exist) and the output folder (must be another one)."""
    src = Path(os.fspath(input_dir))
    out = Path(os.fspath(output_dir))
    if not src.is_dir():
        raise bad_value(
            "input_dir",
            "an existing folder of images",
            str(src),
            "Check the path." if not src.exists() else "It is a file, not a folder.",
        )
    if out.exists() and src.resolve() == out.resolve():
        raise bad_value("output_dir", "a folder other than input_dir", str(out))
    return src, out


def _check_engine(
    engine: Any,
    model: Any,
    strategy: Any,
    address: Any,
    actors: Any,
    gpus_per_actor: Any,
    cpus_per_actor: Any,
) -> Any:
    """None for the local engine; the checked :class:`~.ray_engine.RayOptions` for Ray."""
    from .ray_engine import ENGINES, RayOptions, import_ray

    if engine not in ENGINES:
        raise bad_value("engine", "'local' or 'ray'", engine)
    if engine == "local":
        given = {
            "address": address is not None,
            "actors": actors != 1,
            "gpus_per_actor": gpus_per_actor != 0,
            "cpus_per_actor": cpus_per_actor is not None,
        }
        for name, set_ in given.items():
            if set_:
                raise XaiValueError(
                    f"`{name}` applies to engine='ray' only (--engine ray); the local engine "
                    "runs in this process. Pass engine='ray' or leave it out."
                )
        return None
    options = RayOptions.checked(address, actors, gpus_per_actor, cpus_per_actor)
    if not isinstance(model, (str, os.PathLike)):
        raise bad_value(
            "model",
            "a path to the model file with engine='ray' (each Ray actor loads the model itself; "
            "Keras models are never pickled)",
            model,
            "Save it first (model.save('model.keras')) and pass the path.",
        )
    if strategy is not None:
        raise XaiValueError(
            "`strategy` (--multi-gpu) is for the local engine; with engine='ray' give each actor "
            "its GPUs with gpus_per_actor (--gpus-per-actor) and set actors (--actors)."
        )
    import_ray()  # a missing extra fails now, before the model is loaded
    return options


def _explainer_for(
    model: Any, layer: Any, jit_compile: Any, names: Any, unsafe: bool, strategy: Any
) -> tuple[Any, str | None]:
    """The :class:`~xai.explainer.Explainer` to run (loaded from a path under ``strategy``)."""
    from ..explainer import Explainer

    if isinstance(model, Explainer):
        if layer is not None and layer != model.layer:
            raise bad_value(
                "layer",
                f"None or the Explainer's own layer ({model.layer!r})",
                layer,
                "Build the Explainer with layer=... instead.",
            )
        return model, None
    model_path = None
    if isinstance(model, (str, os.PathLike)):
        model_path = os.fspath(model)
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            model = models_io.load_model(model_path, unsafe=unsafe)
    return Explainer(model, layer=layer, jit_compile=jit_compile, class_names=names), model_path


def _check_model(
    explainer: Any, m: Any, size_arg: tuple[int, int] | None, pre: Preprocess
) -> tuple[tuple[int, int], int, bool]:
    """(size, channels, channels_first) of the model's image input; refuses what cannot run."""
    opaque = models_io.opaque_layers(explainer.model)
    if opaque and m.needs_layer:
        raise XaiValueError(
            f"`method` {m.name!r} needs the activations of a convolutional layer, but this model "
            f"is a TensorFlow SavedModel: its graph is one opaque layer ({opaque[0]!r}) with no "
            "Keras layers inside to tap. Use an input-gradient method (method='saliency', "
            "'smoothgrad' or 'integrated_gradients'), or export the original .keras/.h5 model."
        )
    size, channels, channels_first = _model_input(explainer.model, size_arg, explainer.data_format)
    probe = np.asarray(pre(np.zeros((2, *size, channels), np.float32)))
    if probe.shape != (2, *size, channels):
        raise bad_value(
            "preprocess",
            f"a function that keeps the batch shape (2, {size[0]}, {size[1]}, {channels})",
            probe,
        )
    return size, channels, channels_first


def _preflight(
    explainer: Any,
    m: Any,
    layout: tuple[tuple[int, int], int, bool],
    fixed_target: Any,
    target_map: dict[str, int] | None,
    names: tuple[str, ...] | None,
    seed: int,
    run_params: dict[str, Any],
) -> Any:
    """One blank image through the method: structural problems (layer, method, targets, class
    names) fail here, before any file is touched, and the compiled step is traced once."""
    size, channels, channels_first = layout
    blank = np.zeros((1, *size, channels), np.float32)
    if channels_first:
        blank = blank.transpose(0, 3, 1, 2)
    e0 = explainer.explain(
        blank, m, targets=fixed_target, batch_size=1, seed=seed, progress=False, **run_params
    )
    tap = explainer.engine(m.needs_layer).tap
    k = targets_mod.num_classes(tap.head, tap.num_logits)
    if names is not None and len(names) != k:
        raise bad_value(
            "class_names",
            f"{k} names, one per class of the model",
            f"{len(names)} names",
            "Check the labels file against the model's output size.",
        )
    if target_map is not None:
        bad = {r: c for r, c in target_map.items() if not 0 <= c < k}
        if bad:
            rel, cls = next(iter(bad.items()))
            raise bad_value(
                "targets", f"class indices in [0, {k - 1}]", cls, f"In the CSV row for {rel!r}."
            )
    return e0


def _open_output(
    out: Path, settings: dict[str, Any], overwrite: bool, model_path: str | None, batch_size: int
) -> set[str]:
    """Start or resume the export in ``out`` (locked); returns the images already done."""
    resuming = _check_output_dir(out, settings, overwrite)
    if not resuming:
        io.write_json(
            out / CONFIG_NAME,
            {
                "settings": settings,
                "xai_version": __version__,
                "model_path": model_path,
                "batch_size": int(batch_size),
            },
        )
    removed = _clean_temporaries(out)
    if removed:
        log.info("xai export: removed %d temporary file(s) left by an interrupted run", removed)
    manifest_path = out / MANIFEST_NAME
    _repair_tail(manifest_path)
    return _done_set(manifest_path, out) if resuming else set()
