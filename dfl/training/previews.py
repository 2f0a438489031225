"""What the user watches while a model trains: the preview grid (preview.png, an optional OpenCV window)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

from dfl.atomic import atomic_write_bytes

PREVIEW_SHARE = 0.02   # of the training time, at most, spent refreshing the preview files


def preview_period(seconds: float, cost: float) -> float:
    """Seconds until the next preview refresh: ``seconds``, or longer when one refresh (``cost`` seconds:
    three predictions, the grid and the loss plot) would take more than ``PREVIEW_SHARE`` of the time.
    SAEHD 128 on 2 CPU cores spends ~0.6 s per refresh, which every 15 s was 4% of its training time; DFL
    itself renders previews only when saving or asked to."""
    return max(seconds, cost / PREVIEW_SHARE)


def preview_grid(columns: list[torch.Tensor]) -> np.ndarray:
    """The model's preview columns (NCHW in [0, 1]; e.g. src, src recon, dst, dst recon, swap) as one BGR
    uint8 image: a row per sample, every column at the first one's size, masks (one channel) in grey."""
    cols = [c.detach().float().clamp(0, 1).cpu() for c in columns]
    r = cols[0].shape[-1]
    cols = [torch.nn.functional.interpolate(c, size=(r, r), mode="bilinear", align_corners=False)
            if c.shape[-1] != r else c for c in cols]
    cols = [c.expand(-1, 3, -1, -1) if c.shape[1] == 1 else c for c in cols]
    grid = torch.cat([torch.cat(list(c), dim=1) for c in cols], dim=2)   # C x (N*r) x (columns*r)
    return (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def write_png(path: Path, img: np.ndarray) -> None:
    """``img`` as a PNG, atomically (a reader never sees half a preview); OSError when it cannot be."""
    import cv2
    ok, buf = cv2.imencode(".png", img)
    if ok:
        atomic_write_bytes(path, buf.tobytes())


class PreviewWindow:
    """An OpenCV window with the preview grid; 'q' or Esc stops training (after a save)."""

    def __init__(self) -> None:
        import cv2
        self.cv2 = cv2
        self.ok = True
        self._quit = False
        headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
        if headless:   # OpenCV's Qt backend aborts the process without a display: never try
            self.ok = False
            from tqdm import tqdm
            tqdm.write("--preview-window: no display here; the preview is still written to preview.png")
            return
        try:
            cv2.namedWindow("dfl train preview", cv2.WINDOW_NORMAL)
        except cv2.error:
            self.ok = False

    def show(self, img: np.ndarray) -> None:
        if self.ok:
            try:
                self.cv2.imshow("dfl train preview", img)
            except self.cv2.error:
                self.ok = False

    def quit_requested(self) -> bool:
        if not self.ok:
            return False
        key = self.cv2.waitKey(1) & 0xFF
        self._quit = self._quit or key in (ord("q"), 27)
        return self._quit

    def close(self) -> None:
        if self.ok:
            try:
                self.cv2.destroyWindow("dfl train preview")
            except self.cv2.error:
                pass
