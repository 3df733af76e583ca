"""The progress of a training run on stderr: one rewritten line on a terminal, plain lines
otherwise (a log file or a pipe gets one line per step, which a reader can wait for)."""

from __future__ import annotations

import sys
from typing import TextIO

import click

__all__ = ["StepProgress"]


class StepProgress:
    """Reports each finished step with its loss and throughput."""

    def __init__(self, total: int, *, stream: TextIO | None = None) -> None:
        self.total = total
        self._stream = stream
        self._width = len(str(total))
        self._shown = 0
        """Length of the progress line open on the terminal (0: none)."""

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    @property
    def on_terminal(self) -> bool:
        return self.stream.isatty()

    def step(self, step: int, loss: float, tokens_per_second: float) -> None:
        """Show that ``step`` finished with ``loss`` (per trained token)."""
        done = step / self.total
        text = (
            f"step {step:>{self._width}}/{self.total}  loss {loss:.4f}  "
            f"{tokens_per_second:,.0f} tokens/s"
        )
        if self.on_terminal:
            bar = "#" * round(20 * done)
            line = f"[{bar:<20}] {text}"
            # padded over the previous line, which may have been longer (more tokens/s)
            click.echo(f"\r{line:<{self._shown}}", nl=False, file=self.stream)
            self._shown = len(line)
        else:
            click.echo(text, file=self.stream)

    def note(self, message: str) -> None:
        """A message on a line of its own (ending the progress line first)."""
        self.end()
        click.echo(message, file=self.stream)

    def end(self) -> None:
        if self._shown:
            click.echo("", file=self.stream)
            self._shown = 0
