"""Face extraction: backends registry, weights folder, S3FD/FAN processing, the pipeline and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dfl.errors import DflError
from dfl.extract import STATE_FILE, ExtractOptions, extract_faces
from dfl.faces.find import find_faces, rotate, rotate_points, unrotate_box, unrotate_points, upright_turn
from dfl.faces import registry
from dfl.faces.verify import FaceVerifier
from dfl.faces.weights import ENV_VAR, find_weights, weights_dir

SHARED = Path(__file__).resolve().parents[2] / "shared"
HDTF = SHARED / "media/video/hdtf"


# ----------------------------------------------------------------------------------- helpers
def _video_frames(video: Path, n: int, step: int = 25) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    out, i = [], 0
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            break
        if i % step == 0:
            out.append(f)
        i += 1
    cap.release()
    return out


@pytest.fixture(scope="module")
def hdtf_frames() -> list[np.ndarray]:
    """Three frames from each shared HDTF clip (skip when ../shared is missing)."""
    if not HDTF.is_dir():
        pytest.skip(f"{HDTF} not available")
    frames = []
    for clip in sorted(HDTF.glob("*.mp4")):
        frames += _video_frames(clip, 3)
    if len(frames) < 6:
        pytest.skip("HDTF clips do not decode here")
    return frames


@pytest.fixture(scope="module")
def default_backends() -> registry.Backends:
    return registry.get_backends("auto", "auto", "cpu", Path("/nonexistent-weights"))


def _write_frames(folder: Path, frames: list[np.ndarray]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(frames):
        p = folder / f"{i + 1:05d}.png"
        cv2.imwrite(str(p), f)
        paths.append(p)
    return paths


# ----------------------------------------------------------------------------------- weights + registry
def test_weights_dir_option_then_env_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    (tmp_path / "opt").mkdir()
    assert weights_dir(str(tmp_path / "opt")) == tmp_path / "opt"
    assert weights_dir(None) == tmp_path / "env"
    monkeypatch.delenv(ENV_VAR)
    assert weights_dir(None) == Path.home() / ".dfl" / "weights"


def test_auto_picks_dfl_pair_only_when_both_weights_exist(tmp_path: Path) -> None:
    assert registry.resolve_names("auto", "auto", tmp_path) == ("blazeface", "facemesh")
    (tmp_path / "s3fd-619a316812.pth").write_bytes(b"x")
    assert registry.resolve_names("auto", "auto", tmp_path) == ("blazeface", "facemesh")
    (tmp_path / "2DFAN4-cd938726ad.zip").write_bytes(b"x")
    assert registry.resolve_names("auto", "auto", tmp_path) == ("s3fd", "fan")
    assert find_weights(tmp_path, ("2DFAN4-*.pth.tar", "2DFAN4-*.zip")).name == "2DFAN4-cd938726ad.zip"
    assert registry.resolve_names("blazeface", "auto", tmp_path) == ("blazeface", "facemesh")
    with pytest.raises(DflError, match="unknown detector"):
        registry.resolve_names("mtcnn", "auto", tmp_path)


def test_missing_weights_error_names_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DflError) as e:
        registry.get_detector("s3fd", "cpu", tmp_path)
    msg = str(e.value)
    assert "s3fd-619a316812.pth" in msg and str(tmp_path) in msg and "\n" not in msg
    with pytest.raises(DflError, match="2DFAN4"):
        registry.get_landmarker("fan", "cpu", tmp_path)


def test_dlib_missing_is_a_clear_error_or_uses_the_packaged_model(tmp_path: Path) -> None:
    # dlib is optional: without it the error says how to install it; with it (dfl[dlib]) the 68-point model
    # comes from face-recognition-models, or a missing model file is named
    from dfl.faces.dlib_backend import packaged_model

    try:
        import dlib  # noqa: F401
    except ImportError:
        with pytest.raises(DflError, match=r'pip install "dfl\[dlib\]"'):
            registry.get_landmarker("dlib", "cpu", tmp_path)
        return
    if packaged_model("shape_predictor_68_face_landmarks.dat") is None:
        with pytest.raises(DflError, match="shape_predictor_68_face_landmarks.dat"):
            registry.get_landmarker("dlib", "cpu", tmp_path)
    else:
        assert registry.get_landmarker("dlib", "cpu", tmp_path).name == "dlib"


# ----------------------------------------------------------------------------------- S3FD
def test_s3fd_decode_and_nms_match_face_alignment() -> None:
    from face_alignment.detection.sfd.bbox import nms as fa_nms
    from face_alignment.detection.sfd.detect import get_predictions

    from dfl.faces.backends import nms
    from dfl.faces.s3fd import decode

    rng = np.random.default_rng(0)
    outs = []
    for level in range(6):
        hw = 32 >> level
        logits = rng.normal(0, 2, (1, 2, hw, hw)).astype(np.float32)
        cls = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        outs += [cls, rng.normal(0, 1, (1, 4, hw, hw)).astype(np.float32)]
    ours = decode([o[0] for o in outs])
    theirs = get_predictions([o.copy() for o in outs], 1)[0]
    key = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    np.testing.assert_allclose(key(ours), key(theirs), rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(np.sort(nms(ours, 0.3)), np.sort(np.array(fa_nms(ours, 0.3))))


def test_s3fd_postprocess_follows_dfl() -> None:
    from dfl.faces.s3fd import input_scale, postprocess

    assert input_scale(720, 1280) == 2.0          # 1280 -> 640
    assert input_scale(512, 512) == 2.0           # d / 2 below 1280
    assert input_scale(100, 90) == 100 / 64       # never below 64
    assert input_scale(1080, 1920) == 3.0         # capped at 640
    cand = np.array([
        [10.7, 20.2, 60.9, 80.5, 0.9],    # kept: 50x60 at network scale
        [12.0, 21.0, 61.0, 81.0, 0.8],    # overlaps the first: suppressed
        [100, 100, 115, 115, 0.95],       # 15 px * 2 = 30 px in the frame: too small
        [200, 10, 300, 130, 0.6],         # larger face, kept and listed first
        [400, 400, 460, 460, 0.4],        # below score 0.5
    ])
    out = postprocess(cand, 2.0)
    assert out.shape == (2, 5)
    # ints at network scale, x2, bottom + 10% of height, int again; largest area first
    np.testing.assert_array_equal(out[0, :4], [400, 20, 600, int(260 + 240 * 0.1)])
    np.testing.assert_array_equal(out[1, :4], [20, 40, 120, int(160 + 120 * 0.1)])
    assert out[0, 4] == pytest.approx(0.6)


def test_s3fd_detector_loads_a_saved_state_dict(tmp_path: Path) -> None:
    from face_alignment.detection.sfd.net_s3fd import s3fd

    from dfl.faces.s3fd import S3FDDetector

    torch.manual_seed(0)
    path = tmp_path / "s3fd-619a316812.pth"
    torch.save(s3fd().state_dict(), path)
    det = registry.get_detector("s3fd", "cpu", tmp_path)
    assert isinstance(det, S3FDDetector)
    imgs = [np.full((150, 200, 3), 128, np.uint8), np.zeros((150, 200, 3), np.uint8), np.zeros((90, 80, 3), np.uint8)]
    res = det.detect(imgs)
    assert len(res) == 3
    for r in res:
        assert r.ndim == 2 and r.shape[1] == 5
        if len(r):
            assert np.all(np.minimum(r[:, 2] - r[:, 0], r[:, 3] - r[:, 1]) >= 40)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "s3fd-619a316812.pth").write_bytes(b"not a torch file")
    with pytest.raises(DflError, match="s3fd-619a316812.pth"):
        registry.get_detector("s3fd", "cpu", tmp_path / "bad")


# ----------------------------------------------------------------------------------- FAN
def test_fan_crop_matches_face_alignment_crop() -> None:
    from face_alignment.utils import crop as fa_crop

    from dfl.faces.fan import crop

    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    for center, scale in [((80, 60), 0.5), ((10, 5), 0.4), ((150, 110), 0.7), ((80.4, 60.6), 1.3)]:
        np.testing.assert_array_equal(crop(img, np.array(center), scale), fa_crop(img, np.array(center), scale))


def test_fan_heatmap_peak_gets_quarter_pixel_shift() -> None:
    from dfl.faces.fan import heatmap_points

    hm = np.zeros((1, 68, 64, 64), np.float32)
    hm[0, :, 10, 20] = 1.0
    hm[0, :, 10, 21] = 0.5          # right neighbour higher than left: +0.25 in x
    hm[0, :, 9, 20] = 0.5           # upper neighbour higher: -0.25 in y
    hm[0, 5] = 0
    hm[0, 5, 0, 63] = 1.0           # on the border: no shift
    pts = heatmap_points(hm)
    np.testing.assert_allclose(pts[0, 0], [20.75, 10.25])
    np.testing.assert_allclose(pts[0, 5], [63.5, 0.5])


class _PeakNet(torch.nn.Module):
    """Stands in for 2DFAN-4: heatmaps peaking at fixed cells, so expected landmarks are computable."""

    def __init__(self, cells: np.ndarray) -> None:
        super().__init__()
        self.cells = cells

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        hm = torch.zeros(x.shape[0], 68, 64, 64)
        for k, (cx, cy) in enumerate(self.cells):
            hm[:, k, cy, cx] = 1.0
        return [hm * 0.5, hm]  # the last stack's output is the one used


def test_fan_landmarker_maps_peaks_back_and_runs_second_pass(tmp_path: Path) -> None:
    from dfl.faces.fan import FANLandmarker, box_center_scale, crop_to_image

    rng = np.random.default_rng(2)
    cells = np.stack([rng.integers(20, 44, 68), rng.integers(18, 50, 68)], 1)
    cells[36], cells[45], cells[30] = (22, 26), (42, 26), (32, 36)
    img = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    box = np.array([[120, 60, 280, 240, 0.9]], np.float32)
    fan = FANLandmarker(None, "cpu", net=_PeakNet(cells))
    (lm,) = fan.landmarks([img], [box])
    center, scale = box_center_scale(box[0])
    np.testing.assert_allclose(lm[0], crop_to_image(cells + 0.5, center, scale, 64), atol=1e-4)

    class OneFace:
        name = "one"

        def __init__(self, n: int) -> None:
            self.n, self.calls = n, 0

        def detect(self, images):
            self.calls += 1
            return [np.array([[60, 60, 196, 196, 1.0]] * self.n, np.float32).reshape(-1, 5) for _ in images]

    none = OneFace(0)
    (lm0,) = FANLandmarker(None, "cpu", net=_PeakNet(cells), second_pass=none).landmarks([img], [box])
    assert none.calls == 1
    np.testing.assert_allclose(lm0, lm, atol=1e-4)          # no face in the crop: first pass kept
    (lm1,) = FANLandmarker(None, "cpu", net=_PeakNet(cells), second_pass=OneFace(1)).landmarks([img], [box])
    assert np.all(np.isfinite(lm1)) and not np.allclose(lm1, lm)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fan_weights_state_dict_and_torchscript_zip(tmp_path: Path) -> None:
    from face_alignment.models import FAN

    from dfl.faces.fan import FANLandmarker, load_fan

    torch.manual_seed(0)
    net = FAN(4)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "2DFAN4-x.pth.tar")
    loaded = load_fan(tmp_path / "2DFAN4-x.pth.tar", torch.device("cpu"))
    assert torch.equal(loaded.state_dict()["conv1.weight"], net.state_dict()["conv1.weight"])

    class Tiny(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.avg_pool2d(x.mean(1, keepdim=True), 4).repeat(1, 68, 1, 1)

    torch.jit.save(torch.jit.script(Tiny()), str(tmp_path / "2DFAN4-cd938726ad.zip"))
    lm = FANLandmarker(tmp_path / "2DFAN4-cd938726ad.zip", "cpu")
    (pts,) = lm.landmarks([np.zeros((100, 100, 3), np.uint8)], [np.array([[20, 20, 80, 80, 1]], np.float32)])
    assert pts.shape == (1, 68, 2) and np.all(np.isfinite(pts))
    (tmp_path / "2DFAN4-bad.zip").write_bytes(b"zip? no")
    with pytest.raises(DflError, match="2DFAN4-bad.zip"):
        load_fan(tmp_path / "2DFAN4-bad.zip", torch.device("cpu"))


# ----------------------------------------------------------------------------------- rotation maths
@pytest.mark.parametrize("rot", [0, 90, 180, 270])
def test_unrotate_points_inverts_rotate(rot: int) -> None:
    rng = np.random.default_rng(rot)
    img = rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)
    r = rotate(img, rot)
    pts = np.stack([rng.integers(0, r.shape[1], 20), rng.integers(0, r.shape[0], 20)], 1)
    back = unrotate_points(pts, rot, 37, 53).round().astype(int)
    np.testing.assert_array_equal(img[back[:, 1], back[:, 0]], r[pts[:, 1], pts[:, 0]])
    box = unrotate_box(np.array([pts[0, 0], pts[0, 1], pts[0, 0] + 5, pts[0, 1] + 3, 1.0]), rot, 37, 53)
    assert box[0] <= box[2] and box[1] <= box[3]
    np.testing.assert_allclose(rotate_points(unrotate_points(pts, rot, 37, 53), rot, 37, 53), pts)


def test_upright_turn_from_eye_and_mouth_keypoints() -> None:
    eyes_mouth = lambda e1, e2, m: np.array([e1, e2, (0, 0), m], float)  # noqa: E731
    assert upright_turn(eyes_mouth((0, 0), (10, 0), (5, 10))) == 0
    assert upright_turn(eyes_mouth((0, 0), (0, 10), (10, 5))) == 90     # mouth to the right: turn clockwise
    assert upright_turn(eyes_mouth((0, 0), (0, 10), (-10, 5))) == 270
    assert upright_turn(eyes_mouth((0, 0), (10, 0), (5, -10))) == 180


# ----------------------------------------------------------------------------------- pipeline (real faces)
def test_pipeline_one_face_per_frame_with_landmarks_in_box(tmp_path: Path, hdtf_frames, default_backends) -> None:
    from dfl.faceset import read_face

    frames = _write_frames(tmp_path / "data_dst", hdtf_frames)
    opts = ExtractOptions(image_size=128, output_debug=True, batch_size=4)
    s = extract_faces(tmp_path / "data_dst", tmp_path / "data_dst" / "aligned", default_backends.detector,
                      default_backends.landmarker, opts, progress=False)
    assert (s.processed, s.faces, s.frames_without_faces, s.unreadable) == (len(frames), len(frames), 0, [])
    assert s.backend == "blazeface+facemesh" and "blazeface+facemesh" in s.line("dst")
    for p in frames:
        img, rec = read_face(tmp_path / "data_dst" / "aligned" / f"{p.stem}_0.jpg")
        assert img.shape == (128, 128, 3) and rec.face_type == "whole_face" and rec.source_filename == p.name
        assert not (tmp_path / "data_dst" / "aligned" / f"{p.stem}_1.jpg").exists()
        l, t, r, b = rec.source_rect
        inner = rec.source_landmarks[36:68]  # eyes and mouth
        assert np.all((inner[:, 0] >= l) & (inner[:, 0] <= r) & (inner[:, 1] >= t) & (inner[:, 1] <= b))
        assert inner[:12, 1].mean() < inner[12:, 1].mean()  # eyes above the mouth
        assert (tmp_path / "data_dst" / "aligned_debug" / f"{p.stem}.jpg").exists()


@pytest.mark.parametrize("code", [cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE], ids=["cw", "ccw"])
def test_sideways_frames_give_the_same_landmarks(code: int, hdtf_frames, default_backends) -> None:
    """Phone videos with a lost rotation flag: the face lies on its side and must still be landmarked.
    (Upside-down faces are not checked: BlazeFace sometimes reports them as upright faces.)"""
    img = hdtf_frames[0]
    det, lm, check = default_backends.detector, default_backends.landmarker, FaceVerifier()
    (upright,) = find_faces([img], det, lm, verifier=check)
    # ccw: BlazeFace reads this sideways face's keypoints as upright; the landmarks it then gets fail the
    # confidence check, and the next rotation retry stands the face up
    (turned,) = find_faces([cv2.rotate(img, code)], det, lm, verifier=check)
    assert len(upright.landmarks) == len(turned.landmarks) == 1
    rot = {cv2.ROTATE_90_CLOCKWISE: 90, cv2.ROTATE_90_COUNTERCLOCKWISE: 270}[code]
    expected = rotate_points(upright.landmarks[0], rot, *img.shape[:2])
    assert np.abs(turned.landmarks[0] - expected).mean() < 2.0


def test_pipeline_resumes_reports_corrupt_frames_and_overwrites(tmp_path: Path, hdtf_frames, default_backends) -> None:
    src = tmp_path / "data_src"
    aligned = src / "aligned"
    _write_frames(src, hdtf_frames[:3])
    (src / "00004.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")   # corrupt frame
    (src / "00005.png").write_bytes(b"")                            # empty file
    det, lm = default_backends.detector, default_backends.landmarker
    opts = ExtractOptions(image_size=96, batch_size=2)
    reported: list[str] = []
    s = extract_faces(src, aligned, det, lm, opts, report=reported.append, progress=False)
    assert s.processed == 3 and s.faces == 3
    assert [p.name for p in s.unreadable] == ["00004.png", "00005.png"]
    assert len(reported) == 2 and "00004.png" in reported[0] and "\n" not in reported[0]
    assert not (src / "aligned_debug").exists()

    # a crash after frame 1: its state entry and face are gone -> only that frame runs again
    state = json.loads((aligned / STATE_FILE).read_text())
    assert sorted(state["done"]) == ["00001", "00002", "00003"]
    del state["done"]["00002"]
    (aligned / STATE_FILE).write_text(json.dumps(state))
    (aligned / "00002_0.jpg").unlink()
    s = extract_faces(src, aligned, det, lm, opts, report=reported.append, progress=False)
    assert (s.processed, s.already_done, s.faces) == (1, 2, 1)
    assert (aligned / "00002_0.jpg").exists()
    assert len(s.unreadable) == 2  # still reported on every run, never silently dropped

    # other options on a half-done folder: refuse instead of mixing face types
    with pytest.raises(DflError, match="--overwrite"):
        extract_faces(src, aligned, det, lm, ExtractOptions(image_size=64), progress=False)
    before = sorted(p.name for p in aligned.glob("*.jpg"))
    s = extract_faces(src, aligned, det, lm, ExtractOptions(image_size=64, overwrite=True), progress=False)
    assert s.processed == 3 and s.already_done == 0
    assert sorted(p.name for p in aligned.glob("*.jpg")) == before
    assert cv2.imread(str(aligned / "00001_0.jpg")).shape == (64, 64, 3)


def test_cli_extract_faces_scriptable(tmp_path: Path, hdtf_frames, dfl_run) -> None:
    ws = tmp_path / "ws"
    _write_frames(ws / "data_dst", hdtf_frames[:2])
    (tmp_path / "noweights").mkdir()                   # an empty weights folder: the built-in backends
    r = dfl_run("extract-faces", "dst", "--workspace", ws, "--face-type", "whole_face", "--image-size", "96",
                "--weights-dir", tmp_path / "noweights", "--device", "cpu", "--non-interactive")
    assert r.code == 0, r.err
    assert "2 faces" in r.out and "backend blazeface+facemesh" in r.out
    assert len(list((ws / "data_dst" / "aligned").glob("*.jpg"))) == 2
    assert len(list((ws / "data_dst" / "aligned_debug").glob("*.jpg"))) == 2   # debug on by default for dst
    r = dfl_run("extract-faces", "dst", "--workspace", ws, "--image-size", "96", "--non-interactive")
    assert r.code == 0 and "0 frames (2 already done)" in r.out

    r = dfl_run("extract-faces", "dst", "--workspace", ws, "--detector", "s3fd", "--weights-dir",
                tmp_path / "noweights", "--non-interactive")
    assert r.code == 1 and "s3fd-619a316812.pth" in r.err and len(r.err.strip().splitlines()) == 1
    r = dfl_run("extract-faces", "src", "--workspace", ws, "--non-interactive")
    assert r.code == 1 and "extract-frames src" in r.err
