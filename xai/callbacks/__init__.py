"""Keras callbacks that explain and record a model while it trains.

* :class:`ExplainCallback` explains a fixed probe batch with any registered method every
  ``every_n_epochs`` epochs and writes the overlays to TensorBoard and/or PNG files.
* :class:`ActivationRecorder` records chosen layers' activations (or their per-channel mean, std
  and sparsity) on a fixed probe batch, in memory and optionally as ``.npz`` files.

Both follow the rules of the rest of xai:

* The model is read-only. Everything runs in inference mode (``training=False``: no
  BatchNormalization update, no Dropout draw) on a *tap*, a functional graph that reuses the
  model's layers and variables (:mod:`xai.taps`), which also reaches into nested backbones (the
  "Graph disconnected" failure of tf-explain). Nothing draws from the global Keras/TensorFlow
  random state (stochastic methods get a fixed ``seed`` and use stateless ops), so a seeded ``fit``
  gives the same weights with and without these callbacks.
* The tap is built once, in ``on_train_begin``, on ``self.model``; the compiled step (a
  ``tf.function`` over the tap, capturing the model's variables) is reused every epoch. It is
  rebuilt only when the model's variables change (another model, or variables added or replaced),
  never because the *values* changed. ``trace_count`` counts the traces.
* Arguments are validated in the constructor where they can be, and against the model in
  ``on_train_begin``, before the first epoch runs. Directories are created in ``on_train_begin``.
* Training waits only for the part that needs the current weights (the compiled step on the
  probe batch). Rendering and writing (overlays, PNG encoding, atomic writes with their fsyncs,
  TensorBoard events, ``.npz`` files) run on one background thread per callback, in order;
  ``on_train_end`` waits for them, so every file is complete when ``fit`` returns, and a failed
  write is raised there (or at the next epoch end). ``background_writes=False`` writes inline.

Epoch numbers in file names and in :attr:`ActivationRecorder.epochs` are 1-based, like Keras's
progress bar and ``ModelCheckpoint``'s ``{epoch}``; TensorBoard steps are Keras's 0-based epoch
index, so the images line up with the ``epoch_*`` scalars of ``keras.callbacks.TensorBoard``.
"""

from .activations import REDUCTIONS, STATISTICS, ActivationRecorder
from .explain import ExplainCallback

__all__ = ["REDUCTIONS", "STATISTICS", "ActivationRecorder", "ExplainCallback"]
