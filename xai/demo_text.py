"""The text part of ``xai demo``: the shipped keyword model explained on the tokens.

Loads ``xai/assets/keyword_gru.keras`` and its vocabulary, makes ``num_sequences`` test sequences
of the keyword task (:mod:`xai.text_data`, seed 2, every sequence with a deciding word), explains
them with integrated gradients at the embedding (64 steps, padding baseline), and writes
``tokens.html`` (coloured tokens), ``tokens.png`` (the same as a figure) and ``text.json``: how
often the top token is the deciding word, how often the evidence signs are right, and the
largest completeness gap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from . import io
from .text_data import CLASS_NAMES, make_keyword_sequences
from .tokens_text import TokenExplanation

MODEL_NAME = "keyword_gru.keras"
VOCABULARY_NAME = "keyword_gru_vocab.json"


def run_text_demo(out_dir: str | Path, *, num_sequences: int = 64, seed: int = 2) -> dict[str, Any]:
    """Explain the shipped text model; write ``tokens.html``, ``tokens.png`` and ``text.json``.

    Returns:
        The summary written to ``text.json`` (``files``: the paths written, relative to
        ``out_dir``).
    """
    import keras

    from .demo import _figure_png as figure_png
    from .demo import shipped_model_path
    from .explainer import Explainer

    out = Path(out_dir)
    model = keras.saving.load_model(shipped_model_path(MODEL_NAME))
    vocabulary = json.loads(shipped_model_path(VOCABULARY_NAME).read_text())
    data = make_keyword_sequences(num_sequences, seed=seed, weak_fraction=0.0)
    ex = Explainer(model, class_names=CLASS_NAMES).explain(
        data.ids, "integrated_gradients", vocabulary=vocabulary
    )
    assert isinstance(ex, TokenExplanation)  # noqa: S101 - a token model gives one
    scores = ex.token_scores
    rows = np.arange(len(data))
    right = ex.predictions == data.labels
    delta = ex.convergence_delta
    assert delta is not None and ex.baseline_scores is not None  # noqa: S101 - IG
    gap = ex.scores - ex.baseline_scores
    summary: dict[str, Any] = {
        "model": str(shipped_model_path(MODEL_NAME)),
        "sequences": f"make_keyword_sequences({num_sequences}, seed={seed}, weak_fraction=0.0)",
        "method": ex.method,
        "layer": list(ex.layer or ()),
        "params": {k: v for k, v in ex.params.items() if k != "seed"},
        "accuracy": float(right.mean()),
        "top_token_is_deciding_word": float(np.mean(scores.argmax(axis=1) == data.deciding)),
        "deciding_word_positive": float(np.mean(scores[rows, data.deciding] > 0)),
        "against_words_negative": float(np.mean(scores[data.against] < 0)),
        "max_relative_completeness_gap": float(np.max(np.abs(delta / gap))),
    }
    written = [
        io.atomic_write_text(out / "tokens.html", ex.to_html(max_samples=24)),
        io.atomic_write_bytes(out / "tokens.png", figure_png(ex.plot(list(range(12))))),
    ]
    summary["files"] = [p.name for p in written] + ["text.json"]
    io.write_json(out / "text.json", summary)
    return summary


__all__ = ["run_text_demo"]
