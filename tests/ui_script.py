"""A scripted UI for the OpenCV tools (manual extractor, XSeg editor): tests drive them headlessly."""

from __future__ import annotations

import numpy as np


class Script:
    """A UI that plays batches of events, one batch per poll, then reports the window closed; what the tool
    showed is kept in ``shown``."""

    def __init__(self, *batches: list) -> None:
        self.batches = list(batches)
        self.shown: list[np.ndarray] = []

    def show(self, image: np.ndarray) -> None:
        self.shown.append(image)

    def events(self) -> list | None:
        return self.batches.pop(0) if self.batches else None

    def close(self) -> None:
        pass
