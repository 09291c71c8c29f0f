"""A tiny progress bar for long one-shot commands, drawn only when stderr is a terminal.

>>> import io
>>> with ProgressBar(3, label="frames", stream=io.StringIO()) as bar:
...     for _ in range(3):
...         bar.advance()
>>> bar.done
3
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Self, TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """``[#####.....] 5/10 frames 1.2 s/it`` on one line of ``stream`` (stderr), TTY only.

    Nothing at all is written when ``stream`` is not a terminal, so logs and pipes
    stay clean. Use :meth:`write` to print a line above the bar without garbling it.
    """

    def __init__(
        self, total: int, *, label: str = "", stream: TextIO | None = None, width: int = 30
    ) -> None:
        self.total = max(int(total), 0)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.done = 0
        self._start = time.monotonic()
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(isatty and isatty()) and self.total > 1

    def __enter__(self) -> Self:
        self._draw()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more items done and redraw."""
        self.done = min(self.done + n, self.total)
        self._draw()

    def write(self, line: str, stream: TextIO | None = None) -> None:
        """Print ``line`` (to ``stream``, default stdout) without breaking the bar."""
        out = stream if stream is not None else sys.stdout
        if self.enabled:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
        print(line, file=out, flush=True)
        self._draw()

    def close(self) -> None:
        """Erase the bar."""
        if self.enabled:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self.enabled = False

    def _draw(self) -> None:
        if not self.enabled:
            return
        frac = self.done / self.total if self.total else 1.0
        filled = round(frac * self.width)
        elapsed = time.monotonic() - self._start
        rate = f" {elapsed / self.done:.2f} s/it" if self.done else ""
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} {self.label}{rate}")
        self.stream.flush()
