"""``dfl demo --run``: DeepFaceLab's whole workflow on the demo workspace, in one process, on any OS.

demo videos -> clear -> extract frames (src, dst) -> extract faces (src, dst) -> train Quick96 for a few
minutes (or N iterations) -> merge (overlay, learned-prd*learned-dst, rct) -> result.mp4 with the dst's
audio and the synthetic-media mark.  It calls the same core functions as the step commands (no shell,
so it works where bash does not), with their non-interactive defaults, and prints each step's one-line
summary.  A few minutes of Quick96 only show that every step works; a real swap trains for hours.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click

from dfl.demo import DEMO_FPS, DEMO_SECONDS, is_demo_workspace, make_demo_workspace
from dfl.errors import DflError
from dfl.workspace import SIDES, Workspace

DEFAULT_MINUTES = 5.0
MODEL_NAME = "demo"
Echo = Callable[[str], None]


@dataclass
class DemoRunOptions:
    """How long and how big; the defaults make a run of about ``minutes`` plus a minute on a laptop CPU."""

    minutes: float | None = DEFAULT_MINUTES    # training time budget; None: no time limit
    iterations: int | None = None              # training iteration target; None: none (whichever first)
    seconds: float = DEMO_SECONDS              # length of each demo video
    image_size: int = 256                      # aligned faces' side (Quick96 trains at 96 px)
    device: str = "auto"
    workers: int | None = None                 # training sample processes (None: half the cores)
    seed: int | None = None
    overwrite: bool = False                    # replace videos that are not the demo's and clear anyway

    def validate(self) -> "DemoRunOptions":
        if self.minutes is None and not self.iterations:
            raise DflError("demo --run: give a training time (--minutes) or an iteration target (--iterations)")
        if self.minutes is not None and self.minutes <= 0:
            raise DflError(f"--minutes {self.minutes:g}: must be more than 0")
        if self.iterations is not None and self.iterations < 1:
            raise DflError(f"--iterations {self.iterations}: must be 1 or more")
        return self


def check_target(ws: Workspace, overwrite: bool = False) -> None:
    """Refuse a folder holding someone's own work: the run replaces the videos and clears the rest
    (with ``overwrite`` it goes ahead: the user's videos go to trash/, models stay).

    A missing or empty folder (dot files and a README aside) and a workspace this module made are fine.
    """
    ws.check_usable()
    if overwrite or not ws.root.is_dir() or is_demo_workspace(ws.root):
        return
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in ws.root.iterdir()
                   if not (p.name.startswith(".") or p.name.lower().startswith("readme")))
    if found:
        shown = ", ".join(found[:6]) + (", ..." if len(found) > 6 else "")
        raise DflError(f"{ws.root}: holds {shown}, not the demo's; dfl demo --run replaces the videos and "
                       "clears the workspace, so give it another --workspace (or pass --overwrite: your videos "
                       "and faces then go to trash/)")


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"


# -- the steps, each one summary line --------------------------------------------------------------
def step_videos(ws: Workspace, seconds: float, echo: Echo) -> None:
    """The demo's data_src.mp4 (astronaut) and data_dst.mp4 (Grace Hopper, audio tone)."""
    from dfl.text import plural
    from dfl.video import probe

    make_demo_workspace(ws.root, seconds=seconds, fps=DEMO_FPS, overwrite=True)
    for side, who in (("src", "astronaut"), ("dst", "Grace Hopper")):
        info = probe(ws.require_video(side))
        echo(f"demo: data_{side}.mp4 ({who}, {info.width}x{info.height}, {plural(info.estimated_frames or 0, 'frame')} at "
             f"{float(info.fps):g} fps{', audio' if info.has_audio else ''})")


def step_clear(ws: Workspace, echo: Echo) -> None:
    """Step 1, keeping the videos and the model a previous run trained (training continues it)."""
    from dfl.clear import clear_workspace

    echo(clear_workspace(ws).line(ws.root))


def step_extract_frames(ws: Workspace, side: str, echo: Echo) -> int:
    """Steps 2 and 3: every frame as png (dst at full rate, as merging needs)."""
    from dfl.text import plural
    from dfl.video import extract_frames, probe

    info = probe(ws.require_video(side))  # type: ignore[arg-type]
    out = ws.frames_dir(side)  # type: ignore[arg-type]
    n = extract_frames(info.path, out, fps=0, fmt="png", overwrite=True, desc=f"Extracting {info.path.name}")
    echo(f"extract-frames {side}: {plural(n, 'frame')} (png, full rate, {info.width}x{info.height}) -> {out}")
    return n


def step_extract_faces(ws: Workspace, side: str, opts: DemoRunOptions, echo: Echo) -> int:
    """Steps 4 and 5 with the extractor's defaults (whole face, debug images for dst), one face a frame."""
    from dfl.device import pick_device, use_all_cores
    from dfl.extract import ExtractOptions, extract_faces
    from dfl.faces.align import FaceType
    from dfl.faces.registry import get_backends
    from dfl.faces.weights import weights_dir

    use_all_cores()
    dev = pick_device(opts.device)
    backends = get_backends("auto", "auto", dev, weights_dir(None))
    xopts = ExtractOptions(face_type=FaceType.WHOLE_FACE, image_size=opts.image_size, max_faces=1,
                           output_debug=side == "dst", overwrite=True)
    aligned = ws.aligned_dir(side)  # type: ignore[arg-type]
    summary = extract_faces(ws.frames_dir(side), aligned, backends.detector, backends.landmarker,  # type: ignore[arg-type]
                            xopts, debug_dir=ws.debug_dir(side), trash_dir=ws.trash_dir)  # type: ignore[arg-type]
    echo(f"{summary.line(side)} on {dev.type} -> {aligned}")
    if summary.faces == 0:
        raise DflError(f"{aligned}: no face found in data_{side}; nothing to train on")
    return summary.faces


def step_train(ws: Workspace, opts: DemoRunOptions, echo: Echo) -> Path:
    """Step 6: the demo's model (the registry's small preset, Quick96) "demo", stopped by the clock or the
    iteration target; a rerun continues the model an earlier run trained (move ``model/demo_<Model>`` away
    to start over)."""
    from dfl.models.registry import demo_model
    from dfl.training.session import SessionRequest, train

    req = SessionRequest(model_dir=ws.model_dir, src_dir=ws.aligned_dir("src"), dst_dir=ws.aligned_dir("dst"),
                         model_type=demo_model().name, name=MODEL_NAME, config={}, interactive=False)
    ws.model_dir.mkdir(parents=True, exist_ok=True)
    settings = dict(target_iter=opts.iterations or 0, device=opts.device, workers=opts.workers, seed=opts.seed,
                    preview_seconds=60.0)
    limit = 60.0 * opts.minutes if opts.minutes is not None else None
    result, path = train(req, settings, time_limit_s=limit)
    if not result.saved and result.steps == 0:
        echo(f"train: {path.name} is already at iteration {result.iteration} (--iterations {opts.iterations}): "
             f"nothing to train -> {path}")
        return path
    losses = " ".join(f"{k} {v:.4f}" for k, v in result.losses.items())
    echo(f"train: {path.name} to iteration {result.iteration} ({result.ms_per_iter:.0f} ms/iteration; {losses}) "
         f"-> {path}")
    return path


def step_merge(ws: Workspace, model_path: Path, opts: DemoRunOptions, echo: Echo) -> int:
    """Step 7, non-interactive: overlay, learned-prd*learned-dst mask, rct colour transfer."""
    from dfl.merge.config import MergeConfig
    from dfl.merge.frames import merge_context, prepare_merge

    cfg = MergeConfig(mode="overlay", mask_mode="learned-prd*learned-dst", color_transfer_mode="rct")
    ctx = prepare_merge(ws, model_path, device=opts.device)
    summary = merge_context(ctx, cfg, force=True)
    echo(f"merge: {summary.line(ws.merged_dir)}")
    return summary.merged + summary.copied


def step_video(ws: Workspace, echo: Echo) -> Path:
    """Step 8: result.mp4 (and result_mask.mp4) at data_dst's rate with its audio, labelled synthetic."""
    from dfl.imageops.synthetic_label import video_metadata
    from dfl.text import plural
    from dfl.video import frames_to_video, probe
    from dfl.workspace import list_images

    ref = ws.require_video("dst")
    info = probe(ref)
    n = frames_to_video(ws.merged_dir, ws.result, fps=info.fps, audio_from=ref, metadata=video_metadata(),
                        desc=f"Writing {ws.result.name}")
    out = probe(ws.result)
    echo(f"video: {plural(n, 'frame')} at {float(out.fps):g} fps{' with audio' if out.has_audio else ''} -> {ws.result}")
    if list_images(ws.merged_mask_dir):
        n_mask = frames_to_video(ws.merged_mask_dir, ws.result_mask, fps=info.fps, metadata=video_metadata(),
                                 desc=f"Writing {ws.result_mask.name}")
        echo(f"video: {plural(n_mask, 'mask frame')} -> {ws.result_mask}")
    return ws.result


def run_demo(root: Path, opts: DemoRunOptions | None = None, echo: Echo = click.echo) -> Path:
    """Make the demo workspace at ``root`` and run every step on it; returns the path of result.mp4."""
    from dfl.device import pick_device

    opts = (opts or DemoRunOptions()).validate()
    ws = Workspace(Path(root))
    check_target(ws, opts.overwrite)
    pick_device(opts.device)   # a device this machine lacks: said before the workspace is cleared
    start = time.perf_counter()
    step_videos(ws, opts.seconds, echo)
    step_clear(ws, echo)
    for side in SIDES:
        step_extract_frames(ws, side, echo)
    for side in SIDES:
        step_extract_faces(ws, side, opts, echo)
    model_path = step_train(ws, opts, echo)
    step_merge(ws, model_path, opts, echo)
    result = step_video(ws, echo)
    echo(f"demo: done in {_clock(time.perf_counter() - start)}; the swapped video is {result}")
    return result
