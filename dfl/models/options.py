"""Option declarations: what an option is (:class:`OptionSpec`), DFL's help texts, and the rules for values.

Each model module declares its options as a list of :class:`OptionSpec` in its registered spec
(:mod:`dfl.models.registry`); prompts, config files, CLI flags and the saved ``options.json`` are all
derived from those declarations, so names, defaults, ranges and help texts stay as DFL users know them.
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
    keep_case: bool = False   # a text value kept as typed (else lower-cased)

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


def option(name: str, type_: str, default: Any, prompt: str, **kw: Any) -> OptionSpec:
    """An option with DFL's help text for its name (the same name means the same thing in every model)."""
    return OptionSpec(name=name, type=type_, default=default, prompt=prompt, help=_HELP.get(name, ""), **kw)


# DFL's per-run options every autoencoder asks
COMMON_RUN = (
    option("batch_size", "int", 8, "Batch size", min=1, max=256),
    option("random_src_flip", "bool", False, "Flip SRC faces randomly"),
    option("random_dst_flip", "bool", True, "Flip DST faces randomly"),
)
CT_MODES = ("none", "rct", "lct", "mkl", "idt", "sot")


def option_applies(spec: OptionSpec, options: dict) -> bool:
    """Whether DFL would ask ``spec`` given the other answers (its ``when`` condition)."""
    if spec.when is None:
        return True
    env = {k: v for k, v in options.items()}
    try:
        return bool(eval(spec.when, {"__builtins__": {}}, env))  # noqa: S307 - our own constant strings
    except Exception:
        return True


def coerce(spec: OptionSpec, value: Any) -> Any:
    """``value`` as the option's type (yes/no words, whole numbers, a choice); DflError when it is not one."""
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
    if not spec.keep_case:
        value = value.lower()
    if spec.choices and value not in spec.choices:
        raise DflError(f"{where}: {value!r} is not one of {', '.join(spec.choices)}")
    return value


def check_range(spec: OptionSpec, value: Any) -> Any:
    """``value`` when it is inside ``spec``'s range, else a DflError naming the option and the range."""
    if spec.type in ("int", "float") and value is not None and (
            (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max)):
        raise DflError(f"option {spec.name}: {value!r} is outside {spec.describe_range()}")
    return value


def clip(spec: OptionSpec, value: Any) -> Any:
    """``value`` clipped into the option's range, as DFL clips what it loads."""
    if spec.type in ("int", "float") and value is not None:
        if spec.min is not None:
            value = max(value, type(value)(spec.min))
        if spec.max is not None:
            value = min(value, type(value)(spec.max))
    return value


def is_unset(spec: OptionSpec, value: Any) -> bool:
    """None, or an empty answer to a non-text option (DFL's "Empty: derived default")."""
    return value is None or (isinstance(value, str) and value == "" and spec.type != "str")
