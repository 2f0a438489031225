"""``dfl demo``: write the offline demo workspace (two animated public-domain portraits); ``--run`` also
runs every step on it."""

from __future__ import annotations

import click

from dfl.cli import cli
from dfl.cli.options import workspace_option
from dfl.demo import DEMO_FPS, DEMO_SECONDS, make_demo_workspace
from dfl.errors import DflError
from dfl.text import plural
from dfl.video import probe
from dfl.workspace import Workspace


@cli.command("demo")
@workspace_option
@click.option("--overwrite", is_flag=True,
              help="Replace data_src.*/data_dst.* videos already in the workspace (with --run: also clear a "
                   "workspace that is not the demo's).")
@click.option("--seconds", type=click.FloatRange(min=0.2, max=60), default=DEMO_SECONDS, show_default=True,
              help="Length of each demo video.")
@click.option("--run", "run_all", is_flag=True,
              help="Then run the whole workflow on it: clear, extract frames and faces, train Quick96, merge, "
                   "result.mp4.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="--run: train for this many minutes  [default: 5, or none with --iterations]")
@click.option("--iterations", type=click.IntRange(min=1), default=None,
              help="--run: train to this iteration (with --minutes: whichever comes first).")
@click.option("--image-size", type=click.IntRange(64, 1024), default=256, show_default=True,
              help="--run: side of the aligned faces in pixels.")
@click.option("--device", default="auto", show_default=True, help="--run: auto (CUDA, MPS, CPU), cpu, cuda, ...")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="--run: training sample processes (0: in the main process)  [default: half the cores]")
@click.option("--seed", type=int, default=None, help="--run: seed for the weights and samples.")
def demo_command(workspace: Workspace, overwrite: bool, seconds: float, run_all: bool, minutes: float | None,
                 iterations: int | None, image_size: int, device: str, workers: int | None,
                 seed: int | None) -> None:
    """Write a demo workspace: data_src.mp4 and data_dst.mp4, no download needed.

    data_src.mp4 animates scikit-image's astronaut photo, data_dst.mp4 matplotlib's Grace Hopper photo
    (both public domain) with head motion and lighting changes; data_dst.mp4 has an audio tone.
    Then run the steps in order on this workspace, or pass --run to run them all: clear, extract-frames
    src/dst, extract-faces src/dst, train Quick96 "demo" for a few minutes, merge (overlay, rct), video.
    """
    if run_all:
        from dfl.demo_run import DEFAULT_MINUTES, DemoRunOptions, run_demo

        if minutes is None and iterations is None:
            minutes = DEFAULT_MINUTES
        run_demo(workspace.root, DemoRunOptions(minutes=minutes, iterations=iterations, seconds=seconds,
                                                image_size=image_size, device=device, workers=workers, seed=seed,
                                                overwrite=overwrite))
        return
    ctx = click.get_current_context()
    given = [f"--{p.replace('_', '-')}" for p in ("minutes", "iterations", "image_size", "device", "workers", "seed")
             if ctx.get_parameter_source(p) == click.core.ParameterSource.COMMANDLINE]
    if given:
        raise DflError(f"{given[0]}: only with --run")
    ws = make_demo_workspace(workspace.root, seconds=seconds, fps=DEMO_FPS, overwrite=overwrite)
    for side, who in (("src", "astronaut"), ("dst", "Grace Hopper")):
        info = probe(ws.require_video(side))
        click.echo(f"demo: data_{side}.mp4 ({who}, {info.width}x{info.height}, "
                   f"{plural(info.estimated_frames or 0, 'frame')} at "
                   f"{float(info.fps):g} fps{', audio' if info.has_audio else ''}) -> {ws.root}")
