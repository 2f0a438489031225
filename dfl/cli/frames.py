"""Steps 1-3 and 8: clear the workspace, video -> frames, cut, denoise, merged frames -> video."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dfl import clear as clearing
from dfl import video as vid
from dfl.cli import cli
from dfl.cli.options import side_argument, workspace_option
from dfl.errors import DflError
from dfl.imageops.synthetic_label import video_metadata
from dfl.text import plural
from dfl.workspace import Workspace, list_frames, list_images


def _interactive() -> bool:
    """A person can answer a prompt (stdin is a terminal); otherwise prompts would hang or read garbage."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except Exception:  # noqa: BLE001 - a replaced/closed stdin is not a person
        return False


def _rate(fps: float) -> str:
    return "full rate" if not fps else f"{fps:g} fps"


@cli.command("clear")
@workspace_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--models", is_flag=True, help="Also move the models in model/ to trash/ (never deleted).")
@click.option("--videos", is_flag=True, help="Also move the data_src.* and data_dst.* videos, and their cuts "
                                             "(data_dst_cut.mp4 ...), to trash/.")
def clear_command(workspace: Workspace, yes: bool, models: bool, videos: bool) -> None:
    """Step 1: clear workspace.

    Deletes what the steps generated and can generate again: the numbered frames in data_src/ and
    data_dst/, aligned_debug/, merged/ and merged_mask/.  Moves the faces (aligned/), result.mp4 and
    result_mask.mp4 to trash/<date_time>/; models stay unless --models, videos (data_src.*, data_dst.* and
    their cuts data_*_cut.*) unless --videos (both then go to trash/ too).  Other files are left alone.  Refuses a folder that is not a dfl workspace.
    """
    plan = clearing.clear_targets(workspace, models=models, videos=videos)
    if not plan:
        kept = f" ({plan.describe(workspace.root)})" if plan.kept_models else ""
        click.echo(f"clear: {workspace.root} has nothing to clear{kept}")
        return
    if not yes:
        what = plan.describe(workspace.root)
        if not _interactive():
            raise DflError(f"{workspace.root}: would {what}; pass --yes to confirm without a prompt")
        if not click.confirm(f"In {workspace.root}: {what}?", default=False):
            click.echo("clear: nothing changed")
            return
    res = clearing.clear_workspace(workspace, models=models, videos=videos)
    click.echo(res.line(workspace.root))


@cli.command("extract-frames")
@side_argument
@workspace_option
@click.option("--input", "-i", "input_path", type=click.Path(path_type=Path), default=None,
              help="Video to read instead of the workspace's data_<side>.* video.")
@click.option("--output", "-o", "output_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for the frames instead of data_<side>/.")
@click.option("--fps", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Frames per second of video to extract; 0 = every frame (the video's own rate).")
@click.option("--format", "fmt", type=click.Choice(["png", "jpg"]), default="png", show_default=True,
              help="png is lossless; jpg (best quality) is about 10x smaller and faster to write.")
@click.option("--overwrite", is_flag=True, help="Replace the numbered frames already in the folder without asking "
                                                 "(other files there are never touched).")
def extract_frames_command(side: str, workspace: Workspace, input_path: Path | None, output_dir: Path | None,
                           fps: float, fmt: str, overwrite: bool) -> None:
    """Steps 2 and 3: extract images from video data_src / data_dst.

    Writes numbered frames (00001.png, ...) into data_src/ or data_dst/, upright even for phone videos
    stored sideways.  Use the full frame rate for dst: every dst frame is merged.  Only numbered frames
    are ever replaced; other images in the folder are left alone.
    """
    video = input_path if input_path is not None else workspace.require_video(side)  # type: ignore[arg-type]
    out = output_dir if output_dir is not None else workspace.frames_dir(side)  # type: ignore[arg-type]
    info = vid.probe(video)
    existing = list_frames(out) if out.is_dir() else []
    if existing and not overwrite:
        if not _interactive():
            raise DflError(f"{out}: already holds {len(existing)} frames; pass --overwrite to replace them")
        if not click.confirm(f"{out} already holds {len(existing)} frames. Replace them?",
                             default=False):
            click.echo(f"extract-frames {side}: kept the existing frames")
            return
        overwrite = True
    n = vid.extract_frames(info.path, out, fps=fps, fmt=fmt, overwrite=overwrite,
                           desc=f"Extracting {info.path.name}")
    if out.absolute() == workspace.frames_dir(side):  # type: ignore[arg-type]
        workspace.mark()
    short = vid.missing_frames(info, n, fps)
    if short:
        click.echo(f"Warning: {short}", err=True)
    click.echo(f"extract-frames {side}: {plural(n, 'frame')} ({fmt}, {_rate(fps)}, {info.width}x{info.height}) "
               f"-> {out}")


@cli.command("cut-video")
@click.argument("target", default="dst", metavar="[src|dst|VIDEO]")
@workspace_option
@click.option("--from", "start", default=None, help="Start time: seconds or HH:MM:SS.mmm (default: start).")
@click.option("--to", "end", default=None, help="End time: seconds or HH:MM:SS.mmm (default: end).")
@click.option("--audio-track", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which audio track to keep (0 = first).")
@click.option("--bitrate", type=click.FloatRange(min=0.1), default=vid.DEFAULT_CUT_BITRATE_MBPS,
              show_default=True, help="Video bitrate in Mbit/s.")
@click.option("--codec", default="libx264", show_default=True, help="ffmpeg video encoder.")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Output file (default: <video>_cut.<ext> next to it).")
def cut_video_command(target: str, workspace: Workspace, start: str | None, end: str | None, audio_track: int,
                      bitrate: float, codec: str, output: Path | None) -> None:
    """Step 3: cut video.

    Re-encodes a part of data_dst.* (or data_src.*, or any VIDEO) to <name>_cut.<ext>, keeping one audio
    track.  Rename the cut to data_dst.mp4 to work on it.
    """
    video = workspace.require_video(target) if target in ("src", "dst") else Path(target)  # type: ignore[arg-type]
    written = vid.cut_video(video, output, start=start, end=end, audio_track=audio_track, bitrate=bitrate,
                            codec=codec, protect=workspace.input_videos())
    if written.parent == workspace.root:
        workspace.mark()   # a cut is dfl's video: ``dfl clear --videos`` may move it to the trash
    info = vid.probe(written)
    click.echo(f"cut-video: {Path(video).name} [{start or 'start'} .. {end or 'end'}] -> {written} "
               f"({info.duration or 0:.3f} s)")


@cli.command("denoise-frames")
@click.argument("side", default="dst", type=click.Choice(["src", "dst"]))
@workspace_option
@click.option("--input", "-i", "folder", type=click.Path(path_type=Path), default=None,
              help="Frames folder instead of data_<side>/.")
@click.option("--factor", type=click.IntRange(1, 20), default=vid.DEFAULT_DENOISE_FACTOR, show_default=True,
              help="Denoise strength, 1..20.")
def denoise_frames_command(side: str, workspace: Workspace, folder: Path | None, factor: int) -> None:
    """Step 3 (optional): denoise data_dst images.

    Smooths noise and pixel shake over time (ffmpeg hqdn3d) in the extracted frames, in place; a failure
    leaves every frame as it was.  Run it before extracting faces.
    """
    folder = folder if folder is not None else workspace.frames_dir(side)  # type: ignore[arg-type]
    n = vid.denoise_frames(folder, factor, desc=f"Denoising {folder.name}")
    click.echo(f"denoise-frames {side}: {plural(n, 'frame')} denoised (factor {factor}) in {folder}")


def _repeated(bad: list[Path]) -> str:
    """The summary's count of frames --repeat-bad-frames stood in for."""
    if not bad:
        return ""
    names = ", ".join(p.name for p in bad[:5]) + (", ..." if len(bad) > 5 else "")
    return f" ({plural(len(bad), 'unreadable frame')} replaced by a neighbouring frame: {names})"


@cli.command("video")
@workspace_option
@click.option("--input", "-i", "frames_dir", type=click.Path(path_type=Path), default=None,
              help="Merged frames folder (default data_dst/merged/).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Output video (default result.mp4); the mask video goes beside it as <name>_mask.<ext>.")
@click.option("--reference", type=click.Path(path_type=Path), default=None,
              help="Video giving the frame rate and audio (default data_dst.*).")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Frame rate; default that of the reference video.")
@click.option("--bitrate", type=click.FloatRange(min=0.1), default=vid.DEFAULT_BITRATE_MBPS, show_default=True,
              help="Video bitrate in Mbit/s (ignored with --lossless).")
@click.option("--lossless", is_flag=True,
              help="Lossless encoding that decodes to exactly the merged frames (large files), e.g. for further "
                   "editing: RGB H.264 with libx264 (plays in VLC, mpv and ffmpeg-based editors, not in QuickTime), "
                   "RGB with libx265 / libvpx-vp9 / ffv1.")
@click.option("--codec", default="libx264", show_default=True,
              help="ffmpeg video encoder (libx264, libx265, ...); H.265 in mp4 is tagged hvc1 so Apple players open it.")
@click.option("--audio/--no-audio", default=True, show_default=True, help="Copy the reference's audio track.")
@click.option("--mask/--no-mask", default=True, show_default=True,
              help="Also write result_mask.mp4 from data_dst/merged_mask/ when it holds frames.")
@click.option("--label/--no-label", default=True, show_default=True,
              help="Tag the video as AI-modified (a container comment naming dfl and 'synthetic face').")
@click.option("--repeat-bad-frames", is_flag=True,
              help="Put the previous frame in place of a merged frame that cannot be read (empty, truncated, "
                   "damaged) and count it, instead of stopping with an error.")
def video_command(workspace: Workspace, frames_dir: Path | None, output: Path | None, reference: Path | None,
                  fps: float | None, bitrate: float, lossless: bool, codec: str, audio: bool, mask: bool,
                  label: bool, repeat_bad_frames: bool) -> None:
    """Step 8: merged to mp4.

    Encodes data_dst/merged/ into result.mp4 at the frame rate of data_dst.*, with its audio, and
    data_dst/merged_mask/ into result_mask.mp4 (beside --output when given) when that folder holds frames.  A merged frame that cannot
    be read stops it with an error naming the frame (see --repeat-bad-frames); it never writes over the
    workspace's data_src/data_dst videos.
    """
    frames_dir = frames_dir if frames_dir is not None else workspace.merged_dir
    output = output if output is not None else workspace.result
    if not list_images(frames_dir):
        raise DflError(f"{frames_dir}: no merged frames; run the merge step first" if frames_dir.is_dir()
                       else f"{frames_dir}: frames folder does not exist; run the merge step first")
    ref = reference if reference is not None else workspace.video("dst")
    rate: object = fps
    if ref is not None:
        info = vid.probe(ref)
        rate = fps if fps is not None else info.fps
    elif fps is None:
        raise DflError(f"{workspace.root / 'data_dst.mp4'}: no data_dst video to take the frame rate from; "
                       "pass --fps")
    metadata = video_metadata() if label else None
    protect = [*workspace.input_videos(), ref]
    vid.refuse_to_overwrite(output, protect)
    mask_output = vid.mask_output_path(output)   # beside the chosen output: -o never touches result_mask.mp4
    if mask and frames_dir == workspace.merged_dir:
        vid.refuse_to_overwrite(mask_output, protect)
    bad: list[Path] = []
    on_bad = (lambda path, problem: bad.append(path)) if repeat_bad_frames else None
    n = vid.frames_to_video(frames_dir, output, fps=rate, audio_from=ref if audio else None, bitrate=bitrate,
                            codec=codec, lossless=lossless, desc=f"Writing {output.name}", metadata=metadata,
                            protect=protect, on_bad_frame=on_bad)
    out_info = vid.probe(output)
    expected = info.estimated_frames if ref is not None else None
    if expected is not None and abs(n - expected) > 1:
        click.echo(f"video: note: {plural(n, 'merged frame')} but {ref.name} has about {expected}; the result is "
                   f"{'shorter' if n < expected else 'longer'} than it", err=True)
    click.echo(f"video: {plural(n, 'frame')}{_repeated(bad)} at {float(out_info.fps):g} fps"
               f"{' with audio' if out_info.has_audio else ''}{' (lossless)' if lossless else ''} -> {output}")
    if mask and frames_dir == workspace.merged_dir and list_images(workspace.merged_mask_dir):
        bad.clear()
        n_mask = vid.frames_to_video(workspace.merged_mask_dir, mask_output, fps=rate, bitrate=bitrate,
                                     codec=codec, lossless=lossless, desc=f"Writing {mask_output.name}",
                                     metadata=metadata, protect=protect, on_bad_frame=on_bad)
        click.echo(f"video: {plural(n_mask, 'mask frame')}{_repeated(bad)} -> {mask_output}")
