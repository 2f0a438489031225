"""Face alignment as DeepFaceLab does it: face types, the image-to-face transform, landmark masks, pose.

Every aligned face in a DFL faceset was cut out with these exact geometric rules, and models trained in
DFL expect them; matching them to the last pixel is what lets existing facesets and models carry over.
Numbers are checked against vectors produced by DFL itself (``shared/conformance/alignment.json``).
"""

from __future__ import annotations

import math
from enum import IntEnum
from typing import Sequence

import cv2
import numpy as np


class FaceType(IntEnum):
    """How much of the head an aligned face covers; DFL's numeric values (larger contains smaller)."""

    HALF = 0
    MID_FULL = 1
    FULL = 2
    FULL_NO_ALIGN = 3
    WHOLE_FACE = 4
    HEAD = 10
    HEAD_NO_ALIGN = 20
    MARK_ONLY = 100

    @classmethod
    def from_string(cls, s: str) -> "FaceType":
        """Parse a faceset's stored name ("whole_face") or a model option's short name ("wf")."""
        key = str(s).strip().lower()
        ft = _FROM_STRING.get(key)
        if ft is None:
            choices = ", ".join(sorted(_FROM_STRING))
            raise ValueError(f"unknown face type {s!r} (one of: {choices})")
        return ft

    def to_string(self) -> str:
        """The name DFL stores in a faceset's ``face_type`` key."""
        return _TO_STRING[self]

    @property
    def short(self) -> str | None:
        """The short name DFL model options use ("h", "mf", "f", "wf", "head"), if any."""
        return _SHORT.get(self)


_TO_STRING = {
    FaceType.HALF: "half_face",
    FaceType.MID_FULL: "midfull_face",
    FaceType.FULL: "full_face",
    FaceType.FULL_NO_ALIGN: "full_face_no_align",
    FaceType.WHOLE_FACE: "whole_face",
    FaceType.HEAD: "head",
    FaceType.HEAD_NO_ALIGN: "head_no_align",
    FaceType.MARK_ONLY: "mark_only",
}
_SHORT = {FaceType.HALF: "h", FaceType.MID_FULL: "mf", FaceType.FULL: "f", FaceType.WHOLE_FACE: "wf",
          FaceType.HEAD: "head"}
_FROM_STRING = {v: k for k, v in _TO_STRING.items()} | {v: k for k, v in _SHORT.items()}

# (padding, remove_align) per face type: padding widens the unit face square's half diagonal;
# remove_align keeps the square upright (no roll) but of the same area.
_PADDING: dict[FaceType, tuple[float, bool]] = {
    FaceType.HALF: (0.0, False),
    FaceType.MID_FULL: (0.0675, False),
    FaceType.FULL: (0.2109375, False),
    FaceType.FULL_NO_ALIGN: (0.2109375, True),
    FaceType.WHOLE_FACE: (0.40, False),
    FaceType.HEAD: (0.70, False),
    FaceType.HEAD_NO_ALIGN: (0.70, True),
}

# Mean face in a unit square: iBUG points 17..48 and 54 (eyebrows, nose, eyes, mouth corners).
# These are DFL's reference coordinates; the similarity fit to them defines "aligned".
_MEAN_FACE_UNIT = np.array([
    [0.000213256, 0.106454], [0.0752622, 0.038915], [0.18113, 0.0187482], [0.29077, 0.0344891],
    [0.393397, 0.0773906], [0.586856, 0.0773906], [0.689483, 0.0344891], [0.799124, 0.0187482],
    [0.904991, 0.038915], [0.98004, 0.106454], [0.490127, 0.203352], [0.490127, 0.307009],
    [0.490127, 0.409805], [0.490127, 0.515625], [0.36688, 0.587326], [0.426036, 0.609345],
    [0.490127, 0.628106], [0.554217, 0.609345], [0.613373, 0.587326], [0.121737, 0.216423],
    [0.187122, 0.178758], [0.265825, 0.179852], [0.334606, 0.231733], [0.260918, 0.245099],
    [0.182743, 0.244077], [0.645647, 0.231733], [0.714428, 0.179852], [0.793132, 0.178758],
    [0.858516, 0.216423], [0.79751, 0.244077], [0.719335, 0.245099], [0.254149, 0.780233],
    [0.726104, 0.780233],
], dtype=np.float32)

# A generic 3D head (iBUG 68 order, arbitrary units) for the PnP pose estimate.
_MEAN_FACE_3D = np.array([
    [-73.393523, -29.801432, 47.667532], [-72.775014, -10.949766, 45.909403],
    [-70.533638, 7.929818, 44.842580], [-66.850058, 26.074280, 43.141114],
    [-59.790187, 42.564390, 38.635298], [-48.368973, 56.481080, 30.750622],
    [-34.121101, 67.246992, 18.456453], [-17.875411, 75.056892, 3.609035],
    [0.098749, 77.061286, -0.881698], [17.477031, 74.758448, 5.181201],
    [32.648966, 66.929021, 19.176563], [46.372358, 56.311389, 30.770570],
    [57.343480, 42.419126, 37.628629], [64.388482, 25.455880, 40.886309],
    [68.212038, 6.990805, 42.281449], [70.486405, -11.666193, 44.142567],
    [71.375822, -30.365191, 47.140426], [-61.119406, -49.361602, 14.254422],
    [-51.287588, -58.769795, 7.268147], [-37.804800, -61.996155, 0.442051],
    [-24.022754, -61.033399, -6.606501], [-11.635713, -56.686759, -11.967398],
    [12.056636, -57.391033, -12.051204], [25.106256, -61.902186, -7.315098],
    [38.338588, -62.777713, -1.022953], [51.191007, -59.302347, 5.349435],
    [60.053851, -50.190255, 11.615746], [0.653940, -42.193790, -13.380835],
    [0.804809, -30.993721, -21.150853], [0.992204, -19.944596, -29.284036],
    [1.226783, -8.414541, -36.948060], [-14.772472, 2.598255, -20.132003],
    [-7.180239, 4.751589, -23.536684], [0.555920, 6.562900, -25.944448],
    [8.272499, 4.661005, -23.695741], [15.214351, 2.643046, -20.858157],
    [-46.047290, -37.471411, 7.037989], [-37.674688, -42.730510, 3.021217],
    [-27.883856, -42.711517, 1.353629], [-19.648268, -36.754742, -0.111088],
    [-28.272965, -35.134493, -0.147273], [-38.082418, -34.919043, 1.476612],
    [19.265868, -37.032306, -0.665746], [27.894191, -43.342445, 0.247660],
    [37.437529, -43.110822, 1.696435], [45.170805, -38.086515, 4.894163],
    [38.196454, -35.532024, 0.282961], [28.764989, -35.484289, -1.172675],
    [-28.916267, 28.612716, -2.240310], [-17.533194, 22.172187, -15.934335],
    [-6.684590, 19.029051, -22.611355], [0.381001, 20.721118, -23.748437],
    [8.375443, 19.035460, -22.721995], [18.876618, 22.394109, -15.610679],
    [28.794412, 28.079924, -3.217393], [19.057574, 36.298248, -14.987997],
    [8.956375, 39.634575, -22.554245], [0.381549, 40.395647, -23.591626],
    [-7.428895, 39.836405, -22.406106], [-18.160634, 36.677899, -15.121907],
    [-24.377490, 28.677771, -4.785684], [-6.897633, 25.475976, -20.893742],
    [0.340663, 26.014269, -22.220479], [8.444722, 25.326198, -21.025520],
    [24.474473, 28.323008, -5.712776], [8.449166, 30.596216, -20.671489],
    [0.205322, 31.408738, -21.903670], [-7.198266, 30.844876, -20.328022],
], dtype=np.float32)

# Index ranges of the iBUG 68-point groups ("right" is the subject's right, left in the image).
LANDMARK_GROUPS: dict[str, tuple[int, int]] = {
    "jaw": (0, 17), "right_eyebrow": (17, 22), "left_eyebrow": (22, 27), "nose": (27, 36),
    "right_eye": (36, 42), "left_eye": (42, 48), "mouth": (48, 68),
}


def _check68(landmarks: np.ndarray, what: str) -> np.ndarray:
    lm = np.asarray(landmarks)
    if lm.shape != (68, 2):
        raise ValueError(f"{what} needs 68x2 landmarks, got shape {lm.shape}")
    return lm


def _similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation+uniform scale+translation taking ``src`` onto ``dst`` (Umeyama 1991).

    Returns the 2x3 matrix.  Reflections are excluded, as in DFL's fit.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    n, dim = src.shape
    mu_s, mu_d = src.mean(0), dst.mean(0)
    src_c, dst_c = src - mu_s, dst - mu_d
    cov = dst_c.T @ src_c / n
    sign = np.ones(dim)
    if np.linalg.det(cov) < 0:
        sign[-1] = -1.0
    u, s, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    if rank == 0:
        return np.full((2, 3), np.nan)
    if rank == dim - 1 and np.linalg.det(u) * np.linalg.det(vt) > 0:
        rot = u @ vt
    elif rank == dim - 1:
        d = sign.copy()
        d[-1] = -1.0
        rot = u @ np.diag(d) @ vt
    else:
        rot = u @ np.diag(sign) @ vt
    scale = float(s @ sign) / src_c.var(axis=0).sum()
    out = np.empty((2, 3))
    out[:, :2] = scale * rot
    out[:, 2] = mu_d - scale * rot @ mu_s
    return out


def transform_points(points: np.ndarray, mat: np.ndarray, invert: bool = False) -> np.ndarray:
    """Apply a 2x3 affine ``mat`` (or its inverse) to points of shape (N, 2) or (2,).

    float32 input stays float32 (as DFL's cv2-based version), anything else comes back float64.
    """
    pts = np.asarray(points)
    out_dtype = np.float32 if pts.dtype == np.float32 else np.float64
    m = np.asarray(mat, np.float64)
    if invert:
        m = cv2.invertAffineTransform(m)
    p = pts.astype(np.float64).reshape(-1, 2)
    res = p @ m[:, :2].T + m[:, 2]
    return res.reshape(pts.shape).astype(out_dtype)


def averaged_yaw(landmarks: np.ndarray) -> float:
    """DFL's yaw proxy: how much wider the jaw's right side is than its left, around the nose bridge.

    Sign and scale follow the landmarks' units (unit square or pixels); used to sort and to centre heads.
    """
    lm = np.asarray(landmarks, np.float64)
    left = ((lm[27, 0] - lm[0, 0]) + (lm[28, 0] - lm[1, 0]) + (lm[29, 0] - lm[2, 0])) / 3.0
    right = ((lm[16, 0] - lm[27, 0]) + (lm[15, 0] - lm[28, 0]) + (lm[14, 0] - lm[29, 0])) / 3.0
    return float(right - left)


def _polygon_area(x: np.ndarray, y: np.ndarray) -> float:
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def transform_matrix(landmarks: np.ndarray, size: int, face_type: FaceType,
                     scale: float = 1.0) -> np.ndarray:
    """The (2, 3) float64 affine taking frame pixels to a ``size`` x ``size`` aligned face.

    Same geometry as DFL's extractor: a similarity fit of 33 landmarks to a mean face, a square around
    it grown by the face type's padding (``scale`` > 1 zooms in), whole_face shifted up for forehead,
    head shifted by yaw and down, *_no_align kept upright.
    """
    face_type = FaceType(face_type)
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 2 or lm.shape[0] < 55 or lm.shape[1] != 2:
        raise ValueError(f"transform_matrix needs 68x2 landmarks, got shape {lm.shape}")
    if face_type == FaceType.MARK_ONLY:
        raise ValueError("mark_only faces are not aligned; there is no transform")
    to_unit = _similarity_fit(np.concatenate([lm[17:49], lm[54:55]]), _MEAN_FACE_UNIT)

    # unit square corners and centre, back in frame pixels (float32 like DFL's cv2 round trip)
    corners = transform_points(np.float32([(0, 0), (1, 0), (1, 1), (0, 1), (0.5, 0.5)]), to_unit, True)
    corners = corners.astype(np.float64)
    centre = corners[4].copy()
    tb = corners[2] - corners[0]
    tb /= np.linalg.norm(tb)
    bt = corners[1] - corners[3]
    bt /= np.linalg.norm(bt)

    padding, upright = _PADDING[face_type]
    half_diag = (1.0 / scale) * (np.linalg.norm(corners[0] - corners[2]) * (padding * math.sqrt(2.0) + 0.5))

    if face_type == FaceType.WHOLE_FACE:
        up = corners[0] - corners[3]
        centre += up * 0.07                         # 7% up: more forehead
    elif face_type == FaceType.HEAD:
        yaw = averaged_yaw(transform_points(lm, to_unit))
        left = corners[0] - corners[1]
        left_len = np.linalg.norm(left)
        left /= left_len
        yaw *= abs(math.tanh(yaw * 2))              # damp small yaws to zero
        centre -= left * (yaw * left_len / 2.0)
        up = corners[0] - corners[3]
        centre += up * 0.50

    if not upright:
        src = np.array([centre - tb * half_diag, centre + bt * half_diag, centre + tb * half_diag])
    else:
        quad = np.array([centre - tb * half_diag, centre + bt * half_diag,
                         centre + tb * half_diag, centre - bt * half_diag])
        side = math.sqrt(_polygon_area(quad[:, 0], quad[:, 1])) / 2
        src = np.array([centre + [-side, -side], centre + [side, -side], centre + [side, side]])

    dst = np.float32([(0, 0), (size, 0), (size, size)])
    return cv2.getAffineTransform(src.astype(np.float32), dst).astype(np.float64)


def rect_from_landmarks(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """An upright l, t, r, b box around the face (DFL's full_face_no_align square), e.g. for manual faces."""
    mat = transform_matrix(landmarks, 256, FaceType.FULL_NO_ALIGN)
    p = transform_points(np.float64([(0, 0), (255, 255)]), mat, True)
    return float(p[0, 0]), float(p[0, 1]), float(p[1, 0]), float(p[1, 1])


def _shape_hw(shape: Sequence[int]) -> tuple[int, int]:
    return int(shape[0]), int(shape[1])


def expand_eyebrows(landmarks: np.ndarray, eyebrows_expand_mod: float = 1.0) -> np.ndarray:
    """Integer landmarks with the eyebrows pushed up (away from the eyes) to cover the forehead's edge.

    Integer arithmetic on purpose: DFL truncates here, and mask areas depend on it.
    """
    lm = np.array(_check68(landmarks, "expand_eyebrows"), dtype=np.float64).astype(np.int64)
    mid_l = (lm[36] + lm[0]) // 2
    mid_r = (lm[16] + lm[45]) // 2
    q_l = (lm[36] + mid_l) // 2
    q_r = (lm[45] + mid_r) // 2
    bot_l = np.array((q_l, lm[36], lm[37], lm[38], lm[39]))
    bot_r = np.array((lm[42], lm[43], lm[44], lm[45], q_r))
    top_l = lm[17:22].copy()
    top_r = lm[22:27].copy()
    lm[17:22] = (top_l + eyebrows_expand_mod * 0.5 * (top_l - bot_l)).astype(np.int64)
    lm[22:27] = (top_r + eyebrows_expand_mod * 0.5 * (top_r - bot_r)).astype(np.int64)
    return lm


def hull_mask(shape: tuple[int, int], landmarks: np.ndarray,
              eyebrows_expand_mod: float = 1.0) -> np.ndarray:
    """HxWx1 float32 0/1 mask of the face hull from 68 landmarks (DFL's default training mask).

    Drawn as a union of convex parts so concave outlines (cheeks under the eyebrows) stay right.
    """
    h, w = _shape_hw(shape)
    mask = np.zeros((h, w, 1), np.float32)
    lm = expand_eyebrows(landmarks, eyebrows_expand_mod).astype(np.int32)
    parts = [
        (lm[0:9], lm[17:18]),
        (lm[8:17], lm[26:27]),
        (lm[17:20], lm[8:9]),
        (lm[24:27], lm[8:9]),
        (lm[19:25], lm[8:9]),
        (lm[17:22], lm[27:28], lm[31:36], lm[8:9]),
        (lm[22:27], lm[27:28], lm[31:36], lm[8:9]),
        (lm[27:31], lm[31:36]),
    ]
    for part in parts:
        cv2.fillConvexPoly(mask, cv2.convexHull(np.concatenate(part)), (1,))
    return mask


def _soft_region_mask(h: int, w: int, polys: list[np.ndarray]) -> np.ndarray:
    """Filled hulls, dilated by h/32 and blurred by h/16: soft masks for eye/mouth priority in training."""
    mask = np.zeros((h, w, 1), np.float32)
    for poly in polys:
        cv2.fillConvexPoly(mask, cv2.convexHull(poly), (1,))
    k = max(1, h // 32)
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)), iterations=1)
    blur = h // 16
    blur = blur + (1 - blur % 2)
    mask = cv2.GaussianBlur(mask, (blur, blur), 0)
    return mask.reshape(h, w, 1)


def eyes_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """HxWx1 float32 soft mask over both eyes (DFL's eye-priority mask)."""
    h, w = _shape_hw(shape)
    lm = np.asarray(_check68(landmarks, "eyes_mask")).astype(np.int64).astype(np.int32)
    return _soft_region_mask(h, w, [lm[36:42], lm[42:48]])


def mouth_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """HxWx1 float32 soft mask over the inner mouth."""
    h, w = _shape_hw(shape)
    lm = np.asarray(_check68(landmarks, "mouth_mask")).astype(np.int64).astype(np.int32)
    return _soft_region_mask(h, w, [lm[60:68]])


def eyes_mouth_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """HxWx1 float32 eyes + mouth mask clipped to [0, 1] (DFL's eyes_mouth_prio mask)."""
    return np.clip(eyes_mask(shape, landmarks) + mouth_mask(shape, landmarks), 0.0, 1.0)


def _euler_from_rotation(r: np.ndarray) -> tuple[float, float, float]:
    sy = math.hypot(r[0, 0], r[1, 0])
    if sy >= 1e-6:
        x = math.atan2(r[2, 1], r[2, 2])
        y = math.atan2(-r[2, 0], sy)
        z = math.atan2(r[1, 0], r[0, 0])
    else:
        x = math.atan2(-r[1, 2], r[1, 1])
        y = math.atan2(-r[2, 0], sy)
        z = 0.0
    return x, y, z


def pitch_yaw_roll(landmarks: np.ndarray, size: int) -> tuple[float, float, float]:
    """Head pose in radians, each clipped to [-pi/2, pi/2], from aligned-face landmarks of a ``size`` face.

    A PnP fit of a generic 3D head (jaw, brows and lower nose points) with a pinhole camera of focal
    length ``size``; used to sort facesets and to pick matching faces.
    """
    lm = _check68(landmarks, "pitch_yaw_roll")
    cam = np.array([[size, 0, size / 2], [0, size, size / 2], [0, 0, 1]], np.float32)
    obj = np.concatenate((_MEAN_FACE_3D[:27], _MEAN_FACE_3D[30:36]), axis=0)
    img = np.concatenate((lm[:27], lm[30:36]), axis=0).astype(np.float32)
    _, rvec, _ = cv2.solvePnP(obj, img, cam, np.zeros((4, 1)))
    rot = cv2.Rodrigues(rvec)[0]
    pitch, yaw, roll = _euler_from_rotation(rot)
    half_pi = math.pi / 2.0
    pitch = min(max(pitch, -half_pi), half_pi)
    yaw = min(max(yaw, -half_pi), half_pi)
    roll = min(max(roll, -half_pi), half_pi)
    return -pitch, yaw, roll


def _int_points(points: np.ndarray) -> np.ndarray:
    return np.asarray(points, np.float64).astype(np.int64).astype(np.int32)


def draw_landmarks(img: np.ndarray, landmarks: np.ndarray, color: tuple = (0, 255, 0),
                   draw_circles: bool = True, thickness: int = 1, transparent_mask: bool = False) -> None:
    """Draw the 68-point outline in place (debug images): open brows/jaw/nose, closed eyes/mouth."""
    lm = _int_points(_check68(landmarks, "draw_landmarks"))
    g = {k: lm[a:b] for k, (a, b) in LANDMARK_GROUPS.items()}
    nose = np.concatenate((g["nose"], g["nose"][-6:-5]))   # close the nostrils back to the bridge
    cv2.polylines(img, [g["right_eyebrow"], g["jaw"], g["left_eyebrow"], nose], False, color,
                  thickness=thickness, lineType=cv2.LINE_AA)
    cv2.polylines(img, [g["right_eye"], g["left_eye"], g["mouth"]], True, color,
                  thickness=thickness, lineType=cv2.LINE_AA)
    if draw_circles:
        for key in ("right_eyebrow", "left_eyebrow", "mouth", "right_eye", "left_eye", "nose"):
            for x, y in g[key]:
                cv2.circle(img, (int(x), int(y)), 1, color, 1, lineType=cv2.LINE_AA)
        for x, y in g["jaw"]:
            cv2.circle(img, (int(x), int(y)), 2, color, lineType=cv2.LINE_AA)
    if transparent_mask:
        m = hull_mask(img.shape, landmarks)
        if img.ndim == 2:
            m = m[..., 0]
        img[...] = (img * (1 - m) + img * m / 2).astype(img.dtype)


def _draw_polygon(img: np.ndarray, points: np.ndarray, color: tuple, thickness: int) -> None:
    pts = _int_points(points)
    cv2.polylines(img, [pts], True, color, thickness=thickness)


def draw_rect_landmarks(img: np.ndarray, rect: Sequence[float], landmarks: np.ndarray, face_size: int,
                        face_type: FaceType, transparent_mask: bool = False,
                        landmarks_color: tuple = (0, 255, 0)) -> None:
    """Debug overlay in place: landmarks (green), detector box (blue), aligned square (red) with a
    small triangle marking the aligned face's top-left corner, so rotation is visible."""
    draw_landmarks(img, landmarks, color=landmarks_color, transparent_mask=transparent_mask)
    l, t, r, b = (int(v) for v in rect)
    _draw_polygon(img, np.array([(l, t), (r, t), (r, b), (l, b)]), (255, 0, 0), 2)
    face_type = FaceType(face_type)
    if face_type == FaceType.MARK_ONLY:
        return
    mat = transform_matrix(landmarks, face_size, face_type)
    n = face_size - 1
    square = transform_points(np.float64([(0, 0), (0, n), (n, n), (n, 0)]), mat, True)
    _draw_polygon(img, square, (0, 0, 255), 2)
    tri = transform_points(np.float64([(int(face_size * 0.05), 0), (int(face_size * 0.1), int(face_size * 0.1)),
                                       (0, int(face_size * 0.1))]), mat, True)
    _draw_polygon(img, tri, (0, 0, 255), 2)
