"""A synthetic keyword-sentiment task with ground truth, for token-attribution tests and the demo.

Each sequence is made of neutral filler words and a few *evidence* words with known weights:

* strong words (``excellent``, ``superb``, ``wonderful`` = +3; ``awful``, ``terrible``,
  ``horrible`` = -3),
* weak words (``good``, ``nice`` = +1; ``bad``, ``dull`` = -1),

and the label is ``positive`` (1) when the summed weight is positive, else ``negative`` (0); the
generator never makes a tie. A ``"decided"`` sequence has exactly one strong word (it decides
the label: it is the ground-truth top token) and 0-2 weak words of the *opposite* polarity
(evidence against the label, so signs can be checked); a ``"weak"`` sequence has no strong word
and 1 or 3 weak words (the model must learn that weak words count too). Sequences have 6 to
``length`` words and are padded at the end with id 0 (``"[PAD]"``); id 1 is ``"[UNK]"``.

Everything is a pure function of ``seed`` (NumPy ``default_rng``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import bad_value

STRONG_POSITIVE = ("excellent", "superb", "wonderful")
STRONG_NEGATIVE = ("awful", "terrible", "horrible")
WEAK_POSITIVE = ("good", "nice")
WEAK_NEGATIVE = ("bad", "dull")
FILLER = (
    "the", "movie", "plot", "actor", "was", "and", "a", "it", "scene", "story", "film", "music",
    "ending", "very", "quite", "this", "that", "with", "of", "in", "cast", "script", "camera",
    "time", "long", "short", "day", "night", "city", "house",
)  # fmt: skip
VOCABULARY = (
    "[PAD]",
    "[UNK]",
    *STRONG_POSITIVE,
    *STRONG_NEGATIVE,
    *WEAK_POSITIVE,
    *WEAK_NEGATIVE,
    *FILLER,
)
CLASS_NAMES = ("negative", "positive")
INDEX = {w: i for i, w in enumerate(VOCABULARY)}
WEIGHTS = np.zeros(len(VOCABULARY), np.int64)
for _w in STRONG_POSITIVE:
    WEIGHTS[INDEX[_w]] = 3
for _w in STRONG_NEGATIVE:
    WEIGHTS[INDEX[_w]] = -3
for _w in WEAK_POSITIVE:
    WEIGHTS[INDEX[_w]] = 1
for _w in WEAK_NEGATIVE:
    WEIGHTS[INDEX[_w]] = -1


@dataclass(frozen=True)
class KeywordData:
    """Sequences of the keyword task.

    Attributes:
        ids: int32 ``(N, length)`` token ids, padded with 0 at the end.
        labels: int64 ``(N,)`` 1 = positive, 0 = negative.
        deciding: int64 ``(N,)`` position of the strong word (-1 in "weak" sequences).
        against: bool ``(N, length)``: the words whose polarity is opposite to the label.
        weights: int64 ``(N, length)`` each word's evidence weight (0 for filler and padding).
    """

    ids: np.ndarray
    labels: np.ndarray
    deciding: np.ndarray
    against: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def make_keyword_sequences(
    num: int, *, seed: int = 0, length: int = 16, weak_fraction: float = 0.25
) -> KeywordData:
    """``num`` sequences of the keyword task (see the module docstring).

    Args:
        num: number of sequences.
        seed: the data seed.
        length: padded length (at least 6).
        weak_fraction: fraction of "weak" sequences (no strong word); 0 for a test set in which
            every sequence has a deciding word.
    """
    if length < 6:
        raise bad_value("length", "an int >= 6", length)
    if not 0 <= weak_fraction <= 1:
        raise bad_value("weak_fraction", "a fraction in [0, 1]", weak_fraction)
    rng = np.random.default_rng([int(seed), 4242])
    ids = np.zeros((num, length), np.int32)
    labels = np.zeros(num, np.int64)
    deciding = np.full(num, -1, np.int64)
    filler = np.array([INDEX[w] for w in FILLER])
    for i in range(num):
        size = int(rng.integers(6, length + 1))
        words = list(rng.choice(filler, size=size))
        positive = bool(rng.integers(0, 2))
        if rng.random() < weak_fraction:
            count = int(rng.choice([1, 3]))
            n_major = count if count == 1 else int(rng.integers(2, 4))
            major = WEAK_POSITIVE if positive else WEAK_NEGATIVE
            minor = WEAK_NEGATIVE if positive else WEAK_POSITIVE
            evidence = [str(rng.choice(major)) for _ in range(n_major)]
            evidence += [str(rng.choice(minor)) for _ in range(count - n_major)]
            strong = None
        else:
            strong = str(rng.choice(STRONG_POSITIVE if positive else STRONG_NEGATIVE))
            opposite = WEAK_NEGATIVE if positive else WEAK_POSITIVE
            evidence = [strong] + [
                str(rng.choice(opposite)) for _ in range(int(rng.integers(0, 3)))
            ]
        slots = rng.choice(size, size=len(evidence), replace=False)
        for slot, word in zip(slots, evidence):
            words[int(slot)] = INDEX[word]
        ids[i, :size] = words
        labels[i] = int(positive)
        if strong is not None:
            deciding[i] = int(slots[0])
    weights = WEIGHTS[ids]
    sign = np.where(labels == 1, 1, -1)[:, None]
    return KeywordData(
        ids=ids,
        labels=labels,
        deciding=deciding,
        against=weights * sign < 0,
        weights=weights,
    )


__all__ = ["CLASS_NAMES", "VOCABULARY", "KeywordData", "make_keyword_sequences"]
