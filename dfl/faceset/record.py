"""``FaceRecord``: one aligned face's metadata, and its exact mapping to/from DFL's dict.

The conversion is where compatibility lives: DFL expects lists for landmarks, numpy arrays for the
rect, matrix and mask buffer, ``{'polys': [...]}`` for polygons; keys we do not know are kept so a
round trip through dfl never loses what another tool stored.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from dfl.errors import DflError
from dfl.faces.align import FaceType

KNOWN_KEYS = ("face_type", "landmarks", "source_filename", "source_rect", "source_landmarks",
              "image_to_face_mat", "eyebrows_expand_mod", "seg_ie_polys", "xseg_mask")
XSEG_MASK_MAX_BYTES = 50000   # DFL's cap for the encoded mask, so the APP15 segment always fits
INCLUDE, EXCLUDE = 1, 0       # DFL's SegIEPolyType: what a label polygon adds to or cuts from the mask


@dataclass
class FaceRecord:
    """One aligned face's metadata, under DFL's key names.

    ``seg_ie_polys`` is a list of ``{"type": int (1 include, 0 exclude), "pts": float32 (N, 2)}`` in
    aligned-face pixels (DFL's serialised polygons), read and written includes first as DFL's reader
    orders them; ``xseg_mask`` is decoded to HxW float32 in [0, 1] at the size it was stored (256 px
    when DFL's or dfl's apply wrote it).
    ``extra`` keeps keys this version does not interpret (legacy ``ie_polys`` among them).
    """

    face_type: str
    landmarks: np.ndarray
    source_filename: str | None = None
    source_rect: tuple[int, int, int, int] | None = None
    source_landmarks: np.ndarray | None = None
    image_to_face_mat: np.ndarray | None = None
    eyebrows_expand_mod: float | None = None
    seg_ie_polys: list | None = None
    xseg_mask: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    # the mask exactly as stored, reused on write while xseg_mask is unchanged (no re-encoding loss)
    _xseg_stored: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def face_type_enum(self) -> FaceType:
        return FaceType.from_string(self.face_type)

    @property
    def has_polys(self) -> bool:
        return bool(self.seg_ie_polys)

    def copy(self) -> "FaceRecord":
        return copy.deepcopy(self)

    # ------------------------------------------------------------------------------ DFL dict
    @classmethod
    def from_dfl_dict(cls, d: dict, where: str = "<face>") -> "FaceRecord":
        """Build from the dict found in a DFL file; DflError if it lacks what every face has."""
        if not isinstance(d, dict):
            raise DflError(f"{where}: face metadata is a {type(d).__name__}, not a dict")
        if d.get("landmarks") is None:
            raise DflError(f"{where}: face metadata has no landmarks")
        try:
            ft = d.get("face_type", "full_face")      # DFL's default for old files without the key
            landmarks = _points(d["landmarks"])
            rect = d.get("source_rect")
            src_lm = d.get("source_landmarks")
            mat = d.get("image_to_face_mat")
            ebm = d.get("eyebrows_expand_mod")
            rec = cls(
                face_type=str(ft),
                landmarks=landmarks,
                source_filename=None if d.get("source_filename") is None else str(d["source_filename"]),
                source_rect=None if rect is None else _rect(rect),
                source_landmarks=None if src_lm is None else _points(src_lm),
                image_to_face_mat=None if mat is None else np.array(mat, dtype=np.float64).reshape(2, 3),
                eyebrows_expand_mod=None if ebm is None else float(ebm),
                seg_ie_polys=_polys_from_dfl(d.get("seg_ie_polys")),
                extra={k: v for k, v in d.items() if k not in KNOWN_KEYS},
            )
            buf = d.get("xseg_mask")
            if buf is not None:
                mask = _decode_mask(buf)
                rec.xseg_mask = mask
                rec._xseg_stored = (buf, mask.copy())
        except DflError:
            raise
        except Exception as exc:
            raise DflError(f"{where}: malformed face metadata ({type(exc).__name__}: {exc})") from None
        return rec

    def to_dfl_dict(self) -> dict:
        """The dict DFL would have written for this face (None values left out, as DFL does)."""
        d: dict[str, Any] = {
            "face_type": str(self.face_type),
            "landmarks": np.asarray(self.landmarks, np.float32).reshape(-1, 2).tolist(),
        }
        if self.source_filename is not None:
            d["source_filename"] = str(self.source_filename)
        if self.source_rect is not None:
            r = [v.item() if isinstance(v, np.generic) else v for v in self.source_rect]
            d["source_rect"] = np.array(r, dtype=np.int64 if all(isinstance(v, int) for v in r) else np.float64)
        if self.source_landmarks is not None:
            d["source_landmarks"] = np.asarray(self.source_landmarks, np.float32).reshape(-1, 2).tolist()
        if self.image_to_face_mat is not None:
            d["image_to_face_mat"] = np.array(self.image_to_face_mat, dtype=np.float64).reshape(2, 3)
        if self.eyebrows_expand_mod is not None:
            d["eyebrows_expand_mod"] = float(self.eyebrows_expand_mod)
        if self.seg_ie_polys:
            d["seg_ie_polys"] = {"polys": [{"type": int(p["type"]),
                                            "pts": np.asarray(p["pts"], np.float32).reshape(-1, 2)}
                                           for p in dfl_poly_order(self.seg_ie_polys)]}
        if self.xseg_mask is not None:
            stored = self._xseg_stored
            if stored is not None and stored[1].shape == np.shape(self.xseg_mask) \
                    and np.array_equal(stored[1], self.xseg_mask):
                d["xseg_mask"] = stored[0]
            else:
                d["xseg_mask"] = encode_mask(self.xseg_mask)
        for k, v in self.extra.items():
            if k not in d and v is not None:
                d[k] = v
        return d


def _points(v: Any) -> np.ndarray:
    return np.array(v, dtype=np.float32).reshape(-1, 2)


def _rect(v: Any) -> tuple:
    vals = [x.item() if isinstance(x, np.generic) else x for x in np.asarray(v).reshape(-1).tolist()]
    if len(vals) != 4:
        raise ValueError(f"source_rect has {len(vals)} values, not 4")
    return tuple(int(x) if float(x).is_integer() else float(x) for x in vals)


def dfl_poly_order(polys: list) -> list:
    """Include polygons first, then exclude polygons, each kind in its own order: the order DFL's reader
    (``SegIEPolys.load`` sorts) and its editor keep, and so the order in which masks are drawn."""
    return [p for p in polys if p["type"] == INCLUDE] + [p for p in polys if p["type"] != INCLUDE]


def _polys_from_dfl(v: Any) -> list | None:
    """DFL's ``{'polys': [{'type', 'pts'}]}`` or the older ``[(type, pts), ...]`` -> list of dicts, in DFL's
    reader's order (includes first); a type that is neither include nor exclude is refused, as DFL's
    reader fails on it."""
    if v is None:
        return None
    if isinstance(v, dict):
        items = [(p["type"], p["pts"]) for p in v.get("polys", [])]
    elif isinstance(v, (list, tuple)):
        items = [(t, pts) for t, pts in v]
    else:
        raise ValueError(f"seg_ie_polys is a {type(v).__name__}")
    polys = []
    for t, pts in items:
        if int(t) not in (INCLUDE, EXCLUDE):
            raise ValueError(f"seg_ie_polys: polygon type {t!r} is neither include (1) nor exclude (0)")
        polys.append({"type": int(t), "pts": np.array(pts, dtype=np.float32).reshape(-1, 2)})
    return dfl_poly_order(polys)


def _decode_mask(buf: Any) -> np.ndarray:
    arr = np.asarray(buf, dtype=np.uint8).reshape(-1)
    img = cv2.imdecode(arr, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("xseg_mask does not decode as an image")
    if img.ndim == 3:
        img = img[..., 0]
    return img.astype(np.float32) / 255.0


def encode_mask(mask: np.ndarray) -> np.ndarray:
    """Encode an [0,1] mask as DFL's ``set_xseg_mask`` does, byte for byte: levels ``mask * 255`` cut to
    integers (not rounded: a decoded level k/255 comes back as k exactly), as a PNG, or the best JPEG
    within 50 kB when the PNG is larger.  The mask keeps its own resolution (DFL's apply stores 256 px)."""
    m = np.asarray(mask, np.float32)
    if m.ndim == 3:
        m = m[..., 0]
    img = np.clip(m * 255, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", img)
    if not ok or len(buf) > XSEG_MASK_MAX_BYTES:
        for q in range(100, -1, -1):
            ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), q])
            if ok and len(buf) <= XSEG_MASK_MAX_BYTES:
                break
    if not ok:
        raise DflError("xseg_mask: cannot encode the mask")
    return buf


def polygons_mask(record: FaceRecord, shape: tuple[int, int]) -> np.ndarray:
    """HxW float32 mask of the labels as DFL's ``overlay_mask`` draws it: every include polygon filled
    with 1, then every exclude polygon with 0, points cut to integer pixels (``astype(int32)``)."""
    return polys_mask(record.seg_ie_polys or [], shape)


def polys_mask(polys: list, shape: tuple[int, int]) -> np.ndarray:
    """:func:`polygons_mask` for a bare polygon list (``{"type", "pts"}`` dicts)."""
    h, w = int(shape[0]), int(shape[1])
    mask = np.zeros((h, w), np.float32)
    for p in dfl_poly_order(polys):
        pts = np.asarray(p["pts"]).astype(np.int32)
        if len(pts):
            cv2.fillPoly(mask, [pts], 1.0 if p["type"] == INCLUDE else 0.0)
    return mask
