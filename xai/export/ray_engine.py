"""The Ray engine: the same export over a Ray cluster, on Ray Data.

The driver (the process that calls :func:`xai.export`) walks the input folder, validates
everything, plans the same fixed chunks of the sorted image list as the local engine and owns the
manifest. The chunks become a Ray dataset (``ray.data.from_items``, one row per chunk: its paths,
relative paths and the images an earlier run finished), mapped by a pool of actors
(``map_batches(..., compute=ray.data.ActorPoolStrategy(size=actors))``). Each actor loads the model
itself from the model path (a Keras model is never pickled or put in the object store), builds the
export's :class:`~xai.export.core.BatchExplainer` once (its compiled steps serve every batch), and
for each chunk decodes the images with the export's own loader, explains them, writes the
pictures with the export's own atomic writer into the (shared) output folder, flushes the file
system and returns the chunk's manifest rows, as JSON text. The driver appends the rows to the
manifest as they arrive, in any order; the closing compaction rewrites it in walk order, so the
files, the manifest and the summary are those of the local engine, and a killed run resumes the
same way on either engine.

Only paths and rows travel through Ray's object store, never pictures or maps.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import math
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _validation
from .._version import __version__
from ..errors import MissingDependencyError, XaiError, XaiValueError, bad_value
from .batches import Engine, _Plan, _progress, _Work
from .core import BatchExplainer, Decoded
from .journal import _Manifest

log = logging.getLogger("xai.export")

INSTALL = "pip install 'xai[ray]'"
ENGINES = ("local", "ray")


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or an error that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is a separate extra of ray
    except ImportError as exc:
        raise MissingDependencyError(
            f"engine='ray' (--engine ray) runs the export on Ray Data, which is not installed "
            f"({exc}). Install it with: {INSTALL} (or pip install 'ray[data]>=2.50'), or use the "
            "local engine (the default)."
        ) from exc
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the Ray engine runs (see :func:`xai.export`)."""

    address: str | None = None  # None: a local Ray started for the run
    actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float | None = None  # None: see _cpus_per_actor

    @classmethod
    def checked(
        cls, address: Any, actors: Any, gpus_per_actor: Any, cpus_per_actor: Any
    ) -> RayOptions:
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise bad_value(
                "address",
                "None (a local Ray) or a Ray cluster address such as 'auto' or 'head:6379'",
                address,
            )
        actors = _validation.positive_int("actors", actors)
        gpus = _resource("gpus_per_actor", gpus_per_actor, allow_zero=True)
        cpus = None
        if cpus_per_actor is not None:
            cpus = _resource("cpus_per_actor", cpus_per_actor, allow_zero=False)
        return cls(address.strip() if address else None, actors, gpus, cpus)


def _resource(name: str, value: Any, *, allow_zero: bool) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        expected = "a number >= 0 (fractions share a device)" if allow_zero else "a number > 0"
        raise bad_value(name, expected, value)
    return v


@dataclass(frozen=True)
class _ActorSpec:
    """Everything an actor needs to rebuild the export's core: plain, picklable values."""

    model_path: str
    fingerprint: str  # the driver's model; an actor that loads another one refuses to run
    unsafe: bool
    layer: Any  # as the user gave it (auto-selection is deterministic)
    layer_paths: list[str] | None  # what the driver resolved it to
    jit_compile: Any
    class_names: tuple[str, ...] | None
    method: str
    params: dict[str, Any]
    row_params: dict[str, Any]
    seed: int
    fixed_target: int | None
    formats: tuple[str, ...]
    taken_dirs: frozenset[str]
    preprocess: Any  # the user's spec (a string is resolved again in the actor) or callable
    layout: tuple[tuple[int, int], int, bool]  # (size, channels, channels_first)
    max_pixels: int | None
    orientation: str
    out: str
    writer: tuple[Any, int | None, bool, Any]  # (display, channel_axis, fused, overlay style)
    threads: int  # decoding and writing threads per actor
    xai_version: str
    xai_location: str | None  # the driver's xai package folder, checked on a local Ray


def _gpu_memory_growth() -> None:
    """Let TensorFlow take GPU memory as needed (before any op), so actors can share a GPU."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError):  # already initialised: nothing to change
            tf.config.experimental.set_memory_growth(gpu, True)


def _xai_location() -> str:
    import xai

    return os.path.dirname(os.path.abspath(xai.__file__))


class _ExportActor:
    """One Ray actor: its own model, core, loader and writer; explains and writes chunks."""

    def __init__(self, spec: _ActorSpec) -> None:
        _gpu_memory_growth()
        if spec.xai_version != __version__ or (
            spec.xai_location is not None and spec.xai_location != _xai_location()
        ):
            raise XaiValueError(
                f"The Ray workers import xai {__version__} from {_xai_location()!r}, the driver "
                f"xai {spec.xai_version} from {spec.xai_location!r}. Install the same xai on every "
                "node of the cluster (or run from the same environment)."
            )
        from .. import methods, models_io
        from ..preprocessing import get_preprocess
        from .loader import _Loader
        from .pipeline import _explainer_for, _preflight
        from .writer import _filesystem_sync, _Writer

        explainer, _ = _explainer_for(
            spec.model_path, spec.layer, spec.jit_compile, spec.class_names, spec.unsafe, None
        )
        if models_io.fingerprint(explainer.model) != spec.fingerprint:
            raise XaiValueError(
                f"The model at {spec.model_path!r} on this Ray node is not the model the driver "
                "loaded (their weights differ). Give every node the same model file (a shared "
                "path) and rerun."
            )
        m = methods.get(spec.method)
        names = spec.class_names if spec.class_names is not None else explainer.class_names
        e0 = _preflight(
            explainer, m, spec.layout, spec.fixed_target, None, names, spec.seed, spec.params
        )
        layer = list(e0.layer) if e0.layer else None
        if layer != spec.layer_paths:  # pragma: no cover - the same model resolves the same way
            raise XaiValueError(f"Actor resolved layer {layer}, the driver {spec.layer_paths}.")
        self.core = BatchExplainer(
            explainer=explainer,
            method=m,
            formats=spec.formats,
            seed=spec.seed,
            params=spec.params,
            fixed_target=spec.fixed_target,
            names=names,
            row_params=spec.row_params,
            layer=spec.layer_paths,
            taken_dirs=spec.taken_dirs,
        )
        size, channels, channels_first = spec.layout
        pre = get_preprocess(spec.preprocess)
        self.loader = functools.partial(
            _Loader,
            size,
            channels,
            channels_first,
            pre,
            "overlay" in spec.formats,
            spec.max_pixels,
            spec.orientation,
        )
        display, channel_axis, fused, style = spec.writer
        self.writer = _Writer(Path(spec.out), display, channel_axis, fused, style)
        self.sync = _filesystem_sync(Path(spec.out))
        self.pool = ThreadPoolExecutor(spec.threads, thread_name_prefix="xai-ray-actor")
        # Ray may run two chunks at once in this actor (see ray_engine): one decodes or writes
        # while the other holds the model, as the local engine overlaps them. The model runs
        # one batch at a time.
        self.model_lock = threading.Lock()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tasks = [json.loads(str(t)) for t in batch["task"]]
        rows = [json.dumps(self.chunk(t), ensure_ascii=True) for t in tasks]
        return {
            "rows": np.asarray(rows, dtype=object),
            "images": np.asarray([len(t["rels"]) for t in tasks], np.int64),
        }

    def chunk(self, task: dict[str, Any]) -> list[dict[str, Any]]:
        """Decode, explain and write one chunk; its manifest rows, after the files are on disk."""
        loader, paths, rels = self.loader(), task["paths"], task["rels"]  # one per chunk
        loader.paths = paths
        loaded = list(self.pool.map(loader, range(len(paths))))
        oks = np.asarray([item[4] for item in loaded], bool)
        decoded = Decoded(
            rels=rels,
            x=np.stack([item[0] for item in loaded]),
            heights=np.asarray([item[1] for item in loaded], np.int32),
            widths=np.asarray([item[2] for item in loaded], np.int32),
            tags=np.asarray([item[3] for item in loaded], np.int32),
            oks=oks,
            errors=[item[5].decode("utf-8", "replace") for item in loaded],
            targets=None if task["targets"] is None else np.asarray(task["targets"]),
        )
        originals = [loader.originals.pop(k, None) for k in range(len(paths)) if oks[k]]
        with self.model_lock:
            rows, jobs = self.core(decoded, originals, set(task["done"]))
        if jobs:
            rows += self.writer(jobs, self.pool)
            self.sync()  # the files exist on disk before the driver's manifest says so
        return rows


def _tasks(plan: _Plan, work: _Work) -> list[dict[str, str]]:
    """One dataset row per chunk: JSON (ASCII, so undecodable file names survive Arrow)."""
    items = []
    for chunk in work.chunks:
        entries = [work.images[i] for i in chunk]
        rels = [e.rel for e in entries]
        task = {
            "paths": [e.path or "" for e in entries],
            "rels": rels,
            "done": [r for r in rels if r in work.done],
            "targets": None if plan.target_map is None else [plan.target_map[r] for r in rels],
        }
        items.append({"task": json.dumps(task, ensure_ascii=True)})
    return items


@contextlib.contextmanager
def _connected(ray: Any, options: RayOptions) -> Iterator[None]:
    """Ray for the run: the one this process already joined, the cluster at ``address``, or a
    local one started (and shut down) for the run."""
    if ray.is_initialized():
        yield
        return
    # Quiet: no dashboard, no worker logs on the driver's terminal (the actors' TensorFlow
    # start-up chatter); their errors still reach the driver as exceptions.
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if options.address is not None:
        ray.init(address=options.address, **quiet)
    else:
        needed = math.ceil(options.actors * (options.cpus_per_actor or 1))
        # Workers of a local Ray import the driver's xai (PYTHONPATH is inherited otherwise only
        # when it is set, not when xai was put on sys.path by hand).
        parent = os.path.dirname(_xai_location())
        path = os.pathsep.join(p for p in (parent, os.environ.get("PYTHONPATH")) if p)
        ray.init(
            num_cpus=max(os.cpu_count() or 1, needed),
            runtime_env={"env_vars": {"PYTHONPATH": path}},
            include_dashboard=False,
            # Ray starts workers at nice 15; on a machine shared with other work the actors
            # would then get what is left over, not the share the local engine gets.
            _system_config={"worker_niceness": 0},
            **quiet,
        )
    try:
        yield
    finally:
        ray.shutdown()


def _cpus_per_actor(ray: Any, options: RayOptions) -> float:
    """The CPUs each actor reserves: as given, or on a one-node Ray its CPUs split among the
    actors, on a cluster 1.

    Ray limits an actor's OpenMP threads, and so TensorFlow's CPU kernels, to the CPUs it
    reserves (``OMP_NUM_THREADS``): MobileNetV2's Grad-CAM step used 1.05 of 2 cores in an actor
    reserving 1 CPU, 1.53 reserving 2. On a CPU-only cluster, give ``cpus_per_actor`` the cores
    each actor should use.
    """
    if options.cpus_per_actor is not None:
        return options.cpus_per_actor
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) != 1:
        return 1.0
    cpus = float(nodes[0].get("Resources", {}).get("CPU", 1))
    return float(max(1, math.floor(cpus / options.actors + 1e-9)))


def _check_resources(ray: Any, options: RayOptions, cpus_per_actor: float) -> None:
    total = ray.cluster_resources()
    cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
    fit = math.floor(cpus / cpus_per_actor + 1e-9)
    if options.gpus_per_actor > 0:
        fit = min(fit, math.floor(gpus / options.gpus_per_actor + 1e-9))
    if fit < options.actors:
        raise bad_value(
            "actors",
            f"at most {fit} actors with {cpus_per_actor:g} CPU(s) and "
            f"{options.gpus_per_actor:g} GPU(s) each: the Ray cluster has {cpus:g} CPUs and "
            f"{gpus:g} GPUs",
            options.actors,
            "Lower --actors / --cpus-per-actor / --gpus-per-actor, or add nodes.",
        )


def _raised(exc: BaseException) -> BaseException:
    """The xai error inside a Ray error (an actor's failure comes back wrapped), or ``exc``."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        if isinstance(e, XaiError):
            return e
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    return exc


@contextlib.contextmanager
def _quiet_ray_data(ray: Any) -> Iterator[Any]:
    """Ray Data's context with its progress bars and start-up logging off (restored after)."""
    context = ray.data.DataContext.get_current()
    bars = context.enable_progress_bars
    logger = logging.getLogger("ray.data")
    level = logger.level
    context.enable_progress_bars = False
    logger.setLevel(logging.ERROR)
    try:
        yield context
    finally:
        context.enable_progress_bars = bars
        logger.setLevel(level)


def _actor_pool(ray: Any, actors: int) -> Any:
    """A fixed pool of ``actors``, each running two chunks at once where Ray allows it.

    Two calls in flight per actor overlap one chunk's decoding and writing with the other's
    model step (``max_concurrent_calls_per_actor`` with ``enable_true_multi_threading``, Ray
    2.5x+); an older Ray runs one chunk at a time per actor.
    """
    strategy = ray.data.ActorPoolStrategy
    accepted = inspect.signature(strategy).parameters
    if {"max_concurrent_calls_per_actor", "enable_true_multi_threading"} <= set(accepted):
        return strategy(
            size=actors, max_concurrent_calls_per_actor=2, enable_true_multi_threading=True
        )
    return strategy(size=actors)  # pragma: no cover - older Ray


def ray_engine(spec: _ActorSpec, options: RayOptions) -> Engine:
    """The Ray engine for :func:`xai.export.batches._run`."""

    def run(plan: _Plan, work: _Work, manifest: _Manifest) -> int:
        ray = import_ray()
        processed = failed = 0
        bar = _progress(plan, sum(len(c) for c in work.chunks))
        try:
            with _connected(ray, options), _quiet_ray_data(ray):
                cpus_per_actor = _cpus_per_actor(ray, options)
                _check_resources(ray, options, cpus_per_actor)
                ds = ray.data.from_items(_tasks(plan, work), override_num_blocks=len(work.chunks))
                gpus = {"num_gpus": options.gpus_per_actor} if options.gpus_per_actor else {}
                ds = ds.map_batches(
                    _ExportActor,
                    fn_constructor_args=(spec,),
                    batch_size=1,  # one chunk: the batches of the local engine
                    batch_format="numpy",
                    compute=_actor_pool(ray, options.actors),
                    num_cpus=cpus_per_actor,
                    **gpus,
                )
                for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    for text, count in zip(out["rows"], out["images"]):
                        rows = json.loads(str(text))
                        manifest.append(rows)
                        processed += len(rows)
                        failed += sum(r["status"] == "error" for r in rows)
                        bar.update(int(count))
                        bar.set_postfix(failed=failed, refresh=False)
        except Exception as exc:
            inner = _raised(exc)
            if inner is exc:
                raise
            raise inner from None
        finally:
            bar.close()
        return processed

    return run


def actor_spec(plan: _Plan, **fields: Any) -> _ActorSpec:
    """The :class:`_ActorSpec` of ``plan`` and the export's other resolved settings."""
    return _ActorSpec(
        method=plan.method.name,
        params=plan.params,
        row_params=plan.row_params,
        seed=plan.seed,
        fixed_target=plan.fixed_target,
        formats=plan.formats,
        taken_dirs=plan.taken_dirs,
        layer_paths=plan.layer,
        out=str(plan.out.resolve()),
        xai_version=__version__,
        **fields,
    )
