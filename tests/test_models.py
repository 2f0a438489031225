"""Models, losses and optimisers against DFL's numbers and definitions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dfl.errors import DflError
from dfl.models import build_model, check_changes, default_options, validate_options
from dfl.models.blocks import Upscale, count_parameters, depth_to_space
from dfl.models.discriminators import CodeDiscriminator, UNetPatchDiscriminator, find_patch_archi
from dfl.models import losses as L
from dfl.models.registry import get_spec
from dfl.models.swap_loss import generator_loss
from dfl.training.objective import Objective
from dfl.training.optim import AdaBelief, RMSprop, make_optimizer

SHARED = Path(__file__).resolve().parents[2] / "shared"
PARAMS_JSON = SHARED / "conformance" / "saehd_params.json"
SMALL = dict(resolution=64, ae_dims=32, e_dims=16, d_dims=16)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is faster than several fighting over shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _batch(n: int = 2, r: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for side in ("src", "dst"):
        img = torch.rand(n, 3, r, r, generator=g) * 0.6 + 0.2
        mask = torch.zeros(n, 1, r, r)
        mask[:, :, r // 4 : 3 * r // 4, r // 4 : 3 * r // 4] = 1.0
        em = torch.zeros_like(mask)
        em[:, :, r // 3 : r // 2, r // 3 : 2 * r // 3] = 1.0
        out[f"warped_{side}"] = img
        out[f"target_{side}"] = img
        out[f"target_{side}m"] = mask
        out[f"target_{side}m_em"] = em
    return out


# ---------------------------------------------------------------- architecture


@pytest.mark.shared
def test_parameter_counts_match_dfl() -> None:
    if not PARAMS_JSON.exists():
        pytest.skip("../shared/conformance/saehd_params.json missing")
    expected = json.loads(PARAMS_JSON.read_text())
    for key, nets in expected.items():
        with torch.device("meta"):  # shapes only: no memory, no init cost
            if key == "Quick96":
                model = build_model("Quick96", {})
            else:
                archi = key.split()[1]
                model = build_model("SAEHD", dict(archi=archi, resolution=128, ae_dims=256, e_dims=64,
                                                  d_dims=64, d_mask_dims=22))
        got = {name: count_parameters(net) for name, net in model.networks.items()}
        assert got == nets, key


def _tf_depth_to_space_reference(x: np.ndarray, size: int) -> np.ndarray:
    """TensorFlow's documented DCR rule, written as loops on NCHW data."""
    n, c, h, w = x.shape
    oc = c // (size * size)
    out = np.zeros((n, oc, h * size, w * size), x.dtype)
    for b in range(n):
        for ch in range(c):
            block, oc_i = divmod(ch, oc)
            i, j = divmod(block, size)
            out[b, oc_i, i::size, j::size] = x[b, ch]
    return out


def test_depth_to_space_is_tensorflows_order() -> None:
    x = torch.arange(2 * 12 * 3 * 2, dtype=torch.float32).reshape(2, 12, 3, 2)
    ref = _tf_depth_to_space_reference(x.numpy(), 2)
    assert np.array_equal(depth_to_space(x, 2).numpy(), ref)
    assert not torch.equal(F.pixel_shuffle(x, 2), torch.from_numpy(ref))  # torch's order differs
    # also right for channels_last inputs and under bf16 autocast-produced tensors
    assert np.array_equal(depth_to_space(x.contiguous(memory_format=torch.channels_last), 2).numpy(), ref)


def test_upscale_block_shapes_and_init() -> None:
    up = Upscale(8, 4)
    y = up(torch.rand(1, 8, 5, 5))
    assert y.shape == (1, 4, 10, 10)
    assert torch.count_nonzero(up.conv1.bias) == 0
    bound = (6 / (9 * 8 + 9 * 16)) ** 0.5  # Glorot-uniform bound, as TF initialises DFL's convs
    assert up.conv1.weight.abs().max() <= bound


ARCHIS = ["df", "df-u", "df-d", "df-t", "df-ud", "df-udt", "liae", "liae-u", "liae-d", "liae-t", "liae-ud", "liae-udt"]


@pytest.mark.parametrize("archi", ARCHIS)
def test_saehd_forward_and_swap_shapes(archi: str) -> None:
    model = build_model("SAEHD", dict(SMALL, archi=archi))
    names = ("encoder", "inter", "decoder_src", "decoder_dst") if archi.startswith("df") else (
        "encoder", "inter_AB", "inter_B", "decoder")
    assert tuple(model.networks) == names
    assert all(k.split(".")[0] in names for k in model.state_dict())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = model.forward_train(x, x)
        for k in ("pred_src_src", "pred_dst_dst", "pred_src_dst"):
            assert out[k].shape == (2, 3, 64, 64)
            assert 0.0 <= float(out[k].min()) and float(out[k].max()) <= 1.0
        for k in ("pred_src_srcm", "pred_dst_dstm", "pred_src_dstm"):
            assert out[k].shape == (2, 1, 64, 64)
        assert out["src_code"].shape == out["dst_code"].shape
        swapped, swapped_m, dst_m = model.swap(x)
    assert swapped.shape == (2, 3, 64, 64) and swapped_m.shape == dst_m.shape == (2, 1, 64, 64)
    # the swap path equals the training path's swap prediction
    assert torch.allclose(swapped, out["pred_src_dst"], atol=1e-5)
    assert torch.allclose(dst_m, out["pred_dst_dstm"], atol=1e-5)


def test_quick96_preset_and_amp_morph() -> None:
    with torch.device("meta"):
        q = build_model("Quick96", {"random_src_flip": True})
    assert (q.resolution, q.options["archi"], q.options["ae_dims"], q.options["d_mask_dims"]) == (96, "df-ud", 128, 16)
    amp = build_model("AMP", dict(SMALL, inter_dims=64))
    assert tuple(amp.networks) == ("encoder", "inter_src", "inter_dst", "decoder")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = amp.forward_train(x, x)
        assert out["pred_src_src"].shape == (2, 3, 64, 64)
        full, _, dst_m = amp.swap(x, 1.0)
        none, _, _ = amp.swap(x, 0.0)
        # morph 0 takes every channel from inter_dst: the swap is the dst reconstruction
        assert torch.allclose(none, out["pred_dst_dst"], atol=1e-5)
        assert torch.allclose(dst_m, out["pred_dst_dstm"], atol=1e-5)
        assert not torch.allclose(full, none)


# ---------------------------------------------------------------- options


def test_options_defaults_and_validation() -> None:
    d = default_options("SAEHD")
    assert (d["resolution"], d["archi"], d["ae_dims"], d["d_mask_dims"], d["gan_patch_size"]) == (128, "liae-ud", 256, 22, 16)
    v = validate_options("saehd", {"resolution": 200, "archi": "df-ud", "e_dims": 63, "ae_dims": 5000})
    assert v["resolution"] == 192 and v["e_dims"] == 64 and v["ae_dims"] == 1024  # DFL rounds and clips
    assert validate_options("SAEHD", {"archi": "liae", "true_face_power": 0.5})["true_face_power"] == 0.0
    assert default_options("AMP")["resolution"] == 224
    for bad in ({"archi": "dfx"}, {"archi": "df-q"}, {"face_type": "x"}, {"nope": 1}, {"ae_dims": "abc"}):
        with pytest.raises(DflError):
            validate_options("SAEHD", bad)
    with pytest.raises(DflError):
        build_model("XSeg2", {})
    saved = default_options("SAEHD")
    resumed = check_changes("SAEHD", saved, {"gan_power": 0.1, "batch_size": 4})
    assert resumed["gan_power"] == 0.1 and resumed["batch_size"] == 4
    with pytest.raises(DflError, match="resolution"):
        check_changes("SAEHD", saved, {"resolution": 256})


# ---------------------------------------------------------------- losses


def test_dssim_matches_skimage_ssim() -> None:
    skimage_metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    a = rng.random((40, 40, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    ssim = skimage_metrics.structural_similarity(a, b, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                                 use_sample_covariance=False, data_range=1.0)
    ta, tb = (torch.from_numpy(x).permute(2, 0, 1)[None] for x in (a, b))
    ours = L.dssim(ta, tb, filter_size=11)
    assert ours.shape == (1,)
    assert abs(float(ours[0]) - (1 - ssim) / 2) < 1e-4
    assert float(L.dssim(ta, ta, 11)[0]) == pytest.approx(0.0, abs=1e-6)


def test_loss_helpers() -> None:
    assert L.dssim_filter_sizes(128) == [(10.0, 11)]
    assert L.dssim_filter_sizes(256) == [(5.0, 22), (5.0, 11)]
    m = torch.zeros(1, 1, 32, 32)
    m[..., 8:24, 8:24] = 1
    blurred = L.gaussian_blur(m, 2)
    assert blurred.shape == m.shape and abs(float(blurred.sum() - m.sum())) < 1.0
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(L.style_loss(x, x), torch.zeros(2))
    assert float(L.total_variation_mse(torch.ones(1, 1, 4, 4))[0]) == 0.0
    assert float(L.d_loss(torch.full((1, 1, 2, 2), 20.0), real=True)[0]) < 1e-6


def test_discriminators_shapes() -> None:
    assert find_patch_archi(16) == [(3, 2), (3, 2), (3, 1)] or len(find_patch_archi(16)) >= 2
    d = UNetPatchDiscriminator(patch_size=8, base_ch=4)
    center, pix = d(torch.rand(2, 3, 64, 64))
    assert pix.shape == (2, 1, 64, 64) and center.shape[:2] == (2, 1)
    cd = CodeDiscriminator(32, code_res=8, ch=16)
    assert cd(torch.rand(2, 32, 8, 8)).shape[:2] == (2, 1)


# ---------------------------------------------------------------- optimisers


def test_adabelief_matches_hand_computed_steps() -> None:
    w0 = torch.tensor([0.5, -1.0, 2.0])
    w = torch.nn.Parameter(w0.clone())
    opt = AdaBelief([w], lr=0.1)
    g1, g2 = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.5, 1.0, -1.0])
    m = torch.zeros(3)
    v = torch.zeros(3)
    ref = w0.clone()
    for g in (g1, g2):
        w.grad = g.clone()
        opt.step()
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * (g - m) ** 2
        ref = ref - 0.1 * m / (v.sqrt() + 1e-6)  # no bias correction, eps outside the root (DFL)
    assert torch.allclose(w.detach(), ref, atol=1e-6)
    assert opt.param_groups[0]["iterations"] == 2


def test_rmsprop_clipnorm_and_lr_dropout() -> None:
    w = torch.nn.Parameter(torch.zeros(4))
    opt = RMSprop([w], lr=0.01, clipnorm=1.0)
    g = torch.tensor([3.0, 4.0, 0.0, 0.0])  # norm 5 -> clipped to norm 1
    w.grad = g.clone()
    opt.step()
    gc = g / 5.0
    a = 0.1 * gc**2
    assert torch.allclose(w.detach(), -0.01 * gc / (a.sqrt() + 1e-6), atol=1e-6)
    p = torch.nn.Parameter(torch.zeros(10000))
    drop = AdaBelief([p], lr=1.0, lr_dropout=0.3)
    p.grad = torch.ones(10000)
    drop.step()
    kept = float((p.detach() != 0).float().mean())
    assert 0.25 < kept < 0.35  # each element updated with probability 0.3
    q96 = make_optimizer([torch.nn.Parameter(torch.zeros(1))], get_spec("Quick96").optimizer({}))
    assert isinstance(q96, RMSprop) and q96.param_groups[0]["lr"] == 2e-4


# ---------------------------------------------------------------- training objective


def test_losses_fall_on_tiny_overfit_quick96_like() -> None:
    torch.manual_seed(0)
    model = build_model("SAEHD", dict(SMALL, archi="df-ud", adabelief=False))
    obj = Objective(model, {})
    batch = _batch()
    first = obj.train_step(batch)
    for _ in range(7):
        last = obj.train_step(batch)
    assert last["src_loss"] < first["src_loss"] and last["dst_loss"] < first["dst_loss"]


def test_train_step_frees_the_gradients_it_applied() -> None:
    """Gradients kept after the update would live through the next forward pass, where memory peaks."""
    torch.manual_seed(0)
    model = build_model("SAEHD", dict(SMALL, archi="df-ud"))
    obj = Objective(model, {"true_face_power": 0.1, "gan_power": 0.1})
    before = [p.detach().clone() for p in model.parameters()]
    obj.train_step(_batch())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))  # the step was applied
    nets = [model] + list(obj.discriminators.values())
    assert obj.discriminators and all(p.grad is None for net in nets for p in net.parameters())


def test_full_objective_with_discriminators_and_amp() -> None:
    torch.manual_seed(0)
    batch = _batch()
    model = build_model("SAEHD", dict(SMALL, archi="df-ud", true_face_power=0.01, gan_power=0.1, gan_dims=4,
                                      face_style_power=1.0, bg_style_power=1.0, eyes_mouth_prio=True,
                                      blur_out_mask=True))
    obj = Objective(model, {}, precision="bf16", channels_last=True)
    assert set(obj.discriminators) == {"code_discriminator", "GAN"}
    assert set(obj.optimizers) == {"src_dst_opt", "D_code_opt", "GAN_opt"}
    before = {k: v.detach().clone() for k, v in obj.discriminators["GAN"].state_dict().items()}
    out = obj.train_step(batch)
    for key in ("src_loss", "dst_loss", "true_face", "gan_g", "face_style", "bg_style", "D_code", "D_gan"):
        assert np.isfinite(out[key]), key
    after = obj.discriminators["GAN"].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the D step ran
    state = obj.optimizer_state()
    assert obj.load_optimizer_state(state) == []

    amp = build_model("AMP", dict(SMALL, inter_dims=32))
    total, scalars, _ = generator_loss(amp, batch, {})
    total.backward()
    assert amp.inter_src.dense2.weight.grad is not None and "src_eyes_mouth" in scalars
    amp_obj = Objective(amp, {})
    assert not any(p.requires_grad for p in amp.inter_src.parameters())  # DFL trains encoder+decoder only
    assert np.isfinite(amp_obj.train_step(batch)["src_loss"])
    prev = amp_obj.preview(batch, morph_value=0.5)
    assert prev["pred_src_dst"].shape == (2, 3, 64, 64)


def test_liae_freezes_inter_ab_without_random_warp_and_skips_unused_swap() -> None:
    torch.manual_seed(0)
    model = build_model("SAEHD", dict(SMALL, archi="liae-ud", random_warp=False))
    assert model.trainable_networks() == ["encoder", "inter_B", "decoder"]
    assert "inter_AB" in model.trainable_networks({"random_warp": True})
    before = {k: v.clone() for k, v in model.inter_AB.state_dict().items()}
    enc_before = model.encoder.down1.downs[0].conv1.weight.detach().clone()
    obj = Objective(model, {})
    obj.train_step(_batch())
    assert all(torch.equal(before[k], v) for k, v in model.inter_AB.state_dict().items())
    assert not torch.equal(enc_before, model.encoder.down1.downs[0].conv1.weight)
    with torch.no_grad():
        out = model.forward_train(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), with_swap=False)
    assert "pred_src_dst" not in out and out["pred_dst_dst"].shape == (1, 3, 64, 64)
    w = model.inter_B.dense1.weight.detach().clone()
    model.reinit_networks(model.pretrain_reset_networks())
    assert not torch.equal(w, model.inter_B.dense1.weight)


def test_xseg_network_shapes() -> None:
    from dfl.models.xseg import XSeg

    net = XSeg(3, base_ch=4, out_ch=1)
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        logits, mask = net(x)
        _, pre = net(x, pretrain=True)
    assert logits.shape == mask.shape == pre.shape == (1, 1, 256, 256)
    assert 0.0 <= float(mask.min()) and float(mask.max()) <= 1.0
