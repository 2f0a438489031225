"""XSeg training (issue #15 item 3) and DFL's XSeg models imported (issue #16): ``dfl train --model XSeg``
on labelled faces trains, saves, resumes and feeds ``dfl xseg apply``; no labels is one line; a DFL XSeg
folder becomes a dfl model that applies as DFL's weights do and trains on.

Training the real 256 px network costs seconds per iteration on 2 cores, so the plumbing test trains a
narrow XSeg registered here (XSeg's own spec, recipe and samples, 4 base channels instead of 32); the real
network trains one iteration in the import test.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dfl.errors import DflError
from dfl.faceset import read_record
from dfl.mask_samples import augment_labelled, prepare_labelled
from dfl.models import store
from dfl.models.base import face_type_from_code
from dfl.models import xseg as xseg_model
from dfl.models.registry import register_model, unregister_model
from test_xseg import _face

ELLIPSE = {"type": 1, "pts": np.float32([(32 + 18 * np.cos(t), 34 + 24 * np.sin(t))
                                         for t in np.linspace(0, 2 * np.pi, 24, endpoint=False)])}
MOUTH = {"type": 0, "pts": np.float32([[24, 44], [40, 44], [40, 50], [24, 50]])}


def _labelled_workspace(root: Path, n: int = 3, labelled: int = 2) -> Path:
    """src and dst faces (64 px whole_face), the first ``labelled`` of each side labelled."""
    for side, seed in (("src", 0), ("dst", 10)):
        folder = root / f"data_{side}" / "aligned"
        folder.mkdir(parents=True)
        for i in range(n):
            polys = [ELLIPSE, MOUTH] if i < labelled else None
            _face(folder / f"{i:05d}_0.jpg", size=64, polys=polys, seed=seed + i)
    return root


class NarrowXSeg(xseg_model.XSegModel):
    model_type = "NarrowXSeg"

    def __init__(self, options: dict) -> None:
        super().__init__(options, base_ch=4)


@pytest.fixture
def narrow_xseg():
    spec = register_model(dataclasses.replace(xseg_model.SPEC, name="NarrowXSeg", build=NarrowXSeg, dfl_import=None))
    try:
        yield spec
    finally:
        unregister_model(spec.name)


def test_xseg_trains_on_labelled_faces_saves_resumes_and_applies(narrow_xseg, tmp_path: Path, dfl_run) -> None:
    ws = _labelled_workspace(tmp_path / "ws")
    train = ["train", "-w", ws, "--model", "NarrowXSeg", "--name", "m", "--non-interactive", "--seed", "0",
             "--config", tmp_path / "c.json"]
    (tmp_path / "c.json").write_text(json.dumps({"batch_size": 2, "face_type": "f"}))
    res = dfl_run(*train, "--target-iter", "2")
    assert res.code == 0, res.err
    assert "training on 4 faces with XSeg labels" in res.out          # 2 labelled per side, both sides
    assert "Trained m_NarrowXSeg to iteration 2" in res.out and "loss" in res.out
    path = ws / "model" / "m_NarrowXSeg"
    c = store.read_checkpoint(path)
    assert c.options == {"resolution": 256, "face_type": "f", "batch_size": 2, "pretrain": False}
    assert c.state["iteration"] == 2 and set(c.optimizer) == {"opt"}
    assert c.optimizer["opt"]["param_groups"][0]["lr_dropout"] == pytest.approx(0.3)   # DFL's RMSprop
    assert c.state["loss_history"]["names"] == ["loss"]
    preview = cv2.imread(str(path / "preview.png"))
    assert preview.shape == (2 * 256, 5 * 256, 3)                      # 2 faces; labels, mask, 3 overlays
    before = {k: v.clone() for k, v in c.weights.items()}
    res = dfl_run(*train, "--target-iter", "3")
    assert res.code == 0 and "Resuming m_NarrowXSeg" in res.out and "to iteration 3" in res.out, res.err
    after = store.read_checkpoint(path)
    assert after.state["iteration"] == 3
    assert any(not torch.equal(before[k], after.weights[k]) for k in before)

    res = dfl_run("xseg", "apply", "dst", "-w", ws, "--name", "m")
    assert res.code == 0 and "masked by m_NarrowXSeg (iteration 3)" in res.out, res.err
    masks = [read_record(p).xseg_mask for p in sorted((ws / "data_dst" / "aligned").glob("*.jpg"))]
    assert all(m is not None and m.shape == (256, 256) and set(np.unique(m)) <= {0.0, 1.0} for m in masks)
    res = dfl_run("xseg", "apply", "src", "-w", ws)                   # the workspace's only XSeg by default
    assert res.code == 0 and "masked by m_NarrowXSeg" in res.out, res.err
    res = dfl_run("xseg", "apply", "src", "-w", ws, "--name", "other")
    assert res.code == 1 and "no XSeg model named 'other'" in res.err
    from dfl.export.trained import find_trained                       # a mask model neither exports nor swaps
    with pytest.raises(DflError, match="no usable model"):
        find_trained(ws / "model", None)
    with pytest.raises(DflError, match="mask model"):
        find_trained(ws / "model", "m")


def test_no_labelled_face_is_one_line_and_leaves_no_model(tmp_path: Path, dfl_run) -> None:
    ws = _labelled_workspace(tmp_path / "ws", n=2, labelled=0)
    res = dfl_run("train", "-w", ws, "--model", "XSeg", "--non-interactive")     # step 5.XSeg) train
    assert res.code == 1
    line = res.err.strip()
    assert "\n" not in line and "no labelled faces" in line and "dfl xseg edit" in line
    assert str(ws / "data_src" / "aligned") in line and str(ws / "data_dst" / "aligned") in line
    assert not (ws / "model" / "XSeg_XSeg").exists()


def test_labelled_faces_are_cut_at_the_models_face_type_and_augmented_as_masks(tmp_path: Path) -> None:
    path = _face(tmp_path / "00000_0.jpg", face_type="whole_face", size=128, polys=[ELLIPSE], seed=1)
    img, mask = prepare_labelled(path, 256, face_type_from_code("wf"))
    assert img.shape == (256, 256, 3) and mask.shape == (256, 256) and set(np.unique(mask)) <= {0, 255}
    assert abs(mask.mean() / 255 - np.pi * 18 * 24 / 128 ** 2) < 0.02      # the ellipse, scaled up
    _, narrow = prepare_labelled(path, 256, face_type_from_code("f"))
    assert narrow.mean() > mask.mean() * 1.1                               # full_face is a closer cut
    rng = np.random.default_rng(0)
    for _ in range(4):
        out, m = augment_labelled(img, mask, rng, background=(img[::-1].copy(), mask[::-1].copy()))
        assert out.shape == (256, 256, 3) and m.shape == (256, 256, 1) and out.dtype == np.float32
        assert set(np.unique(m)) <= {0.0, 1.0} and 0.5 * mask.mean() / 255 < m.mean() < 2 * mask.mean() / 255
        assert 0.0 <= out.min() and out.max() <= 1.0


def test_an_imported_dfl_xseg_masks_faces_as_dfl_and_trains_on(tmp_path: Path, dfl_run) -> None:
    """A DFL model folder's XSeg (written as DFL's saver writes it) imports with its options, iteration and
    optimiser state; its network gives DFL's own logits; ``dfl xseg apply`` masks faces with it exactly as
    with DFL's weights; ``dfl train --model XSeg`` continues it."""
    from dfl_format import leras_shape, seeded_weights, write_model_data, write_weights
    from dfl_seed import image_batch

    from dfl.interop.dfl_models import optimizer_variable
    from dfl.leras import leras_name

    oracle = np.load(Path(__file__).parent / "data" / "dfl_oracle" / "xseg.npz")
    meta = json.loads(str(oracle["meta"]))
    dfl_dir = tmp_path / "DeepFaceLab" / "workspace" / "model"
    dfl_dir.mkdir(parents=True)
    net = xseg_model.XSeg()
    write_weights(dfl_dir / "XSeg_256.npy", seeded_weights(net, "XSeg", meta["weights_seed"]))
    acc = {optimizer_variable("a", "XSeg", leras_name(k)): np.full(leras_shape(net, k, tuple(t.shape)), 1e-4,
                                                                    np.float32) for k, t in net.named_parameters()}
    write_weights(dfl_dir / "XSeg_256_opt.npy", {"iters:0": np.int64(777), **acc})
    dfl_options = {"face_type": "f", "pretrain": False, "batch_size": np.int64(2), "autobackup_hour": np.int64(0),
                   "write_preview_history": False, "target_iter": np.int64(0)}
    write_model_data(dfl_dir / "XSeg_data.dat", 777, dfl_options, [[0.5 - i / 2000] for i in range(777)])
    ws = _labelled_workspace(tmp_path / "ws", n=2, labelled=1)

    res = dfl_run("model", "import", dfl_dir, "--name", "XSeg", "-w", ws)
    assert res.code == 0, res.err
    assert "Imported XSeg (XSeg 256 f, iteration 777, optimizer state opt)" in res.out
    path = ws / "model" / "XSeg_XSeg"
    c = store.read_checkpoint(path)
    assert c.options == {"resolution": 256, "face_type": "f", "batch_size": 2, "pretrain": False}
    assert c.state["iteration"] == 777 and c.state["loss_history"]["names"] == ["loss"]
    assert c.optimizer["opt"]["param_groups"][0]["iterations"] == 777
    model, _, _ = store.load_model(path)
    x = torch.from_numpy(image_batch((1, 256, 256, 3), meta["input_seed"])).permute(0, 3, 1, 2)
    with torch.no_grad():
        logits = model.XSeg(x)[0]
    assert np.abs(logits[:, :, ::2, ::2].numpy() - oracle["logits"]).max() <= 2e-4

    shutil.copytree(ws / "data_dst" / "aligned", tmp_path / "by_dfl_weights")
    res = dfl_run("xseg", "apply", "dst", "-w", ws)
    assert res.code == 0 and "masked by XSeg_XSeg (iteration 777)" in res.out, res.err
    res = dfl_run("xseg", "apply", tmp_path / "by_dfl_weights", "-w", ws, "--generic", dfl_dir)
    assert res.code == 0, res.err
    for p in sorted((ws / "data_dst" / "aligned").glob("*.jpg")):
        assert np.array_equal(read_record(p).xseg_mask, read_record(tmp_path / "by_dfl_weights" / p.name).xseg_mask)

    # DFL's step "5.XSeg) train" names no model: the workspace's XSeg (imported as XSeg_XSeg) continues
    res = dfl_run("train", "-w", ws, "--model", "XSeg", "--non-interactive", "--seed", "0",
                  "--target-iter", "778", "--preview-seconds", "1e9")
    assert res.code == 0 and "Resuming XSeg_XSeg" in res.out and "to iteration 778" in res.out, res.err


def test_xseg_pretrains_on_unlabelled_faces_then_trains_on_labels(narrow_xseg, tmp_path: Path, dfl_run) -> None:
    """DFL's XSeg pretrain mode: every face of --pretrain-faces, labels or not, redrawn in grey; turning it off
    restarts the count and trains on the labels."""
    ws = _labelled_workspace(tmp_path / "ws")
    pool = _labelled_workspace(tmp_path / "pool", n=3, labelled=0) / "data_src" / "aligned"   # no labels at all
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"batch_size": 2, "face_type": "f", "pretrain": True}))
    train = ["train", "-w", ws, "--model", "NarrowXSeg", "--name", "p", "--non-interactive", "--seed", "0"]
    res = dfl_run(*train, "--config", conf, "--pretrain-faces", pool, "--target-iter", "2")
    assert res.code == 0, res.err
    assert "Trained p_NarrowXSeg to iteration 2" in res.out and "labels" not in res.out
    c = store.read_checkpoint(ws / "model" / "p_NarrowXSeg")
    assert c.options["pretrain"] is True and c.state["iteration"] == 2
    conf.write_text(json.dumps({"pretrain": False}))
    res = dfl_run(*train, "--config", conf, "--target-iter", "1")
    assert res.code == 0, res.err
    assert "pretraining turned off: the iteration counter starts again from 0" in res.out
    assert "training on 4 faces with XSeg labels" in res.out and "to iteration 1" in res.out
    assert store.read_checkpoint(ws / "model" / "p_NarrowXSeg").options["pretrain"] is False


def test_pretrain_batches_are_warped_faces_with_their_grey_as_target(tmp_path: Path) -> None:
    from dfl.mask_samples import PretrainData

    pool = _labelled_workspace(tmp_path / "pool", n=3, labelled=0) / "data_src" / "aligned"
    data = PretrainData(pool, 64, face_type_from_code("f"), 2, seed=0)
    try:
        b = data.next()
        assert b["image"].shape == (2, 3, 64, 64) and b["mask"].shape == (2, 1, 64, 64)
        grey = cv2.cvtColor(np.ascontiguousarray(b["image"][0].permute(1, 2, 0).numpy()), cv2.COLOR_BGR2GRAY)
        assert np.abs(b["mask"][0, 0].numpy() - grey).max() < 1e-3
        assert float(b["image"].std()) > 0.01
    finally:
        data.close()
