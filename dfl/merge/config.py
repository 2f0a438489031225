"""Merger settings: DeepFaceLab's masked-merger options with its names, ranges and defaults.

One dataclass serves the CLI flags, the ``--config`` file, the interactive keys and the saved
``merge_config.json``, so a merge can be repeated exactly.  The adjusters (``add_*``, ``toggle_*``)
clamp like DFL's so the interactive merger behaves the same.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from dfl.config_file import load_mapping
from dfl.errors import DflError

MODES = ("original", "overlay", "hist-match", "seamless", "seamless-hist-match", "raw-rgb", "raw-predict")
MASK_MODES = (
    "full", "dst", "learned-prd", "learned-dst", "learned-prd*learned-dst", "learned-prd+learned-dst",
    "XSeg-prd", "XSeg-dst", "XSeg-prd*XSeg-dst", "learned-prd*learned-dst*XSeg-prd*XSeg-dst",
)
XSEG_MASK_MODES = MASK_MODES[6:]
COLOR_TRANSFER_MODES = ("none", "rct", "lct", "mkl", "mkl-m", "idt", "idt-m", "sot-m", "mix-m")
SHARPEN_MODES = ("none", "box", "gaussian")

RANGES: dict[str, tuple[float, float]] = {
    "hist_match_threshold": (0, 255),
    "erode_mask_modifier": (-400, 400),
    "blur_mask_modifier": (0, 400),
    "motion_blur_power": (0, 100),
    "output_face_scale": (-50, 50),
    "super_resolution_power": (0, 100),
    "blursharpen_amount": (-100, 100),
    "image_denoise_power": (0, 500),
    "bicubic_degrade_power": (0, 100),
    "color_degrade_power": (0, 100),
    "morph_value": (0.0, 1.0),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "mode": MODES, "mask_mode": MASK_MODES, "color_transfer_mode": COLOR_TRANSFER_MODES,
    "sharpen_mode": SHARPEN_MODES,
}

ALIASES: dict[str, str] = {
    "erode": "erode_mask_modifier", "blur": "blur_mask_modifier", "motion_blur": "motion_blur_power",
    "face_scale": "output_face_scale", "color_transfer": "color_transfer_mode",
    "hist_threshold": "hist_match_threshold", "sharpen": "blursharpen_amount", "denoise": "image_denoise_power",
    "bicubic_degrade": "bicubic_degrade_power", "color_degrade": "color_degrade_power",
    "super_resolution": "super_resolution_power", "morph": "morph_value",
}
"""The ``dfl merge`` flag names, accepted in config files too."""
HIST_MATCH_MODES = ("hist-match", "seamless-hist-match")
MODEL_SETTINGS = ("morph_value",)
"""Settings a model takes only when its spec's ``merge_defaults`` name them (e.g. a model that morphs)."""


def inert_settings(cfg: "MergeConfig", given: set[str], model_defaults: Mapping[str, Any]) -> list[str]:
    """Why each setting in ``given`` (field names the user set) does nothing with the other settings or for
    the model (``model_defaults``: its spec's merge defaults): a flag that changes nothing is a mistake to
    say, not to ignore."""
    why = []
    if "blursharpen_amount" in given and cfg.blursharpen_amount and cfg.sharpen_mode == "none":
        why.append("blursharpen_amount (--sharpen) does nothing with sharpen_mode none: give --sharpen-mode box "
                   "or gaussian")
    flag = {field: f"--{alias.replace('_', '-')}" for alias, field in ALIASES.items()}
    for name in MODEL_SETTINGS:
        if name in given and name not in model_defaults:
            why.append(f"{name} ({flag.get(name, name)}) does nothing for this model (only models that declare "
                       "it in their merge defaults use it)")
    hist = sorted(given & {"hist_match_threshold", "masked_hist_match"})
    if hist and cfg.mode not in HIST_MATCH_MODES:
        why.append(f"{', '.join(hist)} only apply in mode {' or '.join(HIST_MATCH_MODES)}, not {cfg.mode}")
    return why


def _clip(v: float, name: str) -> Any:
    lo, hi = RANGES[name]
    return type(v)(min(max(v, lo), hi))


@dataclass
class MergeConfig:
    """How one frame's faces are merged (DFL's ``MergerConfigMasked``, names kept)."""

    mode: str = "overlay"
    mask_mode: str = "learned-prd*learned-dst"
    masked_hist_match: bool = True
    hist_match_threshold: int = 238
    erode_mask_modifier: int = 0
    blur_mask_modifier: int = 0
    motion_blur_power: int = 0
    output_face_scale: int = 0
    color_transfer_mode: str = "rct"
    sharpen_mode: str = "none"
    blursharpen_amount: int = 0
    super_resolution_power: int = 0
    image_denoise_power: int = 0
    bicubic_degrade_power: int = 0
    color_degrade_power: int = 0
    morph_value: float | None = None
    """AMP only: how far the dst face is morphed towards src (0..1); None for other models."""
    visible_label: bool = False
    """Draw a small "AI-modified" notice on each merged frame."""

    # -- checking and (de)serialising ---------------------------------------------------------
    def validate(self, where: str = "merge config") -> "MergeConfig":
        """Raise a one-line DflError for a value DFL would not accept; return self."""
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise DflError(f"{where}: {name} {getattr(self, name)!r} is not one of {', '.join(choices)}")
        for name, (lo, hi) in RANGES.items():
            v = getattr(self, name)
            if v is None:
                continue
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
                raise DflError(f"{where}: {name} {v!r} is outside {lo}..{hi}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "merge config") -> "MergeConfig":
        """Build from a dict (config file, session); unknown keys are an error so typos surface."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DflError(f"{where}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        data = dict(data)
        if data.get("color_transfer_mode") is None and "color_transfer_mode" in data:
            data["color_transfer_mode"] = "none"
        return cls(**data).validate(where)

    @classmethod
    def from_file(cls, path: Path) -> "MergeConfig":
        """Read a YAML or JSON config file (a mapping of setting names to values)."""
        path = Path(path)
        data = load_mapping(path, "merge config")
        data.pop("model", None)
        data.pop("dfl_version", None)
        keys = {k: str(k).replace("-", "_") for k in data}
        return cls.from_dict({ALIASES.get(keys[k], keys[k]): v for k, v in data.items()}, str(path))

    def settings_hash(self) -> str:
        """A short digest of every setting that changes the output (for resuming)."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def copy(self) -> "MergeConfig":
        return MergeConfig(**self.to_dict())

    def fill_unset(self, defaults: Mapping[str, Any]) -> "MergeConfig":
        """Settings left unset (None) taken from ``defaults``: what the model's spec says it needs (AMP's
        morph value); returns self."""
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        return self

    @property
    def is_raw(self) -> bool:
        return self.mode.startswith("raw")

    @property
    def needs_xseg(self) -> bool:
        return self.mask_mode in XSEG_MASK_MODES

    def summary(self) -> str:
        """Settings that matter for the current mode, one per line (the on-screen and log text)."""
        lines = [f"mode: {self.mode}"]
        if self.mode == "hist-match":
            lines.append(f"masked_hist_match: {self.masked_hist_match}")
        if self.mode in ("hist-match", "seamless-hist-match"):
            lines.append(f"hist_match_threshold: {self.hist_match_threshold}")
        lines.append(f"mask_mode: {self.mask_mode}")
        if not self.is_raw:
            lines += [f"erode_mask_modifier: {self.erode_mask_modifier}",
                      f"blur_mask_modifier: {self.blur_mask_modifier}",
                      f"motion_blur_power: {self.motion_blur_power}"]
        lines.append(f"output_face_scale: {self.output_face_scale}")
        if not self.is_raw:
            lines += [f"color_transfer_mode: {self.color_transfer_mode}",
                      f"sharpen_mode: {self.sharpen_mode}",
                      f"blursharpen_amount: {self.blursharpen_amount}"]
        lines.append(f"super_resolution_power: {self.super_resolution_power}")
        if not self.is_raw:
            lines += [f"image_denoise_power: {self.image_denoise_power}",
                      f"bicubic_degrade_power: {self.bicubic_degrade_power}",
                      f"color_degrade_power: {self.color_degrade_power}"]
        if self.morph_value is not None:
            lines.append(f"morph_value: {self.morph_value:.2f}")
        return "\n".join(lines)

    # -- the interactive merger's adjusters (DFL's clamps) ----------------------------------
    def set_mode(self, index: int) -> None:
        self.mode = MODES[index] if 0 <= index < len(MODES) else "overlay"

    def toggle_masked_hist_match(self) -> None:
        if self.mode == "hist-match":
            self.masked_hist_match = not self.masked_hist_match

    def add_hist_match_threshold(self, diff: int) -> None:
        if self.mode in ("hist-match", "seamless-hist-match"):
            self.hist_match_threshold = _clip(self.hist_match_threshold + diff, "hist_match_threshold")

    def toggle_mask_mode(self, xseg: bool = True) -> None:
        """The next mask mode, as DFL's ``x`` key; without an XSeg model (``xseg`` False) its modes are skipped."""
        modes = MASK_MODES if xseg else tuple(m for m in MASK_MODES if m not in XSEG_MASK_MODES)
        i = modes.index(self.mask_mode) + 1 if self.mask_mode in modes else 0
        self.mask_mode = modes[i % len(modes)]

    def add_erode_mask_modifier(self, diff: int) -> None:
        self.erode_mask_modifier = _clip(self.erode_mask_modifier + diff, "erode_mask_modifier")

    def add_blur_mask_modifier(self, diff: int) -> None:
        self.blur_mask_modifier = _clip(self.blur_mask_modifier + diff, "blur_mask_modifier")

    def add_motion_blur_power(self, diff: int) -> None:
        self.motion_blur_power = _clip(self.motion_blur_power + diff, "motion_blur_power")

    def add_output_face_scale(self, diff: int) -> None:
        self.output_face_scale = _clip(self.output_face_scale + diff, "output_face_scale")

    def toggle_color_transfer_mode(self) -> None:
        i = COLOR_TRANSFER_MODES.index(self.color_transfer_mode)
        self.color_transfer_mode = COLOR_TRANSFER_MODES[(i + 1) % len(COLOR_TRANSFER_MODES)]

    def toggle_sharpen_mode(self) -> None:
        self.sharpen_mode = SHARPEN_MODES[(SHARPEN_MODES.index(self.sharpen_mode) + 1) % len(SHARPEN_MODES)]

    def add_super_resolution_power(self, diff: int) -> None:
        self.super_resolution_power = _clip(self.super_resolution_power + diff, "super_resolution_power")

    def add_blursharpen_amount(self, diff: int) -> None:
        self.blursharpen_amount = _clip(self.blursharpen_amount + diff, "blursharpen_amount")

    def add_image_denoise_power(self, diff: int) -> None:
        self.image_denoise_power = _clip(self.image_denoise_power + diff, "image_denoise_power")

    def add_bicubic_degrade_power(self, diff: int) -> None:
        self.bicubic_degrade_power = _clip(self.bicubic_degrade_power + diff, "bicubic_degrade_power")

    def add_color_degrade_power(self, diff: int) -> None:
        self.color_degrade_power = _clip(self.color_degrade_power + diff, "color_degrade_power")

    def add_morph_value(self, diff: float) -> None:
        if self.morph_value is not None:
            self.morph_value = round(_clip(float(self.morph_value + diff), "morph_value"), 2)
