"""Coloured tokens: per-token attributions as HTML (escaped, self-contained) and as a figure.

One colour rule for both: positive evidence for the explained class in green, negative evidence
(against it) in magenta (the two ends of ColorBrewer's colour-blind-safe PiYG), white at zero, the
lightness scaled by ``|value| / scale`` with one symmetric ``scale`` (by default the largest
``|value|`` shown), so equal magnitudes look equally strong whatever their sign. Positions whose
mask is False (padding) are not shown. Every token string is HTML-escaped, so a token such as
``<script>`` renders as text; the page has no scripts and no external resources.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

POSITIVE = (77, 146, 33)  # PiYG green
NEGATIVE = (197, 27, 125)  # PiYG magenta


@dataclass(frozen=True)
class TokenRow:
    """One sequence to draw: its caption, tokens, signed scores and which positions to show."""

    caption: str
    tokens: Sequence[str]
    scores: np.ndarray
    mask: np.ndarray


def symmetric_scale(rows: Sequence[TokenRow]) -> float:
    """The largest ``|score|`` over the shown positions of ``rows`` (1.0 when all are zero)."""
    peak = 0.0
    for row in rows:
        shown = np.abs(np.asarray(row.scores, np.float64))[np.asarray(row.mask, bool)]
        if shown.size:
            peak = max(peak, float(shown.max()))
    return peak if peak > 0 and np.isfinite(peak) else 1.0


def token_colour(value: float, scale: float) -> tuple[int, int, int]:
    """RGB of one token: white at 0, :data:`POSITIVE` / :data:`NEGATIVE` at ``|value| >= scale``."""
    t = min(abs(float(value)) / scale, 1.0) if scale > 0 and np.isfinite(value) else 0.0
    base = POSITIVE if value >= 0 else NEGATIVE
    rgb = tuple(int(round(255 * (1 - t) + c * t)) for c in base)
    return rgb[0], rgb[1], rgb[2]


def _text_colour(value: float, scale: float) -> str:
    return "#ffffff" if scale > 0 and abs(value) / scale > 0.6 else "#111111"


def tokens_html(rows: Sequence[TokenRow], *, scale: float | None = None) -> str:
    """An HTML fragment: one block per row, one coloured ``<span>`` per shown token.

    Each span's ``title`` (the tooltip) holds the token and its value; captions and tokens are
    escaped. ``scale`` defaults to :func:`symmetric_scale` of ``rows``.
    """
    scale = symmetric_scale(rows) if scale is None else float(scale)
    blocks = []
    for row in rows:
        spans = []
        for token, value, shown in zip(row.tokens, np.asarray(row.scores), np.asarray(row.mask)):
            if not shown:
                continue
            r, g, b = token_colour(float(value), scale)
            text = html.escape(str(token), quote=True)
            spans.append(
                f'<span class="xai-token" style="background-color:rgb({r},{g},{b});'
                f'color:{_text_colour(float(value), scale)}" '
                f'title="{text}: {float(value):+.4g}">{text}</span>'
            )
        blocks.append(
            '<div class="xai-row"><div class="xai-caption">'
            f"{html.escape(row.caption)}</div>"
            f'<div class="xai-tokens">{" ".join(spans)}</div></div>'
        )
    legend = (
        '<div class="xai-legend">'
        f'<span class="xai-token" style="background-color:rgb({",".join(map(str, POSITIVE))});'
        'color:#fff">'
        f"for (+{scale:.3g})</span> "
        '<span class="xai-token" style="background-color:#fff">0</span> '
        f'<span class="xai-token" style="background-color:rgb({",".join(map(str, NEGATIVE))});'
        'color:#fff">'
        f"against (&minus;{scale:.3g})</span></div>"
    )
    return f'<div class="xai-text">{legend}{"".join(blocks)}</div>'


_STYLE = (
    ".xai-text{font-family:sans-serif;font-size:14px;line-height:1.9}"
    ".xai-row{margin:6px 0}.xai-caption{font-size:12px;color:#444}"
    ".xai-token{padding:1px 3px;border-radius:3px;border:1px solid #ddd;white-space:pre}"
    ".xai-legend{font-size:12px;margin-bottom:8px}"
)


def html_document(fragment: str, *, title: str = "xai token attributions") -> str:
    """A standalone, self-contained HTML page around a :func:`tokens_html` fragment."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h3>{html.escape(title)}</h3>{fragment}</body></html>\n"
    )


def inline_style() -> str:
    """The ``<style>`` block for fragments shown in a notebook."""
    return f"<style>{_STYLE}</style>"


def plot_tokens(
    rows: Sequence[TokenRow],
    *,
    scale: float | None = None,
    ax: Any = None,
    width: int = 80,
    title: str | None = None,
) -> Any:
    """A matplotlib Figure of coloured tokens (monospace, wrapped at ``width`` characters).

    Never calls ``show()``. With ``ax`` given it draws into that axes and returns its figure.
    """
    from matplotlib.figure import Figure

    scale = symmetric_scale(rows) if scale is None else float(scale)
    lines: list[list[tuple[str, float | None, float]]] = []  # (text, value or None, x)
    for row in rows:
        lines.append([(row.caption, None, 0.0)])
        current: list[tuple[str, float | None, float]] = []
        x = 0.0
        for token, value, shown in zip(row.tokens, np.asarray(row.scores), np.asarray(row.mask)):
            if not shown:
                continue
            text = str(token).replace("\n", " ") or " "
            if current and x + len(text) > width:
                lines.append(current)
                current, x = [], 0.0
            current.append((text, float(value), x))
            x += len(text) + 1.5
        lines.append(current)
    if ax is None:
        fig = Figure(figsize=(max(4.0, 0.11 * width), 0.32 * len(lines) + 0.8))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    ax.set_xlim(-0.5, width + 0.5)
    ax.set_ylim(len(lines), -0.5)
    ax.axis("off")
    for y, line in enumerate(lines):
        for text, value, x in line:
            if value is None:
                ax.text(x, y + 0.5, text, fontsize=9, color="#444444", va="center")
                continue
            r, g, b = token_colour(value, scale)
            ax.text(
                x,
                y + 0.5,
                text,
                fontsize=10,
                family="monospace",
                va="center",
                color=_text_colour(value, scale),
                bbox={
                    "facecolor": (r / 255, g / 255, b / 255),
                    "edgecolor": "#dddddd",
                    "boxstyle": "round,pad=0.2",
                },
            )
    if title:
        ax.set_title(title, fontsize=10)
    return fig


__all__ = [
    "NEGATIVE",
    "POSITIVE",
    "TokenRow",
    "html_document",
    "inline_style",
    "plot_tokens",
    "symmetric_scale",
    "token_colour",
    "tokens_html",
]
