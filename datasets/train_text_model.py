"""Train the shipped text model ``xai/assets/keyword_gru.keras`` on the synthetic keyword task.

The task (:mod:`xai.text_data`): sequences of filler words with one strong sentiment word that
decides the label, and weak words of the opposite polarity (evidence against it), or only weak
words. The model is ``Embedding(mask_zero=True) -> GRU -> Dense(1, sigmoid)`` over token ids
(padded with 0). It writes the model, its vocabulary (``keyword_gru_vocab.json``) and its entry
``keyword_gru`` in ``xai/assets/models.json`` (command, sha256, accuracy). Deterministic: seeds
fixed and TensorFlow's op determinism on. About a minute on 2 busy CPU cores.

Usage (from the repository root)::

    python datasets/train_text_model.py
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

from xai.text_data import CLASS_NAMES, VOCABULARY, make_keyword_sequences  # noqa: E402

FILE = "keyword_gru.keras"
VOCAB_FILE = "keyword_gru_vocab.json"


def build_model(length: int, embed_dim: int, units: int) -> keras.Model:
    ids = keras.Input((length,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(len(VOCABULARY), embed_dim, mask_zero=True, name="embedding")(ids)
    x = keras.layers.GRU(units, name="gru")(x)
    out = keras.layers.Dense(1, activation="sigmoid", name="predictions")(x)
    return keras.Model(ids, out, name="keyword_gru")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-train", type=int, default=8000)
    parser.add_argument("--num-test", type=int, default=1000)
    parser.add_argument("--length", type=int, default=16)
    parser.add_argument("--embed-dim", type=int, default=16)
    parser.add_argument("--units", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=ROOT / "xai" / "assets")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    start = time.perf_counter()
    train = make_keyword_sequences(args.num_train, seed=args.seed, length=args.length)
    test = make_keyword_sequences(args.num_test, seed=args.seed + 1, length=args.length)
    decided = make_keyword_sequences(
        args.num_test, seed=args.seed + 2, length=args.length, weak_fraction=0.0
    )
    model = build_model(args.length, args.embed_dim, args.units)
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        train.ids,
        train.labels,
        epochs=args.epochs,
        batch_size=args.batch_size,
        verbose=2,
        shuffle=True,
    )

    def accuracy(data) -> float:
        p = model.predict(data.ids, batch_size=500, verbose=0)[:, 0]
        return float(np.mean((p > 0.5) == (data.labels == 1)))

    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    path = out / FILE
    model.save(path)
    (out / VOCAB_FILE).write_text(json.dumps(list(VOCABULARY), indent=1) + "\n")
    flags = [
        f"--{k.replace('_', '-')} {v}"
        for k, v in sorted(vars(args).items())
        if k != "output_dir" and parser.get_default(k) != v
    ]
    record = {
        "file": FILE,
        "vocabulary_file": VOCAB_FILE,
        "task": "xai.text_data.make_keyword_sequences: one strong sentiment word decides the "
        "label, weak opposite words are evidence against it (ground truth per token)",
        "trained_on": {"num_sequences": args.num_train, "data_seed": args.seed},
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "class_names": list(CLASS_NAMES),
        "input": {
            "shape": [args.length],
            "dtype": "int32",
            "padding_id": 0,
            "preprocessing": "token ids of VOCABULARY (keyword_gru_vocab.json), padded with 0",
        },
        "output": "sigmoid probability of 'positive' (Dense 'predictions', activation='sigmoid')",
        "embedding_layer": "embedding",
        "num_params": int(model.count_params()),
        "test_accuracy": {
            "test": accuracy(test),
            "decided_test": accuracy(decided),
        },
        "test_sets": {
            "num_sequences": args.num_test,
            "test": f"make_keyword_sequences({args.num_test}, seed={args.seed + 1})",
            "decided_test": f"make_keyword_sequences({args.num_test}, seed={args.seed + 2}, "
            "weak_fraction=0.0)",
        },
        "command": " ".join(["python datasets/train_text_model.py", *flags]),
        "file_bytes": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "train_seconds": round(time.perf_counter() - start, 1),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    registry = out / "models.json"
    data = json.loads(registry.read_text()) if registry.exists() else {"models": {}}
    data.setdefault("models", {})["keyword_gru"] = record
    registry.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
