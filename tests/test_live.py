"""``dfl live``: a video swapped frame by frame into a video with every frame (the demo's dst video; an HDTF
clip where ../shared exists), the window's keys driven headlessly, a ``.dfm`` as the swap, and bad input
as one line."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dfl.imageops import synthetic_label as label
from dfl.live.session import LiveRequest, run_live
from dfl.live.window import LiveControls
from dfl.merge.config import MergeConfig
from dfl.video import count_frames, probe
from dfl.workspace import Workspace

TINY = {"resolution": 64, "face_type": "wf", "archi": "df", "ae_dims": 32, "e_dims": 16, "d_dims": 16,
        "d_mask_dims": 16}


@pytest.fixture(scope="module")
def live_ws(demo_workspace_session: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The demo workspace's videos and a small SAEHD model (freshly initialised: live only runs it)."""
    import shutil

    from dfl.models import create_model, store

    ws = Workspace(tmp_path_factory.mktemp("live") / "workspace")
    shutil.copytree(demo_workspace_session.root, ws.root)
    torch.manual_seed(0)
    model = create_model("SAEHD", TINY)
    store.save_checkpoint(store.model_path(ws.model_dir, "tiny", "SAEHD"), "SAEHD", dict(model.options),
                          {"iteration": 1}, model.networks, None)
    return ws


def _frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return out
        out.append(frame)


def test_demo_video_swapped_into_a_video_with_every_frame(live_ws: Workspace, dfl_run) -> None:
    src = live_ws.video("dst")
    out = live_ws.root / "live.mp4"
    r = dfl_run("live", "-w", live_ws.root, "--name", "tiny", "--source", src, "-o", out)
    assert r.code == 0, r.err
    n = count_frames(src)
    assert f"Swapped {n} frames" in r.out and "frames/s" in r.out
    info, src_info = probe(out), probe(src)
    assert count_frames(out) == n and info.fps == src_info.fps and (info.width, info.height) == (src_info.width, src_info.height)
    assert info.has_audio == src_info.has_audio
    assert label.COMMENT in " ".join(info.metadata.values())
    before, after = _frames(src), _frames(out)
    assert len(after) == n
    diffs = [np.abs(a.astype(np.int16) - b.astype(np.int16)) for a, b in zip(before, after)]
    # a face was swapped in every frame (re-encoding alone moves under 1% of the pixels by more than 25) ...
    assert all((d.max(2) > 25).mean() > 0.05 for d in diffs)
    assert all((d.max(2) < 12).mean() > 0.2 for d in diffs)      # ... and the rest is the input's
    assert not [p for p in live_ws.root.iterdir() if p.name.startswith(".live")]


def test_hdtf_clip_swapped_with_every_frame(live_ws: Workspace, shared_dir: Path, tmp_path: Path, dfl_run) -> None:
    from dfl.video import cut_video

    clip = shared_dir / "media" / "video" / "hdtf" / "WDA_KatieHill_000.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} not available")
    cut = cut_video(clip, tmp_path / "katie.mp4", start=0, end=1.0, desc=None)   # 25 of its 200 frames
    n = count_frames(cut)
    out = tmp_path / "katie_live.mp4"
    r = dfl_run("live", "-w", live_ws.root, "--name", "tiny", "--source", cut, "-o", out)
    assert r.code == 0, r.err
    assert f"Swapped {n} frames of {cut} ({n} faces)" in r.out
    assert count_frames(out) == n and probe(out).fps == probe(cut).fps


class ScriptedUI:
    """The window, headless: keeps what is shown, presses ``keys[k]`` after the k-th frame shown."""

    def __init__(self, keys: dict[int, str]) -> None:
        self.keys, self.shown = keys, []

    def show(self, image: np.ndarray) -> None:
        self.shown.append(image)

    def next_key(self) -> str | None:
        return self.keys.get(len(self.shown))

    def close(self) -> None:
        pass


def test_window_keys_turn_the_swap_off_and_stop(live_ws: Workspace) -> None:
    pytest.importorskip("onnxruntime")
    src = live_ws.video("dst")
    ui = ScriptedUI({4: " ", 24: "\x1b"})                         # Space after frame 4, Esc after frame 24
    req = LiveRequest(source=str(src), cfg=MergeConfig(), model_path=live_ws.model_dir / "tiny_SAEHD", engine="onnx")
    summary = run_live(req, ui=ui, progress=False, notify=lambda line: None)
    assert summary.frames == 24 == len(ui.shown) and summary.engine.startswith("onnxruntime")
    frames = _frames(src)
    rows = slice(frames[0].shape[0] // 2, None)                  # below the frames/s overlay
    swapped = [not np.array_equal(s[rows], f[rows]) for s, f in zip(ui.shown, frames)]
    assert all(swapped[:4])                                       # before Space
    assert not any(swapped[14:])                                  # after it (and the frames in flight)
    assert summary.stages["swap"] > 0 and summary.stages["landmarks"] > 0


def test_live_controls_share_the_merger_keys() -> None:
    c = LiveControls(MergeConfig())
    cfg0 = c.cfg
    assert c.handle_key("w") and c.cfg.erode_mask_modifier == 1
    assert c.handle_key("W") and c.cfg.erode_mask_modifier == 6
    assert c.handle_key("3") and c.cfg.mode == "seamless"
    assert cfg0.erode_mask_modifier == 0 and cfg0.mode == "overlay"   # replaced, never changed under the pipeline
    assert not c.handle_key("[") and "AMP" in c.message                # no morph value: not an AMP model
    assert c.handle_key(" ") and not c.swap
    assert not c.handle_key("\t") and c.show_help
    assert not c.handle_key("\x1b") and c.quit


def test_live_swaps_with_a_dfm_file(live_ws: Workspace, tmp_path: Path, dfl_run) -> None:
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    dfm = tmp_path / "tiny.dfm"
    r = dfl_run("model", "export", "tiny", "-w", live_ws.root, "-o", dfm, "--no-check")
    assert r.code == 0, r.err
    out = tmp_path / "out.mp4"
    r = dfl_run("live", "-w", live_ws.root, "--dfm", dfm, "--source", live_ws.video("dst"), "-o", out,
                "--max-frames", "6")
    assert r.code == 0, r.err
    assert "Swapped 6 frames" in r.out and count_frames(out) == 6

    proto = onnx.load(str(dfm))          # as DeepFaceLive's own models are: no dfl metadata, no face type
    del proto.metadata_props[:]
    foreign = tmp_path / "foreign.dfm"
    onnx.save(proto, str(foreign))
    r = dfl_run("live", "-w", live_ws.root, "--dfm", foreign, "--source", live_ws.video("dst"), "-o", tmp_path / "f.mp4")
    assert r.code == 1 and r.err.count("\n") == 1 and "--face-type" in r.err
    r = dfl_run("live", "-w", live_ws.root, "--dfm", foreign, "--face-type", "wf", "--source", live_ws.video("dst"),
                "-o", tmp_path / "f.mp4", "--max-frames", "3")
    assert r.code == 0, r.err


def test_bad_input_is_one_line(live_ws: Workspace, tmp_path: Path, dfl_run) -> None:
    src = live_ws.video("dst")
    for args, words in [(("--name", "nosuch", "--source", src), "no model named 'nosuch'"),
                        (("--name", "tiny", "--source", "7"), "camera 7: cannot open"),
                        (("--name", "tiny", "--source", tmp_path / "none.mp4"), "no such video file"),
                        (("--name", "tiny", "--source", src, "-o", src), ""),
                        (("--name", "tiny", "--source", src, "--morph", "0.5"), "(--morph) does nothing for this model"),
                        (("--name", "tiny", "--source", src, "--sharpen", "20"), "(--sharpen) does nothing")]:
        r = dfl_run("live", "-w", live_ws.root, *args, "--no-window")
        assert r.code == 1 and r.err.count("\n") == 1 and words in r.err, (args, r.err)
    existing = tmp_path / "taken.mp4"
    existing.write_bytes(b"keep")
    r = dfl_run("live", "-w", live_ws.root, "--name", "tiny", "--source", src, "-o", existing)
    assert r.code == 1 and "--force" in r.err and existing.read_bytes() == b"keep"
