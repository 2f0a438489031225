"""The model registry: a model is one module's spec, and the rest of dfl only asks the registry.

The main test registers a tiny face-swap model here, in the test itself, and trains and merges it through
the normal command line: nothing else in dfl names it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dfl.errors import DflError
from dfl.models import store, swap
from dfl.models.base import SwapModel
from dfl.models.blocks import Upscale, conv2d
from dfl.models.options import option
from dfl.models.registry import (ModelSpec, OptimizerConfig, create_model, demo_model, find_spec, get_spec,
                                 list_specs, model_names, register_model, unregister_model)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_helpers import draw_face, write_faceset  # noqa: E402


class _Decoder(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.up = Upscale(ch, ch)
        self.out_conv = conv2d(ch, 3, 3)
        self.out_convm = conv2d(ch, 1, 3)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = self.up(z)
        return torch.sigmoid(self.out_conv(x)), torch.sigmoid(self.out_convm(x))


class TinySwap(SwapModel):
    """One shared stride-2 encoder and a decoder per face: the smallest model the swap recipe trains."""

    model_type = "TinySwap"
    network_names = ("encoder", "decoder_src", "decoder_dst")

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        ch = int(options["dims"])
        self.encoder = conv2d(3, ch, 3, stride=2)
        self.decoder_src, self.decoder_dst = _Decoder(ch), _Decoder(ch)

    def forward_train(self, warped_src: Tensor, warped_dst: Tensor, **kwargs: Any) -> dict[str, Tensor]:
        n = warped_src.shape[0]
        z = F.leaky_relu(self.encoder(torch.cat((warped_src, warped_dst))), 0.1)
        x, m = self.decoder_src(z)
        xd, md = self.decoder_dst(z[n:])
        return dict(pred_src_src=x[:n], pred_src_srcm=m[:n], pred_src_dst=x[n:], pred_src_dstm=m[n:],
                    pred_dst_dst=xd, pred_dst_dstm=md, src_code=z[:n], dst_code=z[n:])

    def swap(self, dst: Tensor, morph_value: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
        z = F.leaky_relu(self.encoder(dst), 0.1)
        x, m = self.decoder_src(z)
        return x, m, self.decoder_dst(z)[1]


TINY = ModelSpec(
    name="TinySwap",
    kind="swap",
    summary="a test's own model: one conv down, one upscale per face",
    options=(
        option("resolution", "int", 32, "Resolution", min=16, max=64, changeable=False),
        option("face_type", "str", "wf", "Face type", choices=("f", "wf"), changeable=False),
        option("dims", "int", 8, "Dimensions", min=4, max=64, changeable=False),
        option("batch_size", "int", 2, "Batch size", min=1, max=16),
    ),
    build=TinySwap,
    recipe=swap.SwapRecipe,
    training_data=swap.training_data,
    optimizer=lambda options: OptimizerConfig("adabelief", lr=1e-3),
    trace=swap.trace,
)


@pytest.fixture
def tiny_model():
    register_model(TINY)
    try:
        yield TINY
    finally:
        unregister_model(TINY.name)


def _workspace(root: Path, n: int = 4) -> Path:
    """src and dst facesets of drawn faces, and the dst frames the dst faces were cut from."""
    write_faceset(root / "data_src" / "aligned", n, 0, seed=1, size=64)
    write_faceset(root / "data_dst" / "aligned", n, 1, seed=2, size=64)
    rng = np.random.default_rng(2)   # write_faceset's frames, drawn again in the same order
    for i in range(n):
        frame, _ = draw_face(rng, 1)
        cv2.imwrite(str(root / "data_dst" / f"{i:05d}.png"), frame)
    return root


def test_a_model_registered_here_trains_and_merges_through_the_cli(tiny_model, tmp_path, dfl_run) -> None:
    ws = _workspace(tmp_path / "ws")
    train = ["train", "-w", ws, "--model", "tinyswap", "--name", "t", "--non-interactive", "--workers", "0",
             "--seed", "0", "--preview-seconds", "1e9"]
    res = dfl_run(*train, "--target-iter", "2")
    assert res.code == 0, res.err
    assert "Trained t_TinySwap to iteration 2" in res.out
    path = ws / "model" / "t_TinySwap"
    c = store.read_checkpoint(path)
    assert c.model_type == "TinySwap" and c.options["dims"] == 8 and c.state["iteration"] == 2
    assert set(c.optimizer) == {"src_dst_opt"} and (path / "preview.png").is_file()
    res = dfl_run(*train, "--target-iter", "3")                     # resumes
    assert res.code == 0 and "Resuming t_TinySwap" in res.out, res.err
    assert "[0] t (TinySwap) iteration 3" in dfl_run("model", "list", "-w", ws).out

    res = dfl_run("merge", "-w", ws, "--name", "t", "--non-interactive", "--device", "cpu",
                  "--mode", "overlay", "--color-transfer", "none")
    assert res.code == 0, res.err
    merged = sorted(p.name for p in (ws / "data_dst" / "merged").iterdir() if p.suffix == ".png")
    assert merged == [f"{i:05d}.png" for i in range(4)]

    help_text = dfl_run("train", "--help").out
    assert "TinySwap" in help_text and TINY.summary in help_text


def test_cli_model_choices_are_the_registry(tiny_model, dfl_run) -> None:
    res = dfl_run("train", "--model", "NoSuchModel", "--name", "x")
    assert res.code == 2 and all(name in res.err for name in model_names())
    assert "TinySwap" in dfl_run("train", "--help").out


def test_unregistered_models_are_not_models(tmp_path) -> None:
    assert find_spec("TinySwap") is None
    with pytest.raises(DflError, match="unknown, choose one of " + ", ".join(model_names())):
        get_spec("TinySwap")
    assert store.parse_folder_name("t_TinySwap") is None


def test_specs_are_complete_and_one_per_name() -> None:
    assert len(set(map(str.lower, model_names()))) == len(model_names())
    for spec in list_specs():
        model = create_model(spec.name.lower())
        assert model.model_type == spec.name and set(model.networks) == set(model.network_names)
        assert spec.validate(spec.defaults()) == spec.defaults()
        assert find_spec(spec.name.upper()) is spec
    assert demo_model().demo and demo_model().kind == "swap"
    with pytest.raises(ValueError, match="registered twice"):
        register_model(list_specs()[0])
