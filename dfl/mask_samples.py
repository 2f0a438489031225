"""Training samples for mask models: labelled faces -> augmented (face, mask) batches (DFL's
``SampleGeneratorFaceXSeg``).

It sits beside :mod:`dfl.samples` (below the models): the XSeg spec asks for :class:`MaskTrainingData`.
The faces are those of both facesets whose metadata holds XSeg labels (``seg_ie_polys`` with points; when
no face has labels, those holding an applied ``xseg_mask``, as DFL falls back to), each cut once at the
model's face type and resolution with the labels' mask (:func:`prepare_labelled`) and kept as uint8.
Per sample, :func:`augment_labelled` does what DFL's generator does: half the time another labelled face's
background is blended behind the face, then a random grid warp + affine (rotation +-10 deg, scale +-5%,
shift +-5%, flips), face and background flares, HSV shift or RGB levels, sharpen or motion + gaussian
blur, a nearest or bilinear down-and-up resize and a JPEG round trip, each local under a random faded
circle as DFL applies them.  Batches are ``{"image": N3HW, "mask": N1HW}`` float32 in [0, 1] (BGR).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from dfl.errors import DflError
from dfl.imageops.filters import blursharpen, motion_blur
from dfl.imageops.warp import gen_warp_params, warp_by_params

PREVIEW_FACES = 3          # DFL's XSeg preview: min(4, batch, 800 // 256) rows


# -- one face ----------------------------------------------------------------------------------------
def is_labelled(record: Any) -> bool:
    """DFL's test for a segmented face: its polygons hold at least one point."""
    return any(len(p.get("pts", ())) for p in (record.seg_ie_polys or []))


def recut_matrix(record: Any, size: int, face_type: Any) -> np.ndarray | None:
    """The (2, 3) matrix that re-cuts a ``size`` px face of ``record``'s face type as ``face_type`` (both
    cuts from the frame landmarks, the wanted cut in the face's pixels); None when the types agree.  This is
    the cut ``dfl xseg apply`` gives the network, so a model learns faces as it will see them."""
    from dfl.faces.align import transform_matrix, transform_points

    own = record.face_type_enum
    if face_type is None or face_type == own:
        return None
    lm = record.source_landmarks if record.source_landmarks is not None else record.landmarks
    corners = np.float32([(0, 0), (size, 0), (0, size)])
    in_frame = transform_points(corners, transform_matrix(lm, size, face_type), invert=True)
    in_face = transform_points(in_frame, transform_matrix(lm, size, own))
    return cv2.getAffineTransform(np.float32(in_face), corners)


def cut_face(image: np.ndarray, record: Any, resolution: int, face_type: Any) -> np.ndarray:
    """A face (any channels) at the model's face type and ``resolution`` (re-cut when its type differs)."""
    size = image.shape[1]
    mat = recut_matrix(record, size, face_type)
    if mat is not None:
        image = cv2.warpAffine(image, mat, (size, size), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_CONSTANT)
    if image.shape[0] != resolution or image.shape[1] != resolution:
        image = cv2.resize(image, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4)
    return image


def prepare_labelled(path: Any, resolution: int, face_type: Any) -> tuple[np.ndarray, np.ndarray]:
    """(BGR uint8 face, uint8 0/255 mask) of a labelled face at the model's face type and resolution; the
    mask is the labels' polygons (DFL's ``overlay_mask``), else the face's applied XSeg mask cut at 0.5."""
    from dfl.faceset import polygons_mask, read_face

    img, rec = read_face(path)
    h, w = img.shape[:2]
    if is_labelled(rec):
        mask = polygons_mask(rec, (h, w))
    elif rec.xseg_mask is not None:
        mask = cv2.resize(np.asarray(rec.xseg_mask, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        mask = (mask >= 0.5).astype(np.float32)
    else:
        raise DflError(f"{path}: no XSeg labels or mask")
    img = cut_face(img, rec, resolution, face_type)
    mask = cut_face(mask, rec, resolution, face_type)
    return np.ascontiguousarray(img), ((mask >= 0.5) * 255).astype(np.uint8)


def find_labelled(folders: list[Path]) -> tuple[list[Any], str]:
    """The faces of ``folders`` to learn from and what they hold ("labels" or, when no face has labels,
    "masks"); DflError naming the folders when there are none, saying how to label."""
    from dfl.faceset import read_record
    from dfl.faceset.source import face_files

    labelled, masked = [], []
    seen: set[Path] = set()
    for folder in folders:
        folder = Path(folder)
        if not folder.exists() or folder.resolve() in seen:
            continue
        seen.add(folder.resolve())
        for p in face_files(folder):
            try:
                rec = read_record(p)
            except DflError:
                continue
            if is_labelled(rec):
                labelled.append(p)
            elif rec.xseg_mask is not None:
                masked.append(p)
    if labelled:
        return labelled, "labels"
    if masked:
        return masked, "masks"
    names = " or ".join(str(Path(f)) for f in dict.fromkeys(folders))
    raise DflError(f"no labelled faces in {names}: label some with `dfl xseg edit src` / `dfl xseg edit dst` "
                   "(step 5.XSeg) data_src/data_dst mask - edit)")


# -- DFL's XSeg augmentation ---------------------------------------------------------------------------
def random_circle_faded(r: int, rng: np.random.Generator) -> np.ndarray:
    """r x r x 1 float32: 1 inside a random circle fading to 0 (DFL's ``random_circle_faded``), the area
    the local augmentations touch."""
    start = int(rng.integers(r))
    end = start + int(rng.integers(max(1, r - start)))
    cy, cx = int(rng.integers(r)), int(rng.integers(r))
    yy, xx = np.mgrid[0:r, 0:r].astype(np.float32)
    d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    return np.clip(1 - (d - start) / max(end, 1), 0, 1)[..., None].astype(np.float32)


def _local(img: np.ndarray, out: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return out if mask is None else img * (1 - mask) + out * mask


def random_hsv_shift(img: np.ndarray, rng: np.random.Generator, mask: np.ndarray | None = None) -> np.ndarray:
    """Any hue, saturation and value +-0.5 (DFL's ``apply_random_hsv_shift``)."""
    h, s, v = cv2.split(cv2.cvtColor(img.astype(np.float32), cv2.COLOR_BGR2HSV))
    h = (h + int(rng.integers(360))) % 360
    s = np.clip(s + rng.random() - 0.5, 0, 1)
    v = np.clip(v + rng.random() - 0.5, 0, 1)
    return _local(img, np.clip(cv2.cvtColor(cv2.merge([h, s, v]), cv2.COLOR_HSV2BGR), 0, 1), mask)


def random_rgb_levels(img: np.ndarray, rng: np.random.Generator, mask: np.ndarray | None = None) -> np.ndarray:
    """Random per-channel input/output levels and gamma (DFL's ``apply_random_rgb_levels``)."""
    in_black, in_white = rng.random(3) * 0.25, 1 - rng.random(3) * 0.25
    gamma = 0.5 + rng.random(3)
    out_black, out_white = rng.random(3) * 0.25, 1 - rng.random(3) * 0.25
    x = np.clip((img - in_black) / (in_white - in_black), 0, 1)
    x = np.clip(x ** (1 / gamma) * (out_white - out_black) + out_black, 0, 1)
    return _local(img, x.astype(np.float32), mask)


def _chance(rng: np.random.Generator, percent: int) -> bool:
    return int(rng.integers(100)) < percent


def random_sharpen(img: np.ndarray, rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    kernel = int(rng.integers(5)) + 1
    if not _chance(rng, 25):
        return img
    if rng.integers(2) == 0:
        out = blursharpen(img, 1, int(rng.integers(10)), kernel)
    else:
        out = blursharpen(img, 2, int(rng.integers(50)), kernel)
    return _local(img, out, mask)


def random_motion_blur(img: np.ndarray, rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    size, angle = int(rng.integers(5)) + 1, int(rng.integers(360))
    return _local(img, motion_blur(img, size, angle), mask) if _chance(rng, 25) else img


def random_gaussian_blur(img: np.ndarray, rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    if not _chance(rng, 25):
        return img
    k = int(rng.integers(5)) * 2 + 1
    return _local(img, cv2.GaussianBlur(img, (k, k), 0), mask)


def random_resize(img: np.ndarray, rng: np.random.Generator, mask: np.ndarray, interpolation: int) -> np.ndarray:
    """Down by up to 75% and back up (DFL's ``apply_random_nearest/bilinear_resize``, 25%)."""
    if not _chance(rng, 25):
        return img
    h, w = img.shape[:2]
    t = rng.random()
    small = cv2.resize(img, (w - int(t * int(w * 0.75)), h - int(t * int(h * 0.75))), interpolation=interpolation)
    return _local(img, cv2.resize(small, (w, h), interpolation=interpolation), mask)


def random_jpeg(img: np.ndarray, rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """A JPEG round trip at quality 10..100 (DFL's ``apply_random_jpeg_compress``, 25%)."""
    if not _chance(rng, 25):
        return img
    ok, buf = cv2.imencode(".jpg", np.clip(img * 255, 0, 255).astype(np.uint8),
                           [int(cv2.IMWRITE_JPEG_QUALITY), int(rng.integers(10, 101))])
    if not ok:
        return img
    return _local(img, cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).astype(np.float32) / 255.0, mask)


def _flare(img: np.ndarray, where: np.ndarray, r: int, rng: np.random.Generator) -> np.ndarray:
    k = int(rng.integers(r // 4, r))
    k = k - k % 2 + 1
    return img + cv2.GaussianBlur(img * where, (k, k), 0)


def blend_background(img: np.ndarray, mask: np.ndarray, bg: np.ndarray, bg_mask: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """Another labelled face's background (turned, flipped, recoloured) mixed behind this face's: what is
    outside both faces' masks becomes a blend of the two (DFL's XSeg background augmentation)."""
    r = img.shape[0]
    p = gen_warp_params(r, rng, flip=True, rotation_range=(-180, 180), scale_range=(-0.1, 0.1),
                        tx_range=(-0.1, 0.1), ty_range=(-0.1, 0.1))
    bg = warp_by_params(p, bg, can_warp=False, can_transform=True, can_flip=True, border_replicate=True)
    bg_mask = warp_by_params(p, bg_mask, can_warp=False, can_transform=True, can_flip=True, border_replicate=False)
    bg = bg * (1 - bg_mask)
    bg = random_hsv_shift(bg, rng) if rng.integers(2) == 0 else random_rgb_levels(bg, rng)
    c = 1 - (1 - bg_mask) * (1 - mask)
    rnd = 0.15 + rng.random() * 0.85
    return img * c + img * (1 - c) * rnd + bg * (1 - c) * (1 - rnd)


def augment_labelled(img_u8: np.ndarray, mask_u8: np.ndarray, rng: np.random.Generator,
                     background: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One labelled face -> (augmented face HxWx3, its 0/1 mask HxWx1), float32; ``background``: another
    labelled face (uint8 face, mask) to blend behind it.  The steps and odds are DFL's (module doc)."""
    r = img_u8.shape[0]
    img = img_u8.astype(np.float32) / 255.0
    mask = (mask_u8.astype(np.float32) / 255.0)[..., None]
    if background is not None:
        bg, bgm = background
        bg_mask = (bgm.astype(np.float32) / 255.0)[..., None]
        img = blend_background(img, mask, bg.astype(np.float32) / 255.0, bg_mask, rng)
    p = gen_warp_params(r, rng, flip=True, rotation_range=(-10, 10), scale_range=(-0.05, 0.05),
                        tx_range=(-0.05, 0.05), ty_range=(-0.05, 0.05))
    img = warp_by_params(p, img, can_warp=True, can_transform=True, can_flip=True, border_replicate=True)
    mask = warp_by_params(p, mask, can_warp=True, can_transform=True, can_flip=True, border_replicate=False)
    img = np.clip(img, 0, 1)
    mask = (mask >= 0.5).astype(np.float32)
    if rng.integers(2) == 0:
        img = _flare(img, mask, r, rng)            # face flare
    if rng.integers(2) == 0:
        img = _flare(img, 1 - mask, r, rng)        # background flare
    circle = random_circle_faded(r, rng)
    img = random_hsv_shift(img, rng, circle) if rng.integers(2) == 0 else random_rgb_levels(img, rng, circle)
    if rng.integers(2) == 0:
        img = random_sharpen(img, rng, random_circle_faded(r, rng))
    else:
        img = random_motion_blur(img, rng, random_circle_faded(r, rng))
        img = random_gaussian_blur(img, rng, random_circle_faded(r, rng))
    interp = cv2.INTER_NEAREST if rng.integers(2) == 0 else cv2.INTER_LINEAR
    img = np.clip(random_resize(img, rng, random_circle_faded(r, rng), interp), 0, 1)
    img = random_jpeg(img, rng, random_circle_faded(r, rng))
    return np.ascontiguousarray(img, np.float32), np.ascontiguousarray(mask, np.float32)


# -- the trainer's batch source ------------------------------------------------------------------------
class LabelledStream(IterableDataset):
    """Endless augmented batches of the labelled faces, walked in shuffled order as DFL does."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, batch_size: int, seed: int | None) -> None:
        super().__init__()
        self.images, self.masks, self.batch_size, self.seed = images, masks, batch_size, seed

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        base = self.seed if self.seed is not None else int.from_bytes(os.urandom(4), "little")
        rng = np.random.default_rng([base, info.id if info is not None else 0])
        cv2.setNumThreads(1)
        order: list[int] = []
        bg_order: list[int] = []

        def pick(queue: list[int]) -> int:
            if not queue:
                queue.extend(int(i) for i in rng.permutation(len(self.images)))
            return queue.pop()

        while True:
            imgs, masks = [], []
            for _ in range(self.batch_size):
                i = pick(order)
                bg = None
                if rng.integers(2) == 0:
                    j = pick(bg_order)
                    bg = (self.images[j].numpy(), self.masks[j].numpy())
                img, mask = augment_labelled(self.images[i].numpy(), self.masks[i].numpy(), rng, bg)
                imgs.append(img)
                masks.append(mask)
            yield {"image": torch.from_numpy(np.stack(imgs).transpose(0, 3, 1, 2).copy()),
                   "mask": torch.from_numpy(np.stack(masks).transpose(0, 3, 1, 2).copy())}


def _ignore_sigint(_worker_id: int) -> None:
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class MaskTrainingData:
    """The trainer's batches for a mask model (:class:`dfl.models.registry.BatchSource`): the labelled
    faces of ``folders`` (read once, see :func:`find_labelled`), augmented on ``workers`` processes (0:
    between steps); the preview batch adds a few faces of each folder, labelled or not."""

    def __init__(self, folders: list[Path], resolution: int, face_type: Any, batch_size: int,
                 workers: int = 0, seed: int | None = None, notify: Callable[[str], None] | None = None) -> None:
        from tqdm import tqdm

        self.folders = [Path(f) for f in dict.fromkeys(Path(f) for f in folders)]
        self.resolution, self.face_type = resolution, face_type
        paths, what = find_labelled(self.folders)
        r = resolution
        images, masks, bad = [], [], []
        for p in tqdm(paths, desc="Loading labelled faces", unit="face", leave=False):
            try:
                img, mask = prepare_labelled(p, r, face_type)
            except (DflError, ValueError, cv2.error) as exc:
                bad.append(f"{Path(str(p)).name} ({exc})")
                continue
            images.append(img)
            masks.append(mask)
        if not images:
            raise DflError(f"none of the {len(paths)} labelled faces can be used: {'; '.join(bad[:3])}")
        if notify is not None:
            notify(f"training on {len(images)} faces with XSeg {what}"
                   + (f"; skipped {len(bad)}: {'; '.join(bad[:3])}" if bad else ""))
        self.images = torch.from_numpy(np.stack(images))
        self.masks = torch.from_numpy(np.stack(masks))
        if workers > 0:
            self.images.share_memory_()
            self.masks.share_memory_()
        self.paths = paths
        self.stream = LabelledStream(self.images, self.masks, batch_size, seed)
        self.workers = workers
        self.batch_size = batch_size
        self._it: Iterator | None = None
        self.wait_s = 0.0

    def __len__(self) -> int:
        return len(self.images)

    def next(self) -> dict[str, torch.Tensor]:
        t0 = time.perf_counter()
        if self._it is None:
            if self.workers > 0:
                self._it = iter(DataLoader(self.stream, batch_size=None, num_workers=self.workers, prefetch_factor=4,
                                           persistent_workers=True, worker_init_fn=_ignore_sigint))
            else:
                self._it = iter(self.stream)
        batch = next(self._it)
        self.wait_s += time.perf_counter() - t0
        return batch

    def _side_faces(self, folder: Path, n: int) -> list[np.ndarray]:
        """Up to ``n`` faces of ``folder`` (every few), cut as the model's input, for the preview."""
        from dfl.faceset import read_face
        from dfl.faceset.source import face_files

        files = face_files(folder) if folder.exists() else []
        out = []
        for p in files[:: max(1, len(files) // max(n, 1))]:
            if len(out) == n:
                break
            try:
                img, rec = read_face(p)
                out.append(cut_face(img, rec, self.resolution, self.face_type))
            except (DflError, ValueError, cv2.error):
                continue
        return out

    def fixed_preview_batch(self, n: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
        """The same faces at every refresh: labelled faces with their masks (``image``, ``mask``) and as
        many faces of the first and the last folder (``src``, ``dst``; labelled ones where a folder has none)."""
        n = min(n or PREVIEW_FACES, self.batch_size, len(self.images))
        idx = np.random.default_rng(seed).choice(len(self.images), n, replace=False)
        labelled = [self.images[int(i)].numpy() for i in idx]

        def tensor(faces: list[np.ndarray]) -> torch.Tensor:
            faces = (faces + labelled)[:n]
            return torch.from_numpy(np.stack(faces).astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()

        masks = torch.from_numpy(np.stack([self.masks[int(i)].numpy() for i in idx]).astype(np.float32) / 255.0)
        return {"image": tensor(labelled), "mask": masks[:, None].contiguous(),
                "src": tensor(self._side_faces(self.folders[0], n)),
                "dst": tensor(self._side_faces(self.folders[-1], n))}

    def close(self) -> None:
        self._it = None


class PretrainData:
    """XSeg's pretraining batches (DFL's pretrain mode): every face of ``folder``, warped and flipped as the
    face-swap samples are, as ``image``, and the same warped face in grey as ``mask`` (the target); the
    preview batch shows unwarped faces."""

    def __init__(self, folder: Path, resolution: int, face_type: Any, batch_size: int, workers: int = 0,
                 seed: int | None = None, notify: Callable[[str], None] | None = None) -> None:
        from dfl.samples import SampleOptions, TrainingData

        opts = SampleOptions(resolution=resolution, face_type=face_type, batch_size=batch_size, random_warp=True,
                             random_src_flip=True, random_dst_flip=True, seed=seed)
        self.data = TrainingData(Path(folder), Path(folder), opts, workers=workers, notify=notify)

    @property
    def wait_s(self) -> float:
        return self.data.wait_s

    @staticmethod
    def _grey(faces: torch.Tensor) -> torch.Tensor:
        b, g, r = faces[:, 0:1], faces[:, 1:2], faces[:, 2:3]      # OpenCV's BGR -> grey weights
        return 0.114 * b + 0.587 * g + 0.299 * r

    def next(self) -> dict[str, torch.Tensor]:
        warped = self.data.next()["warped_src"]
        return {"image": warped, "mask": self._grey(warped)}

    def fixed_preview_batch(self) -> dict[str, torch.Tensor]:
        b = self.data.fixed_preview_batch(n=PREVIEW_FACES)
        return {"image": b["target_src"], "mask": self._grey(b["target_src"]), "src": b["target_src"],
                "dst": b["target_dst"]}

    def close(self) -> None:
        self.data.close()
