"""``dfl faceset ...``: look inside aligned faces (``info``) and DFL's faceset tools between extraction and
training (sort, recover-names, resize, pack/unpack, metadata save/restore, debug).  Each command parses,
calls one function of ``dfl.faceset`` and prints its one-line summary."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import click
import numpy as np

from dfl.cli import cli
from dfl.cli.options import faceset_path as _resolve
from dfl.cli.options import trash_place, workspace_option
from dfl.errors import DflError
from dfl.faces.align import FaceType
from dfl.faceset.debug import write_debug_images
from dfl.faceset.info import face_info
from dfl.faceset.metadata import restore_metadata, save_metadata
from dfl.faceset.pack import pack_faceset, unpack_faceset
from dfl.faceset.record import FaceRecord
from dfl.faceset.resize import RESIZE_FACE_TYPES, ResizeOptions, resize_faceset
from dfl.faceset.sort import SORT_METHODS, SortOptions, recover_names, sort_faceset
from dfl.faceset.source import face_files
from dfl.workspace import Workspace


@cli.group("faceset")
def faceset() -> None:
    """Inspect and clean facesets (data_src/aligned, data_dst/aligned, or any DFL faceset).

    TARGET is src / dst (the workspace's aligned folders) or a folder.  Tools rename faces or move them
    to <folder>_trash; none deletes a face.
    """


def _fmt_num(v: float) -> str:
    return f"{v:.6g}"


def _describe(info: dict, rec: FaceRecord, name: str) -> str:
    size = f"{info['width']}x{info['height']}" if info.get("width") else "?x?"
    lines = [f"{name}: {rec.face_type} {size}, {len(rec.landmarks)} landmarks"
             + (f", eyebrows_expand_mod {_fmt_num(rec.eyebrows_expand_mod)}"
                if rec.eyebrows_expand_mod is not None else "")]
    src = rec.source_filename or "-"
    rect = "(" + ", ".join(str(v) for v in rec.source_rect) + ")" if rec.source_rect is not None else "-"
    src_lm = "yes" if rec.source_landmarks is not None else "no"
    lines.append(f"  source {src}  rect l,t,r,b {rect}  source landmarks {src_lm}")
    if rec.image_to_face_mat is not None:
        m = np.asarray(rec.image_to_face_mat)
        rows = "; ".join(" ".join(_fmt_num(x) for x in row) for row in m)
        lines.append(f"  image_to_face_mat [{rows}]")
    polys = rec.seg_ie_polys or []
    n_inc = sum(1 for p in polys if p["type"] == 1)
    poly_txt = f"{n_inc} include, {len(polys) - n_inc} exclude" if polys else "none"
    if "ie_polys" in rec.extra:
        poly_txt += " (+ legacy ie_polys)"
    if rec.xseg_mask is not None:
        xm = info["xseg_mask"]
        mask_txt = f"yes ({xm['width']}x{xm['height']} {xm['format']}, mean {xm['mean']:.3f})"
    else:
        mask_txt = "no"
    lines.append(f"  polygons {poly_txt}  xseg mask {mask_txt}")
    others = sorted(k for k in rec.extra)
    if others:
        lines.append(f"  other keys: {', '.join(others)}")
    return "\n".join(lines)


@faceset.command("info")
@click.argument("target", metavar="TARGET")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per face (every key, arrays as lists).")
@workspace_option
def info_cmd(target: str, as_json: bool, workspace: Workspace) -> None:
    """Show the metadata of aligned faces.

    For each face: face type, size, landmark count, source frame and rect, image-to-face matrix,
    include/exclude polygons, xseg mask.  TARGET is a face file, a folder of faces, or src / dst for
    the workspace's aligned folders.  A folder ends with a summary line; unreadable files are reported
    and make the exit status 1.
    """
    path = _resolve(target, workspace)
    if path.is_dir() or path.suffix.lower() == ".pak":
        files = face_files(path)                 # a folder's faceset.pak, when it has one
        if not files:
            raise DflError(f"{path}: no face images (*.jpg, *.png)")
    else:
        files = [path]
    types: Counter[str] = Counter()
    n_polys = n_masks = 0
    bad = 0
    for f in files:
        try:
            info, rec = face_info(f)
        except DflError as exc:
            if len(files) == 1:
                raise
            click.echo(f"Error: {exc}", err=True)
            bad += 1
            continue
        types[rec.face_type] += 1
        n_polys += bool(rec.seg_ie_polys)
        n_masks += rec.xseg_mask is not None
        if as_json:
            click.echo(json.dumps(info))
        else:
            click.echo(_describe(info, rec, f.name))
    if len(files) > 1 or bad:
        kinds = ", ".join(f"{k} {v}" for k, v in types.most_common()) or "none"
        summary = (f"{sum(types.values())} faces in {path} ({kinds}); {n_polys} with polygons, "
                   f"{n_masks} with xseg masks" + (f"; {bad} unreadable" if bad else ""))
        click.echo(summary, err=as_json)
    if bad:
        sys.exit(1)


# -- the faceset tools -------------------------------------------------------------------------------
target_argument = click.argument("target", metavar="TARGET")


def _folder(target: str, ws: Workspace) -> Path:
    """The faceset folder TARGET names (src / dst -> the workspace's aligned folders)."""
    path = _resolve(target, ws)
    if not path.is_dir():
        raise DflError(f"{path}: not a folder of faces")
    return path


def _frames(target: str, ws: Workspace, frames: str | None) -> Path | None:
    """--frames, else the workspace's frames of src / dst."""
    if frames is not None:
        return Path(frames)
    return ws.frames_dir(target) if target in ("src", "dst") else None  # type: ignore[arg-type]


def _interactive(non_interactive: bool) -> bool:
    return not non_interactive and sys.stdin.isatty()


non_interactive_option = click.option("--non-interactive", is_flag=True,
                                      help="Never ask; options not given take their defaults.")


@faceset.command("sort")
@target_argument
@click.option("--by", "method", type=click.Choice(list(SORT_METHODS)), default=None,
              help="Sort method (DFL's): " + "; ".join(f"{m.name}: {m.description}" for m in SORT_METHODS.values()))
@click.option("--target", "target_count", type=click.IntRange(min=1), default=2000, show_default=True,
              help="final-by-blur / final-by-size: number of faces to keep.")
@click.option("--dissimilar", is_flag=True, help="absdiff: most dissimilar first.")
@click.option("--device", default="auto", show_default=True, help="absdiff: auto, cpu, cuda, ...")
@non_interactive_option
@workspace_option
def sort_cmd(target: str, method: str | None, target_count: int, dissimilar: bool, device: str,
             non_interactive: bool, workspace: Workspace) -> None:
    """Sort faces (DFL's 4.2/5.2 sort): rename them 00000.jpg ... in the new order.

    Faces a method drops (oneface, final-by-*) go to <folder>_trash.  Undo with  dfl faceset recover-names.
    """
    folder = _folder(target, workspace)
    if method is None:
        if not _interactive(non_interactive):
            raise DflError("choose a sort method with --by (see dfl faceset sort --help)")
        for i, m in enumerate(SORT_METHODS.values()):
            click.echo(f"[{i}] {m.name}: {m.description}")
        i = click.prompt("Sort method", default=5, type=click.IntRange(0, len(SORT_METHODS) - 1))
        method = list(SORT_METHODS)[i]
        if method.startswith("final") and click.get_current_context().get_parameter_source(
                "target_count") != click.core.ParameterSource.COMMANDLINE:
            target_count = click.prompt("Target number of faces", default=target_count, type=click.IntRange(min=1))
    summary = sort_faceset(folder, method, SortOptions(target=target_count, similar=not dissimilar, device=device))
    click.echo(summary.line())


@faceset.command("recover-names")
@target_argument
@workspace_option
def recover_names_cmd(target: str, workspace: Workspace) -> None:
    """Give sorted faces back their extracted names <frame>_<i> (DFL's "recover original filename")."""
    click.echo(recover_names(_folder(target, workspace)).line())


@faceset.command("resize")
@target_argument
@click.option("--image-size", type=click.IntRange(64, 4096), default=None, help="New side in pixels  [default: 512]")
@click.option("--face-type", type=click.Choice(RESIZE_FACE_TYPES), default=None,
              help="New face type, or same  [default: same]")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=100, show_default=True)
@click.option("--merge/--no-merge", default=True, show_default=True,
              help="Replace the faces in TARGET (originals to <folder>_trash), or leave them in <folder>_resized.")
@click.option("--from-frames", is_flag=True,
              help="Cut faces again from their source frames where found (real pixels for a wider face type).")
@click.option("--frames", type=click.Path(file_okay=False), default=None,
              help="Frames folder for --from-frames  [default: data_src / data_dst for src / dst]")
@non_interactive_option
@workspace_option
def resize_cmd(target: str, image_size: int | None, face_type: str | None, jpeg_quality: int, merge: bool,
               from_frames: bool, frames: str | None, non_interactive: bool, workspace: Workspace) -> None:
    """Resize faces and/or change their face type (DFL's faceset resizer); metadata follows."""
    folder = _folder(target, workspace)
    ask = _interactive(non_interactive)
    if image_size is None:
        image_size = click.prompt("New image size", default=512, type=click.IntRange(64, 4096)) if ask else 512
    if face_type is None:
        face_type = click.prompt("Change face type", default="same", type=click.Choice(RESIZE_FACE_TYPES)) \
            if ask else "same"
    ft = None if face_type == "same" else FaceType.from_string(face_type).to_string()
    opts = ResizeOptions(image_size=image_size, face_type=ft, jpeg_quality=jpeg_quality, merge=merge,
                         frames_dir=_frames(target, workspace, frames) if from_frames else None)
    click.echo(resize_faceset(folder, opts).line(image_size, ft))


@faceset.command("pack")
@target_argument
@click.option("--keep-loose", is_flag=True, help="Leave the packed faces in the folder too (default: moved to "
                                                  "<folder>_trash, as DFL removes them).")
@click.option("--overwrite", is_flag=True, help="Replace an existing faceset.pak (the old one goes to the trash).")
@workspace_option
def pack_cmd(target: str, keep_loose: bool, overwrite: bool, workspace: Workspace) -> None:
    """Pack the faces into <folder>/faceset.pak (DFL's format; training reads it directly)."""
    click.echo(pack_faceset(_folder(target, workspace), trash_loose=not keep_loose, overwrite=overwrite).line())


@faceset.command("unpack")
@target_argument
@workspace_option
def unpack_cmd(target: str, workspace: Workspace) -> None:
    """Unpack <folder>/faceset.pak into face files (the pak goes to <folder>_trash)."""
    path = Path(target)
    folder = path if path.suffix.lower() == ".pak" and path.is_file() else _folder(target, workspace)
    click.echo(unpack_faceset(folder).line())


@faceset.group("metadata")
def metadata_group() -> None:
    """Save faces' metadata before editing them in an image editor, restore it after."""


@metadata_group.command("save")
@target_argument
@workspace_option
def metadata_save_cmd(target: str, workspace: Workspace) -> None:
    """Save every face's metadata to <folder>/meta.dat (DFL's file)."""
    click.echo(save_metadata(_folder(target, workspace)).line())


@metadata_group.command("restore")
@target_argument
@workspace_option
def metadata_restore_cmd(target: str, workspace: Workspace) -> None:
    """Put the metadata of <folder>/meta.dat back into the edited images (resized back, PNG -> JPEG)."""
    click.echo(restore_metadata(_folder(target, workspace)).line())


@faceset.command("debug")
@target_argument
@click.option("--frames", type=click.Path(file_okay=False), default=None,
              help="Frames folder  [default: data_src / data_dst for src / dst]")
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="Where debug images go  [default: <folder>_debug, i.e. aligned_debug]")
@workspace_option
def debug_cmd(target: str, frames: str | None, output: str | None, workspace: Workspace) -> None:
    """Debug images: the faceset's landmarks, rects and aligned squares drawn on its frames."""
    summary = write_debug_images(_folder(target, workspace), _frames(target, workspace, frames), output)
    click.echo(summary.line())

# ---- dfl faceset enhance: DFL's FaceEnhancer over a faceset (issue #16; logic in dfl/faceset/enhance.py) ----
@faceset.command("enhance")
@click.argument("target", metavar="src|dst|FOLDER")
@workspace_option
@click.option("--weights-dir", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Folder with DFL's FaceEnhancer.npy (from _internal/DeepFaceLab/facelib/ of a DFL build); "
                   "also $DFL_WEIGHTS; default ~/.dfl/weights.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1.")
@click.option("--replace/--no-replace", default=None,
              help="Put the enhanced faces in place of the originals (moved to trash/) [ask; no without a terminal].")
def enhance_cmd(target: str, workspace: Workspace, weights_dir: str | None, device: str, replace: bool | None) -> None:
    """Enhance the faces' details with DFL's FaceEnhancer (DFL's "util faceset enhance").

    Writes <faceset>_enhanced/ (same names, metadata kept, JPEG quality 100); a rerun continues where the
    last stopped.  Then, if asked, the enhanced faces replace the originals, which move to the workspace's
    trash/<date_time>/ (or trash/ beside a folder outside the workspace).
    """
    from dfl.device import pick_device
    from dfl.faces.enhancer import load_face_enhancer
    from dfl.faces.weights import weights_dir as resolve_weights_dir
    from dfl.faceset.enhance import enhance_faceset, enhanced_dir, replace_with_enhanced

    folder = _resolve(target, workspace)
    if not folder.is_dir():
        raise DflError(f"{folder}: not a folder of faces")
    enhancer = load_face_enhancer(resolve_weights_dir(weights_dir), pick_device(device))
    summary = enhance_faceset(folder, enhancer)
    out = enhanced_dir(folder)
    click.echo(summary.line(out))
    if replace is None:
        replace = sys.stdin.isatty() and click.confirm(f"Replace the faces in {folder} with {out.name}?", default=True)
    if replace:
        n, trash = replace_with_enhanced(folder, *trash_place(folder, workspace))
        click.echo(f"Replaced {n} faces in {folder}" + (f"; the originals are in {trash}" if trash else ""))
    if summary.failed:
        sys.exit(1)
