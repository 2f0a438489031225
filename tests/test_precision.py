"""``--precision auto`` measures: the fastest candidate whose results agree with fp32 wins, the choice is cached
per machine and model configuration (a second run measures nothing; ``retune`` measures again), and a forced
precision the CPU emulates warns with its measured cost.  Real models and real steps throughout, tiny ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dfl.models import create_model
from dfl.precision import Measurement, cache_path, losses_agree, pick
from dfl.training.precision import training_precision

TINY = {"resolution": 64, "face_type": "f", "archi": "df", "ae_dims": 32, "e_dims": 16, "d_dims": 16,
        "d_mask_dims": 16, "batch_size": 2}
CPU = torch.device("cpu")
NO_FP16 = {"fpu", "avx2", "avx512f", "avx512_bf16"}   # a Zen 4: AVX-512 BF16, no AVX-512 FP16, no AMX


def _model_and_batch(**opts):
    torch.manual_seed(0)
    model = create_model("SAEHD", dict(TINY, **opts))
    g = torch.Generator().manual_seed(0)
    n, r = 2, model.resolution
    batch = {k: torch.rand((n, 3, r, r), generator=g) for k in ("warped_src", "target_src", "warped_dst", "target_dst")}
    for k in ("target_srcm", "target_dstm", "target_srcm_em", "target_dstm_em"):
        batch[k] = (torch.rand((n, 1, r, r), generator=g) > 0.5).float()
    return model, batch


def test_pick_keeps_the_fastest_that_agrees_and_rejects_one_that_does_not() -> None:
    ref = Measurement("fp32", 100.0, [1.00, 0.90, 0.85])
    wrong = Measurement("bf16", 40.0, [1.00, 1.30, 2.00])     # fastest, but its loss runs away from fp32's
    close = Measurement("fp16", 80.0, [1.001, 0.902, 0.849])
    broken = Measurement("bf16", math.inf, [], "no kernel")
    choice, why = pick([ref, wrong, close], losses_agree)
    assert choice == "fp16" and "disagree" in why["bf16"] and "slower" in why["fp32"]
    assert pick([ref, Measurement("fp16", 120.0, [1.0, 0.9, 0.85])], losses_agree)[0] == "fp32"  # agrees, slower
    assert pick([ref, broken], losses_agree) == ("fp32", {"bf16": "failed: no kernel"})
    assert not losses_agree([1.0, 0.9], [1.0, float("nan")])


def test_auto_measures_once_then_uses_the_cache_and_retune_measures_again() -> None:
    model, batch = _model_and_batch(ae_dims=24)     # a configuration no other test measures
    before = [p.detach().clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    lines: list[str] = []
    first = training_precision("auto", model, model.options, batch, CPU, True, lines.append)
    measured = [ln for ln in lines if ln.startswith("  ")]
    assert lines[0].startswith("measuring fp32") and [ln.split(":")[0].strip() for ln in measured][0] == "fp32"
    assert all("ms/step" in ln for ln in measured) and lines[-1].startswith(f"precision {first} (fastest")
    assert torch.equal(torch.get_rng_state(), rng)                        # a seeded run trains the same
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))   # measured on copies
    assert cache_path().is_file()

    lines.clear()
    assert training_precision("auto", model, model.options, batch, CPU, True, lines.append) == first
    assert lines == [f"precision {first} (measured on {lines[0].split('measured on ')[1].split(', cached')[0]}, "
                     "cached; --precision retune to measure again)"]

    lines.clear()
    training_precision("retune", model, model.options, batch, CPU, True, lines.append)
    assert lines[0].startswith("measuring fp32") and len([ln for ln in lines if ln.startswith("  ")]) >= 1

    # what the choice is cached for: the shape-giving options and the batch size, not e.g. the loss weights
    from dfl.training.precision import shape_config

    assert shape_config("SAEHD", model.options, 2, True) != shape_config("SAEHD", model.options, 4, True)
    assert shape_config("SAEHD", model.options, 2, True) != shape_config("SAEHD", dict(model.options, ae_dims=64), 2, True)
    assert shape_config("SAEHD", model.options, 2, True) == shape_config("SAEHD", dict(model.options, gan_power=0.1), 2, True)


def test_forced_emulated_precision_warns_with_its_measured_cost() -> None:
    model, batch = _model_and_batch(ae_dims=20)
    lines: list[str] = []
    assert training_precision("fp16", model, model.options, batch, CPU, True, lines.append, flags=NO_FP16) == "fp16"
    warning = lines[-1]
    assert warning.startswith("warning: fp16 is emulated on this CPU (no AVX-512 FP16): ")
    ratio = float(warning.split(": ")[2].split("x ")[0])
    assert ratio > 0 and ("slower than fp32 here" in warning or "faster than fp32 here" in warning)
    # the cost is cached with the configuration: said again without measuring
    lines.clear()
    training_precision("fp16", model, model.options, batch, CPU, True, lines.append, flags=NO_FP16)
    assert len(lines) == 1 and lines[0].startswith("warning: fp16 is emulated")
    # a precision the CPU does natively is not warned about; auto there does not time the emulated one
    lines.clear()
    assert training_precision("bf16", model, model.options, batch, CPU, True, lines.append, flags=NO_FP16) == "bf16"
    assert lines == []
    training_precision("retune", model, model.options, batch, CPU, True, lines.append, flags=NO_FP16)
    assert lines[0].startswith("measuring fp32, bf16 for") and not any(ln.startswith("  fp16") for ln in lines)


def test_merge_inference_precision_is_measured_and_cached() -> None:
    from dfl.merge.precision import faces_agree, inference_precision

    model, _ = _model_and_batch(ae_dims=28)
    model.eval()
    lines: list[str] = []
    first = inference_precision("auto", model, model.options, CPU, 2, lines.append)
    assert lines[0].startswith("measuring fp32") and "predictions of 2" in lines[0]
    lines.clear()
    assert inference_precision("auto", model, model.options, CPU, 2, lines.append) == first
    assert len(lines) == 1 and "cached" in lines[0]
    a = np.zeros((2, 4, 4, 3), np.float32)
    assert faces_agree([a], [a + 0.002]) and not faces_agree([a], [a + 0.05]) and not faces_agree([a], [a * np.nan])


@pytest.mark.skipif(not __import__("dfl.precision", fromlist=["x"]).cpu_flags(), reason="no /proc/cpuinfo")
def test_cli_warns_for_a_precision_this_cpu_emulates(tmp_path) -> None:
    """Driven through ``dfl train`` where this CPU lacks one (on a CPU that has them all, the function test
    above covers the warning with another CPU's flags)."""
    from dfl.precision import emulation

    lacking = [p for p in ("fp16", "bf16") if emulation(p, "cpu") is not None]
    if not lacking:
        pytest.skip("this CPU does every precision natively")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from click.testing import CliRunner
    from train_helpers import make_workspace

    from dfl.cli import cli

    ws = make_workspace(tmp_path, n=4, size=96)
    r = CliRunner().invoke(cli, ["train", "-w", str(ws), "--model", "Quick96", "--name", "e", "--non-interactive",
                                 "--workers", "0", "--target-iter", "1", "--precision", lacking[0]])
    assert r.exit_code == 0 and f"warning: {lacking[0]} is emulated on this CPU" in r.output, r.output
