"""`Progress`: the progress of a long job over a count of items (vis.py's images)."""

from __future__ import annotations

import sys
import time

from absl import logging


class Progress:
    """Progress of a job over `target` items (None: unknown): a Keras progress bar on a
    terminal; elsewhere (logs, pipes) one log line per tenth of the work, so a captured log
    never grows one endless line of bar updates."""

    def __init__(self, target, unit: str):
        self.target, self.unit = target, unit
        self.start = time.monotonic()
        self.reported = 0
        self.bar = None
        if sys.stdout.isatty():
            import keras

            self.bar = keras.utils.Progbar(target, unit_name=unit)

    def _log(self, count: int) -> None:
        rate = count / max(time.monotonic() - self.start, 1e-9)
        total = f"/{self.target}" if self.target else ""
        logging.info("%d%s %ss (%.2f %ss/s)", count, total, self.unit, rate, self.unit)
        self.reported = count

    def update(self, count: int) -> None:
        """`count` items are done."""
        if self.bar is not None:
            self.bar.update(count)
            return
        every = max(1, self.target // 10) if self.target else 50
        if count - self.reported >= every or count == self.target:
            self._log(count)

    def finish(self, count: int) -> None:
        """The work stopped at `count` items (possibly short of the target)."""
        if self.bar is not None:
            if self.target is None or count < self.target:
                self.bar.update(count, finalize=True)
        elif count != self.reported:
            self._log(count)
