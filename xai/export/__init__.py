"""``xai export``: explain every image of a folder tree, fast, resumably and safely.

``export(model, input_dir, output_dir, ...)`` walks ``input_dir`` (nested folders included),
explains
every image with one method and writes, mirroring the folder structure::

    output_dir/
      overlay/<rel path>.png     heatmap over the ORIGINAL image, at its original resolution (RGB)
      heatmap/<rel path>.png     the heatmap at the original resolution, 16-bit grey (0..65535)
      raw/<rel path>.npy         raw signed float32 attributions at their native resolution
      manifest.jsonl             one JSON line per input file (see below)
      summary.json               counts, throughput and the settings, written at the end
      .xai-export.json           the run's settings (checked when the folder is used again)

``<rel path>`` is the input's path relative to ``input_dir`` *including its extension*
(``cats/tom.jpg`` -> ``overlay/cats/tom.jpg.png``), so ``tom.jpg`` and ``tom.png`` never collide.
Names are sanitised (control characters and ``<>:"\\|?*`` become ``_``, leading dots and trailing
dots/spaces are replaced, Windows device names get a ``_`` prefix, long names are shortened); a
sanitised name gets ``~`` and 8 hex digits of a hash of the original path, so two inputs never map
to one output; so does a file whose output name is also a mirrored folder's (``x.png`` ->
``x.png~<hash>.png`` when the input has a folder ``x.png.png/``), so a file and a folder never
collide either. The input's own name is kept whole (not ``tom.png`` for ``tom.jpg``): that keeps
the names readable and still lets ``tom.jpg`` and ``tom.png`` sit side by side. Every output path is
checked to resolve inside ``output_dir`` (a symbolic link in
there cannot redirect a write elsewhere).

**Manifest.** One line per input, in the walk order (sorted names, depth first)::

    {"path": "cats/tom.jpg", "status": "ok", "error": null, "height": 480, "width": 640,
     "predicted": 3, "predicted_label": "cat", "probability": 0.91, "target": 3,
     "target_label": "cat", "target_probability": 0.91, "score": 7.25, "method": "gradcam",
     "params": {}, "layer": ["conv5"], "outputs": {"overlay": "overlay/cats/tom.jpg.png", ...}}

``status`` is ``"ok"``, ``"error"`` (an image file that could not be explained: corrupt,
truncated, empty, too large, unreadable, ... with the reason in ``error``) or ``"skipped"`` (not an
image by its suffix, a hidden file, a symbolic-link loop, ... with the reason in ``error``).
``probability`` is ``null`` for a model without a softmax/sigmoid head. Read it with
``pandas.read_json(path, lines=True)``.

**Pipeline.** A ``tf.data`` pipeline reads, decodes (:func:`xai.io.read_image`, so CMYK and 16-bit
files, grey and RGBA images all come out RGB, and decompression bombs are refused from the header),
resizes and preprocesses images in parallel and prefetches batches while the compiled step of the
:class:`~xai.explainer.Explainer` runs; the pictures are coloured, encoded and written by a small
thread pool with a bounded queue. Memory does not grow with the number of images beyond a few
hundred bytes of bookkeeping per file (the file list and the set of finished files).

**Resuming.** Every output is written atomically (temporary file + rename, named like
:mod:`xai.io`'s) before its manifest line; after each batch the file system is flushed (``syncfs``
on Linux: one flush per batch instead of an fsync per file, which costs 5-10 ms each on a virtual
disk) and then the batch's manifest lines are appended, flushed and fsynced. Running the same
command again skips the images already done (their manifest line says ``ok`` and their files exist)
and retries the failed ones; a run killed at any point (even ``SIGKILL``) leaves only complete
output files (a killed write can leave a hidden ``.*.tmp`` file, which the next run deletes).
Batches are formed from fixed positions of the sorted file list (chunks of ``batch_size``), and the
methods' noise depends only on ``seed`` (never on the batch), so a resumed run writes byte-identical
files to an uninterrupted one. At the end the manifest is rewritten in walk order with one line per
input, so it is byte-identical too. A folder written with other settings (model weights, method,
parameters, layer, targets, image size, preprocessing, formats, overlay style) is refused unless
``overwrite=True`` (``--overwrite``), which deletes the files listed in its manifest and starts
afresh.

**Several GPUs.** Pass ``strategy=tf.distribute.MirroredStrategy()`` (``--multi-gpu`` on the command
line): the model is loaded under ``strategy.scope()`` (build it there yourself when you pass a model
object), each batch of ``batch_size`` images is split evenly over the replicas' devices and their
compiled steps run concurrently; the results are the same as on one device up to float rounding.

**Past one machine.** ``engine="ray"`` (``--engine ray``, ``pip install 'xai[ray]'``) runs the
same export on Ray Data: the chunks become a Ray dataset mapped by a pool of actors
(``actors``, ``gpus_per_actor``, ``cpus_per_actor``; ``address`` joins a running cluster, None
starts a local Ray), each of which loads the model from its path and runs the same
:class:`~xai.export.core.BatchExplainer`, loader and writer as the local engine, into the same
(shared) output folder; the driver owns the manifest. The outputs, manifest and summary are those
of the local engine, and a run on one engine resumes on the other (:mod:`xai.export.ray_engine`).
"""

from typing import Any

# Walking, naming, the journal, the options and the summary need no TensorFlow: importing them
# (or this package) does not load it. The pipeline, which does, is loaded with ``export``.
from .journal import CONFIG_NAME, LOCK_NAME, MANIFEST_NAME, SUMMARY_NAME
from .naming import output_paths, output_stem
from .options import FORMATS
from .summary import ExportSummary
from .walk import IMAGE_SUFFIXES


def __getattr__(name: str) -> Any:
    if name == "export":
        from .pipeline import export

        return export
    raise AttributeError(f"module 'xai.export' has no attribute {name!r}")


__all__ = [
    "CONFIG_NAME",
    "FORMATS",
    "IMAGE_SUFFIXES",
    "LOCK_NAME",
    "MANIFEST_NAME",
    "SUMMARY_NAME",
    "ExportSummary",
    "export",
    "output_paths",
    "output_stem",
]
