"""``dfl extract-faces src|dst``: steps 4 and 5, with DeepFaceLab's options and defaults."""

from __future__ import annotations

import sys

import click

from dfl.cli import cli
from dfl.cli.options import side_argument, workspace_option
from dfl.errors import DflError
from dfl.faces.tracker import DEFAULT_DETECT_EVERY
from dfl.faces.verify import DEFAULT_MIN_CONFIDENCE
from dfl.interrupt import Interrupted
from dfl.text import plural

FACE_TYPE_CHOICES = ("half_face", "midfull_face", "full_face", "whole_face", "head", "mark_only",
                     "h", "mf", "f", "wf")


def _ask(value, prompt: str, default, interactive: bool, **kw):
    """The option's value, or DFL's default (asked for when a person is at the terminal)."""
    if value is not None:
        return value
    return click.prompt(prompt, default=default, **kw) if interactive else default


@cli.command("extract-faces")
@side_argument
@workspace_option
@click.option("--detector", default="auto", show_default=True,
              type=click.Choice(["auto", "blazeface", "blazeface-short", "blazeface-full", "s3fd", "dlib"]),
              help="Face detector; auto = S3FD + 2DFAN-4 when their weights are in the weights folder, "
                   "else the built-in BlazeFace + FaceMesh.")
@click.option("--landmarker", default="auto", show_default=True,
              type=click.Choice(["auto", "facemesh", "fan", "dlib"]),
              help="68-point landmarker; auto = the detector's partner.")
@click.option("--face-type", type=click.Choice(FACE_TYPE_CHOICES), default=None,
              help="Area of the aligned face  [default: whole_face]")
@click.option("--max-faces", type=click.IntRange(min=0), default=None,
              help="Most faces kept per frame, largest first; 0 = all  [default: 0]")
@click.option("--image-size", type=click.IntRange(64, 4096), default=None,
              help="Side of the aligned face in pixels  [default: 512, 768 for head]")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=None,
              help="JPEG quality of the aligned faces  [default: 90]")
@click.option("--output-debug/--no-output-debug", default=None,
              help="Write frames with landmarks, box and aligned square to data_<side>/aligned_debug  "
                   "[default: on for dst, off for src]")
@click.option("--weights-dir", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Folder with optional weights (s3fd-619a316812.pth, 2DFAN4-*.pth.tar/.zip, dlib .dat); "
                   "also $DFL_WEIGHTS; default ~/.dfl/weights.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps ...")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Stills (frames that are not the next frame of a video) per detector/landmarker pass.")
@click.option("--detect-every", type=click.IntRange(min=1), default=DEFAULT_DETECT_EVERY, show_default=True,
              help="Video frames: faces are tracked from the previous frame's landmarks and the full detector runs "
                   "at least every N frames (and whenever a face is lost); 1 = full detection on every frame.")
@click.option("--min-confidence", type=click.FloatRange(0.0, 1.0), default=DEFAULT_MIN_CONFIDENCE, show_default=True,
              help="Reject detections whose face confidence (re-detection on the landmark-aligned crop) is lower; "
                   "0 keeps every detection, as DFL does.")
@click.option("--overwrite", is_flag=True, help="Extract every frame again, moving the faces already there to "
                                                 "trash/ (default: resume, skipping frames already extracted).")
@click.option("--non-interactive", is_flag=True, help="Never ask; use the defaults for options not given.")
@click.option("--manual", is_flag=True, help="Place every face by hand in a window (DFL's manual extractor).")
@click.option("--fix", is_flag=True, help="Place faces by hand in the frames whose debug image you deleted from "
                                          "aligned_debug (DFL's MANUAL RE-EXTRACT DELETED ALIGNED_DEBUG).")
@click.option("--manual-fix", is_flag=True, help="Extract, then place by hand the faces of frames left without one.")
@click.option("--manual-window-size", type=click.IntRange(min=0), default=1368, show_default=True,
              help="Width of the manual window's 16:9 view (0 = frame size).")
def extract_faces_cmd(side, workspace, detector, landmarker, face_type, max_faces, image_size, jpeg_quality,
                      output_debug, weights_dir, device, batch_size, detect_every, min_confidence, overwrite,
                      non_interactive, manual, fix, manual_fix, manual_window_size) -> None:
    """Steps 4 and 5: extract faces of data_src / data_dst frames into aligned/.

    Finds every face in data_SIDE/*.png, places 68 landmarks, aligns and writes DFL faceset JPEGs
    data_SIDE/aligned/<frame>_<i>.jpg.  Resumes where an earlier run stopped unless --overwrite.
    --manual, --fix and --manual-fix open DFL's manual window (see README).
    """
    if manual + fix + manual_fix > 1:
        raise DflError("--manual, --fix and --manual-fix: choose one")
    if fix and (face_type is None or image_size is None):   # fix faces as the faceset was extracted
        from dfl.manual_extract import faceset_options
        found = faceset_options(workspace.aligned_dir(side))
        if found is not None:
            face_type = face_type or found[0].to_string()
            image_size = image_size or found[1]
    from dfl.device import pick_device, use_all_cores
    from dfl.extract import ExtractOptions, extract_faces
    from dfl.faces.align import FaceType
    from dfl.faces.registry import get_backends
    from dfl.faces.weights import weights_dir as resolve_weights_dir

    dev = pick_device(device)                       # a device or folder that cannot work: said before any prompt
    weights_folder = resolve_weights_dir(weights_dir)
    interactive = not non_interactive and sys.stdin.isatty()
    ft_name = _ask(face_type, "Face type (f, wf, head)", "wf", interactive,
                   type=click.Choice(FACE_TYPE_CHOICES))
    try:
        ft = FaceType.from_string(ft_name)
    except ValueError as exc:
        raise DflError(f"--face-type {ft_name}: {exc}") from None
    max_faces = _ask(max_faces, "Max number of faces from image (0 = all)", 0, interactive,
                     type=click.IntRange(min=0))
    image_size = _ask(image_size, "Image size", 512 if ft < FaceType.HEAD else 768, interactive,
                      type=click.IntRange(64, 4096))
    jpeg_quality = _ask(jpeg_quality, "Jpeg quality", 90, interactive, type=click.IntRange(1, 100))
    if output_debug is None:
        output_debug = (click.confirm(f"Write debug images to data_{side}/aligned_debug?", default=side == "dst")
                        if interactive else side == "dst")

    frames_dir = workspace.frames_dir(side)
    if not frames_dir.is_dir():
        raise DflError(f"{frames_dir}: no frames; run  dfl extract-frames {side}  first")
    use_all_cores()
    backends = get_backends(detector, landmarker, dev, weights_folder)
    opts = ExtractOptions(face_type=ft, image_size=image_size, jpeg_quality=jpeg_quality, max_faces=max_faces,
                          output_debug=output_debug, overwrite=overwrite, batch_size=batch_size,
                          detect_every=detect_every, min_confidence=min_confidence)
    if not (manual or fix):
        try:
            summary = extract_faces(frames_dir, workspace.aligned_dir(side), backends.detector, backends.landmarker,
                                    opts, debug_dir=workspace.debug_dir(side), trash_dir=workspace.trash_dir)
        except Interrupted as stop:   # Ctrl+C or SIGTERM: what was done, and how to go on
            workspace.mark()
            click.echo(f"{stop.partial.line(side)} on {dev.type} -> {workspace.aligned_dir(side)}")
            stop.message = (f"extract-faces {side}: stopped by {'SIGTERM' if stop.terminated else 'Ctrl+C'} with "
                            f"{plural(stop.partial.remaining, 'frame')} left; run the same command again to "
                            "continue")
            raise
        click.echo(f"{summary.line(side)} on {dev.type} -> {workspace.aligned_dir(side)}")
    if manual or fix or manual_fix:
        from dfl.manual_extract import run_manual
        mode = "fix" if fix else "manual" if manual else "missing"
        done = run_manual(mode, frames_dir, workspace.aligned_dir(side), workspace.debug_dir(side),
                          backends.landmarker, opts, manual_window_size)
        click.echo(done.line(side))
    workspace.mark()
