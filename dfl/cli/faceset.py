"""``dfl faceset ...``: look inside aligned faces (``info``)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import click
import numpy as np

from dfl.cli import cli
from dfl.cli.options import workspace_option
from dfl.errors import DflError
from dfl.faceset import list_faces
from dfl.faceset.info import face_info
from dfl.faceset.record import FaceRecord
from dfl.workspace import Workspace


@cli.group("faceset")
def faceset() -> None:
    """Inspect aligned faces (data_src/aligned, data_dst/aligned, or any DFL faceset)."""


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


def _resolve(target: str, ws: Workspace) -> Path:
    path = Path(target)
    if not path.exists() and target in ("src", "dst"):
        aligned = ws.aligned_dir(target)  # type: ignore[arg-type]
        if not aligned.is_dir():
            raise DflError(f"{aligned}: no such folder (run dfl extract-faces {target} first)")
        return aligned
    if not path.exists():
        raise DflError(f"{path}: no such file or folder")
    return path


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
    if path.is_dir():
        files = list_faces(path)
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
        root = workspace.root.resolve()
        inside = folder.resolve().is_relative_to(root)
        base = root if inside else folder.resolve().parent
        n, trash = replace_with_enhanced(folder, workspace.trash_dir if inside else base / "trash", base)
        click.echo(f"Replaced {n} faces in {folder}" + (f"; the originals are in {trash}" if trash else ""))
    if summary.failed:
        sys.exit(1)
