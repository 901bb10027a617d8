"""Progress: a tqdm bar (a widget in Jupyter, text on stderr elsewhere) or nothing."""

from __future__ import annotations

import sys
from typing import Any

#: tqdm's default layout with the remaining time named: ``ETA 0:01:05``
BAR_FORMAT = ("{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, ETA {remaining}, "
              "{rate_fmt}{postfix}]")


class NullProgress:
    """The progress hook that shows nothing."""

    def update(self, record: dict[str, Any]) -> None:
        """Take a finished mini-batch's record."""

    def note(self, text: str) -> None:
        """Show a line of information (the dashboard link) above the bar."""

    def refresh(self) -> None:
        """Redraw (elapsed time and ETA move on while no mini-batch ends)."""

    def close(self) -> None:
        """End the display."""


class BarProgress(NullProgress):
    """Mini-batches done/total, failed items and mini-batches, and the rate."""

    def __init__(self, total: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="mini-batch", file=sys.stderr, dynamic_ncols=True,
                        desc="daskprs", bar_format=BAR_FORMAT,
                        postfix={"failed_items": 0, "failed_mini_batches": 0})
        self.failed_items = 0
        self.failed_batches = 0

    def update(self, record: dict[str, Any]) -> None:
        """Advance by one mini-batch."""
        self.failed_items += record["failed"]
        self.failed_batches += record["status"] == "failed"
        self.bar.set_postfix(failed_items=self.failed_items,
                             failed_mini_batches=self.failed_batches, refresh=False)
        self.bar.update(1)

    def refresh(self) -> None:
        """Redraw the bar."""
        self.bar.refresh()

    def note(self, text: str) -> None:
        """Print a line above the bar (in a notebook: above the widget)."""
        self.bar.write(text, file=sys.stderr)

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()


def make_progress(total: int, enabled: bool) -> NullProgress:
    """A bar when ``enabled``, else the null hook."""
    return BarProgress(total) if enabled else NullProgress()
