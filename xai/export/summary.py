"""The result of an export: counts, throughput, settings and the exit code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# ------------------------------------------------------------------------------------ summary


@dataclass(frozen=True)
class ExportSummary:
    """What an export run did.

    Attributes:
        output_dir: the output folder.
        manifest_path: ``output_dir/manifest.jsonl``.
        summary_path: ``output_dir/summary.json``.
        total: input files found (images and others).
        ok: images explained, in this run or an earlier one.
        failed: image files that could not be explained (status ``"error"``).
        skipped: files that are not images, hidden files, symbolic-link loops...
        already_done: images skipped because an earlier run had explained them.
        processed: images explained or attempted in this run.
        elapsed_s: wall time of this run, seconds.
        images_per_s: ``processed / elapsed_s``.
        failures: up to 20 ``(path, reason)`` of failed images.
    """

    output_dir: Path
    manifest_path: Path
    summary_path: Path
    total: int
    ok: int
    failed: int
    skipped: int
    already_done: int
    processed: int
    elapsed_s: float
    images_per_s: float
    failures: tuple[tuple[str, str], ...] = ()

    @property
    def exit_code(self) -> int:
        """0 when no image failed, 1 otherwise (the command line's exit status)."""
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "output_dir": str(self.output_dir),
            "total": self.total,
            "ok": self.ok,
            "failed": self.failed,
            "skipped": self.skipped,
            "already_done": self.already_done,
            "processed": self.processed,
            "elapsed_s": round(self.elapsed_s, 3),
            "images_per_s": round(self.images_per_s, 2),
            "failures": [{"path": p, "error": e} for p, e in self.failures],
        }

    def __str__(self) -> str:
        text = (
            f"{self.ok} of {self.total} files explained ({self.failed} failed, {self.skipped} "
            f"skipped, {self.already_done} already done) in {self.elapsed_s:.1f} s "
            f"({self.images_per_s:.1f} images/s) -> {self.manifest_path}"
        )
        return text
