"""``dfl model import``: a DeepFaceLab model folder's SAEHD, AMP, Quick96 and XSeg models as dfl models.

DFL keeps every model of a workspace flat in ``workspace/model/``: ``<name>_<Type>_data.dat`` (iteration,
options, loss history) beside one ``<name>_<Type>_<network>.npy`` per network.  :func:`scan` lists what a
folder holds (also the generic XSeg weights, imported as an XSeg at iteration 0); :func:`import_model` reads one
model with
the restricted unpickler, maps its options onto dfl's names, loads every network (each variable checked
against dfl's network) and the optimisers' moments, and writes a dfl model through the model store's save,
with DFL's iteration count and loss history, so ``dfl train`` continues from there and ``dfl merge`` uses it.

Nothing is half-imported: the model is saved into a hidden staging folder beside the target
(``.import-<folder>-<pid>-<random>``, removed by the next import when its process is gone) and renamed
into place only when complete; a file that is not what it claims (or that would run code when unpickled)
stops the import with one line naming it, before anything is written.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dfl.atomic import make_temp_dir, remove_stale_temp_dirs
from dfl.errors import DflError
from dfl.interop.dfl_models import loss_history, map_options, plain
from dfl.models.registry import SEGMENTER, SWAP, ModelSpec, find_spec, list_specs

DATA_SUFFIX = "_data.dat"


@dataclass
class DflModel:
    """One model found in a DFL model folder."""

    name: str                    # DFL's model name (before _<Type>)
    model_type: str              # SAEHD, AMP, Quick96, XSeg, or DFL's class name for others
    folder: Path
    dat: Path | None             # <name>_<Type>_data.dat (None: bare weights, e.g. the generic XSeg)
    iteration: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    loss_rows: Any = None
    error: str | None = None     # why it cannot be read (shown by --list)

    @property
    def prefix(self) -> str:
        """DFL's file prefix: ``<name>_<Type>`` (just ``XSeg`` for XSeg, which DFL names by class)."""
        by_class = self.spec is not None and self.spec.dfl_import.by_class
        return self.model_type if by_class else f"{self.name}_{self.model_type}"

    @property
    def spec(self) -> ModelSpec | None:
        """The registered model of this name that knows DFL's files (its spec's ``dfl_import``), or None."""
        spec = find_spec(self.model_type)
        return spec if spec is not None and spec.name == self.model_type and spec.dfl_import is not None else None

    @property
    def importable(self) -> bool:
        return self.spec is not None

    def file(self, network: str) -> Path:
        """DFL's file of a dfl network or optimiser (its spec's ``dfl_import.files`` where DFL names it
        otherwise: XSeg's network is ``XSeg_256.npy``)."""
        spec = self.spec
        stem = spec.dfl_import.files.get(network, network) if spec is not None and spec.dfl_import else network
        return self.folder / f"{self.prefix}_{stem}.npy"

    def networks(self) -> list[str]:
        spec = self.spec
        return spec.dfl_import.networks(self.options) if spec is not None and spec.dfl_import is not None else []


def importable_names() -> str:
    """The models ``dfl model import`` takes, for messages: "SAEHD, AMP and Quick96"."""
    names = [s.name for s in list_specs() if s.dfl_import is not None]
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)


def _read_dat(model: DflModel) -> None:
    """Fill iteration, options and loss rows from the model's ``_data.dat`` (restricted unpickler)."""
    from dfl.leras import read_pickle

    data = read_pickle(model.dat, "DFL model data file")
    if not isinstance(data, dict) or "iter" not in data:
        raise DflError(f"{model.dat}: not a DFL model data file (no 'iter' in it)")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise DflError(f"{model.dat}: options are a {type(options).__name__}, not a dict")
    model.iteration = int(plain(data["iter"]))
    model.options = {str(k): plain(v) for k, v in options.items()}
    model.loss_rows = data.get("loss_history")


def scan(path: Path) -> list[DflModel]:
    """Every model in a DFL model folder (or the one whose ``_data.dat`` is ``path``), newest first.

    ``path`` may also be DFL's workspace folder or its install folder (``model/`` or
    ``workspace/model/`` below it is used).

    A model whose data file cannot be read is listed with its ``error``; a folder holding only
    ``XSeg_256.npy`` (DFL's generic XSeg) is listed as an XSeg model without data.
    """
    path = Path(path)
    if path.is_file():
        if not path.name.endswith(DATA_SUFFIX):
            raise DflError(f"{path}: not a DFL model data file (expected <name>_<Model>{DATA_SUFFIX})")
        dats, folder = [path], path.parent
    elif path.is_dir():
        folder = next((f for f in (path, path / "model", path / "workspace" / "model")   # also DFL's workspace
                       if f.is_dir() and any(f.glob(f"*{DATA_SUFFIX}"))), path)           # or install folder
        dats = sorted(folder.glob(f"*{DATA_SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
    else:
        raise DflError(f"{path}: no such folder or file")
    found = []
    for dat in dats:
        stem = dat.name[: -len(DATA_SUFFIX)]
        name, _, model_type = stem.rpartition("_")
        if not name:                       # XSeg_data.dat: DFL names XSeg by its class alone
            name, model_type = stem, stem
        model = DflModel(name, model_type, folder, dat)
        try:
            _read_dat(model)
        except DflError as exc:
            model.error = str(exc)
        found.append(model)
    for spec in list_specs():      # a model DFL names by class may be its weights alone (the generic XSeg)
        bare = DflModel(spec.name, spec.name, folder, None)
        by_class = spec.dfl_import is not None and spec.dfl_import.by_class
        if (by_class and not any(m.model_type == spec.name for m in found)
                and all(bare.file(n).is_file() for n in bare.networks())):
            found.append(bare)
    return found


def describe(model: DflModel) -> str:
    """One line about a found model for ``--list``."""
    head = f"{model.prefix}: {model.model_type}"
    if model.error:
        return f"{head}: unreadable ({model.error})"
    if model.spec is not None and model.spec.kind == SEGMENTER:
        kind = model.model_type
        what = f"generic {kind} weights" if model.dat is None else f"trained {kind}, iteration {model.iteration}"
        ft = model.options.get("face_type")
        files = ", ".join(model.file(n).name for n in model.networks())
        return (f"{head} mask model ({what}{', face type ' + str(ft) if ft else ''}; {files}): "
                f"importable (--name {model.prefix}), or used as it is by dfl xseg apply")
    o = model.options
    spec = model.spec
    if spec is None:
        info = "not a model dfl has"
    elif spec.fixed:
        info = spec.summary
    else:
        shape = " ".join(str(o[k]) for k in ("archi", "resolution", "face_type") if k in o)
        dims = ", ".join(f"{k.replace('_dims', '')} {o[k]}" for k in ("ae_dims", "inter_dims", "e_dims", "d_dims",
                                                                     "d_mask_dims") if k in o)
        info = f"{shape} ({dims})" if dims else shape
    line = f"{head} {info}, iteration {model.iteration}"
    if model.importable:
        missing = [n for n in model.networks() if not model.file(n).is_file()]
        line += f"; missing {', '.join(model.file(n).name for n in missing)}" if missing else "; importable"
    return line


@dataclass
class ImportResult:
    path: Path                        # the new dfl model folder
    source: DflModel
    options: dict[str, Any]
    dropped: dict[str, str]           # DFL options not carried over, with why
    discriminators: list[str]         # discriminators whose DFL weights were carried over
    optimizers: list[str]             # optimisers whose DFL state was carried over


def pick(models: list[DflModel], name: str | None, where: Path) -> DflModel:
    """The model to import: by name (DFL's, with or without _<Type>), or the only importable one."""
    if name is not None:
        hits = [m for m in models if name in (m.name, m.prefix)]
        if not hits:
            listed = ", ".join(m.prefix for m in models) or "none"
            raise DflError(f"{where}: no DFL model named {name!r} (found: {listed})")
        if len(hits) > 1:
            raise DflError(f"{where}: several models are named {name!r} ({', '.join(m.prefix for m in hits)}); "
                           f"give <name>_<Model>")
        model = hits[0]
    else:
        importable = [m for m in models if m.importable]
        # a DFL workspace usually holds a face-swap model and an XSeg: without --name, the face-swap model
        candidates = [m for m in importable if m.spec.kind == SWAP] or importable
        if not candidates:
            raise DflError(f"{where}: no {importable_names().replace(' and ', ' or ')} model here (DFL keeps them as "
                           f"<name>_<Model>{DATA_SUFFIX} with its .npy files in workspace/model)")
        if len(candidates) > 1:
            raise DflError(f"{where}: several models ({', '.join(m.prefix for m in candidates)}); choose one with --name")
        model = candidates[0]
    if model.error:
        raise DflError(model.error)
    if not model.importable:
        raise DflError(f"{model.dat}: a DFL {model.model_type} model; dfl imports {importable_names()}")
    return model


def _dfl_options(model: DflModel) -> tuple[dict[str, Any], dict[str, str]]:
    spec = model.spec
    assert spec is not None
    mapped, dropped = map_options(spec, model.options)
    try:
        return spec.validate(mapped), dropped
    except DflError as exc:
        raise DflError(f"{model.dat}: {exc}") from None


def _networks(model: DflModel, options: dict[str, Any]) -> tuple[dict[str, Any], Any, list[str]]:
    """(every network to save with DFL's weights, the training objective owning the discriminators and
    optimisers, discriminators carried).  A discriminator without a file starts fresh, as in DFL."""
    from dfl.leras import load_leras
    from dfl.models.registry import create_model
    from dfl.training.objective import Objective

    swap = create_model(model.model_type, options)
    objective = Objective(swap, options)
    for name, net in swap.networks.items():
        path = model.file(name)
        if not path.is_file():
            raise DflError(f"{path}: missing; the DFL model folder is incomplete (copy every "
                           f"{model.prefix}_*.npy file)")
        load_leras(net, path)
    carried = []
    for name, disc in objective.discriminators.items():
        if model.file(name).is_file():
            load_leras(disc, model.file(name))
            carried.append(name)
    return {**swap.networks, **objective.discriminators}, objective, carried


def _dfl_slots(path: Path, saved: dict[str, Any], opt: Any, networks: dict[str, Any],
               scopes: dict[str, str]) -> list[tuple[Any, str, Any]] | None:
    """(parameter, slot, value) for every state slot of ``opt`` from DFL's optimiser file; None when the
    file lacks one (it was made for another optimiser or other networks)."""
    import torch

    from dfl.interop.dfl_models import optimizer_variable
    from dfl.leras import leras_name, to_torch_layout

    where = {id(p): (net_name, key, net) for net_name, net in networks.items() for key, p in net.named_parameters()}
    slots = [k for k in ("m", "v", "a") if k in getattr(opt, "_state_keys", ())]
    found = []
    for group in opt.param_groups:
        for p in group["params"]:
            net_name, key, net = where[id(p)]
            module_path, _, param = key.rpartition(".")
            owner = net.get_submodule(module_path) if module_path else net
            for slot in slots:
                name = optimizer_variable(slot, scopes.get(net_name, net_name), leras_name(key))
                if name not in saved:
                    return None
                try:
                    arr = to_torch_layout(np.asarray(saved[name]), owner, param, p.shape)
                except ValueError as exc:
                    raise DflError(f"{path}: {name}: {exc}") from None
                found.append((p, slot, torch.from_numpy(np.ascontiguousarray(arr, np.float32))))
    return found


def _optimizer_state(model: DflModel, networks: dict[str, Any], objective: Any) -> tuple[dict[str, Any], list[str]]:
    """dfl's optimiser state from DFL's ``<prefix>_<optimiser>.npy`` files (moments and iteration count),
    and the optimisers carried.  One whose file is missing or made for another optimiser starts afresh,
    as DFL starts it then."""
    import torch

    from dfl.leras import read_weights

    carried = []
    for opt_name, opt in objective.optimizers.items():
        path = model.file(opt_name)
        if not path.is_file():
            continue
        saved = read_weights(path)
        found = _dfl_slots(path, saved, opt, networks, model.spec.dfl_import.scopes)
        if found is None:
            continue
        with torch.no_grad():
            for p, slot, value in found:
                state = opt.state[p]
                if slot in state:
                    state[slot].copy_(value)      # the optimiser's flat buffers hold the state
                else:
                    state[slot] = value.to(p.device)
        iters = int(np.asarray(saved.get("iters:0", 0)))
        for group in opt.param_groups:
            group["iterations"] = iters
        carried.append(opt_name)
    return objective.optimizer_state(), carried


def import_model(source: Path, model_dir: Path, name: str | None = None, new_name: str | None = None) -> ImportResult:
    """Import one DFL model from ``source`` (folder or ``_data.dat``) into ``model_dir``; see module doc."""
    from dfl.models.store import check_name, model_path, save_checkpoint
    from dfl.training.history import HISTORY_MAX_POINTS

    source = Path(source)
    model = pick(scan(source), name, source)
    target_name = new_name or model.name
    check_name(target_name)
    target = model_path(Path(model_dir), target_name, model.model_type)
    if target.exists():
        raise DflError(f"{target}: a model with that name already exists; choose another with --as")
    options, dropped = _dfl_options(model)
    networks, objective, carried = _networks(model, options)
    opt_state, opts_carried = _optimizer_state(model, networks, objective)
    try:
        history = loss_history(model.loss_rows, HISTORY_MAX_POINTS, model.spec.dfl_import.loss_names)
    except ValueError as exc:
        raise DflError(f"{model.dat}: unreadable loss history ({exc})") from None
    state = {"iteration": int(model.iteration or 0), "loss_history": history,
             "imported_from": {"path": str(model.dat or model.file(model.networks()[0])),
                               "dfl_model": model.prefix}}
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    prefix = f".import-{target.name}-"
    remove_stale_temp_dirs(model_dir, prefix)          # a killed import's staging folder
    staging = make_temp_dir(model_dir, prefix)
    try:
        save_checkpoint(staging, model.model_type, options, state, networks, opt_state)
        os.rename(staging, target)     # fails rather than overwrite a model made meanwhile
    except OSError as exc:
        raise DflError(f"{target}: cannot create the imported model ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ImportResult(target, model, options, dropped, carried, opts_carried)
