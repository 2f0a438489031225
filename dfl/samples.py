"""Training samples: faceset faces -> augmented batches, made on worker processes (DFL's samplelib).

It sits below the models (it reads facesets, never a model): a model's registered spec says which batches
it learns from (the face-swap models: :class:`TrainingData` of src and dst faces), and the trainer only
asks the spec.  Another kind of model (XSeg: labelled faces of both sides) builds its own stream from the
same pieces (:func:`load_faceset`, :func:`prepare_face`, :func:`augment`).

Each face is decoded once, converted to the model's face type and resolution (with its full mask: its XSeg
mask when it has one, else the landmark hull; and its eyes+mouth mask) and kept in a shared uint8 cache,
so workers only do the per-iteration work DFL does: colour transfer, random HSV, a random affine (rotation
+-10 deg, scale 0.85..1.15, shift +-5%), flips, and the random grid warp of the input (the target and the
masks get the same affine but no warp).  Batches come out as the dict the face-swap recipe expects:
``warped_src, target_src, target_srcm, target_srcm_em`` and the same for
dst, float32 NCHW BGR in [0, 1] (masks N1HW).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from dfl.errors import DflError
from dfl.imageops.warp import gen_warp_params, warp_affine, warp_by_params

CT_MODES = ("none", "rct", "lct", "mkl", "idt", "sot")
YAW_BINS = 128             # DFL's uniform-yaw bins over [-1, 1]
DEFAULT_CACHE_MB = 4096


@dataclass
class SampleOptions:
    """What the model asks of its samples (from its options)."""

    resolution: int
    face_type: Any                      # dfl.faces.align.FaceType of the model
    batch_size: int = 4
    random_warp: bool = True
    random_src_flip: bool = False       # DFL's defaults: src faces keep their side, dst faces flip
    random_dst_flip: bool = True
    ct_mode: str = "none"
    random_hsv_power: float = 0.0       # src input only, as DFL
    uniform_yaw: bool = False
    rotation_range: tuple[float, float] = (-10.0, 10.0)
    scale_range: tuple[float, float] = (-0.15, 0.15)
    shift_range: tuple[float, float] = (-0.05, 0.05)
    seed: int | None = None
    cache_mb: int = DEFAULT_CACHE_MB


@dataclass
class FaceSet:
    """One side's faces at the model's resolution: paths, yaw, and (when cached) pixels and masks."""

    folder: Path
    paths: list[Path]
    yaws: np.ndarray
    images: torch.Tensor | None = None   # (N, r, r, 3) uint8, shared memory
    masks: torch.Tensor | None = None    # (N, r, r, 2) uint8: full mask, eyes+mouth mask
    yaw_bins: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


# -- one face --------------------------------------------------------------------------------------
def _face_type_value(ft: Any) -> Any:
    from dfl.faces.align import FaceType
    if isinstance(ft, FaceType):
        return ft
    return FaceType.from_string(str(ft))


def prepare_face(path: Path, resolution: int, face_type: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """Decode a faceset face -> (BGR uint8 r x r x 3, masks uint8 r x r x 2 (full, eyes+mouth), yaw).

    When the model's face type is narrower than the faceset's (e.g. ``f`` from ``wf`` faces) the face is
    re-cut from the aligned image with the model's face type, as DFL does; a wider one is refused.
    """
    from dfl.faces.align import eyes_mouth_mask, pitch_yaw_roll, transform_matrix
    from dfl.faceset import read_face

    img, rec = read_face(path)
    size = img.shape[0]
    lmrks = np.asarray(rec.landmarks, dtype=np.float32)
    sample_ft = _face_type_value(rec.face_type)
    model_ft = _face_type_value(face_type)
    if int(model_ft) > int(sample_ft):
        raise DflError(f"{path}: face type {sample_ft.to_string()} is narrower than the model's "
                       f"{model_ft.to_string()}; extract the faces again as {model_ft.to_string()} or wider")
    full = np.clip(training_mask(rec, size), 0, 1)
    em = eyes_mouth_mask((size, size), lmrks)
    em = em[..., 0] if em.ndim == 3 else em
    em = np.clip(em, 0, 1) * (full != 0)       # DFL: eyes and mouth only where the face mask is
    masks = np.stack([full, em], axis=-1)
    masks = (masks * 255 + 0.5).astype(np.uint8)
    yaw = float(pitch_yaw_roll(lmrks, size)[1])
    if int(model_ft) != int(sample_ft):
        mat = transform_matrix(lmrks, resolution, model_ft)
        img = warp_affine(img, mat, resolution, border_replicate=True, interpolation=cv2.INTER_CUBIC)
        masks = warp_affine(masks, mat, resolution, border_replicate=False, interpolation=cv2.INTER_LINEAR)
    elif size != resolution:
        inter = cv2.INTER_AREA if size > resolution else cv2.INTER_CUBIC
        img = cv2.resize(img, (resolution, resolution), interpolation=inter)
        masks = cv2.resize(masks, (resolution, resolution), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(img), np.ascontiguousarray(masks.reshape(resolution, resolution, 2)), yaw


def training_mask(rec: Any, size: int) -> np.ndarray:
    """A face's full training mask at ``size`` px (HxW float32), DFL's rule for every face type: its XSeg mask
    (``xseg_mask``, written by ``dfl xseg apply`` or DFL) resized bicubically to the face, else the
    landmark hull widened by ``eyebrows_expand_mod``.  It is then cut and augmented exactly as the face."""
    from dfl.faces.align import hull_mask

    if rec.xseg_mask is not None:
        m = np.asarray(rec.xseg_mask, np.float32)
        m = m[..., 0] if m.ndim == 3 else m
        if m.shape != (size, size):
            m = cv2.resize(m, (size, size), interpolation=cv2.INTER_CUBIC)
        return m
    ebm = rec.eyebrows_expand_mod if rec.eyebrows_expand_mod is not None else 1.0
    return hull_mask((size, size), np.asarray(rec.landmarks, np.float32), eyebrows_expand_mod=ebm)[..., 0]


# what one bad file raises: our own one-line errors, numpy/OpenCV on odd pixel data, FaceType on an unknown name
FACE_ERRORS = (DflError, ValueError, cv2.error)


class _PrepareDataset(Dataset):
    """Faces prepared in worker processes; a face that cannot be used comes back as its reason (a
    string) instead of raising, so one bad file never takes the loader down."""

    def __init__(self, paths: list[Path], resolution: int, face_type: Any) -> None:
        self.paths, self.resolution, self.face_type = paths, resolution, face_type

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, Any, Any, Any]:
        try:
            img, masks, yaw = prepare_face(self.paths[i], self.resolution, self.face_type)
        except FACE_ERRORS as exc:
            return i, None, None, _reason(self.paths[i], exc)
        return i, torch.from_numpy(img), torch.from_numpy(masks), yaw


def _reason(path: Path, exc: Exception) -> str:
    """Why a face was skipped, without repeating its path."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg[len(str(path)) + 2:] if msg.startswith(f"{path}: ") else msg


def default_workers(training_device: str = "cuda") -> int:
    """Sample worker processes while training on ``training_device`` (a device type).

    On a GPU: half the cores, at least one, at most 8 like DFL.  On the CPU: none.  There the training step
    already keeps every core busy, and a worker process preempting its threads costs far more than the
    work it does: SAEHD df-ud 128 batch 8 on 2 cores ran 1622 ms/iteration with one worker and 1431 with
    batches made in-process between steps, where they take about 2% of the step (measured).
    """
    if training_device == "cpu":
        return 0
    return load_workers()


def load_workers() -> int:
    """Processes that decode a faceset before training starts: half the cores, at least one, at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def load_faceset(folder: Path, opts: SampleOptions, workers: int = 0, desc: str = "faces",
                 notify: Callable[[str], None] | None = None) -> FaceSet:
    """Read every face of ``folder`` once: cached pixels when they fit ``opts.cache_mb``, always the yaw.

    Faces that cannot be used (not a faceset image, truncated, refused metadata, an unknown or too narrow
    face type) are skipped and ``notify`` gets one line with their count and the first few; a folder
    with no usable face at all is a DflError.
    """
    from dfl.faceset.source import face_files
    from tqdm import tqdm

    folder = Path(folder)
    paths = face_files(folder) if folder.exists() else []   # loose faces, or those in folder/faceset.pak
    if not paths:
        raise DflError(f"{folder}: no faces to train on (extract them first)")
    r = opts.resolution
    n = len(paths)
    cache = n * r * r * 5 <= opts.cache_mb * 1024 * 1024
    images = torch.empty((n, r, r, 3), dtype=torch.uint8) if cache else None
    masks = torch.empty((n, r, r, 2), dtype=torch.uint8) if cache else None
    yaws = np.zeros(n, np.float32)
    bad: dict[int, str] = {}
    loader = DataLoader(_PrepareDataset(paths, r, opts.face_type), batch_size=None, shuffle=False,
                        num_workers=workers)
    for i, img, m, yaw in tqdm(loader, total=n, desc=f"Loading {desc}", unit="face", leave=False):
        if img is None:
            bad[i] = yaw
            continue
        yaws[i] = yaw
        if cache:
            images[i] = img
            masks[i] = m
    if bad:
        first = sorted(bad)[:3]
        listed = "; ".join(f"{paths[i].name} ({bad[i]})" for i in first) + ("; ..." if len(bad) > 3 else "")
        if len(bad) == n:
            raise DflError(f"{folder}: none of its {n} faces can be used: {listed}")
        if notify is not None:
            notify(f"{folder}: skipped {len(bad)} of {n} faces that cannot be used: {listed}")
        keep = [i for i in range(n) if i not in bad]
        paths, yaws = [paths[i] for i in keep], yaws[keep]
        if cache:
            idx = torch.as_tensor(keep)
            images, masks = images[idx], masks[idx]
    if cache:
        images.share_memory_()
        masks.share_memory_()
    fs = FaceSet(folder, paths, yaws, images, masks)
    fs.yaw_bins = yaw_bins(yaws)
    return fs


def yaw_bins(yaws: np.ndarray, bins: int = YAW_BINS) -> list[np.ndarray]:
    """Indices of the faces in each non-empty yaw bin (DFL's uniform yaw: pick a bin, then a face)."""
    y = np.clip(-np.asarray(yaws, np.float32), -1.0, 1.0)
    idx = np.minimum(((y + 1.0) / 2.0 * bins).astype(np.int64), bins - 1)
    return [np.flatnonzero(idx == b) for b in range(bins) if (idx == b).any()]


def _get(fs: FaceSet, i: int, opts: SampleOptions) -> tuple[np.ndarray, np.ndarray]:
    if fs.images is not None:
        return fs.images[i].numpy(), fs.masks[i].numpy()
    for k in range(len(fs)):   # a face changed on disk since it loaded (no cache): the next one stands in
        try:
            img, masks, _ = prepare_face(fs.paths[(i + k) % len(fs)], opts.resolution, opts.face_type)
            return img, masks
        except FACE_ERRORS:
            continue
    raise DflError(f"{fs.folder}: none of its faces can be read any more")


# -- augmentation ----------------------------------------------------------------------------------
def random_hsv(img: np.ndarray, power: float, rng: np.random.Generator) -> np.ndarray:
    """Shift hue, saturation and value by up to +-power (hue wraps), as DFL's random_hsv_shift."""
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)   # float32: H in [0, 360), S, V in [0, 1]
    h, s, v = cv2.split(hsv)
    h = (h + rng.uniform(-power, power) * 360.0) % 360.0
    s = np.clip(s + rng.uniform(-power, power), 0, 1)
    v = np.clip(v + rng.uniform(-power, power), 0, 1)
    return np.clip(cv2.cvtColor(cv2.merge([h, s, v]), cv2.COLOR_HSV2BGR), 0, 1)


def augment(img_u8: np.ndarray, masks_u8: np.ndarray, opts: SampleOptions, flip: bool,
            rng: np.random.Generator, ct_target: np.ndarray | None = None,
            hsv_power: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One face -> (warped input, target, full mask, eyes+mouth mask), float32 HWC / HW1 in [0, 1]."""
    img = img_u8.astype(np.float32) / 255.0
    if ct_target is not None and opts.ct_mode not in (None, "none"):
        from dfl.imageops.color_transfer import color_transfer
        img = np.clip(color_transfer(opts.ct_mode, img, ct_target.astype(np.float32) / 255.0), 0, 1)
        img = img.astype(np.float32)
    r = opts.resolution
    params = gen_warp_params(r, rng, flip=flip, rotation_range=opts.rotation_range,
                             scale_range=opts.scale_range, tx_range=opts.shift_range, ty_range=opts.shift_range)
    src_in = random_hsv(img, hsv_power, rng) if hsv_power > 0 else img
    warped = warp_by_params(params, src_in, can_warp=opts.random_warp, can_transform=True, can_flip=True,
                            border_replicate=True)
    target = warp_by_params(params, img, can_warp=False, can_transform=True, can_flip=True, border_replicate=True)
    m = warp_by_params(params, masks_u8.astype(np.float32) / 255.0, can_warp=False, can_transform=True,
                       can_flip=True, border_replicate=False, interpolation=cv2.INTER_LINEAR)
    m = np.clip(m, 0, 1)
    em = m[..., 1:2]
    top = float(em.max())
    if top > 0:                                # DFL: the eyes+mouth mask back to a peak of 1 after the warp
        em = em / top
    return (np.clip(warped, 0, 1), np.clip(target, 0, 1), m[..., :1], em)


class _Picker:
    """DFL's sampling: walk a shuffled list of all faces (refilled when used up), or of yaw bins."""

    def __init__(self, fs: FaceSet, uniform_yaw: bool, rng: np.random.Generator) -> None:
        self.fs, self.uniform_yaw, self.rng = fs, uniform_yaw, rng
        self.order: list[int] = []

    def next(self) -> int:
        if not self.order:
            n = len(self.fs.yaw_bins) if self.uniform_yaw else len(self.fs)
            self.order = list(self.rng.permutation(n))
        k = int(self.order.pop())
        if self.uniform_yaw:
            members = self.fs.yaw_bins[k]
            return int(members[self.rng.integers(len(members))])
        return k


class BatchStream(IterableDataset):
    """Endless batches (dicts of NCHW float32 tensors); each worker draws with its own seed."""

    def __init__(self, src: FaceSet, dst: FaceSet, opts: SampleOptions) -> None:
        super().__init__()
        self.src, self.dst, self.opts = src, dst, opts

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        wid = info.id if info is not None else 0
        base = self.opts.seed if self.opts.seed is not None else int.from_bytes(os.urandom(4), "little")
        rng = np.random.default_rng([base, wid])
        cv2.setNumThreads(1)
        src_pick = _Picker(self.src, self.opts.uniform_yaw, rng)
        dst_pick = _Picker(self.dst, self.opts.uniform_yaw, rng)
        while True:
            yield self.make_batch(src_pick, dst_pick, rng)

    def make_batch(self, src_pick: _Picker, dst_pick: _Picker, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        o = self.opts
        out: dict[str, list[np.ndarray]] = {k: [] for k in BATCH_KEYS}
        for _ in range(o.batch_size):
            i = src_pick.next()
            img, masks = _get(self.src, i, o)
            ct = None
            if o.ct_mode not in (None, "none"):
                ct, _ = _get(self.dst, int(rng.integers(len(self.dst))), o)
            w, t, m, em = augment(img, masks, o, o.random_src_flip, rng, ct, o.random_hsv_power)
            for k, v in zip(("warped_src", "target_src", "target_srcm", "target_srcm_em"), (w, t, m, em)):
                out[k].append(v)
            j = dst_pick.next()
            img, masks = _get(self.dst, j, o)
            w, t, m, em = augment(img, masks, o, o.random_dst_flip, rng)
            for k, v in zip(("warped_dst", "target_dst", "target_dstm", "target_dstm_em"), (w, t, m, em)):
                out[k].append(v)
        return {k: torch.from_numpy(np.ascontiguousarray(np.stack(v).transpose(0, 3, 1, 2))) for k, v in out.items()}


BATCH_KEYS = ("warped_src", "target_src", "target_srcm", "target_srcm_em",
              "warped_dst", "target_dst", "target_dstm", "target_dstm_em")


def _ignore_sigint(_worker_id: int) -> None:
    """Ctrl+C is the trainer's to handle (it saves); workers just keep going until closed."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class TrainingData:
    """The trainer's source of batches: loads both facesets, then serves batches from worker processes
    (``workers=0``: made in this process when asked for, see :func:`default_workers`).

    ``next()`` returns the next batch; ``wait_s`` accumulates the time the trainer spent waiting for one,
    which is what tells whether the data pipeline starves the model.
    """

    def __init__(self, src_dir: Path, dst_dir: Path, opts: SampleOptions, workers: int | None = None,
                 notify: Callable[[str], None] | None = None) -> None:
        self.opts = opts
        self.workers = default_workers() if workers is None else workers
        loaders = max(self.workers, load_workers())
        self.src = load_faceset(src_dir, opts, loaders, "src faces", notify)
        self.dst = load_faceset(dst_dir, opts, loaders, "dst faces", notify) \
            if Path(dst_dir) != Path(src_dir) else self.src
        self.stream = BatchStream(self.src, self.dst, opts)
        self._it: Iterator | None = None
        self.wait_s = 0.0

    def _iterator(self) -> Iterator:
        if self._it is None:
            if self.workers > 0:
                loader = DataLoader(self.stream, batch_size=None, num_workers=self.workers,
                                    prefetch_factor=4, persistent_workers=True, worker_init_fn=_ignore_sigint)
                self._it = iter(loader)
            else:
                self._it = iter(self.stream)
        return self._it

    def next(self) -> dict[str, torch.Tensor]:
        import time
        t0 = time.perf_counter()
        batch = next(self._iterator())
        self.wait_s += time.perf_counter() - t0
        return batch

    def fixed_preview_batch(self, n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
        """Un-augmented faces for the preview grid (same faces at every refresh, as DFL)."""
        o = self.opts
        rng = np.random.default_rng(seed)
        n_src, n_dst = min(n, len(self.src)), min(n, len(self.dst))
        k = min(n_src, n_dst)
        si = rng.choice(len(self.src), k, replace=False)
        di = rng.choice(len(self.dst), k, replace=False)

        def stack(fs: FaceSet, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            imgs, ms = zip(*(_get(fs, int(i), o) for i in idx))
            t = torch.from_numpy(np.stack(imgs).astype(np.float32) / 255.0).permute(0, 3, 1, 2)
            m = torch.from_numpy(np.stack(ms).astype(np.float32) / 255.0).permute(0, 3, 1, 2)
            return t.contiguous(), m.contiguous()

        s, sm = stack(self.src, si)
        d, dm = stack(self.dst, di)
        return {"target_src": s, "target_srcm": sm[:, :1], "target_dst": d, "target_dstm": dm[:, :1]}

    def close(self) -> None:
        self._it = None
