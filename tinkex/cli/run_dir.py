"""The ``--output`` directory of ``tinkex train``: what a run leaves behind for people and tools.

* ``metrics.jsonl``: one JSON object per finished step (appended as the run goes, so a
  crash loses nothing already written; a resumed run drops the steps after its checkpoint,
  then appends);
* ``checkpoints.json``: the final (or interrupted) checkpoint paths and every checkpoint
  saved on the way, rewritten after each save;
* ``samples.jsonl``: the samples printed at the end, one ``{"prompt", "completion"}`` per line;
* ``loss.png``: the loss curve of every step in ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .output import write_result_file
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
        self._created: list[Path] = []
        """The directories :meth:`prepare` created, deepest first."""

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
        missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        self._created = missing
        if not resuming and self.metrics.exists():
            raise FileExistsError(
                f"{self.path} already holds a training run ({METRICS}); pass another "
                "--output, or --resume a checkpoint of that run to continue it there"
            )

    def discard_if_unused(self) -> None:
        """Remove the directories :meth:`prepare` created that are still empty (a run that
        failed before it wrote anything leaves no trace)."""
        for directory in self._created:
            try:
                directory.rmdir()
            except OSError:  # not empty (or gone): it and its parents stay
                return
        self._created = []

    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")

    def losses(self) -> list[tuple[float, float]]:
        """``(step, loss)`` of every line of ``metrics.jsonl`` that has both."""
        points = []
        for record in self._metric_records():
            step, loss = record.get("step"), record.get("loss")
            if isinstance(step, int | float) and isinstance(loss, int | float):
                points.append((float(step), float(loss)))
        return points

    def rewind(self, step: int) -> list[dict[str, Any]]:
        """Forget the steps after ``step``, which a run resumed from there trains again.

        A run that stopped after its last checkpoint (a crash, a timeout) logged steps that
        checkpoint does not hold, and may have left half a line; both go, so the metrics
        and the curve describe one run. Returns the checkpoints an earlier invocation
        recorded here up to ``step``.
        """
        kept = [r for r in self._metric_records() if _step_of(r) <= step]
        if self.metrics.exists():
            write_result_file(self.metrics, "".join(json.dumps(r) + "\n" for r in kept))
        if not self.checkpoints.exists():
            return []
        try:
            saved = json.loads(self.checkpoints.read_text(encoding="utf-8")).get("checkpoints")
        except (json.JSONDecodeError, AttributeError):
            return []
        entries = saved if isinstance(saved, list) else []
        return [e for e in entries if isinstance(e, dict) and _step_of(e) <= step]

    def _metric_records(self) -> list[dict[str, Any]]:
        """The JSON objects of ``metrics.jsonl``; a line cut short by a crash is skipped."""
        if not self.metrics.exists():
            return []
        records = []
        for line in self.metrics.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def write_checkpoints(self, summary: dict[str, Any]) -> None:
        """Replace ``checkpoints.json`` atomically (a reader never sees half a file)."""
        write_result_file(self.checkpoints, json.dumps(summary, indent=2) + "\n")

    def write_samples(self, samples: list[dict[str, str]]) -> None:
        with self.samples.open("w", encoding="utf-8") as out:
            for sample in samples:
                out.write(json.dumps(sample) + "\n")

    def plot_loss(self) -> None:
        points = self.losses()
        if points:
            write_line_chart(self.loss_curve, points)


def _step_of(record: dict[str, Any]) -> float:
    """The ``step`` of a metrics or checkpoint record (infinite when it has none)."""
    step = record.get("step")
    return float(step) if isinstance(step, int | float) else math.inf
