"""The merger's XSeg mask modes (issue #15, item 5): XSeg run on the predicted and the dst faces as DFL's
merger runs it, batched with the merge, loaded when first needed, offered by the interactive merger's ``x``
key only with a model, refused by ``dfl live``; ``dfl merge`` with a real XSeg network on the demo."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfl.errors import DflError
from dfl.faces.align import FaceType, transform_matrix, transform_points
from dfl.merge.config import MASK_MODES, XSEG_MASK_MODES, MergeConfig
from dfl.merge.face import blend_face, merge_frame, prepare_face
from dfl.merge.frames import CONFIG_NAME, SETTINGS_KEY, merge_folder
from dfl.merge.interactive import MergeSession
from dfl.merge.xseg import LazyXSeg
from dfl.xseg.predictor import MaskPredictor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_merge import StandInPredictor, _frame, _workspace, xseg_stand_in  # noqa: E402

FOUR_WAY = "learned-prd*learned-dst*XSeg-prd*XSeg-dst"


class RecordingXSeg:
    """A real segmenter with a known answer (a disc, :func:`xseg_stand_in`) that keeps what it was given."""

    resolution = 256
    name = "disc"

    def __init__(self, identity: str = "disc-1") -> None:
        self.identity = identity
        self.batches: list[np.ndarray] = []

    def predict(self, faces: np.ndarray) -> np.ndarray:
        self.batches.append(np.array(faces))
        return xseg_stand_in(faces)

    __call__ = predict


def test_xseg_sees_the_predicted_face_and_the_dst_cut_as_in_dfls_merger() -> None:
    """XSeg-prd: the predicted face resized (bicubic) to 256; XSeg-dst: the dst face cut from the frame at 256
    with the swap model's face type.  Both faces of a frame go through XSeg in one batch."""
    frame, lms = _frame(5, faces=((100, 120, 70), (230, 120, 70)))
    p = StandInPredictor()
    x = RecordingXSeg()
    merge_frame(frame, lms, p, MergeConfig(mask_mode=FOUR_WAY, color_transfer_mode="none"), xseg=x)
    assert len(x.batches) == 1 and x.batches[0].shape == (4, 256, 256, 3)
    prd = p(np.zeros((1, 64, 64, 3), np.float32))[0][0]
    want_prd = cv2.resize(prd, (256, 256), interpolation=cv2.INTER_CUBIC)
    assert np.allclose(x.batches[0][0], want_prd) and np.allclose(x.batches[0][2], want_prd)   # face by face
    for k, lm in enumerate(lms):
        cut = cv2.warpAffine(frame, transform_matrix(lm, 256, FaceType.FULL), (256, 256), flags=cv2.INTER_CUBIC)
        assert np.abs(x.batches[0][2 * k + 1] - cut / 255.0).max() < 1e-6

    only_dst = RecordingXSeg()
    merge_frame(frame, lms, p, MergeConfig(mask_mode="XSeg-dst"), xseg=only_dst)
    assert only_dst.batches[0].shape[0] == 2                 # XSeg-dst: no prediction goes through XSeg


@pytest.mark.parametrize("mode", XSEG_MASK_MODES)
def test_batched_xseg_masks_merge_exactly_as_one_face_at_a_time(mode: str) -> None:
    frame, lms = _frame(6)
    p = StandInPredictor()
    cfg = MergeConfig(mask_mode=mode, color_transfer_mode="none")
    out, mask = merge_frame(frame, lms, p, cfg, xseg=RecordingXSeg())
    job = prepare_face(frame, lms[0], p.resolution, p.face_type)
    prd = p(job.dst_face[None])
    one = blend_face(frame, job, (prd[0][0], prd[1][0], prd[2][0]), cfg, p.face_type, xseg=xseg_stand_in)
    x0, y0, x1, y1 = one.roi
    assert np.array_equal(mask[y0:y1, x0:x1], one.mask) and mask.max() > 0.9
    full = merge_frame(frame, lms, p, MergeConfig(mask_mode="full", color_transfer_mode="none"))[1]
    assert (mask > 0).sum() < (full > 0).sum()              # the disc cuts into the face square


def test_folder_merge_runs_xseg_once_per_batch_and_its_identity_marks_the_frames(tmp_path: Path) -> None:
    ws, al = _workspace(tmp_path, n=5, faceless=(2,))
    cfg = MergeConfig(mask_mode="XSeg-prd*XSeg-dst", color_transfer_mode="none")
    x = RecordingXSeg()
    s = merge_folder(ws, None, cfg, predictor=StandInPredictor(), alignments=al, xseg=x, batch_frames=3,
                     progress=False, workers=2)
    assert (s.merged, s.copied) == (4, 1)
    assert [b.shape[0] for b in x.batches] == [4, 4]        # frames 0,1,(2 has no face) | 3,4: prd + dst each
    for stem, lms in al.items():
        frame = cv2.imread(str(ws.data_dst / f"{stem}.png"))
        want, want_mask = merge_frame(frame, lms, StandInPredictor(), cfg, xseg=xseg_stand_in)
        assert np.array_equal(cv2.imread(str(ws.merged_dir / f"{stem}.png")), want)
    saved = json.loads((ws.merged_dir / CONFIG_NAME).read_text())
    assert saved["model"]["xseg"] == "disc" and saved["mask_mode"] == "XSeg-prd*XSeg-dst"

    again = merge_folder(ws, None, cfg, predictor=StandInPredictor(), alignments=al, xseg=RecordingXSeg(),
                         progress=False)
    assert again.skipped == 5                                # same XSeg: nothing to redo
    other = RecordingXSeg("disc-2")                          # retrained XSeg: every frame with a face again
    again = merge_folder(ws, None, cfg, predictor=StandInPredictor(), alignments=al, xseg=other, progress=False)
    assert again.merged == 4 and other.batches
    learned = merge_folder(ws, None, MergeConfig(color_transfer_mode="none"), predictor=StandInPredictor(),
                           alignments=al, xseg=other, progress=False, force=True)
    assert learned.merged == 4 and len(other.batches) == 2    # learned-* modes never run XSeg


def test_lazy_xseg_loads_on_first_use_and_a_missing_model_is_one_line(tmp_path: Path) -> None:
    loads: list[int] = []

    def load() -> MaskPredictor:
        loads.append(1)
        return MaskPredictor(xseg_stand_in, 256, name="disc", identity="d")

    x = LazyXSeg(load)
    ws, al = _workspace(tmp_path, n=2, faceless=())
    merge_folder(ws, None, MergeConfig(), predictor=StandInPredictor(), alignments=al, xseg=x, progress=False)
    assert loads == []                                       # no XSeg mode: never loaded
    merge_folder(ws, None, MergeConfig(mask_mode="XSeg-dst"), predictor=StandInPredictor(), alignments=al,
                 xseg=x, progress=False)
    assert loads == [1] and x.ready() == "" and x.identity == "d"

    def missing() -> MaskPredictor:
        loads.append(2)
        raise DflError("model: no trained XSeg model; train one")

    gone = LazyXSeg(missing)
    with pytest.raises(DflError, match="no trained XSeg model"):
        merge_folder(ws, None, MergeConfig(mask_mode=FOUR_WAY), predictor=StandInPredictor(), alignments=al,
                     xseg=gone, progress=False, force=True)
    assert gone.ready() == "model: no trained XSeg model; train one" and loads == [1, 2]   # tried once
    with pytest.raises(DflError, match="XSeg mask modes need an XSeg model"):
        merge_folder(ws, None, MergeConfig(mask_mode="XSeg-prd"), predictor=StandInPredictor(), alignments=al,
                     progress=False)


def test_interactive_x_key_offers_the_xseg_modes_only_with_a_model() -> None:
    learned = [m for m in MASK_MODES if m not in XSEG_MASK_MODES]

    def cycle(session: MergeSession, n: int) -> list[str]:
        seen = []
        for _ in range(n):
            session.handle_key("x")
            seen.append(session.cfg.mask_mode)
        return seen

    start = MergeConfig(mask_mode="full")
    assert cycle(MergeSession(["a"], start.copy()), len(learned)) == learned[1:] + ["full"]   # no model: skipped
    s = MergeSession(["a"], start.copy(), xseg_ready=lambda: "model: no trained XSeg model; train one")
    cycle(s, len(learned) - 1)
    assert s.cfg.mask_mode == "learned-prd+learned-dst"
    res = s.handle_key("x")
    assert s.cfg.mask_mode == "full" and res.changed and "no trained XSeg model" in res.message

    loads: list[int] = []
    lazy = LazyXSeg(lambda: loads.append(1) or MaskPredictor(xseg_stand_in, 256, name="disc", identity="d"))
    s = MergeSession(["a"], start.copy(), xseg_ready=lazy.ready)
    cycle(s, len(learned) - 1)
    assert loads == []                                       # loaded when an XSeg mode is first chosen
    assert cycle(s, len(XSEG_MASK_MODES) + 1) == list(XSEG_MASK_MODES) + ["full"] and loads == [1]


def test_interactive_merge_chooses_an_xseg_mode_by_key_and_merges_every_frame_with_it(tmp_path: Path) -> None:
    from dfl.merge.frames import prepare_merge
    from dfl.merge.interactive import ESC, merge_interactive
    from test_merge import FeedUI

    ws, al = _workspace(tmp_path, n=3, faceless=())
    ctx = prepare_merge(ws, None, predictor=StandInPredictor(), alignments=al, model_info={"name": "t"})
    x = RecordingXSeg()
    lazy = LazyXSeg(lambda: x)
    ui = FeedUI(["x"] * 5 + [ESC])          # learned-prd*learned-dst -> ... -> the four-way mode
    s = merge_interactive(ctx, MergeConfig(color_transfer_mode="none"), ui=ui, xseg=lazy, progress=False)
    assert s.merged == 3 and len(ui.shown) == 6
    assert json.loads((ws.merged_dir / CONFIG_NAME).read_text())["model"]["xseg"] == "disc"
    frame = cv2.imread(str(ws.data_dst / "00001.png"))
    cfg = MergeConfig(mask_mode=FOUR_WAY, color_transfer_mode="none")
    want, _ = merge_frame(frame, al["00001"], StandInPredictor(), cfg, xseg=xseg_stand_in)
    assert np.array_equal(cv2.imread(str(ws.merged_dir / "00001.png")), want)


def test_live_keys_skip_the_xseg_modes_and_live_refuses_them() -> None:
    from dfl.live.session import LiveRequest, run_live
    from dfl.live.window import NO_XSEG_LIVE, LiveControls

    c = LiveControls(MergeConfig(mask_mode="learned-prd+learned-dst"))
    assert c.handle_key("x") and c.cfg.mask_mode == "full" and c.message.endswith(NO_XSEG_LIVE)
    with pytest.raises(DflError, match="does not run XSeg"):
        run_live(LiveRequest(source="0", cfg=MergeConfig(mask_mode="XSeg-dst"), model_path=Path("m")))


# -- dfl merge on the demo workspace with a real XSeg network -----------------------------------------------
@pytest.fixture
def demo_with_three_dst_frames(demo_run_session, tmp_path: Path):
    """The trained demo workspace cut to 3 dst frames (XSeg at 256 px costs ~1.4 s a face on 2 cores)."""
    from dfl.faceset import list_faces, read_record
    from dfl.workspace import Workspace, list_images

    ws = Workspace(tmp_path / "ws")
    shutil.copytree(demo_run_session[0].root, ws.root, symlinks=True)
    keep = {p.stem for p in list_images(ws.data_dst)[:3]}
    for p in list_images(ws.data_dst):
        if p.stem not in keep:
            p.unlink()
    for face in list_faces(ws.aligned_dir("dst")):
        if Path(read_record(face).source_filename).stem not in keep:
            face.unlink()
    shutil.rmtree(ws.merged_dir, ignore_errors=True)
    shutil.rmtree(ws.merged_mask_dir, ignore_errors=True)
    return ws, sorted(keep)


def _dfl_xseg_weights(folder: Path) -> Path:
    from dfl.models.xseg import XSeg
    from dfl_format import seeded_weights, write_weights

    folder.mkdir(parents=True, exist_ok=True)
    return write_weights(folder / "XSeg_256.npy", seeded_weights(XSeg(), "XSeg"))


def test_cli_merge_xseg_modes_merge_every_dst_frame(demo_with_three_dst_frames, tmp_path: Path, dfl_run) -> None:
    from dfl.imageops import synthetic_label as label

    ws, stems = demo_with_three_dst_frames
    res = dfl_run("merge", "-w", ws.root, "--non-interactive", "--mask-mode", "XSeg-prd*XSeg-dst", "--device", "cpu")
    assert res.code == 1 and len(res.err.strip().splitlines()) == 1, res.err
    assert "XSeg-prd*XSeg-dst" in res.err and "train" in res.err and "use DFL's generic XSeg with --xseg-generic" in res.err
    assert not ws.merged_dir.exists()                        # refused before anything was written

    weights = _dfl_xseg_weights(ws.model_dir)                # DFL's model/XSeg_256.npy: the workspace's XSeg
    res = dfl_run("merge", "-w", ws.root, "--non-interactive", "--mask-mode", "XSeg-prd*XSeg-dst", "--device", "cpu")
    assert res.code == 0, res.err
    assert f"Merged {len(stems)} frames, copied 0" in res.out
    for stem in stems:
        assert (ws.merged_dir / f"{stem}.png").is_file() and (ws.merged_mask_dir / f"{stem}.png").is_file()
        digest = label.read_png_text_file(ws.merged_dir / f"{stem}.png")[SETTINGS_KEY]
        assert "dfl-xseg:" in digest                         # the XSeg model's identity marks the frame
    saved = json.loads((ws.merged_dir / CONFIG_NAME).read_text())
    assert saved["mask_mode"] == "XSeg-prd*XSeg-dst" and "XSeg_256.npy" in saved["model"]["xseg"]

    generic = tmp_path / "generic"
    generic.mkdir()
    weights.rename(generic / "XSeg_256.npy")                 # DFL's generic model, named on the command line
    res = dfl_run("merge", "-w", ws.root, "--non-interactive", "--mask-mode", FOUR_WAY, "--device", "cpu",
                  "--xseg-generic", generic)
    assert res.code == 0, res.err
    assert f"Merged {len(stems)} frames" in res.out and "skipped 0" in res.out
    assert json.loads((ws.merged_dir / CONFIG_NAME).read_text())["mask_mode"] == FOUR_WAY


# -- an XSeg that learned an exclusion, end to end ------------------------------------------------------------
# XSeg is 256 px, fixed, and learning an exclusion takes about 100 iterations at batch 2: the longest test of
# the suite (190 s on 2 quiet cores of an Intel Xeon with AMX, 2026-12-06; 4 min 10 s with one thread at load
# 5-10).  It learns the mouth's exclusion firmly: merged mask 0.01 on the lips against 0.93 on the eyes and nose.
EXCLUSION_ITERATIONS = 100


def _label_with_mouth_excluded(ws) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every dst face labelled as a user would in the editor: the face included (its landmarks' hull), a box
    over the mouth excluded.  Returns frame stem -> (outer lips, eyes and nose) landmarks in frame pixels."""
    from dfl.faceset import list_faces, read_record, write_record

    out = {}
    for face in list_faces(ws.aligned_dir("dst")):
        rec = read_record(face)
        lm = np.asarray(rec.landmarks, np.float32)
        (x0, y0), (x1, y1) = lm[48:68].min(0) - 4, lm[48:68].max(0) + 4
        box = np.float32([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
        rec.seg_ie_polys = [{"type": 1, "pts": cv2.convexHull(lm).reshape(-1, 2)}, {"type": 0, "pts": box}]
        write_record(face, rec)
        to_frame = cv2.invertAffineTransform(np.asarray(rec.image_to_face_mat, np.float64))
        out[Path(rec.source_filename).stem] = (transform_points(lm[48:60], to_frame),
                                               transform_points(lm[27:48], to_frame))
    return out


def _area(shape: tuple[int, ...], pts: np.ndarray) -> np.ndarray:
    area = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(area, np.round(cv2.convexHull(np.float32(pts))).astype(np.int32).reshape(-1, 2), 1)
    return area.astype(bool)


@pytest.mark.slow
def test_a_region_the_labels_exclude_stays_the_dsts_in_the_merged_frame(demo_with_three_dst_frames, tmp_path: Path,
                                                                        dfl_run) -> None:
    """Label the dst faces with the mouth excluded, train XSeg on them (`dfl train --model XSeg`), merge with
    XSeg-dst (`dfl merge --xseg-name`): the lips keep the dst's pixels, the eyes and nose are swapped."""
    ws, stems = demo_with_three_dst_frames
    regions = _label_with_mouth_excluded(ws)
    cfg = tmp_path / "xseg.json"
    cfg.write_text(json.dumps({"face_type": "f", "batch_size": 2}))     # the demo's Quick96 is full_face
    res = dfl_run("train", "-w", ws.root, "--model", "XSeg", "--name", "mouthless", "--non-interactive",
                  "--config", cfg, "--target-iter", EXCLUSION_ITERATIONS, "--seed", "0", "--workers", "0",
                  "--preview-seconds", "1e9")
    assert res.code == 0, res.err
    res = dfl_run("merge", "-w", ws.root, "--name", "demo", "--non-interactive", "--mask-mode", "XSeg-dst",
                  "--xseg-name", "mouthless", "--color-transfer", "none")
    assert res.code == 0 and f"Merged {len(stems)} frames" in res.out, res.err
    for stem in stems:
        dst = cv2.imread(str(ws.data_dst / f"{stem}.png")).astype(np.float32)
        out = cv2.imread(str(ws.merged_dir / f"{stem}.png")).astype(np.float32)
        mask = cv2.imread(str(ws.merged_mask_dir / f"{stem}.png"), cv2.IMREAD_UNCHANGED) / 255.0
        lips, eyes_nose = (_area(dst.shape, pts) for pts in regions[stem])
        assert mask[lips].mean() < 0.05 and np.abs(out - dst)[lips].mean() < 3, f"{stem}: the excluded mouth was swapped"
        assert (out == dst).all(-1)[lips].mean() > 0.5                 # most of the lips exactly the dst's
        assert mask[eyes_nose].mean() > 0.8 and np.abs(out - dst)[eyes_nose].mean() > 20, f"{stem}: face not swapped"
