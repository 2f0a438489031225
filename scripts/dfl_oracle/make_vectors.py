"""Oracle vectors from DeepFaceLab's own code, for tests that check dfl against it without TensorFlow.

Dev-only: never imported by dfl, never a dependency.  See ``README.md`` beside this file for the venv and
how to regenerate.  For every network this builds it with DFL's own classes (its models' ``on_initialize``
in merge mode, ``facelib``'s S3FD/FAN/FaceEnhancer/XSegNet), fills it with the seed rule of
``tests/dfl_seed.py``, saves it with DFL's own saver, runs it on seeded inputs and stores what DFL computes
in ``tests/data/dfl_oracle/<case>.npz`` (NCHW float32).  The smallest model's files, as DFL's saver wrote
them, are kept under ``tests/data/dfl_oracle/dfl_saved/`` so the tests also read DFL's own bytes.

Shims, all outside DFL's code: a ``ModelBase`` subclass instance is made without ``ModelBase.__init__``
(which would prompt and pick GPUs) by setting the attributes ``on_initialize`` reads; the facelib classes
find their weights beside their module, so a copy of the source tree gets empty placeholders there first;
numpy 1.24 removed ``np.int``/``np.float``, which DFL still uses.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

np.int = int          # type: ignore[attr-defined]  # DFL predates numpy 1.24
np.float = float      # type: ignore[attr-defined]

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from dfl_seed import image_batch, image_u8, leras_value  # noqa: E402

SEED = 1
SAEHD_CASES = {  # name -> options (res 32, tiny dims: every archi letter combination that changes layers)
    "saehd_df": "df", "saehd_df_ud": "df-ud", "saehd_df_t": "df-t", "saehd_df_udt": "df-udt",
    "saehd_liae": "liae", "saehd_liae_ud": "liae-ud", "saehd_liae_t": "liae-t", "saehd_liae_udt": "liae-udt",
    "saehd_tiny": "df-ud",
}
SAEHD_DIMS = dict(resolution=32, ae_dims=16, e_dims=8, d_dims=8, d_mask_dims=4)
TINY_DIMS = dict(resolution=32, ae_dims=8, e_dims=4, d_dims=2, d_mask_dims=2)
AMP_DIMS = dict(resolution=64, ae_dims=16, inter_dims=24, e_dims=8, d_dims=8, d_mask_dims=4, morph_factor=0.5)
SAVED_CASE = "saehd_tiny"      # its DFL-saved files are committed (about 200 KB)


def nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2))


def fill_and_save(net, path: Path | None, seed: int = SEED) -> dict[str, np.ndarray]:
    """Set ``net``'s variables by the seed rule (DFL's ``batch_set_value``); save with DFL's saver."""
    from core.leras import nn

    tuples, values = [], {}
    for w in net.get_weights():
        short = w.name.split("/", 1)[1]
        v = leras_value(w.name, tuple(w.shape.as_list()), seed)   # seeded by the full name: network/variable
        tuples.append((w, v))
        values[short] = v
    nn.batch_set_value(tuples)
    if path is not None:
        net.save_weights(str(path))
        saved = pickle.loads(Path(path).read_bytes())
        assert set(saved) == set(values) and all(np.array_equal(saved[k], values[k]) for k in values), path
    return values


def dfl_model(cls, model_name: str, folder: Path, options: dict):
    """A DFL model in merge mode without ModelBase.__init__'s prompts (attributes on_initialize reads)."""
    m = object.__new__(cls)
    m.is_training, m.is_exporting, m.debug = False, False, False
    m.saved_models_path = folder
    m.model_name = model_name
    m.options = dict(options)
    m.options_show_override = {}
    m.iter = 0                     # first run: DFL initialises, we then overwrite and save
    m.pretrain_just_disabled = False
    m.random_src_flip = m.random_dst_flip = False
    m.pretrained_model_path = None  # Quick96's pretrained start (none here)
    m.on_initialize()
    return m


def saehd_dims(case: str) -> dict:
    return TINY_DIMS if case == SAVED_CASE else SAEHD_DIMS


def saehd_options(case: str, archi: str) -> dict:
    # as SAEHD's prompts leave them: numpy ints from np.clip, the rest plain (models_opt_on_gpu etc. unused)
    o = {k: np.int64(v) for k, v in saehd_dims(case).items()}
    o.update(face_type="f", archi=archi, masked_training=True, eyes_mouth_prio=False, uniform_yaw=False,
             blur_out_mask=False, adabelief=True, lr_dropout="n", random_warp=True, random_hsv_power=0.0,
             true_face_power=0.0, face_style_power=0.0, bg_style_power=0.0, ct_mode="none", clipgrad=False,
             pretrain=False, gan_power=0.0, gan_patch_size=4, gan_dims=16, models_opt_on_gpu=True)
    return o


def run_saehd(case: str, archi: str, work: Path, out: Path) -> None:
    from core.leras import nn
    from models.Model_SAEHD.Model import SAEHDModel

    nn.reset_session()
    tf = nn.tf
    folder = work / case
    folder.mkdir()
    m = dfl_model(SAEHDModel, f"{case}_SAEHD", folder, saehd_options(case, archi))
    for net, fname in m.model_filename_list:
        fill_and_save(net, Path(m.get_strpath_storage_for_file(fname)))
    dims = saehd_dims(case)
    x = image_batch((2, dims["resolution"], dims["resolution"], 3), SEED + 10)     # NHWC: DFL's CPU data format
    if "df" in archi:
        dst_dst = m.decoder_dst(m.inter(m.encoder(m.warped_dst)))[0]
    else:
        code = m.encoder(m.warped_dst)
        dst_dst = m.decoder(tf.concat([m.inter_B(code), m.inter_AB(code)], nn.conv2d_ch_axis))[0]
    src_dst, dst_dstm, src_dstm = m.AE_merge(x)
    dd = nn.tf_sess.run(dst_dst, {m.warped_dst: x})
    np.savez(out / f"{case}.npz", pred_src_dst=nchw(src_dst), pred_src_dstm=nchw(src_dstm),
             pred_dst_dstm=nchw(dst_dstm), pred_dst_dst=nchw(dd),
             meta=json.dumps({"archi": archi, **dims, "input_seed": SEED + 10, "weights_seed": SEED,
                              "input_shape_nhwc": list(x.shape)}))
    if case == SAVED_CASE:
        saved = out / "dfl_saved"
        shutil.rmtree(saved, ignore_errors=True)
        saved.mkdir()
        for f in folder.iterdir():
            shutil.copy(f, saved / f.name)
        write_model_data(m, saved / f"{case}_SAEHD_data.dat", dims)
        save_optimizer(m, saved / f"{case}_SAEHD_src_dst_opt.npy")


def save_optimizer(m, path: Path) -> None:
    """SAEHD's training optimiser (AdaBelief over all four networks, as its on_initialize makes it when
    training), moments set by the seed rule, saved by DFL's saver: its variable names are what dfl maps."""
    from core.leras import nn

    opt = nn.AdaBelief(lr=5e-5, name="src_dst_opt")
    opt.initialize_variables(m.encoder.get_weights() + m.inter.get_weights() + m.decoder_src.get_weights()
                             + m.decoder_dst.get_weights(), vars_on_cpu=True)
    nn.batch_set_value([(w, np.int64(300) if w.name == "src_dst_opt/iters:0"
                         else np.abs(leras_value(w.name, tuple(w.shape.as_list()), SEED)) * 1e-3)
                        for w in opt.get_weights()])
    opt.save_weights(str(path))


def write_model_data(m, path: Path, dims: dict) -> None:
    """``<name>_data.dat`` as ``ModelBase.save`` writes it (``pickle.dumps`` with Python 3.6's protocol 3,
    as DFL's builds run), with the keys ``ModelBase`` adds to the model's own options."""
    options = dict(m.options)
    options.update(autobackup_hour=np.int64(0), write_preview_history=False, target_iter=np.int64(0),
                   random_src_flip=False, random_dst_flip=True, batch_size=np.int64(4))
    rs = np.random.RandomState(SEED + 5)
    res = dims["resolution"]
    sample = [[rs.uniform(0, 1, (1, res, res, c)).astype(np.float32) for c in (3, 3, 1, 1)] for _ in range(2)]
    history = [[float(2.0 / (1 + i / 50) + rs.uniform(0, 0.05)), float(2.5 / (1 + i / 60) + rs.uniform(0, 0.05))]
               for i in range(300)]
    data = {"iter": 300, "options": options, "loss_history": history, "sample_for_preview": sample,
            "choosed_gpu_indexes": None}
    path.write_bytes(pickle.dumps(data, 3))


def run_quick96(work: Path, out: Path) -> None:
    from core.leras import nn
    from models.Model_Quick96.Model import QModel

    nn.reset_session()
    folder = work / "quick96"
    folder.mkdir()
    m = dfl_model(QModel, "q_Quick96", folder, {})
    for net, fname in m.model_filename_list:
        fill_and_save(net, Path(m.get_strpath_storage_for_file(fname)))
    x = image_batch((1, 96, 96, 3), SEED + 20)
    src_dst, dst_dstm, src_dstm = m.AE_merge(x)
    np.savez(out / "quick96.npz", pred_src_dst=nchw(src_dst), pred_src_dstm=nchw(src_dstm),
             pred_dst_dstm=nchw(dst_dstm), meta=json.dumps({"input_seed": SEED + 20, "weights_seed": SEED}))


def run_amp(work: Path, out: Path) -> None:
    from core.leras import nn
    from models.Model_AMP.Model import AMPModel

    nn.reset_session()
    folder = work / "amp"
    folder.mkdir()
    opts = {k: (np.int64(v) if isinstance(v, int) else v) for k, v in AMP_DIMS.items()}
    opts.update(face_type="wf", uniform_yaw=False, blur_out_mask=False, lr_dropout="n", random_warp=True,
                ct_mode="none", clipgrad=False, gan_power=0.0, gan_patch_size=8, gan_dims=16, models_opt_on_gpu=True)
    m = dfl_model(AMPModel, "a_AMP", folder, opts)          # AMP always builds NCHW
    for net, fname in m.model_filename_list:
        fill_and_save(net, Path(m.get_strpath_storage_for_file(fname)))
    res = AMP_DIMS["resolution"]
    x = nchw(image_batch((1, res, res, 3), SEED + 30))
    outs = {}
    for mv in (1.0, 0.5):
        src_dst, dst_dstm, src_dstm = m.AE_merge(x, mv)
        tag = f"{mv:.1f}".replace(".", "")
        outs[f"pred_src_dst_{tag}"], outs[f"pred_src_dstm_{tag}"] = src_dst, src_dstm
        outs["pred_dst_dstm"] = dst_dstm
    outs["pred_dst_dst"] = nn.tf_sess.run(m.decoder(m.inter_dst(m.encoder(m.warped_dst)))[0], {m.warped_dst: x})
    np.savez(out / "amp.npz", **{k: np.asarray(v, np.float32) for k, v in outs.items()},
             meta=json.dumps({**AMP_DIMS, "input_seed": SEED + 30, "weights_seed": SEED}))


def run_xseg(work: Path, out: Path) -> None:
    from core.leras import nn
    from facelib import XSegNet

    nn.reset_session()
    folder = work / "xseg"
    folder.mkdir()
    net = XSegNet(name="XSeg", resolution=256, load_weights=False, weights_file_root=folder, data_format="NHWC")
    fill_and_save(net.model, folder / "XSeg_256.npy")
    x = image_batch((1, 256, 256, 3), SEED + 40)
    logits_t, _ = net.model(net.input_t)
    logits = nn.tf_sess.run(logits_t, {net.input_t: x})
    np.savez(out / "xseg.npz", logits=nchw(logits)[:, :, ::2, ::2], mask=nchw(net.extract(x))[:, :, ::2, ::2],
             meta=json.dumps({"input_seed": SEED + 40, "weights_seed": SEED, "stored": "every 2nd pixel"}))


def run_s3fd(out: Path) -> None:
    from core.leras import nn
    from facelib import S3FDExtractor

    nn.reset_session()
    ext = S3FDExtractor(place_model_on_cpu=True)
    fill_and_save(ext.model, None)
    x = image_u8((64, 64, 3), SEED + 50).astype(np.float32)[None]      # the network's input, RGB 0..255
    raw = ext.model.run([x])
    frame = image_u8((200, 160, 3), SEED + 51)                          # a BGR frame for extract()
    boxes = np.asarray(ext.extract(frame, is_bgr=True), np.float64).reshape(-1, 4)
    np.savez(out / "s3fd.npz", **{f"out{i}": nchw(o) for i, o in enumerate(raw)}, boxes=boxes,
             meta=json.dumps({"input_seed": SEED + 50, "frame_seed": SEED + 51, "weights_seed": SEED}))


def run_fan(out: Path) -> None:
    from core.leras import nn
    from facelib import FANExtractor

    nn.reset_session()
    ext = FANExtractor(place_model_on_cpu=True)
    fill_and_save(ext.model, None)
    frame = image_u8((180, 220, 3), SEED + 61)                 # BGR, as DFL reads frames
    rect = (40, 30, 150, 160)
    lm = ext.extract(frame, [rect], is_bgr=True)[0]            # first pass only (no second_pass_extractor)
    l, t, r, b = rect                                          # the crop extract() feeds the network
    crop = ext.crop(frame[:, :, ::-1], np.array([(l + r) / 2.0, (t + b) / 2.0]), (r - l + b - t) / 195.0)
    heat = ext.model.run([crop[None].astype(np.float32) / 255.0])     # (1, 68, 64, 64), the last stack
    np.savez(out / "fan.npz", heatmaps=np.asarray(heat, np.float32)[:, ::5], landmarks=np.asarray(lm, np.float64),
             rect=np.asarray(rect), meta=json.dumps({"frame_seed": SEED + 61, "weights_seed": SEED,
                                                      "heatmaps": "of the crop of rect, channels 0::5"}))


def run_face_enhancer(out: Path) -> None:
    from core.leras import nn
    from facelib import FaceEnhancer

    nn.reset_session()
    fe = FaceEnhancer(place_model_on_cpu=True, run_on_cpu=True)
    fill_and_save(fe.model, None)
    tf = nn.tf
    x = image_batch((1, 32, 32, 3), SEED + 70) * 2 - 1
    inp = (tf.placeholder(tf.float32, (None, 32, 32, 3)), tf.placeholder(tf.float32, (None, 1)),
           tf.placeholder(tf.float32, (None, 1)))
    y = nn.tf_sess.run(fe.model(inp), {inp[0]: x, inp[1]: [[0.2]], inp[2]: [[1.0]]})
    face = image_batch((1, 24, 24, 3), SEED + 71)[0]
    enhanced = fe.enhance(face, is_tanh=False, preserve_size=False)
    np.savez(out / "face_enhancer.npz", net_out=nchw(y)[:, :, ::2, ::2], enhanced=np.asarray(enhanced, np.float32),
             meta=json.dumps({"input_seed": SEED + 70, "face_seed": SEED + 71, "weights_seed": SEED,
                              "net_out": "(x*2-1) of seed batch 32x32, param 0.2/1.0, every 2nd pixel"}))


def run_discriminators(out: Path) -> None:
    """SAEHD/AMP's GAN (``GAN.npy``: U-Net patch discriminator) and SAEHD's ``code_discriminator.npy``."""
    from core.leras import nn

    nn.reset_session()
    tf = nn.tf
    outs = {}
    for patch, base, res in ((8, 8, 64), (16, 4, 64)):
        d = nn.UNetPatchDiscriminator(patch_size=patch, in_ch=3, base_ch=base, name=f"GAN_{patch}")
        fill_and_save(d, None)
        x = image_batch((1, res, res, 3), SEED + 80 + patch)
        inp = tf.placeholder(tf.float32, x.shape)
        center, full = nn.tf_sess.run(d(inp), {inp: x})
        outs[f"gan{patch}_center"], outs[f"gan{patch}_out"] = nchw(center), nchw(full)
    for code_res in (4, 8):
        d = nn.CodeDiscriminator(16, code_res=code_res, name=f"dis_{code_res}")
        fill_and_save(d, None)
        x = image_batch((1, code_res, code_res, 16), SEED + 90 + code_res)
        inp = tf.placeholder(tf.float32, x.shape)
        outs[f"code{code_res}"] = nchw(nn.tf_sess.run(d(inp), {inp: x}))
    np.savez(out / "discriminators.npz", **outs, meta=json.dumps({
        "gan": "(patch, base_ch, res): (8, 8, 64), (16, 4, 64); input seed 81 + patch",
        "code": "in_ch 16, code_res 4 and 8; input seed 91 + code_res", "weights_seed": SEED}))


CASES = ["saehd", "quick96", "amp", "xseg", "s3fd", "fan", "face_enhancer", "discriminators"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dfl-src", type=Path, required=True, help="checkout of iperov/DeepFaceLab (its .py files)")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "dfl_oracle")
    ap.add_argument("--only", nargs="*", choices=CASES, default=CASES)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = work / "dfl"
        shutil.copytree(args.dfl_src, src, ignore=shutil.ignore_patterns(".git", "*.npy", "*.psd", "*.png", "*.jpg"))
        for f in ("S3FD.npy", "2DFAN.npy", "FaceEnhancer.npy"):   # placeholders: weights are set afterwards
            (src / "facelib" / f).write_bytes(pickle.dumps({}, 4))
        sys.path.insert(0, str(src))
        os.chdir(src)
        from core.leras import nn

        nn.initialize(nn.DeviceConfig.CPU())
        for case in args.only:
            print(f"-- {case}", flush=True)
            if case == "saehd":
                for name, archi in SAEHD_CASES.items():
                    run_saehd(name, archi, work, args.out)
            elif case in ("quick96", "amp", "xseg"):
                globals()[f"run_{case}"](work, args.out)
            else:
                globals()[f"run_{case}"](args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
