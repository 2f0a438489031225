"""dfl's networks, loaded from DFL-format weight files, against DeepFaceLab's own outputs.

The expected outputs in ``tests/data/dfl_oracle/`` were computed by DFL's TensorFlow code from weights
set by the seed rule of ``dfl_seed.py`` (see ``scripts/dfl_oracle/README.md``).  Here the same weights are
regenerated, written in DFL's file format, read back through :mod:`dfl.leras` (the path a user's files
take) and run by dfl: every output must be within 1e-4 (max abs, float32) of DFL's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dfl.leras import leras_name, load_leras, read_weights
from dfl_format import seeded_weights, write_weights
from dfl_seed import image_batch, image_u8, leras_value

DATA = Path(__file__).parent / "data" / "dfl_oracle"
TOL = 1e-4


def _case(name: str) -> tuple[dict, dict]:
    z = np.load(DATA / f"{name}.npz")
    return {k: z[k] for k in z.files if k != "meta"}, json.loads(str(z["meta"]))


def _nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous()


def _maxdiff(a, b) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b).max())


def _load_seeded(model, tmp_path: Path, seed: int) -> None:
    """Every network of ``model`` through a DFL-format file, as an import reads them."""
    for name, net in model.networks.items():
        load_leras(net, write_weights(tmp_path / f"{name}.npy", seeded_weights(net, name, seed)))


SAEHD = ["saehd_df", "saehd_df_ud", "saehd_df_t", "saehd_df_udt",
         "saehd_liae", "saehd_liae_ud", "saehd_liae_t", "saehd_liae_udt"]


@torch.no_grad()
@pytest.mark.parametrize("case", SAEHD)
def test_saehd_matches_dfl(case: str, tmp_path: Path) -> None:
    from dfl.models.saehd import SAEHDModel

    want, meta = _case(case)
    dims = {k: meta[k] for k in ("resolution", "archi", "ae_dims", "e_dims", "d_dims", "d_mask_dims")}
    model = SAEHDModel(dict(face_type="f", **dims)).eval()
    _load_seeded(model, tmp_path, meta["weights_seed"])
    x = _nchw(image_batch(tuple(meta["input_shape_nhwc"]), meta["input_seed"]))
    src_dst, src_dstm, dst_dstm = model.swap(x)
    got = {"pred_src_dst": src_dst, "pred_src_dstm": src_dstm, "pred_dst_dstm": dst_dstm,
           "pred_dst_dst": model.forward_train(x, x)["pred_dst_dst"]}
    for k, v in got.items():
        assert _maxdiff(v, want[k]) <= TOL, k
    assert np.abs(want["pred_src_dst"] - want["pred_dst_dst"]).max() > 0.1   # the two decoders differ


@torch.no_grad()
def test_dfl_saved_files_load_bit_exact_and_match(tmp_path: Path) -> None:
    """Files written by DFL's own saver (not ours) read to the seed rule's exact values, and run as DFL."""
    from dfl.models.saehd import SAEHDModel

    want, meta = _case("saehd_tiny")
    saved = DATA / "dfl_saved"
    model = SAEHDModel(dict(face_type="f", **{k: meta[k] for k in (
        "resolution", "archi", "ae_dims", "e_dims", "d_dims", "d_mask_dims")})).eval()
    for name, net in model.networks.items():
        weights = read_weights(saved / f"saehd_tiny_SAEHD_{name}.npy")
        for key, arr in weights.items():
            assert np.array_equal(arr, leras_value(f"{name}/{key}", arr.shape, meta["weights_seed"])), key
        load_leras(net, weights)
    x = _nchw(image_batch(tuple(meta["input_shape_nhwc"]), meta["input_seed"]))
    src_dst, src_dstm, dst_dstm = model.swap(x)
    assert _maxdiff(src_dst, want["pred_src_dst"]) <= TOL
    assert _maxdiff(dst_dstm, want["pred_dst_dstm"]) <= TOL


@torch.no_grad()
def test_quick96_matches_dfl(tmp_path: Path) -> None:
    from dfl.models.quick96 import Quick96Model

    want, meta = _case("quick96")
    model = Quick96Model().eval()
    _load_seeded(model, tmp_path, meta["weights_seed"])
    src_dst, src_dstm, dst_dstm = model.swap(_nchw(image_batch((1, 96, 96, 3), meta["input_seed"])))
    assert _maxdiff(src_dst, want["pred_src_dst"]) <= TOL
    assert _maxdiff(src_dstm, want["pred_src_dstm"]) <= TOL
    assert _maxdiff(dst_dstm, want["pred_dst_dstm"]) <= TOL


@torch.no_grad()
def test_amp_matches_dfl_at_two_morph_values(tmp_path: Path) -> None:
    from dfl.models.amp import AMPModel

    want, meta = _case("amp")
    opts = {k: meta[k] for k in ("resolution", "ae_dims", "inter_dims", "e_dims", "d_dims", "d_mask_dims", "morph_factor")}
    model = AMPModel(dict(face_type="wf", **opts)).eval()
    _load_seeded(model, tmp_path, meta["weights_seed"])
    x = _nchw(image_batch((1, meta["resolution"], meta["resolution"], 3), meta["input_seed"]))
    for mv, tag in ((1.0, "10"), (0.5, "05")):
        src_dst, src_dstm, dst_dstm = model.swap(x, mv)
        assert _maxdiff(src_dst, want[f"pred_src_dst_{tag}"]) <= TOL
        assert _maxdiff(src_dstm, want[f"pred_src_dstm_{tag}"]) <= TOL
        assert _maxdiff(dst_dstm, want["pred_dst_dstm"]) <= TOL
    assert _maxdiff(model.decoder(model.inter_dst(model.encoder(x)))[0], want["pred_dst_dst"]) <= TOL
    assert np.abs(want["pred_src_dst_10"] - want["pred_src_dst_05"]).max() > 0.1


@torch.no_grad()
def test_xseg_matches_dfl(tmp_path: Path) -> None:
    """DFL's XSeg (transposed convolutions padded as TF's SAME) to the same mask as XSegNet.extract."""
    from dfl.interop.xseg import load_dfl_xseg, xseg_mask_func
    from dfl.models.xseg import XSeg

    want, meta = _case("xseg")
    folder = tmp_path / "model_generic_xseg"
    folder.mkdir()
    write_weights(folder / "XSeg_256.npy", seeded_weights(XSeg(), "XSeg", meta["weights_seed"]))
    net, face_type = load_dfl_xseg(folder)
    assert face_type is None    # a bare generic folder says nothing about its face type
    x = image_batch((1, 256, 256, 3), meta["input_seed"])
    logits, _ = net(_nchw(x))
    # logits pass ~45 layers each side in float32: both sides are ~6e-5 from a float64 run
    assert _maxdiff(logits[:, :, ::2, ::2], want["logits"]) <= 2 * TOL
    mask = xseg_mask_func(net)(x)          # DFL's extract: sigmoid, clipped, below 0.1 -> 0
    assert _maxdiff(mask[:, None, ::2, ::2], want["mask"]) <= TOL


@torch.no_grad()
def test_discriminators_match_dfl() -> None:
    from dfl.models.discriminators import CodeDiscriminator, UNetPatchDiscriminator

    want, meta = _case("discriminators")
    for patch, base, res in ((8, 8, 64), (16, 4, 64)):
        d = UNetPatchDiscriminator(patch, 3, base).eval()
        load_leras(d, seeded_weights(d, f"GAN_{patch}", meta["weights_seed"]))
        center, out = d(_nchw(image_batch((1, res, res, 3), 81 + patch)))
        assert _maxdiff(center, want[f"gan{patch}_center"]) <= TOL
        assert _maxdiff(out, want[f"gan{patch}_out"]) <= TOL
    for code_res in (4, 8):
        d = CodeDiscriminator(16, code_res).eval()
        load_leras(d, seeded_weights(d, f"dis_{code_res}", meta["weights_seed"]))
        assert _maxdiff(d(_nchw(image_batch((1, code_res, code_res, 16), 91 + code_res))), want[f"code{code_res}"]) <= TOL


def _s3fd_shape(key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1, 1, 1, shape[0]) if key.endswith("_norm.weight") else shape   # DFL's L2Norm keeps (1,1,1,C)


@torch.no_grad()
def test_s3fd_npy_matches_dfl(tmp_path: Path) -> None:
    """DFL's S3FD.npy in the weights folder: raw outputs and the detected boxes equal DFL's extract()."""
    from face_alignment.detection.sfd.net_s3fd import s3fd

    from dfl.faces.registry import get_detector

    want, meta = _case("s3fd")
    write_weights(tmp_path / "S3FD.npy", seeded_weights(s3fd(), "S3FD", meta["weights_seed"], shape=_s3fd_shape))
    det = get_detector("s3fd", "cpu", tmp_path)
    rgb = image_u8((64, 64, 3), meta["input_seed"])
    outs = det._forward(np.ascontiguousarray(rgb[None, :, :, ::-1]))   # a BGR frame, as dfl reads them
    for i, o in enumerate(outs):
        assert _maxdiff(o, want[f"out{i}"]) <= TOL, i
    boxes = det.detect([image_u8((200, 160, 3), meta["frame_seed"])])[0]
    assert len(want["boxes"]) > 3
    np.testing.assert_array_equal(boxes[:, :4], want["boxes"])


@torch.no_grad()
def test_fan_npy_matches_dfl(tmp_path: Path) -> None:
    """DFL's 2DFAN.npy: heatmaps of DFL's crop of a face box and the landmarks of DFL's extract() (first pass)."""
    from face_alignment.models import FAN

    from dfl.faces.fan import FANLandmarker, box_center_scale, crop, fan_leras_name, heatmap_points

    want, meta = _case("fan")
    write_weights(tmp_path / "2DFAN.npy", seeded_weights(FAN(4), "FAN", meta["weights_seed"], name=fan_leras_name))
    lm = FANLandmarker(tmp_path / "2DFAN.npy")
    frame = image_u8((180, 220, 3), meta["frame_seed"])
    rect = np.array([*want["rect"], 1.0], np.float32)
    seen: list[tuple[list, np.ndarray]] = []
    run = lm._heatmaps
    lm._heatmaps = lambda crops: seen.append((crops, run(crops))) or seen[-1][1]   # one FAN pass, watched
    pts = lm.landmarks([frame], [rect[None]])[0][0]
    assert _maxdiff(pts, want["landmarks"]) <= 1e-3       # pixels
    (crops, heat), = seen
    assert np.array_equal(crops[0], crop(frame, *box_center_scale(rect)))    # DFL's crop of the box
    assert _maxdiff(heat[:, ::5], want["heatmaps"]) <= TOL
    assert np.abs(heatmap_points(heat)[0] - heatmap_points(heat)[0].mean(0)).max() > 1   # not all one point


@torch.no_grad()
def test_face_enhancer_matches_dfl(tmp_path: Path) -> None:
    """DFL's FaceEnhancer.npy: the network, and enhance() with DFL's 192 px patch tiling (one patch)."""
    from dfl.faces.enhancer import FaceEnhancerNet, load_face_enhancer

    want, meta = _case("face_enhancer")
    write_weights(tmp_path / "FaceEnhancer.npy", seeded_weights(FaceEnhancerNet(), "FaceEnhancer", meta["weights_seed"]))
    fe = load_face_enhancer(tmp_path)
    x = _nchw(image_batch((1, 32, 32, 3), meta["input_seed"]) * 2 - 1)
    y = fe.net(x, torch.tensor([[0.2]]), torch.tensor([[1.0]]))
    assert _maxdiff(y[:, :, ::2, ::2], want["net_out"]) <= TOL
    face = image_batch((1, 24, 24, 3), meta["face_seed"])[0]
    assert _maxdiff(fe.enhance(face, is_tanh=False, preserve_size=False), want["enhanced"]) <= TOL


def test_leras_names_follow_dfl() -> None:
    assert leras_name("down1.downs.0.conv1.weight") == "down1/downs_0/conv1/weight:0"
    assert leras_name("upconvs.10.bias") == "upconvs_10/bias:0"
    assert leras_name("dense1.weight") == "dense1/weight:0"
