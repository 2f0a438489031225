"""``dfl live``: swap the faces of a video or a camera frame by frame (the work is in :mod:`dfl.live`)."""

from __future__ import annotations

from pathlib import Path

import click

from dfl.cli import cli
from dfl.cli.merge import build_config, face_enhancer, merge_settings_options, refuse_inert
from dfl.cli.options import ModelType, workspace_option
from dfl.faces.registry import DETECTORS, LANDMARKERS
from dfl.faces.tracker import DEFAULT_DETECT_EVERY
from dfl.faces.verify import DEFAULT_MIN_CONFIDENCE
from dfl.live.session import ENGINES, PRECISIONS
from dfl.workspace import Workspace

FACE_TYPES = ("h", "mf", "f", "wf", "head", "half_face", "midfull_face", "full_face", "whole_face")


@cli.command("live")
@workspace_option
@click.option("--name", help="Model to swap with (model/<name>_<Model>/); default: the most recently saved.")
@click.option("--model", "model_type", type=ModelType("swap"), help="When several models share the name.")
@click.option("--source", required=True, help="A video file, or a camera index (0, 1, ...).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the swapped stream to this video (every frame of a file, its frame rate and audio).")
@click.option("--force", is_flag=True, help="Replace an existing --output (the old file goes to the trash).")
@click.option("--max-frames", type=click.IntRange(min=0), default=0, show_default=True,
              help="Stop after this many frames; 0 = the whole stream (a camera: until Esc).")
@click.option("--window/--no-window", default=None,
              help="Show the swapped stream with its frames/s [default: on without --output, where a display exists].")
@click.option("--engine", type=click.Choice(ENGINES), default="torch", show_default=True,
              help="Run the model in PyTorch, or exported to ONNX in memory and run with onnxruntime.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="torch engine: auto = the fastest whose faces agree with fp32, measured once per machine and "
                   "model (cached in ~/.dfl); retune: measure again.")
@click.option("--dfm", type=click.Path(dir_okay=False, path_type=Path),
              help="Swap with this .dfm file instead of a model (a dfl export, or DeepFaceLive's own).")
@click.option("--face-type", type=click.Choice(FACE_TYPES),
              help="Face type of a --dfm that does not say (DeepFaceLive's models: usually wf).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML/JSON merge settings (e.g. data_dst/merged/merge_config.json).")
@merge_settings_options
@click.option("--device", default="auto", show_default=True, help="auto (CUDA, CPU), cpu, cuda, cuda:1.")
@click.option("--detector", type=click.Choice(DETECTORS), default="blazeface", show_default=True,
              help="Face detector (as extract-faces; S3FD is slow on a CPU).")
@click.option("--landmarker", type=click.Choice(LANDMARKERS), default="auto", show_default=True,
              help="68-point landmarker; auto = the detector's partner.")
@click.option("--weights-dir", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Folder with optional weights (detectors, FaceEnhancer.npy); also $DFL_WEIGHTS.")
@click.option("--detect-every", type=click.IntRange(min=1), default=DEFAULT_DETECT_EVERY, show_default=True,
              help="Faces are tracked from frame to frame; the full detector runs at least every N frames.")
@click.option("--min-confidence", type=click.FloatRange(0.0, 1.0), default=DEFAULT_MIN_CONFIDENCE,
              show_default=True, help="Reject detections that do not look like faces; 0 keeps all.")
@click.option("--max-faces", type=click.IntRange(min=0), default=0, show_default=True,
              help="Faces swapped per frame, largest first; 0 = all.")
def live_command(workspace: Workspace, name: str | None, model_type: str | None, source: str, output: Path | None,
                 force: bool, max_frames: int, window: bool | None, engine: str, precision: str, dfm: Path | None,
                 face_type: str | None, config_file: Path | None, device: str, detector: str, landmarker: str,
                 weights_dir: str | None, detect_every: int, min_confidence: float, max_faces: int, **flags) -> None:
    """Swap faces in a video or a camera stream frame by frame with a trained model.

    Faces are found and tracked as extract-faces does, swapped, and merged with the settings of
    `dfl merge` (the same flags, or --config), in overlapping stages.  The window shows the achieved
    frames/s; the interactive merger's keys change the settings live (Tab lists them, Space turns the swap
    off and on, Esc stops).  --output writes the result as a video marked as synthetic.
    """
    from dfl.errors import DflError
    from dfl.export.trained import find_trained
    from dfl.faces.align import FaceType
    from dfl.faces.weights import weights_dir as resolve_weights_dir
    from dfl.live.session import LiveRequest, run_live
    from dfl.merge.interactive import display_available

    cfg = build_config(config_file, flags)
    model_path = None if dfm is not None else find_trained(
        workspace.model_dir, name, model_type)
    if model_path is not None:
        refuse_inert(cfg, flags, model_path)   # e.g. --morph for a model without one: one line, nothing loaded
    if window is None:
        window = output is None and display_available()[0]
    elif window:
        ok, why = display_available()
        if not ok:
            raise DflError(f"--window: cannot open a window here ({why})")
    if not window and output is None:
        click.echo("No window and no --output: the swap runs and only the frames/s are reported.")
    folder = resolve_weights_dir(weights_dir)
    enhancer = face_enhancer(weights_dir, device, required=cfg.super_resolution_power != 0)   # t/g may turn it on
    req = LiveRequest(source=source, cfg=cfg, model_path=model_path, dfm=dfm, engine=engine, precision=precision,
                      face_type=FaceType.from_string(face_type) if face_type else None, device=device,
                      output=output, overwrite=force, trash_root=workspace.trash_dir, trash_base=workspace.root,
                      window=window, detector=detector, landmarker=landmarker, weights_dir=folder,
                      detect_every=detect_every, min_confidence=min_confidence, max_faces=max_faces,
                      max_frames=max_frames)
    summary = run_live(req, enhancer=enhancer, notify=click.echo)
    click.echo(summary.line())
