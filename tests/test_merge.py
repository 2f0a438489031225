"""Merge: each mode and mask mode on a drawn face, the folder merger, labels, resume, the interactive keys."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfl.errors import DflError
from dfl.faces.align import FaceType, transform_matrix, transform_points
from dfl.imageops import synthetic_label as label
from dfl.merge.config import COLOR_TRANSFER_MODES, MASK_MODES, MODES, XSEG_MASK_MODES, MergeConfig
from dfl.merge.face import merge_frame
from dfl.merge.frames import CONFIG_NAME, merge_folder
from dfl.merge.interactive import ESC, TAB, MergeSession, render_screen, run_loop
from dfl.merge.synthetic import draw_face, template_landmarks
from dfl.workspace import Workspace

RES = 64
FACE_BGR = (0.15, 0.85, 0.25)


class StandInPredictor:
    """A 'model' that predicts a flat green face with a round learned mask (known answers)."""

    resolution = RES
    face_type = FaceType.FULL

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, faces, morph_value=None):
        self.calls += 1
        n = len(faces)
        prd = np.empty((n, RES, RES, 3), np.float32)
        prd[:] = FACE_BGR
        m = np.zeros((RES, RES), np.float32)
        cv2.circle(m, (RES // 2, RES // 2 + 2), RES // 3, 1.0, -1)
        dst_m = np.zeros((RES, RES), np.float32)
        cv2.ellipse(dst_m, (RES // 2, RES // 2), (RES // 3, RES // 3 + 6), 0, 0, 360, 1.0, -1)
        return prd, np.repeat(m[None], n, 0), np.repeat(dst_m[None], n, 0)


def xseg_stand_in(faces: np.ndarray) -> np.ndarray:
    out = np.zeros(faces.shape[:3], np.float32)
    for m in out:
        cv2.circle(m, (128, 140), 80, 1.0, -1)
    return out


def _frame(seed: int = 0, smooth: bool = False, faces=((160, 120, 90),)) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    if smooth:
        yy, xx = np.mgrid[0:240, 0:320]
        frame = np.stack([60 + xx * 0.2, 90 + yy * 0.2, 120 + 0 * xx], -1).astype(np.uint8)
    else:
        frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    lms = []
    for cx, cy, w in faces:
        lm = template_landmarks(cx, cy, w)
        draw_face(frame, lm)
        lms.append(lm)
    return frame, lms


def _outside_unchanged(frame, out, mask):
    return np.array_equal(out[mask == 0], frame[mask == 0])


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_changes_only_inside_the_mask(mode):
    frame, lms = _frame(1)
    out, mask = merge_frame(frame, lms, StandInPredictor(), MergeConfig(mode=mode, color_transfer_mode="none"))
    if mode == "raw-predict":          # DFL: the predicted face itself, at model resolution
        assert out.shape == (RES, RES, 3)
        assert np.abs(out.reshape(-1, 3).mean(0) / 255 - FACE_BGR).max() < 0.01
        assert mask.shape == (RES, RES) and mask.max() > 0.9
        return
    assert out.shape == frame.shape and mask.shape == frame.shape[:2] and mask.dtype == np.float32
    assert 0 <= mask.min() and mask.max() <= 1 and (mask > 0.5).sum() > 1000
    if mode == "original":
        assert np.array_equal(out, frame)
    elif mode == "raw-rgb":            # the whole predicted square is pasted; its inside is the predicted face
        mat = transform_matrix(lms[0], RES, FaceType.FULL)
        back = cv2.warpAffine(out, mat, (RES, RES), flags=cv2.INTER_LINEAR)
        assert np.abs(back[8:-8, 8:-8].reshape(-1, 3).mean(0) / 255 - FACE_BGR).max() < 0.02
        corners = transform_points(np.float64([(0, 0), (RES, 0), (RES, RES), (0, RES)]), mat, invert=True)
        x0, y0 = np.floor(corners.min(0)).astype(int) - 3
        x1, y1 = np.ceil(corners.max(0)).astype(int) + 3
        outside = np.ones(frame.shape[:2], bool)
        outside[max(0, y0):y1, max(0, x0):x1] = False
        assert np.array_equal(out[outside], frame[outside])
    else:
        assert _outside_unchanged(frame, out, mask)
        inside = mask > 0.99
        assert (np.abs(out.astype(int) - frame.astype(int)).sum(-1)[inside] > 0).mean() > 0.9


def test_overlay_puts_the_predicted_colour_where_the_mask_is_full():
    frame, lms = _frame(2)
    out, mask = merge_frame(frame, lms, StandInPredictor(), MergeConfig(mode="overlay", color_transfer_mode="none"))
    inside = mask >= 1.0
    assert inside.sum() > 500
    assert np.abs(out[inside].mean(0) / 255 - FACE_BGR).max() < 0.01


@pytest.mark.parametrize("mask_mode", [m for m in MASK_MODES])
def test_each_mask_mode(mask_mode):
    frame, lms = _frame(3)
    cfg = MergeConfig(mask_mode=mask_mode, color_transfer_mode="none")
    if mask_mode in XSEG_MASK_MODES:
        with pytest.raises(DflError, match="XSeg"):
            merge_frame(frame, lms, StandInPredictor(), cfg)
        out, mask = merge_frame(frame, lms, StandInPredictor(), cfg, xseg=xseg_stand_in)
    else:
        out, mask = merge_frame(frame, lms, StandInPredictor(), cfg)
    assert mask.max() > 0.9 and _outside_unchanged(frame, out, mask)
    areas = {}
    for mm in ("full", "learned-prd", "learned-dst", "learned-prd*learned-dst", "learned-prd+learned-dst"):
        areas[mm] = (merge_frame(frame, lms, StandInPredictor(), MergeConfig(mask_mode=mm))[1] > 0.5).sum()
    if mask_mode == "full":
        assert areas["full"] > areas["learned-prd+learned-dst"] >= areas["learned-dst"] \
            > areas["learned-prd*learned-dst"] > 0


def test_erode_shrinks_blur_softens_and_face_scale_moves_the_mask():
    frame, lms = _frame(4)
    p = StandInPredictor()
    base = merge_frame(frame, lms, p, MergeConfig())[1]
    eroded = merge_frame(frame, lms, p, MergeConfig(erode_mask_modifier=40))[1]
    dilated = merge_frame(frame, lms, p, MergeConfig(erode_mask_modifier=-40))[1]
    assert (eroded > 0.5).sum() < (base > 0.5).sum() < (dilated > 0.5).sum()
    soft = merge_frame(frame, lms, p, MergeConfig(blur_mask_modifier=80))[1]
    assert ((soft > 0.05) & (soft < 0.95)).sum() > 3 * ((base > 0.05) & (base < 0.95)).sum()
    smaller = merge_frame(frame, lms, p, MergeConfig(output_face_scale=-30))[1]
    assert (smaller > 0.5).sum() > (base > 0.5).sum()     # scale < 0: the face covers more of the frame


def test_seamless_leaves_no_hard_edge_at_the_mask_border():
    frame, lms = _frame(5, smooth=True)
    p = StandInPredictor()

    def edge_step(mode: str) -> float:
        out, mask = merge_frame(frame, lms, p, MergeConfig(mode=mode, color_transfer_mode="none"))
        hard = (mask > 0.5).astype(np.uint8)
        inner = hard - cv2.erode(hard, np.ones((3, 3), np.uint8))
        outer = cv2.dilate(hard, np.ones((3, 3), np.uint8)) - hard
        o = out.astype(np.float32)
        return float(np.abs(o[inner > 0].mean(0) - o[outer > 0].mean(0)).max())

    assert edge_step("overlay") > 60          # the flat green face against the background
    assert edge_step("seamless") < 6          # Poisson blending matches the border


def test_every_colour_transfer_and_post_filter_runs_inside_the_mask():
    frame, lms = _frame(6)
    p = StandInPredictor()
    for ct in COLOR_TRANSFER_MODES:
        out, mask = merge_frame(frame, lms, p, MergeConfig(color_transfer_mode=ct, sharpen_mode="gaussian",
                                                             blursharpen_amount=20, motion_blur_power=50),
                                motions=[(12.0, 30.0)], rng=np.random.default_rng(0))
        assert _outside_unchanged(frame, out, mask), ct
    for mode in ("seamless", "seamless-hist-match", "hist-match"):
        out, mask = merge_frame(frame, lms, p, MergeConfig(mode=mode, color_transfer_mode="rct",
                                                             masked_hist_match=False))
        assert _outside_unchanged(frame, out, mask), mode
    # whole-frame degrades (as DFL) change the frame everywhere but stay close
    out, _ = merge_frame(frame, lms, p, MergeConfig(image_denoise_power=50, bicubic_degrade_power=30,
                                                    color_degrade_power=20))
    assert out.shape == frame.shape and not np.array_equal(out, frame)


def test_several_faces_and_no_faces():
    frame, lms = _frame(7, faces=((80, 120, 70), (240, 120, 70)))
    out, mask = merge_frame(frame, lms, StandInPredictor(), MergeConfig(color_transfer_mode="none"))
    assert mask[:, :160].max() > 0.9 and mask[:, 160:].max() > 0.9
    assert _outside_unchanged(frame, out, mask)
    out, mask = merge_frame(frame, [], StandInPredictor(), MergeConfig())
    assert np.array_equal(out, frame) and mask.max() == 0


def test_config_ranges_files_and_adjusters(tmp_path):
    with pytest.raises(DflError, match="erode_mask_modifier"):
        MergeConfig(erode_mask_modifier=500).validate()
    with pytest.raises(DflError, match="super_resolution_power"):
        MergeConfig(super_resolution_power=101).validate()
    with pytest.raises(DflError, match="unknown setting"):
        MergeConfig.from_dict({"erode": 3})
    f = tmp_path / "m.yaml"
    f.write_text("mode: seamless\nblur-mask-modifier: 40\ncolor_transfer_mode: mkl-m\nerode: -5\n")
    cfg = MergeConfig.from_file(f)
    assert (cfg.mode, cfg.blur_mask_modifier, cfg.color_transfer_mode) == ("seamless", 40, "mkl-m")
    assert cfg.erode_mask_modifier == -5                  # the CLI flag names work in files too
    cfg.add_blur_mask_modifier(1000)
    cfg.add_erode_mask_modifier(-1000)
    assert (cfg.blur_mask_modifier, cfg.erode_mask_modifier) == (400, -400)
    for _ in MASK_MODES:
        cfg.toggle_mask_mode()
    assert cfg.mask_mode == MergeConfig().mask_mode


# -- the folder merger ------------------------------------------------------------------------------
def _workspace(tmp_path: Path, n: int = 4, faceless: tuple[int, ...] = (2,)) -> tuple[Workspace, dict]:
    ws = Workspace(tmp_path / "ws")
    ws.data_dst.mkdir(parents=True)
    alignments = {}
    for i in range(n):
        frame, lms = _frame(10 + i, faces=((150 + 5 * i, 120, 90),))
        cv2.imwrite(str(ws.data_dst / f"{i:05d}.png"), frame)
        if i not in faceless:
            alignments[f"{i:05d}"] = lms
    return ws, alignments


def test_merge_folder_writes_labelled_frames_masks_and_config_and_resumes(tmp_path):
    ws, al = _workspace(tmp_path)
    p = StandInPredictor()
    cfg = MergeConfig(color_transfer_mode="none")
    s = merge_folder(ws, None, cfg, predictor=p, alignments=al, model_info={"name": "t", "iteration": 3},
                     progress=False, workers=2, batch_frames=3)
    assert (s.merged, s.copied, s.skipped) == (3, 1, 0)
    for i in range(4):
        src = cv2.imread(str(ws.data_dst / f"{i:05d}.png"))
        out = cv2.imread(str(ws.merged_dir / f"{i:05d}.png"))
        mask8 = cv2.imread(str(ws.merged_mask_dir / f"{i:05d}.png"), cv2.IMREAD_UNCHANGED)
        if i == 2:                      # no face: copied unchanged, empty mask, not marked synthetic
            assert np.array_equal(out, src) and mask8.max() == 0
            assert "AI-Modified" not in label.read_png_text_file(ws.merged_dir / f"{i:05d}.png")
            continue
        exp_out, exp_mask = merge_frame(src, al[f"{i:05d}"], p, cfg)
        assert np.array_equal(out, exp_out)
        assert np.array_equal(mask8, (exp_mask * 255).astype(np.uint8))      # merged_mask is the mask
        assert np.array_equal(out[mask8 == 0], src[mask8 == 0])
        text = label.read_png_text_file(ws.merged_dir / f"{i:05d}.png")
        assert "synthetic face" in text["Comment"] and "dfl" in text["Comment"]
    saved = json.loads((ws.merged_dir / CONFIG_NAME).read_text())
    assert saved["model"]["iteration"] == 3 and saved["mode"] == "overlay"
    assert MergeConfig.from_file(ws.merged_dir / CONFIG_NAME) == cfg

    before = p.calls
    s = merge_folder(ws, None, cfg, predictor=p, alignments=al, model_info={"name": "t", "iteration": 3},
                     progress=False)
    assert (s.merged, s.skipped, p.calls) == (0, 4, before)          # same settings: nothing to do
    per_frame = {"00001": MergeConfig(mode="seamless", color_transfer_mode="none")}
    s = merge_folder(ws, None, cfg, predictor=p, alignments=al, model_info={"name": "t", "iteration": 3},
                     frame_configs=per_frame, progress=False)
    assert (s.merged, s.skipped) == (1, 3)                            # only the changed frame
    s = merge_folder(ws, None, cfg, predictor=p, alignments=al, model_info={"name": "t", "iteration": 4},
                     progress=False)
    assert s.merged + s.copied == 4                                   # model trained further: all again


def test_visible_label_and_xseg_check(tmp_path):
    ws, al = _workspace(tmp_path, n=1, faceless=())
    with pytest.raises(DflError, match="XSeg"):
        merge_folder(ws, None, MergeConfig(mask_mode="XSeg-dst"), predictor=StandInPredictor(), alignments=al,
                     progress=False)
    cfg = MergeConfig(visible_label=True, color_transfer_mode="none")
    merge_folder(ws, None, cfg, predictor=StandInPredictor(), alignments=al, progress=False)
    frame = cv2.imread(str(ws.data_dst / "00000.png"))
    out = cv2.imread(str(ws.merged_dir / "00000.png"))
    expected, _ = merge_frame(frame, al["00000"], StandInPredictor(), cfg)
    corner = np.s_[-30:, :120]
    assert not np.array_equal(out[corner], expected[corner])


# -- the interactive merger ---------------------------------------------------------------------------
class FeedUI:
    """Feeds keys to the event loop and records what would be shown."""

    def __init__(self, keys):
        self.keys = list(keys)
        self.shown: list[np.ndarray] = []

    def show(self, image):
        self.shown.append(image)

    def next_key(self):
        return self.keys.pop(0) if self.keys else ""

    def close(self):
        pass


def test_interactive_keys_drive_the_settings_per_frame(tmp_path):
    stems = ["a", "b", "c", "d", "e"]
    s = MergeSession(stems, MergeConfig())
    for k in "3wwWEx":                   # seamless, erode 1+1+5, blur +5, next mask mode
        s.handle_key(k)
    assert (s.cfg.mode, s.cfg.erode_mask_modifier, s.cfg.blur_mask_modifier) == ("seamless", 7, 5)
    assert s.cfg.mask_mode == "learned-prd+learned-dst"
    s.handle_key(".")                    # next frame inherits
    assert s.index == 1 and s.cfg.erode_mask_modifier == 7
    s.handle_key("s")
    s.handle_key(",")                    # back: frame a kept its own settings
    assert s.index == 0 and s.cfg.erode_mask_modifier == 7
    s.handle_key("c")                    # rct -> lct on frame a only
    s.handle_key("/")                    # next frame, overriding with a's settings
    assert s.index == 1 and s.cfg.color_transfer_mode == "lct" and s.cfg.erode_mask_modifier == 7
    s.handle_key("1")
    s.handle_key("?")                    # these settings for every following frame
    assert all(s.resolved(i).mode == "overlay" for i in range(1, 5))
    assert s.resolved(0).mode == "seamless"
    s.handle_key(TAB)
    assert s.show_help and not s.handle_key("w").changed    # help screen swallows keys
    s.handle_key(TAB)
    s.handle_key("<")
    assert s.index == 0
    s.handle_key("t")
    s.handle_key("T")
    assert s.cfg.super_resolution_power == 6        # DFL's t/g: +1, Shift +5
    s.handle_key("G")
    s.handle_key("g")
    assert s.cfg.super_resolution_power == 0
    for _ in range(60):
        s.handle_key("A")                # hist threshold only moves in hist-match modes
    assert s.cfg.hist_match_threshold == 238
    assert s.handle_key(ESC).quit

    path = tmp_path / "merger_session.json"
    s.save(path)
    again = MergeSession.load_or_new(path, stems, MergeConfig())
    assert again.all_configs() == s.all_configs() and "saved session" in again.message
    assert MergeSession.load_or_new(path, stems[:3], MergeConfig()).all_configs()["a"] == MergeConfig()


def test_event_loop_renders_frames_from_fed_keys():
    frames = [_frame(20 + i) for i in range(3)]
    p = StandInPredictor()
    rendered = []

    def render(i, cfg):
        rendered.append((i, cfg.mode))
        return merge_frame(frames[i][0], frames[i][1], p, cfg)

    s = MergeSession(["f0", "f1", "f2"], MergeConfig(color_transfer_mode="none"))
    ui = FeedUI(["3", ".", "-", "v", TAB, TAB, "1", ".", ESC, "w"])
    run_loop(s, render, ui)
    assert ui.keys == ["w"]                              # stopped at Esc
    # zoom, checkerboard and help redraw from the cache; settings and frames re-merge
    assert rendered == [(0, "overlay"), (0, "seamless"), (1, "seamless"), (1, "overlay"), (2, "overlay")]
    assert s.index == 2 and len(ui.shown) == 9
    assert s.zoom == 0.9 and s.checkerboard
    screen = render_screen(s, *render(2, s.cfg))
    assert screen.shape[1] == int(320 * 0.9)


# -- the command line on a real (tiny, untrained) model ---------------------------------------------------
def test_cli_merge_with_a_saved_model_and_dst_faceset(tmp_path):
    from click.testing import CliRunner

    from dfl.cli import cli
    from dfl.faceset import FaceRecord, write_face
    from dfl.models import build_model, default_options
    from dfl.models.store import model_path, save_checkpoint

    ws, al = _workspace(tmp_path, n=3, faceless=(1,))
    ws.aligned_dir("dst").mkdir(parents=True)
    for stem, lms in al.items():
        frame = cv2.imread(str(ws.data_dst / f"{stem}.png"))
        mat = transform_matrix(lms[0], 128, FaceType.WHOLE_FACE)
        face = cv2.warpAffine(frame, mat, (128, 128))
        rec = FaceRecord(face_type="whole_face", landmarks=transform_points(lms[0], mat).astype(np.float32),
                         source_filename=f"{stem}.png", source_landmarks=lms[0].astype(np.float32),
                         image_to_face_mat=mat)
        write_face(ws.aligned_dir("dst") / f"{stem}_0.jpg", face, rec)
    opts = dict(default_options("SAEHD"), resolution=64, ae_dims=32, e_dims=16, d_dims=16, d_mask_dims=16)
    model = build_model("SAEHD", opts)
    save_checkpoint(model_path(ws.model_dir, "tiny", "SAEHD"), "SAEHD", opts, {"iteration": 7}, model.networks, None)

    runner = CliRunner()
    args = ["merge", "--workspace", str(ws.root), "--model", "SAEHD", "--name", "tiny", "--non-interactive",
            "--mode", "overlay", "--mask-mode", "learned-prd*learned-dst", "--color-transfer", "rct",
            "--device", "cpu"]
    res = runner.invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "Merged 2 frames, copied 1" in res.output
    assert sorted(p.name for p in ws.merged_dir.glob("*.png")) == ["00000.png", "00001.png", "00002.png"]
    assert len(list(ws.merged_mask_dir.glob("*.png"))) == 3
    saved = json.loads((ws.merged_dir / CONFIG_NAME).read_text())
    assert saved["model"]["iteration"] == 7 and saved["color_transfer_mode"] == "rct"
    for stem in al:
        out = cv2.imread(str(ws.merged_dir / f"{stem}.png"))
        src = cv2.imread(str(ws.data_dst / f"{stem}.png"))
        m = cv2.imread(str(ws.merged_mask_dir / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(out[m == 0], src[m == 0])
    # repeating from the saved config merges nothing new
    # (asking for the window without a display says so and merges non-interactively)
    res = runner.invoke(cli, ["merge", "-w", str(ws.root), "--model", "tiny", "--interactive", "--device", "cpu",
                              "--config", str(ws.merged_dir / CONFIG_NAME)], catch_exceptions=False,
                        env={"DISPLAY": None, "WAYLAND_DISPLAY": None})
    assert res.exit_code == 0 and "skipped 3 already merged" in res.output, res.output
    assert "needs a window" in res.output
    res = runner.invoke(cli, ["merge", "-w", str(ws.root), "--model", "AMP", "--non-interactive"])
    assert res.exit_code != 0 and "no model" in str(res.exception or res.output)


# -- real footage: the shared HDTF dst clip end to end -------------------------------------------------
HDTF_DST = Path(__file__).resolve().parents[2] / "shared" / "media" / "video" / "hdtf" / "WDA_KatieHill_000.mp4"


@pytest.mark.shared
@pytest.mark.slow
def test_hdtf_dst_merged_in_every_frame_then_video_keeps_count_fps_audio_and_label(tmp_path):
    """No frame flickers back to the unmerged face: every frame is merged with a similar mask."""
    if not HDTF_DST.is_file():
        pytest.skip("../shared/media is not available")
    from click.testing import CliRunner

    from dfl import video as vid
    from dfl.cli import cli
    from dfl.models import build_model, default_options
    from dfl.models.store import model_path, save_checkpoint

    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir()
    vid.cut_video(HDTF_DST, ws.root / "data_dst.mp4", start=0, end=0.6, desc=None)   # 15 frames, with audio
    runner = CliRunner()
    for args in (["extract-frames", "dst"], ["extract-faces", "dst", "--non-interactive", "--device", "cpu"]):
        res = runner.invoke(cli, args + ["-w", str(ws.root)], catch_exceptions=False)
        assert res.exit_code == 0, res.output
    opts = dict(default_options("SAEHD"), resolution=64, ae_dims=32, e_dims=16, d_dims=16, d_mask_dims=16)
    model = build_model("SAEHD", opts)
    save_checkpoint(model_path(ws.model_dir, "tiny", "SAEHD"), "SAEHD", opts, {"iteration": 1}, model.networks, None)
    res = runner.invoke(cli, ["merge", "-w", str(ws.root), "--model", "tiny", "--non-interactive", "--device", "cpu",
                              "--mask-mode", "full", "--color-transfer", "rct"], catch_exceptions=False)
    assert res.exit_code == 0, res.output

    frames = sorted(ws.data_dst.glob("*.png"))
    assert len(frames) >= 14
    areas, changes = [], []
    for f in frames:
        src = cv2.imread(str(f)).astype(np.int16)
        out = cv2.imread(str(ws.merged_dir / f.name)).astype(np.int16)
        m = cv2.imread(str(ws.merged_mask_dir / f.name), cv2.IMREAD_UNCHANGED)
        inside = m > 128
        areas.append(inside.sum())
        changes.append(np.abs(out - src)[inside].mean() if inside.any() else 0.0)
        assert np.array_equal(out[m == 0], src[m == 0])
    areas = np.array(areas, float)
    assert areas.min() > 0.5 * areas.max() > 0          # a face merged in every frame, none dropped
    assert min(changes) > 5                              # ...and actually replaced by the prediction

    out = ws.root / "labelled.mp4"
    from dfl.imageops.synthetic_label import video_metadata
    n = vid.frames_to_video(ws.merged_dir, out, fps=vid.probe(ws.root / "data_dst.mp4").fps,
                            audio_from=ws.root / "data_dst.mp4", metadata=video_metadata(), desc=None)
    info, ref = vid.probe(out), vid.probe(ws.root / "data_dst.mp4")
    assert n == len(frames) == vid.count_frames(out) == vid.count_frames(ws.root / "data_dst.mp4")
    assert info.fps == ref.fps and info.has_audio
    assert "synthetic face" in info.metadata.get("comment", "")


# --- speed paths: they must give the same answers as the plain ones -------------------------------------

@pytest.mark.parametrize("zlib_only", [False, True])
def test_fast_png_writer_round_trips_pixels_and_labels(monkeypatch, zlib_only):
    from dfl.imageops import png

    if zlib_only:       # the fallback when the isal package is missing
        monkeypatch.setattr(png, "_isal", None)
    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    bgr[10:20] = 7                                       # runs and wrap-around in the "up" filter
    grey = np.zeros((31, 41), np.uint8)
    grey[5:9, 3:30] = 255
    for img in (bgr, grey, bgr[3:20, 5:40], bgr[:1, :1]):   # views too, not only contiguous arrays
        data = png.encode_png(img, {"Comment": label.COMMENT, "dfl-merge": "abc:model@3"})
        back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert back.shape == img.shape and np.array_equal(back, img)
        assert label.read_png_text(data) == {"Comment": label.COMMENT, "dfl-merge": "abc:model@3"}
    with pytest.raises(DflError):
        png.encode_png(bgr.astype(np.float32))


@pytest.mark.parametrize("kind,opts", [("SAEHD", dict(resolution=32, archi="df-ud", ae_dims=16, e_dims=8,
                                                      d_dims=8, d_mask_dims=8)),      # Quick96's archi
                                       ("SAEHD", dict(resolution=32, archi="liae-ud", ae_dims=16, e_dims=8,
                                                      d_dims=8, d_mask_dims=8)),
                                       ("SAEHD", dict(resolution=32, archi="df-t", ae_dims=16, e_dims=8,
                                                      d_dims=8, d_mask_dims=8)),
                                       ("AMP", dict(resolution=32, ae_dims=16, inter_dims=16, e_dims=8,
                                                    d_dims=8, d_mask_dims=8))])
def test_swap_mask_only_path_matches_the_full_decoders(kind, opts):
    """swap() skips the dst decoder's face branch; its masks must equal the full decoders' outputs."""
    import torch

    from dfl.models import build_model

    torch.manual_seed(0)
    model = build_model(kind, opts).eval()
    r = model.resolution
    x = torch.rand(2, 3, r, r)
    before = torch.get_num_threads()
    torch.set_num_threads(1)     # tiny tensors: threads only fight over the shared cores
    with torch.inference_mode():
        face, face_m, dst_m = model.swap(x)
        code = model.encoder(x)
        if kind == "AMP":
            ref_face, ref_m = model.decoder(model._morph_code(model.inter_src(code), model.inter_dst(code), 1.0))
            _, ref_dst_m = model.decoder(model.inter_dst(code))
        elif model.archi_type == "df":
            z = model.inter(code)
            ref_face, ref_m = model.decoder_src(z)
            _, ref_dst_m = model.decoder_dst(z)
        else:
            ab, b = model.inter_AB(code), model.inter_B(code)
            ref_face, ref_m = model.decoder(torch.cat((ab, ab), 1))
            _, ref_dst_m = model.decoder(torch.cat((b, ab), 1))
    torch.set_num_threads(before)
    assert face.shape == (2, 3, r, r) and face_m.shape == dst_m.shape == (2, 1, r, r)
    for got, ref in ((face, ref_face), (face_m, ref_m), (dst_m, ref_dst_m)):
        assert torch.allclose(got, ref, atol=1e-5)


def test_cpu_merge_shares_cores_and_restores_torch_threads(tmp_path):
    """A CPU model predicts with half the cores while the workers blend; the setting is undone after."""
    import torch

    from dfl.merge.face import ModelPredictor
    from dfl.merge.frames import frame_infos, merge_frames, merge_torch_threads
    from dfl.models import build_model

    assert merge_torch_threads(2) == 1 and merge_torch_threads(16) == 8 and merge_torch_threads(1) == 1
    frame, lms = _frame(smooth=True)
    cv2.imwrite(str(tmp_path / "00000.png"), frame)
    seen = []

    class Spy(ModelPredictor):
        def __call__(self, faces, morph_value=None):
            seen.append(torch.get_num_threads())
            return super().__call__(faces, morph_value)

    model = build_model("SAEHD", dict(resolution=32, archi="df", ae_dims=16, e_dims=8, d_dims=8,
                                      d_mask_dims=8)).eval()
    before = torch.get_num_threads()
    infos = frame_infos([tmp_path / "00000.png"], {"00000": lms})
    s = merge_frames(infos, tmp_path / "out", tmp_path / "mask", Spy(model, torch.device("cpu")),
                     MergeConfig(mode="overlay", color_transfer_mode="rct"), progress=False, torch_threads=1)
    assert s.merged == 1 and seen == [1] and torch.get_num_threads() == before
    mask = cv2.imread(str(tmp_path / "mask" / "00000.png"), cv2.IMREAD_UNCHANGED)
    out = cv2.imread(str(tmp_path / "out" / "00000.png"))
    assert mask.dtype == np.uint8 and mask.ndim == 2 and mask.max() > 0
    assert np.array_equal(out[mask == 0], frame[mask == 0])
