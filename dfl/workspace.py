"""The layout of one workspace folder, in one place.

DeepFaceLab users know this layout by heart; every step finds its inputs and outputs here, and every
CLI option that names a path only overrides one of these defaults.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dfl.atomic import atomic_write_text
from dfl.errors import DflError

Side = Literal["src", "dst"]
SIDES: tuple[Side, Side] = ("src", "dst")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
ENV_VAR = "DFL_WORKSPACE"
MARKER = ".dfl_workspace"
"""Written into a folder the first time a dfl step works in it; ``dfl clear`` touches no folder without it
(or without frames, faces or models dfl made)."""
CUT_SUFFIX = "_cut"
"""``data_dst.mp4`` cut by ``dfl cut-video`` is ``data_dst_cut.mp4`` (DFL's name)."""
FRAME_NAME = re.compile(r"^\d{5,}\.(png|jpg)$", re.IGNORECASE)
"""The frames dfl (and DeepFaceLab) extract: ``00001.png``, ``00002.jpg`` ...  Only these are ever replaced,
denoised in place or deleted; other images in a frames folder are the user's."""


@dataclass(frozen=True)
class Workspace:
    """Paths of a workspace rooted at ``root``.  Creating one touches nothing on disk."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    # -- folders ---------------------------------------------------------------------------------
    def frames_dir(self, side: Side) -> Path:
        return self.root / f"data_{side}"

    def aligned_dir(self, side: Side) -> Path:
        return self.frames_dir(side) / "aligned"

    def debug_dir(self, side: Side) -> Path:
        return self.frames_dir(side) / "aligned_debug"

    @property
    def data_src(self) -> Path:
        return self.frames_dir("src")

    @property
    def data_dst(self) -> Path:
        return self.frames_dir("dst")

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def merged_dir(self) -> Path:
        return self.data_dst / "merged"

    @property
    def merged_mask_dir(self) -> Path:
        return self.data_dst / "merged_mask"

    @property
    def trash_dir(self) -> Path:
        """Where faces, models, videos and results go instead of being deleted (see :mod:`dfl.trash`)."""
        return self.root / "trash"

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def result(self) -> Path:
        return self.root / "result.mp4"

    @property
    def result_mask(self) -> Path:
        return self.root / "result_mask.mp4"

    # -- videos ----------------------------------------------------------------------------------
    def video(self, side: Side) -> Path | None:
        """``data_<side>.*`` with a video extension, or None.  mp4 wins when several exist."""
        found = [p for p in sorted(self.root.glob(f"data_{side}.*")) if p.suffix.lower() in VIDEO_EXTENSIONS]
        found.sort(key=lambda p: (p.suffix.lower() != ".mp4", p.name))
        return found[0] if found else None

    def input_videos(self) -> list[Path]:
        """Every ``data_src.*``/``data_dst.*`` video: the footage no dfl command ever writes over."""
        return [p for side in SIDES for p in sorted(self.root.glob(f"data_{side}.*"))
                if p.suffix.lower() in VIDEO_EXTENSIONS]

    def cut_videos(self) -> list[Path]:
        """The cuts ``dfl cut-video`` (and DFL's cut step) wrote of the input videos: ``data_<side>_cut.*``.
        dfl's own videos, not the user's footage: ``dfl clear --videos`` moves them to the trash too."""
        return [p for side in SIDES for p in sorted(self.root.glob(f"data_{side}{CUT_SUFFIX}.*"))
                if p.suffix.lower() in VIDEO_EXTENSIONS]

    def require_video(self, side: Side) -> Path:
        video = self.video(side)
        if video is None:
            raise DflError(f"{self.root / f'data_{side}.mp4'}: no data_{side} video in the workspace")
        return video

    # -- checks ----------------------------------------------------------------------------------
    def check_usable(self) -> None:
        """Raise a one-line DflError when the root exists but is not a folder."""
        if self.root.exists() and not self.root.is_dir():
            raise DflError(f"{self.root}: workspace path is a file, not a folder")

    def mark(self) -> None:
        """Record that dfl works in this folder (see MARKER); a step calls it once it has written here."""
        if self.root.is_dir() and not self.marker.exists():
            with contextlib.suppress(OSError):  # best effort: the step itself has succeeded
                atomic_write_text(self.marker, '{"dfl_workspace": 1}\n')


def list_images(folder: Path) -> list[Path]:
    """Image files of ``folder`` (not recursive), sorted by name (frames are zero-padded)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def list_frames(folder: Path) -> list[Path]:
    """The numbered frames of ``folder`` (see FRAME_NAME), sorted: what dfl may replace or delete there."""
    return [p for p in list_images(folder) if FRAME_NAME.match(p.name)]
