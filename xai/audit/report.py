"""The audit report: data (``to_dict()``, ``report.json``) and a self-contained HTML page.

The page embeds every figure as a base64 PNG (``data:`` URIs), loads nothing from the network and
escapes every user-provided string (class names, file names, method names) with ``html.escape``.
"""

from __future__ import annotations

import base64
import html
import io as _bytes_io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import io


@dataclass(frozen=True)
class Flag:
    """One check's verdict with its stated rule and threshold."""

    key: str
    method: str
    raised: bool
    value: float
    threshold: float
    message: str
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "method": self.method,
            "raised": bool(self.raised),
            "value": float(self.value),
            "threshold": float(self.threshold),
            "message": self.message,
            "rule": self.rule,
        }


@dataclass(frozen=True)
class AuditReport:
    """What :func:`xai.audit` found. ``to_dict()`` is JSON-ready; ``save(dir)`` writes the files."""

    num_images: int
    class_names: tuple[str, ...]
    methods: tuple[str, ...]
    primary: str
    layer: list[str]
    accuracy: float
    confusion: list[list[int]]
    faithfulness: dict[str, Any]
    localisation: dict[str, Any] | None
    sanity: dict[str, Any]
    flags: tuple[Flag, ...]
    thresholds: dict[str, float]
    gallery: list[dict[str, Any]]
    params: dict[str, Any]
    seconds: float
    gallery_images: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list, repr=False)

    # ------------------------------------------------------------------ queries
    def flag(self, key: str, method: str | None = None) -> Flag | None:
        """The flag ``key`` of ``method`` (the primary method by default)."""
        method = self.primary if method is None else method
        for f in self.flags:
            if f.key == key and f.method == method:
                return f
        return None

    @property
    def raised(self) -> list[Flag]:
        """The raised flags."""
        return [f for f in self.flags if f.raised]

    @property
    def shortcut_alarm(self) -> bool:
        """The headline shortcut alarm: the primary method's off-object flag (False, no masks)."""
        f = self.flag("shortcut")
        return bool(f is not None and f.raised)

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": {
                "raised": [f.message for f in self.raised],
                "shortcut_alarm": self.shortcut_alarm,
                "accuracy": self.accuracy,
                "num_images": self.num_images,
                "primary_method": self.primary,
            },
            "flags": [f.to_dict() for f in self.flags],
            "thresholds": dict(self.thresholds),
            "class_names": list(self.class_names),
            "methods": list(self.methods),
            "layer": list(self.layer),
            "accuracy": self.accuracy,
            "confusion_matrix": self.confusion,
            "faithfulness": self.faithfulness,
            "localisation": self.localisation,
            "sanity": self.sanity,
            "gallery": self.gallery,
            "params": self.params,
            "seconds": self.seconds,
        }

    def to_html(self) -> str:
        return render_html(self)

    def save(self, directory: str | Path) -> list[Path]:
        """Write ``report.html`` and ``report.json`` into ``directory``; return the paths."""
        root = Path(directory)
        return [
            io.atomic_write_text(root / "report.html", self.to_html()),
            io.write_json(root / "report.json", self.to_dict()),
        ]

    def __repr__(self) -> str:
        raised = "; ".join(f.message for f in self.raised) or "no flags raised"
        return f"AuditReport({self.num_images} images, accuracy {self.accuracy:.2f}, {raised})"


# ---------------------------------------------------------------------------------- HTML


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure_uri(fig: Any) -> str:
    from ..viz.plot import literal_text

    literal_text(fig)  # class and method names are shown as written, never parsed as maths
    buffer = _bytes_io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return _png_uri(buffer.getvalue())


def _img(uri: str, alt: str, width: int | None = None) -> str:
    w = f' width="{width}"' if width else ""
    return f'<img src="{uri}" alt="{_e(alt)}"{w}>'


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return _e(v)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _confusion_figure(report: AuditReport) -> str:
    from matplotlib.figure import Figure

    cm = np.asarray(report.confusion)
    k = len(cm)
    fig = Figure(figsize=(1.2 + 0.6 * k, 1.0 + 0.6 * k))
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues")
    dark = cm > cm.max() / 2  # the upper half of "Blues" is dark: white counts there
    for i in range(k):
        for j in range(k):
            colour = "white" if dark[i, j] else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(
        range(k), [str(c) for c in report.class_names], rotation=45, ha="right", fontsize=8
    )
    ax.set_yticks(range(k), [str(c) for c in report.class_names], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return _figure_uri(fig)


def _curves_figure(report: AuditReport) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.2))
    methods = report.faithfulness["methods"]
    for j, mode in enumerate(("deletion", "insertion")):
        ax = fig.add_subplot(1, 2, j + 1)
        for name, res in methods.items():
            c = res[mode]["curve"]
            xs = np.linspace(0, 1, len(c))
            ax.plot(
                xs,
                c,
                label=f"{name} (AUC {res[mode]['auc']:.3f})",
                linestyle="--" if name == "random" else "-",
            )
        ax.set_title(f"{mode} ({'lower' if mode == 'deletion' else 'higher'} is better)")
        ax.set_xlabel("fraction of pixels " + ("removed" if mode == "deletion" else "inserted"))
        ax.set_ylabel("class probability")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7)
    return _figure_uri(fig)


def _sanity_figure(report: AuditReport) -> str:
    from matplotlib.figure import Figure

    layers = report.sanity["layers"]
    fig = Figure(figsize=(9, 3.4))
    for j, metric in enumerate(("spearman", "ssim")):
        ax = fig.add_subplot(1, 2, j + 1)
        for name, res in report.sanity["methods"].items():
            ax.plot(range(len(layers) + 1), [1.0, *res[metric]], marker="o", label=name)
        if metric == "spearman":
            ax.axhline(
                report.thresholds["sanity_spearman"],
                color="red",
                linestyle=":",
                label="fail threshold (on the cascade mean)",
            )
        ax.set_xticks(
            range(len(layers) + 1), ["original", *layers], rotation=60, ha="right", fontsize=7
        )
        ax.set_title(
            f"{'Spearman rank correlation' if metric == 'spearman' else 'SSIM'} vs original"
        )
        ax.set_ylim(-0.2, 1.05)
        ax.legend(fontsize=7)
    return _figure_uri(fig)


CSS = """
body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f0f0f0}.flag{padding:4px 8px;margin:3px 0;border-radius:3px}
.raised{background:#fde2e1;border-left:5px solid #c00}
.ok{background:#e6f4ea;border-left:5px solid #2a2}
.gallery{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #ccc;padding:4px;font-size:12px;width:270px}
.rule{color:#555;font-size:12px}
"""


def _flags_section(report: AuditReport) -> list[str]:
    """The flags, raised ones first, each with its value, threshold and rule."""
    parts: list[str] = []
    raised = report.raised
    if not raised:
        parts.append("<div class='flag ok'>No flags raised.</div>")
    for f in sorted(report.flags, key=lambda f: not f.raised):
        cls = "raised" if f.raised else "ok"
        parts.append(
            f"<div class='flag {cls}'><b>{'FLAG' if f.raised else 'ok'}</b>: {_e(f.message)} "
            f"(value {f.value:.3f}, threshold {f.threshold:.3f})"
            f"<div class='rule'>rule: {_e(f.rule)}</div></div>"
        )
    return parts


def _accuracy_section(report: AuditReport) -> list[str]:
    """Accuracy, the confusion matrix as a table and a figure."""
    parts: list[str] = []
    parts.append(f"<h2>Accuracy and confusion matrix</h2><p>Accuracy: {report.accuracy:.3f}</p>")
    cm = report.confusion
    parts.append(
        _table(
            ["true \\ predicted", *report.class_names],
            [[c, *row] for c, row in zip(report.class_names, cm)],
        )
    )
    parts.append(_img(_confusion_figure(report), "confusion matrix"))
    return parts


def _faithfulness_section(report: AuditReport) -> list[str]:
    """Deletion and insertion AUCs per method, and their curves."""
    parts: list[str] = []
    fa = report.faithfulness
    parts.append(
        "<h2>Faithfulness: deletion and insertion (RISE)</h2>"
        f"<p>{fa['num_steps']} steps; deleted pixels become {_e(fa['deletion_baseline'])}; "
        "insertion starts from a blurred image. Deletion AUC: lower is better; insertion AUC: "
        "higher is better. "
        "The random row ranks pixels by seeded random heatmaps.</p>"
    )
    rows = [
        [name, r["deletion"]["auc"], r["insertion"]["auc"]] for name, r in fa["methods"].items()
    ]
    parts.append(_table(["method", "deletion AUC", "insertion AUC"], rows))
    parts.append(_img(_curves_figure(report), "deletion and insertion curves"))
    return parts


def _localisation_section(report: AuditReport) -> list[str]:
    """Pointing game, energy inside and IoU per method and per class."""
    parts: list[str] = []
    loc = report.localisation
    parts.append("<h2>Localisation</h2>")
    if loc is None:
        parts.append("<p>No masks given: localisation skipped.</p>")
    else:
        parts.append(
            f"<p>Pointing game with a tolerance of {loc['tolerance_px']} px "
            "(one feature-map cell); "
            f"energy inside the mask (energy-based pointing game); IoU of the map thresholded at "
            f"{loc['iou_threshold']:g} with the mask.</p>"
        )
        rows = [
            [name, r["pointing_game"], r["energy_inside"], r["iou"], r["off_object_correct"]]
            for name, r in loc["methods"].items()
        ]
        parts.append(
            _table(
                ["method", "pointing game", "energy inside", "IoU", "off-object (correct images)"],
                rows,
            )
        )
        for name, r in loc["methods"].items():
            parts.append(f"<h3>Per class: {_e(name)}</h3>")
            parts.append(
                _table(
                    ["class", "images", "pointing game", "energy inside", "IoU"],
                    [
                        [c["class"], c["count"], c["pointing_game"], c["energy_inside"], c["iou"]]
                        for c in r["per_class"]
                    ],
                )
            )
    return parts


def _sanity_section(report: AuditReport) -> list[str]:
    """Cascading randomisation and the random-logit test."""
    parts: list[str] = []
    sa = report.sanity
    parts.append(
        "<h2>Sanity checks (Adebayo et al. 2018)</h2>"
        "<p>Cascading randomisation of a clone's weights from the logits down, on "
        f"{sa['num_images']} "
        "images; similarity of each stage's maps to the original maps. Random-logit test: the map "
        "of a random other class against the predicted class's map (low is good).</p>"
    )
    rows = [
        [
            name,
            r["mean_spearman"],
            r["final_spearman"],
            r["final_ssim"],
            r["random_logit_spearman"],
            r["random_logit_ssim"],
        ]
        for name, r in sa["methods"].items()
    ]
    parts.append(
        _table(
            [
                "method",
                "Spearman (mean over the cascade)",
                "Spearman (fully randomised)",
                "SSIM (fully randomised)",
                "Spearman (random logit)",
                "SSIM (random logit)",
            ],
            rows,
        )
    )
    header = ["method", *sa["layers"]]
    rows = [[f"{name} Spearman", *r["spearman"]] for name, r in sa["methods"].items()]
    rows += [[f"{name} SSIM", *r["ssim"]] for name, r in sa["methods"].items()]
    parts.append(_table(header, rows))
    parts.append(_img(_sanity_figure(report), "per-layer randomisation"))
    return parts


def _gallery_section(report: AuditReport) -> list[str]:
    """The worst cases of the primary method, image and overlay side by side."""
    parts: list[str] = []
    parts.append("<h2>Gallery of worst cases</h2>")
    if not report.gallery:
        parts.append("<p>No worst cases to show.</p>")
    else:
        parts.append("<div class='gallery'>")
        for g, (image, over) in zip(report.gallery, report.gallery_images):
            big = [
                np.kron(a, np.ones((2, 2, 1), np.uint8)) if a.shape[0] < 100 else a
                for a in (image, over)
            ]
            energy = (
                "" if g["energy_inside"] is None else f", energy inside {g['energy_inside']:.2f}"
            )
            parts.append(
                "<div class='card'>"
                + _img(
                    _png_uri(io.encode_png(np.ascontiguousarray(big[0]))), f"image {g['name']}", 128
                )
                + _img(
                    _png_uri(io.encode_png(np.ascontiguousarray(big[1]))),
                    f"{g['method']} overlay",
                    128,
                )
                + f"<div>{_e(g['name'])}<br>true {_e(g['true'])}, predicted {_e(g['predicted'])} "
                f"({g['probability']:.2f}){_e(energy)}<br>{_e(g['reason'])}</div></div>"
            )
        parts.append("</div>")
    return parts


SECTIONS = (
    _flags_section,
    _accuracy_section,
    _faithfulness_section,
    _localisation_section,
    _sanity_section,
    _gallery_section,
)
"""The report's sections in page order, each ``report -> HTML fragments``."""


def render_html(report: AuditReport) -> str:
    """The self-contained report page (every user string escaped, every image a data: PNG)."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>xai audit report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>xai audit report</h1>",
        f"<p>{report.num_images} images, {len(report.class_names)} classes, methods "
        f"{_e(', '.join(report.methods))} (primary: {_e(report.primary)}), CAM layer "
        f"{_e(', '.join(report.layer) or '-')}, {report.seconds:.1f} s.</p>",
        "<h2>Summary of flags</h2>",
    ]
    for section in SECTIONS:
        parts.extend(section(report))
    parts.append("</body></html>")
    return "\n".join(parts)


__all__ = ["AuditReport", "Flag", "render_html"]
