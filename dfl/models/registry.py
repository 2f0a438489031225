"""The model registry: one spec per model, which everything else in dfl asks (timm's ``register_model`` /
``create_model``, faceswap's per-plugin defaults).

Each model module (``saehd.py``, ``amp.py``, ``quick96.py``, ...) builds one :class:`ModelSpec` and calls
:func:`register_model` when imported; :mod:`dfl.models` imports every model module.  The spec carries all
the library needs to know about a model: its name and kind, its options, how to build its networks, what
the trainer computes from a batch (its loss recipe), the batches it learns from, its optimiser, how the
merger uses it, how DeepFaceLab saved it and what its weights' shapes say about its options.  The trainer,
the merger, the prompts, the model store, the DFL import and the CLI read the spec; none of them names a
model.  Adding a model is one module; see "Adding a model" in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from torch import Tensor, nn

from dfl.errors import DflError
from dfl.models.options import OptionSpec, check_range, clip, coerce, is_unset

SWAP, SEGMENTER = KINDS = ("swap", "segmenter")   # a face swap (merged into frames) or a face mask model
Shapes = dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class OptimizerConfig:
    """Which of DFL's optimisers a network is trained with (built by :mod:`dfl.training.optim`)."""

    name: str                  # "adabelief" or "rmsprop"
    lr: float
    lr_dropout: float = 1.0    # probability that an element's update is kept (DFL's lr dropout: 0.3)
    lr_cos: int = 0            # period of DFL's cosine learning-rate cycle in iterations (0: none)
    clipnorm: float = 0.0      # global-norm gradient clipping (0: none)


@dataclass(frozen=True)
class DflImport:
    """How DeepFaceLab saved this model (``dfl model import``): ``<name>_<Model>_<network>.npy`` per network."""

    networks: Callable[[dict[str, Any]], list[str]]   # network file stems for the (dfl) options
    scopes: Mapping[str, str] = field(default_factory=dict)  # dfl network -> DFL's TF scope where they differ
    ignored: tuple[str, ...] = ()                      # DFL options dropped silently (fixed by a preset here)
    files: Mapping[str, str] = field(default_factory=dict)   # dfl network / optimiser -> DFL's file stem (if other)
    loss_names: tuple[str, ...] = ("src_loss", "dst_loss")  # the columns of DFL's loss_history
    by_class: bool = False     # DFL names the files by the class alone (XSeg_256.npy, XSeg_data.dat), one per folder


@dataclass
class DataRequest:
    """What the trainer asks a model's batches of (its spec's ``training_data``)."""

    src_dir: Path
    dst_dir: Path
    batch_size: int                       # per process
    seed: int | None = None
    workers: int = 0                      # sample processes (0: batches made between steps)
    notify: Callable[[str], None] | None = None   # one line per thing skipped


class BatchSource(Protocol):
    """The trainer's source of batches (:class:`dfl.samples.TrainingData` for the face-swap models)."""

    wait_s: float                          # seconds the trainer spent waiting for batches

    def next(self) -> dict[str, Tensor]: ...
    def fixed_preview_batch(self) -> dict[str, Tensor]: ...
    def close(self) -> None: ...


@dataclass
class Update:
    """One optimiser step of a training iteration, in the order the recipe lists them.

    ``loss(batch, carry)`` returns (loss to minimise, named scalars to report); ``carry`` is a dict shared
    by the iteration's updates (a generator's predictions, read by its discriminators' updates).
    """

    name: str                              # the optimiser's key in optimizer.pt (DFL's names: src_dst_opt, ...)
    params: list[nn.Parameter]
    optimizer: OptimizerConfig
    loss: Callable[[dict[str, Tensor], dict[str, Any]], tuple[Tensor, dict[str, Tensor]]]
    frozen: tuple[nn.Module, ...] = ()     # networks that get no parameter gradients in this update


class Recipe(Protocol):
    """What the trainer computes from a batch: a model's loss recipe, built by its spec for a model and its
    options (:class:`dfl.training.objective.Objective` runs it with the precision, optimisers and device)."""

    options: dict[str, Any]                # the options as training uses them
    networks: dict[str, nn.Module]         # networks trained and saved beside the model's (discriminators)
    inputs: tuple[str, ...]                # the batch keys it reads
    conv_inputs: tuple[str, ...]           # those fed to convolutions in training (channels_last when asked)
    preview_inputs: tuple[str, ...]        # those fed to convolutions by preview()

    def updates(self) -> list[Update]: ...
    def preview(self, batch: dict[str, Tensor], **kwargs: Any) -> dict[str, Tensor]: ...
    def preview_columns(self, batch: dict[str, Tensor]) -> list[Tensor]: ...   # the preview grid's columns


def _same(options: dict[str, Any]) -> dict[str, Any]:
    return options


def _nothing_from_shapes(shapes: Shapes) -> tuple[dict[str, Any], dict[str, str]]:
    return {}, {}


@dataclass(frozen=True)
class ModelSpec:
    """Everything dfl knows about one model, declared once in the model's own module."""

    name: str                                   # as in folder names (``<name>_<Model>``) and DFL's files
    kind: str                                   # one of KINDS
    summary: str                                # one line for help texts and listings
    options: tuple[OptionSpec, ...]             # asked in this order; saved in this order
    build: Callable[[dict[str, Any]], nn.Module]   # validated options -> the model, freshly initialised
    recipe: Callable[[nn.Module, dict[str, Any]], Recipe]            # loss recipe for a model and options
    training_data: Callable[[nn.Module, dict[str, Any], DataRequest], BatchSource]   # the samples it needs
    optimizer: Callable[[dict[str, Any]], OptimizerConfig]           # optimiser defaults for the options
    trace: Callable[[nn.Module, int], Any]      # one training forward pass of a batch (memory estimate)
    finish_options: Callable[[dict[str, Any]], dict[str, Any]] = _same   # DFL's derived values and rounding
    fixed: Mapping[str, Any] = field(default_factory=dict)   # a preset's values, never asked
    merge_defaults: Mapping[str, Any] = field(default_factory=dict)   # merger settings it needs (MergeConfig)
    options_from_weights: Callable[[Shapes], tuple[dict[str, Any], dict[str, str]]] = _nothing_from_shapes
    dfl_import: DflImport | None = None         # None: DFL models of this name are not imported
    demo: bool = False                          # the small preset ``dfl demo --run`` trains
    default_name: str | None = None             # the name when none is given (DFL names XSeg by its class alone)

    # -- options, by DFL's prompts' rules --------------------------------------------------------
    def option(self, name: str) -> OptionSpec | None:
        return next((s for s in self.options if s.name == name), None)

    def known_options(self) -> set[str]:
        """Names a config file may give: the declared options and a preset's fixed values."""
        return {s.name for s in self.options} | set(self.fixed)

    def validate(self, options: dict[str, Any]) -> dict[str, Any]:
        """Complete, coerce and clamp ``options`` the way DFL's prompts would.

        Unknown names and impossible values raise DflError; numbers outside a range are clipped as DFL
        clips them (values a user gives are refused before this by :meth:`check_given`; the clipping keeps
        older saved options loadable); then :attr:`finish_options` applies the model's derived values.
        """
        specs = {s.name: s for s in self.options}
        extra = {k for k in options if k not in specs and k != "model_type"} - set(self.fixed)
        if extra:
            raise DflError(f"options for {self.name}: unknown option(s) {', '.join(sorted(extra))}")
        out: dict[str, Any] = {}
        for name, spec in specs.items():
            value = options.get(name, spec.default)
            out[name] = None if is_unset(spec, value) else clip(spec, coerce(spec, value))
        if self.fixed:
            out = {**self.fixed, **out}
        return self.finish_options(out)

    def defaults(self) -> dict[str, Any]:
        """Every option at its default (derived defaults filled in), as a new model would get them."""
        return self.validate({})

    def check_given(self, given: dict[str, Any]) -> None:
        """Refuse a value the user gave (config file, prompt) that is outside its option's range, as
        ``dfl merge`` refuses its settings: silently clamping a typo (``resolution: 99999``) built a model
        nobody asked for.  Unknown names and bad types are reported by :meth:`validate`."""
        for name, value in given.items():
            spec = self.option(name)
            if spec is None or is_unset(spec, value):
                continue
            check_range(spec, coerce(spec, value))

    def check_changes(self, saved: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
        """Options for resuming a model: ``saved`` with the ``requested`` changes applied.

        A change to an option fixed at creation (``changeable=False``) raises DflError naming it.
        """
        specs = {s.name: s for s in self.options}
        self.check_given({k: v for k, v in requested.items() if k in specs})
        merged = dict(saved)
        for name, value in requested.items():
            spec = specs.get(name)
            if spec is None:
                if name in self.fixed and value == saved.get(name):
                    continue
                preset = " (fixed preset)" if self.fixed else ""
                raise DflError(f"option {name}: not an option of {self.name}{preset}")
            new = coerce(spec, value) if value is not None else None
            if not spec.changeable and new is not None and new != saved.get(name):
                raise DflError(f"option {name}: fixed when the model was created ({saved.get(name)!r}), "
                               f"cannot become {new!r}")
            merged[name] = value
        merged.pop("model_type", None)
        return self.validate(merged)


_SPECS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec, replace: bool = False) -> ModelSpec:
    """Make a model known to dfl (its module calls this once, when imported); returns the spec."""
    if spec.kind not in KINDS:
        raise ValueError(f"model {spec.name}: kind {spec.kind!r} is not one of {', '.join(KINDS)}")
    if "_" in spec.name or not spec.name:
        raise ValueError(f"model {spec.name!r}: a model name is one word (folders are <name>_<Model>)")
    known = find_spec(spec.name)
    if known is not None and not replace:
        raise ValueError(f"model {spec.name}: registered twice")
    if known is not None:
        del _SPECS[known.name]
    _SPECS[spec.name] = spec
    return spec


def unregister_model(name: str) -> None:
    """Forget a model (a plugin unloaded, or a test's own model)."""
    spec = find_spec(name)
    if spec is not None:
        del _SPECS[spec.name]


def find_spec(name: str) -> ModelSpec | None:
    """The spec of the model called ``name`` (any letter case), or None."""
    for spec in _SPECS.values():
        if spec.name.lower() == str(name).lower():
            return spec
    return None


def get_spec(name: str) -> ModelSpec:
    """The spec of the model called ``name`` (any letter case); DflError naming the choices."""
    spec = find_spec(name)
    if spec is None:
        raise DflError(f"model {name!r}: unknown, choose one of {', '.join(_SPECS)}")
    return spec


def list_specs(kind: str | None = None) -> list[ModelSpec]:
    """Registered specs (of ``kind``), in registration order."""
    return [s for s in _SPECS.values() if kind is None or s.kind == kind]


def model_names(kind: str | None = None) -> list[str]:
    return [s.name for s in list_specs(kind)]


def create_model(name: str, options: dict[str, Any] | None = None) -> nn.Module:
    """A freshly initialised model called ``name`` from its options (validated, defaults filled in)."""
    spec = get_spec(name)
    return spec.build(spec.validate({k: v for k, v in (options or {}).items() if k != "model_type"}))


def demo_model() -> ModelSpec:
    """The model ``dfl demo --run`` trains (the spec marked ``demo``)."""
    found = [s for s in _SPECS.values() if s.demo]
    if not found:
        raise DflError("no model is registered for the demo")
    return found[0]
