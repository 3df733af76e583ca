"""The ``--output`` directory of ``tinkex train``: what a run leaves behind for people and tools.

* ``metrics.jsonl``: one JSON object per finished step (appended as the run goes, so a
  crash loses nothing already written; a resumed run appends to it);
* ``checkpoints.json``: the final (or interrupted) checkpoint paths and every checkpoint
  saved on the way, rewritten after each save;
* ``samples.jsonl``: the samples printed at the end, one ``{"prompt", "completion"}`` per line;
* ``loss.png``: the loss curve of every step in ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .plot import write_line_chart

__all__ = ["RunDirectory"]

METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints.json"
SAMPLES = "samples.jsonl"
LOSS_CURVE = "loss.png"


class RunDirectory:
    """The files of one run (or of a run and its resumptions) in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def samples(self) -> Path:
        return self.path / SAMPLES

    @property
    def loss_curve(self) -> Path:
        return self.path / LOSS_CURVE

    def prepare(self, *, resuming: bool) -> None:
        """Create the directory; refuse to mix a new run into an old one's files.

        Raises:
            FileExistsError: ``metrics.jsonl`` exists and this is not a resumed run.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        if not resuming and self.metrics.exists():
            raise FileExistsError(
                f"{self.path} already holds a training run ({METRICS}); pass another "
                "--output, or --resume a checkpoint of that run to continue it there"
            )

    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")

    def losses(self) -> list[tuple[float, float]]:
        """``(step, loss)`` of every line of ``metrics.jsonl`` that has both."""
        if not self.metrics.exists():
            return []
        points = []
        for line in self.metrics.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            step, loss = record.get("step"), record.get("loss")
            if isinstance(step, int | float) and isinstance(loss, int | float):
                points.append((float(step), float(loss)))
        return points

    def previous_checkpoints(self) -> list[dict[str, Any]]:
        """The checkpoints an earlier invocation recorded here (kept when resuming)."""
        if not self.checkpoints.exists():
            return []
        saved = json.loads(self.checkpoints.read_text(encoding="utf-8")).get("checkpoints", [])
        return [entry for entry in saved if isinstance(entry, dict)]

    def write_checkpoints(self, summary: dict[str, Any]) -> None:
        """Replace ``checkpoints.json`` atomically (a reader never sees half a file)."""
        partial = self.checkpoints.with_suffix(".json.partial")
        partial.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        os.replace(partial, self.checkpoints)

    def write_samples(self, samples: list[dict[str, str]]) -> None:
        with self.samples.open("w", encoding="utf-8") as out:
            for sample in samples:
                out.write(json.dumps(sample) + "\n")

    def plot_loss(self) -> None:
        points = self.losses()
        if points:
            write_line_chart(self.loss_curve, points)
