"""Each model's options, declared once as data.

Prompts, config files, CLI flags and the saved ``options.json`` are all derived from these
declarations (by the trainer), so names, defaults, ranges and help texts stay as DFL users know them.
``changeable=False`` marks options fixed when the model is created (they shape its networks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dfl.errors import DflError


@dataclass(frozen=True)
class OptionSpec:
    """One option: its name, type, default, allowed values, DFL's prompt/help and mutability."""

    name: str
    type: str  # "int", "float", "bool", "str"
    default: Any
    prompt: str
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    changeable: bool = True
    # only asked/used when this predicate over the other options holds (e.g. archi starts with df)
    when: str | None = None

    def describe_range(self) -> str:
        """The ``add_info`` DFL shows after the prompt, e.g. ``64-640`` or ``h/mf/f/wf/head``."""
        if self.choices:
            return "/".join(self.choices)
        if self.min is not None and self.max is not None:
            return f"{self.min:g}-{self.max:g}" if self.type == "int" else f"{self.min:g} .. {self.max:g}"
        return ""


_HELP = {
    "resolution": "More resolution requires more VRAM and time to train. Value will be adjusted to "
    "multiple of 16 and 32 for -d archi.",
    "face_type": "Half / mid face / full face / whole face / head. Half face has better resolution, but "
    "covers less area of cheeks. Mid face is 30% wider than half face. 'Whole face' covers full area of "
    "face include forehead. 'head' covers full head, but requires XSeg for src and dst faceset.",
    "archi": "'df' keeps more identity-preserved face. 'liae' can fix overly different face shapes. "
    "'-u' increased likeness of the face. '-d' (experimental) doubling the resolution using the same "
    "computation cost. '-t' deeper encoder and decoder. Examples: df, liae, df-d, df-ud, liae-ud, ...",
    "ae_dims": "All face information will packed to AE dims. If amount of AE dims are not enough, then "
    "for example closed eyes will not be recognized. More dims are better, but require more VRAM.",
    "e_dims": "More dims help to recognize more facial features and achieve sharper result, but require "
    "more VRAM.",
    "d_dims": "More dims help to recognize more facial features and achieve sharper result, but require "
    "more VRAM.",
    "d_mask_dims": "Typical mask dimensions = decoder dimensions / 3. If you manually cut out obstacles "
    "from the dst mask, you can increase this parameter to achieve better quality. Empty: d_dims / 3.",
    "masked_training": "This option is available only for 'whole_face' or 'head' type. Masked training "
    "clips training area to full_face mask or XSeg mask, thus network will train the faces properly.",
    "eyes_mouth_prio": "Helps to fix eye problems during training like \"alien eyes\" and wrong eyes "
    "direction. Also makes the detail of the teeth higher.",
    "uniform_yaw": "Helps to fix blurry side faces due to small amount of them in the faceset.",
    "blur_out_mask": "Blurs nearby area outside of applied face mask of training samples. The result is "
    "the background near the face is smoothed and less noticeable on swapped face. The exact xseg mask "
    "in src and dst faceset is required.",
    "adabelief": "Use AdaBelief optimizer. It requires more VRAM, but the accuracy and the "
    "generalization of the model is higher.",
    "lr_dropout": "When the face is trained enough, you can enable this option to get extra sharpness "
    "and reduce subpixel shake for less amount of iterations. Enable it before 'disable random warp' "
    "and before GAN. n - disabled. y - enabled. cpu - same as y here.",
    "random_warp": "Random warp is required to generalize facial expressions of both faces. When the face "
    "is trained enough, you can disable it to get extra sharpness and reduce subpixel shake for less "
    "amount of iterations.",
    "random_hsv_power": "Random hue/saturation/light intensity applied to the src face set only at the "
    "input of the neural network. Stabilizes color perturbations during face swapping. Typical fine "
    "value is 0.05",
    "gan_power": "Forces the neural network to learn small details of the face. Enable it only when the "
    "face is trained enough with lr_dropout(on) and random_warp(off), and don't disable. The higher the "
    "value, the higher the chances of artifacts. Typical fine value is 0.1",
    "gan_patch_size": "The higher patch size, the higher the quality, the more VRAM is required. You can "
    "get sharper edges even at the lowest setting. Typical fine value is resolution / 8. Empty: "
    "resolution / 8.",
    "gan_dims": "The dimensions of the GAN network. The higher dimensions, the more VRAM is required. "
    "You can get sharper edges even at the lowest setting. Typical fine value is 16.",
    "true_face_power": "Experimental option. Discriminates result face to be more like src face. Higher "
    "value - stronger discrimination. Typical value is 0.01 (df archi only).",
    "face_style_power": "Learn the color of the predicted face to be the same as dst inside mask. If you "
    "want to use this option with 'whole_face' you have to use XSeg trained mask. Warning: Enable it "
    "only after 10k iters, when predicted face is clear enough to start learn style. Start from 0.001 "
    "value and check history changes. Enabling this option increases the chance of model collapse.",
    "bg_style_power": "Learn the area outside mask of the predicted face to be the same as dst. If you "
    "want to use this option with 'whole_face' you have to use XSeg trained mask. This can make face "
    "more like dst. Enabling this option increases the chance of model collapse. Typical value is 2.0",
    "ct_mode": "Change color distribution of src samples close to dst samples. Try all modes to find "
    "the best.",
    "clipgrad": "Gradient clipping reduces chance of model collapse, sacrificing speed of training.",
    "pretrain": "Pretrain the model with large amount of various faces. After that, model can be used to "
    "train the fakes more quickly. Forces random_warp=N, random_flips=Y, gan_power=0.0, lr_dropout=N, "
    "styles=0.0, uniform_yaw=Y",
    "batch_size": "Larger batch size is better for NN's generalization, but it can cause Out of Memory "
    "error. Tune this value for your videocard manually.",
    "random_src_flip": "Random horizontal flip SRC faceset. Covers more angles, but the face may look "
    "less naturally.",
    "random_dst_flip": "Random horizontal flip DST faceset. Makes generalization of src->dst better, if "
    "src random flip is not enabled.",
    "inter_dims": "Should be equal or more than AutoEncoder dimensions. More dims are better, but "
    "require more VRAM.",
    "morph_factor": "The higher the value, the more the swap takes the src face's shape. Typical fine "
    "value is 0.5",
}


def _o(name: str, type_: str, default: Any, prompt: str, **kw: Any) -> OptionSpec:
    return OptionSpec(name=name, type=type_, default=default, prompt=prompt, help=_HELP.get(name, ""), **kw)


_COMMON_RUN = [
    _o("batch_size", "int", 8, "Batch size", min=1, max=256),
    _o("random_src_flip", "bool", False, "Flip SRC faces randomly"),
    _o("random_dst_flip", "bool", True, "Flip DST faces randomly"),
]

SAEHD_OPTIONS: list[OptionSpec] = [
    _o("resolution", "int", 128, "Resolution", min=64, max=640, changeable=False),
    _o("face_type", "str", "f", "Face type", choices=("h", "mf", "f", "wf", "head"), changeable=False),
    _o("archi", "str", "liae-ud", "AE architecture", changeable=False),
    _o("ae_dims", "int", 256, "AutoEncoder dimensions", min=32, max=1024, changeable=False),
    _o("e_dims", "int", 64, "Encoder dimensions", min=16, max=256, changeable=False),
    _o("d_dims", "int", 64, "Decoder dimensions", min=16, max=256, changeable=False),
    _o("d_mask_dims", "int", None, "Decoder mask dimensions", min=16, max=256, changeable=False),
    *_COMMON_RUN,
    _o("masked_training", "bool", True, "Masked training", when="face_type in ('wf', 'head')"),
    _o("eyes_mouth_prio", "bool", False, "Eyes and mouth priority"),
    _o("uniform_yaw", "bool", False, "Uniform yaw distribution of samples"),
    _o("blur_out_mask", "bool", False, "Blur out mask"),
    _o("adabelief", "bool", True, "Use AdaBelief optimizer?"),
    _o("lr_dropout", "str", "n", "Use learning rate dropout", choices=("n", "y", "cpu")),
    _o("random_warp", "bool", True, "Enable random warp of samples"),
    _o("random_hsv_power", "float", 0.0, "Random hue/saturation/light intensity", min=0.0, max=0.3),
    _o("gan_power", "float", 0.0, "GAN power", min=0.0, max=5.0),
    _o("gan_patch_size", "int", None, "GAN patch size", min=3, max=640, when="gan_power != 0"),
    _o("gan_dims", "int", 16, "GAN dimensions", min=4, max=512, when="gan_power != 0"),
    _o("true_face_power", "float", 0.0, "'True face' power.", min=0.0, max=1.0, when="archi.startswith('df')"),
    _o("face_style_power", "float", 0.0, "Face style power", min=0.0, max=100.0),
    _o("bg_style_power", "float", 0.0, "Background style power", min=0.0, max=100.0),
    _o("ct_mode", "str", "none", "Color transfer for src faceset", choices=("none", "rct", "lct", "mkl", "idt", "sot")),
    _o("clipgrad", "bool", False, "Enable gradient clipping"),
    _o("pretrain", "bool", False, "Enable pretraining mode"),
]

AMP_OPTIONS: list[OptionSpec] = [
    _o("resolution", "int", 224, "Resolution", min=64, max=640, changeable=False),
    _o("face_type", "str", "wf", "Face type", choices=("f", "wf", "head"), changeable=False),
    _o("ae_dims", "int", 256, "AutoEncoder dimensions", min=32, max=1024, changeable=False),
    _o("inter_dims", "int", 1024, "Inter dimensions", min=32, max=2048, changeable=False),
    _o("e_dims", "int", 64, "Encoder dimensions", min=16, max=256, changeable=False),
    _o("d_dims", "int", 64, "Decoder dimensions", min=16, max=256, changeable=False),
    _o("d_mask_dims", "int", None, "Decoder mask dimensions", min=16, max=256, changeable=False),
    _o("morph_factor", "float", 0.5, "Morph factor.", min=0.1, max=0.5, changeable=False),
    *_COMMON_RUN,
    _o("uniform_yaw", "bool", False, "Uniform yaw distribution of samples"),
    _o("blur_out_mask", "bool", False, "Blur out mask"),
    _o("lr_dropout", "str", "n", "Use learning rate dropout", choices=("n", "y", "cpu")),
    _o("random_warp", "bool", True, "Enable random warp of samples"),
    _o("gan_power", "float", 0.0, "GAN power", min=0.0, max=5.0),
    _o("gan_patch_size", "int", None, "GAN patch size", min=3, max=640, when="gan_power != 0"),
    _o("gan_dims", "int", 16, "GAN dimensions", min=4, max=512, when="gan_power != 0"),
    _o("ct_mode", "str", "none", "Color transfer for src faceset", choices=("none", "rct", "lct", "mkl", "idt", "sot")),
    _o("clipgrad", "bool", False, "Enable gradient clipping"),
]

# Quick96 is a fixed preset: nothing about the networks is asked, only the run-time flips.
QUICK96_FIXED: dict[str, Any] = {
    "resolution": 96, "face_type": "f", "archi": "df-ud", "ae_dims": 128, "e_dims": 64, "d_dims": 64,
    "d_mask_dims": 16, "batch_size": 4, "masked_training": True, "eyes_mouth_prio": False,
    "random_warp": True, "lr_dropout": "y", "adabelief": False, "ct_mode": "none",
}
# DFL's Quick96 never flips its samples; the flips stay switchable here, off by default as there.
QUICK96_OPTIONS: list[OptionSpec] = [
    _o("random_src_flip", "bool", False, "Flip SRC faces randomly"),
    _o("random_dst_flip", "bool", False, "Flip DST faces randomly"),
]

MODEL_OPTIONS: dict[str, list[OptionSpec]] = {
    "SAEHD": SAEHD_OPTIONS,
    "AMP": AMP_OPTIONS,
    "Quick96": QUICK96_OPTIONS,
}


def model_types() -> list[str]:
    return list(MODEL_OPTIONS)


def canonical_model_type(model_type: str) -> str:
    """Case-insensitive lookup ("saehd" -> "SAEHD"); DflError names the choices."""
    for name in MODEL_OPTIONS:
        if name.lower() == str(model_type).lower():
            return name
    raise DflError(f"model {model_type!r}: unknown, choose one of {', '.join(MODEL_OPTIONS)}")


def option_applies(spec: OptionSpec, options: dict) -> bool:
    """Whether DFL would ask ``spec`` given the other answers (its ``when`` condition)."""
    if spec.when is None:
        return True
    env = {k: v for k, v in options.items()}
    try:
        return bool(eval(spec.when, {"__builtins__": {}}, env))  # noqa: S307 - our own constant strings
    except Exception:
        return True


def default_options(model_type: str) -> dict:
    """Every option at its default (derived defaults filled in), as a new model would get them."""
    return validate_options(model_type, {})


def _coerce(spec: OptionSpec, value: Any) -> Any:
    where = f"option {spec.name}"
    if spec.type == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("y", "yes", "true", "1", "on", "n", "no", "false", "0", "off"):
            return value.strip().lower() in ("y", "yes", "true", "1", "on")
        raise DflError(f"{where}: {value!r} is not a yes/no value")
    if spec.type == "int":
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise DflError(f"{where}: {value!r} is not a whole number") from None
        if f != int(f):
            raise DflError(f"{where}: {value!r} is not a whole number")
        return int(f)
    if spec.type == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise DflError(f"{where}: {value!r} is not a number") from None
    value = str(value).strip()
    if spec.name != "archi":
        value = value.lower()
    if spec.choices and value not in spec.choices:
        raise DflError(f"{where}: {value!r} is not one of {', '.join(spec.choices)}")
    return value


def check_given(model_type: str, given: dict[str, Any]) -> None:
    """Refuse a value the user gave (config file, prompt) that is outside its option's range, as
    ``dfl merge`` refuses its settings: silently clamping a typo (``resolution: 99999``) built a model
    nobody asked for.  Unknown names and bad types are reported by :func:`validate_options`."""
    specs = {s.name: s for s in MODEL_OPTIONS[canonical_model_type(model_type)]}
    for name, value in given.items():
        spec = specs.get(name)
        if spec is None or value is None or (isinstance(value, str) and value == "" and spec.type != "str"):
            continue
        check_range(spec, _coerce(spec, value))


def check_range(spec: OptionSpec, value: Any) -> Any:
    """``value`` when it is inside ``spec``'s range, else a DflError naming the option and the range."""
    if spec.type in ("int", "float") and value is not None and (
            (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max)):
        raise DflError(f"option {spec.name}: {value!r} is outside {spec.describe_range()}")
    return value


def _clip(spec: OptionSpec, value: Any) -> Any:
    if spec.type in ("int", "float") and value is not None:
        if spec.min is not None:
            value = max(value, type(value)(spec.min))
        if spec.max is not None:
            value = min(value, type(value)(spec.max))
    return value


def validate_options(model_type: str, options: dict) -> dict:
    """Complete, coerce and clamp ``options`` the way DFL's prompts would.

    Unknown names and impossible values raise DflError; numbers outside a range are clipped as DFL
    clips them (values a user gives are refused before this by :func:`check_given`; the clipping keeps
    older saved options loadable); resolution rounds down to a multiple of 16 (32 for ``-d`` archis and AMP); the dims
    become even; unset ``d_mask_dims`` and ``gan_patch_size`` take DFL's derived defaults.
    """
    model_type = canonical_model_type(model_type)
    specs = {s.name: s for s in MODEL_OPTIONS[model_type]}
    extra = {k for k in options if k not in specs and k != "model_type"}
    if model_type == "Quick96":
        extra -= set(QUICK96_FIXED)
    if extra:
        raise DflError(f"options for {model_type}: unknown option(s) {', '.join(sorted(extra))}")
    out: dict[str, Any] = {}
    for name, spec in specs.items():
        value = options.get(name, spec.default)
        if value is not None and not (isinstance(value, str) and value == "" and spec.type != "str"):
            value = _clip(spec, _coerce(spec, value))
        else:
            value = None
        out[name] = value

    if model_type == "Quick96":
        fixed = dict(QUICK96_FIXED)
        fixed.update(out)
        return fixed

    if model_type == "SAEHD":
        from dfl.models.saehd import parse_archi

        archi_type, opts = parse_archi(out["archi"])
        out["archi"] = archi_type + (f"-{opts}" if opts else "")
        step = 32 if "d" in opts else 16
        if archi_type != "df":
            out["true_face_power"] = 0.0
    else:
        step = 32
    out["resolution"] = min(640, max(64, (out["resolution"] // step) * step))
    for k in ("e_dims", "d_dims"):
        out[k] += out[k] % 2
    if out["d_mask_dims"] is None:
        dm = out["d_dims"] // 3
        out["d_mask_dims"] = dm + dm % 2
    else:
        out["d_mask_dims"] += out["d_mask_dims"] % 2
    if out.get("gan_patch_size") is None:
        out["gan_patch_size"] = out["resolution"] // 8
    return out


def check_changes(model_type: str, saved: dict, requested: dict) -> dict:
    """Options for resuming a model: ``saved`` with the ``requested`` changes applied.

    A change to an option fixed at creation (``changeable=False``) raises DflError naming it.
    """
    model_type = canonical_model_type(model_type)
    specs = {s.name: s for s in MODEL_OPTIONS[model_type]}
    check_given(model_type, {k: v for k, v in requested.items() if k in specs})
    merged = dict(saved)
    for name, value in requested.items():
        spec = specs.get(name)
        if spec is None:
            if model_type == "Quick96" and name in QUICK96_FIXED and value == saved.get(name):
                continue
            raise DflError(f"option {name}: not an option of {model_type}" + (" (fixed preset)" if model_type == "Quick96" else ""))
        new = _coerce(spec, value) if value is not None else None
        if not spec.changeable and new is not None and new != saved.get(name):
            raise DflError(f"option {name}: fixed when the model was created ({saved.get(name)!r}), cannot become {new!r}")
        merged[name] = value
    merged.pop("model_type", None)
    return validate_options(model_type, merged)
