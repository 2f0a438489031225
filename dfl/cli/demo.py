"""``dfl demo``: write the offline demo workspace (two animated public-domain portraits)."""

from __future__ import annotations

import click

from dfl.cli import cli
from dfl.cli.options import workspace_option
from dfl.demo import DEMO_FPS, DEMO_SECONDS, make_demo_workspace
from dfl.video import probe
from dfl.workspace import Workspace


@cli.command("demo")
@workspace_option
@click.option("--overwrite", is_flag=True, help="Replace data_src.*/data_dst.* videos already in the workspace.")
@click.option("--seconds", type=click.FloatRange(min=0.2, max=60), default=DEMO_SECONDS, show_default=True,
              help="Length of each demo video.")
def demo_command(workspace: Workspace, overwrite: bool, seconds: float) -> None:
    """Write a demo workspace: data_src.mp4 and data_dst.mp4, no download needed.

    data_src.mp4 animates scikit-image's astronaut photo, data_dst.mp4 matplotlib's Grace Hopper photo
    (both public domain) with head motion and lighting changes; data_dst.mp4 has an audio tone.
    Then run the steps in order on this workspace.
    """
    ws = make_demo_workspace(workspace.root, seconds=seconds, fps=DEMO_FPS, overwrite=overwrite)
    for side, who in (("src", "astronaut"), ("dst", "Grace Hopper")):
        info = probe(ws.require_video(side))
        click.echo(f"demo: data_{side}.mp4 ({who}, {info.width}x{info.height}, {info.estimated_frames} frames at "
                   f"{float(info.fps):g} fps{', audio' if info.has_audio else ''}) -> {ws.root}")
