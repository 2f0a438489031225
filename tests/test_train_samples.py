"""DFL's random warp and the training samples built from a faceset."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfl.imageops.warp import gen_warp_params, random_warp_grid, truncated_normal, warp_by_params

sys.path.insert(0, str(Path(__file__).resolve().parent))


def test_warp_grid_is_a_gentle_distortion_of_identity() -> None:
    rng = np.random.default_rng(0)
    for size in (64, 128):
        mapx, mapy = random_warp_grid(size, rng)
        assert mapx.shape == mapy.shape == (size, size) and mapx.dtype == np.float32
        ident = np.broadcast_to(np.linspace(0, size, size, dtype=np.float32), (size, size))
        # DFL jitters inner grid points by at most 0.24 of a cell (cells of size/2 .. size/8)
        assert np.abs(mapx - ident).max() <= 0.24 * size / 2 + 1.5
        assert np.abs(mapx - ident).max() > 0.0 or np.abs(mapy - ident.T).max() > 0.0
    v = truncated_normal(rng, (1000,))
    assert v.min() >= -1 and v.max() <= 1 and 0.2 < v.std() < 0.5


def test_same_params_keep_image_and_mask_aligned_and_flip() -> None:
    rng = np.random.default_rng(1)
    img = np.zeros((96, 96, 3), np.float32)
    cv2.circle(img, (40, 50), 20, (1, 1, 1), -1)
    mask = img[..., :1].copy()
    for _ in range(5):
        p = gen_warp_params(96, rng, flip=True)
        a = warp_by_params(p, img, can_warp=False, can_transform=True, can_flip=True)
        m = warp_by_params(p, mask, can_warp=False, can_transform=True, can_flip=True, border_replicate=False,
                           interpolation=cv2.INTER_LINEAR)
        assert m.shape == (96, 96, 1)
        assert np.abs(a[..., 0] - m[..., 0]).mean() < 0.02
    # no warp, no transform, no flip -> unchanged; flip -> mirrored
    p = gen_warp_params(96, rng)
    assert np.array_equal(warp_by_params(p, img, False, False, False), img)
    p.flip = True
    assert np.array_equal(warp_by_params(p, img, False, False, True), img[:, ::-1])
    # small images are warped at 64 px and come back at their size
    p = gen_warp_params(32, rng)
    assert warp_by_params(p, img[:32, :32], True, True, True).shape == (32, 32, 3)
    # flips happen about 40% of the time when allowed, never when not
    flips = [gen_warp_params(64, rng, flip=True).flip for _ in range(400)]
    assert 0.3 < np.mean(flips) < 0.5
    assert not any(gen_warp_params(64, rng, flip=False).flip for _ in range(50))


@pytest.fixture(scope="module")
def faceset(tmp_path_factory) -> Path:
    pytest.importorskip("dfl.faceset")
    from train_helpers import make_workspace

    return make_workspace(tmp_path_factory.mktemp("samples_ws"), n=6, size=96)


def test_batches_have_the_objectives_keys_shapes_and_ranges(faceset: Path) -> None:
    from dfl.faces.align import FaceType
    from dfl.samples import BATCH_KEYS, SampleOptions, TrainingData

    opts = SampleOptions(resolution=64, face_type=FaceType.FULL, batch_size=3, ct_mode="rct",
                         random_hsv_power=0.05, uniform_yaw=True, seed=0)
    data = TrainingData(faceset / "data_src" / "aligned", faceset / "data_dst" / "aligned", opts, workers=0)
    b = data.next()
    assert set(b) == set(BATCH_KEYS)
    for k, v in b.items():
        assert v.dtype.is_floating_point and v.shape[0] == 3 and v.shape[2:] == (64, 64)
        assert v.shape[1] == (1 if k.endswith("m") or k.endswith("_em") else 3), k
        assert 0.0 <= float(v.min()) and float(v.max()) <= 1.0
    # the mask covers the face, the eyes+mouth mask lies inside it
    assert 0.2 < float(b["target_srcm"].mean()) < 0.9
    assert float((b["target_srcm_em"] * (1 - b["target_srcm"])).sum()) < 0.05 * float(b["target_srcm_em"].sum()) + 1
    # the warped input differs from the target (random warp), the target has no warp
    assert float((b["warped_dst"] - b["target_dst"]).abs().mean()) > 0.005
    prev = data.fixed_preview_batch(2)
    assert prev["target_src"].shape == (2, 3, 64, 64)


def test_worker_processes_serve_batches(faceset: Path) -> None:
    from dfl.faces.align import FaceType
    from dfl.samples import SampleOptions, TrainingData

    opts = SampleOptions(resolution=64, face_type=FaceType.FULL, batch_size=2, seed=1)
    data = TrainingData(faceset / "data_src" / "aligned", faceset / "data_dst" / "aligned", opts, workers=1)
    try:
        a, b = data.next(), data.next()
        assert a["warped_src"].shape == (2, 3, 64, 64)
        assert not np.array_equal(a["warped_src"].numpy(), b["warped_src"].numpy())
    finally:
        data.close()


def test_cpu_training_makes_batches_in_process() -> None:
    """On the CPU the step uses every core: batches are made between steps, not by competing processes."""
    from dfl.samples import default_workers, load_workers

    assert default_workers("cpu") == 0
    assert default_workers("cuda") == load_workers() >= 1


def test_face_type_conversion_and_refusal(faceset: Path, tmp_path: Path) -> None:
    from dfl.errors import DflError
    from dfl.faces.align import FaceType
    from dfl.faceset import list_faces
    from dfl.samples import prepare_face, yaw_bins
    from train_helpers import write_faceset

    p = list_faces(faceset / "data_src" / "aligned")[0]          # whole_face faces
    img_wf, m_wf, _ = prepare_face(p, 64, FaceType.WHOLE_FACE)
    img_f, m_f, yaw = prepare_face(p, 64, FaceType.FULL)         # narrower: re-cut, face fills more
    assert img_f.shape == (64, 64, 3) and m_f.shape == (64, 64, 2)
    assert m_f[..., 0].mean() > m_wf[..., 0].mean()
    assert abs(yaw) < 0.5
    half = write_faceset(tmp_path / "half", 1, 0, seed=3, size=64, face_type="half_face")[0]
    with pytest.raises(DflError, match="narrower"):
        prepare_face(half, 64, FaceType.WHOLE_FACE)
    bins = yaw_bins(np.array([-0.9, -0.899, 0.0, 0.5]))
    assert sorted(len(b) for b in bins) == [1, 1, 2]


def test_real_dfl_faces_with_xseg_masks_make_batches() -> None:
    """Faces written by DFL itself (mixed face types and sizes, some with XSeg masks) feed training."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "conformance"
    if not (shared / "00001_0.jpg").is_file():
        pytest.skip("../shared/conformance is missing")
    pytest.importorskip("dfl.faceset")
    from dfl.faces.align import FaceType
    from dfl.faceset import read_face
    from dfl.samples import SampleOptions, TrainingData, prepare_face

    # the XSeg mask is used as the full mask when present (not the landmark hull)
    _, rec = read_face(shared / "00001_0.jpg")
    img, masks, _ = prepare_face(shared / "00001_0.jpg", 64, FaceType.WHOLE_FACE)
    xseg = cv2.resize(rec.xseg_mask.astype(np.float32), (64, 64), interpolation=cv2.INTER_LINEAR)
    assert np.abs(masks[..., 0] / 255.0 - xseg).mean() < 0.05
    opts = SampleOptions(resolution=64, face_type=FaceType.FULL, batch_size=2, seed=3)
    data = TrainingData(shared, shared, opts, workers=0)   # full_face, whole_face, head -> full_face
    b = data.next()
    assert b["target_src"].shape == (2, 3, 64, 64) and float(b["target_dstm"].mean()) > 0.1


def _xseg_face(folder: Path, size: int = 96) -> Path:
    """A whole_face face whose pixels are its own XSeg mask (white inside, black outside), the mask stored
    at 256 px as DFL's apply stores it: a box over the eyes and forehead that leaves the mouth and chin out,
    nothing like the landmark hull."""
    from dfl.faceset import read_face, write_face
    from train_helpers import write_faceset

    path = write_faceset(folder, 1, 0, seed=5, size=size)[0]
    _, rec = read_face(path)
    mask = np.zeros((256, 256), np.float32)
    cv2.rectangle(mask, (40, 30), (215, 140), 1.0, -1)
    face = np.repeat((cv2.resize(mask, (size, size), interpolation=cv2.INTER_CUBIC) * 255).clip(0, 255)
                     .astype(np.uint8)[..., None], 3, axis=2)
    rec.xseg_mask = mask
    write_face(path, face, rec)
    return path


@pytest.mark.parametrize("model_face_type", ["wf", "f"])
def test_a_face_with_an_xseg_mask_trains_on_that_mask_warped_as_the_face(tmp_path: Path, model_face_type: str) -> None:
    """DFL's rule: the stored XSeg mask, not the landmark hull, is the training mask, cut (re-cut to a
    narrower face type) and augmented exactly as the face; eyes and mouth count only inside it."""
    from dfl.faces.align import FaceType, hull_mask
    from dfl.faceset import read_face
    from dfl.samples import SampleOptions, TrainingData, prepare_face

    path = _xseg_face(tmp_path / "faces")
    ft = FaceType.from_string(model_face_type)
    img, masks, _ = prepare_face(path, 64, ft)
    full, em = masks[..., 0] / 255.0, masks[..., 1] / 255.0
    assert np.abs(img[..., 0] / 255.0 - full).mean() < 0.03          # the mask sits where the face says
    _, rec = read_face(path)
    hull = hull_mask((96, 96), rec.landmarks)[..., 0]
    if ft == FaceType.WHOLE_FACE:
        at_face = np.clip(cv2.resize(rec.xseg_mask, (96, 96), interpolation=cv2.INTER_CUBIC), 0, 1)
        assert np.abs(full - cv2.resize(at_face, (64, 64), interpolation=cv2.INTER_LINEAR)).max() < 2 / 255
        assert np.abs(full - cv2.resize(hull, (64, 64))).mean() > 0.15   # not the hull
    assert em.max() > 0 and float((em * (full == 0)).sum()) == 0.0     # no mouth: it is outside the mask

    opts = SampleOptions(resolution=64, face_type=ft, batch_size=4, seed=2, random_src_flip=True)
    data = TrainingData(path.parent, path.parent, opts, workers=0)
    for _ in range(2):
        b = data.next()
        target, m = b["target_src"][:, 0].numpy(), b["target_srcm"][:, 0].numpy()
        inner = np.s_[:, 10:-10, 10:-10]       # the border: the face replicates its edge, the mask is 0 there
        assert np.abs(target - m)[inner].mean() < 0.03               # warped, scaled, flipped together
        assert b["target_srcm_em"].amax(dim=(1, 2, 3)).min() == 1.0  # back to a peak of 1, as DFL
