"""The model store: model folders on disk that survive crashes, used by training, merging, import and the CLI.

A model lives in ``model/<name>_<ModelType>/`` (the layout: :mod:`dfl.models.store.layout`).  A save is
all-or-nothing and a killed save loses nothing (:mod:`~dfl.models.store.saving`); reading takes the last
complete save and is safe beside a running trainer (:mod:`~dfl.models.store.reading`).  Nothing here
destroys a model: a folder that holds model files but cannot be loaded is listed as damaged with how to
recover it (:mod:`~dfl.models.store.listing`), never replaced by a new model; the weights file carries its
own save record (:mod:`~dfl.models.store.record`) from which a lost ``state.json`` is recovered, and lost
options are rebuilt from it, the backups or the tensor shapes (:mod:`~dfl.models.store.repair`);
``delete`` moves a model to the workspace's trash and a per-folder lock keeps two trainers (or a trainer and
a rename) off one model (:mod:`~dfl.models.store.ownership`); rolling backups:
:mod:`~dfl.models.store.backups`.

Everything public is importable from here: ``from dfl.models import store; store.read_checkpoint(path)``.
"""

from __future__ import annotations

from dfl.models.store.backups import make_backup, restore_backup
from dfl.models.store.layout import (BACKUPS_DIR, COMPLETE, LOCK, OPTIMIZER, OPTIONS, PREVIEWS, RECORD_PREFIX,
                                     SAVED_FILES, SAVING_DIR, STATE, WEIGHTS, check_name, list_backups,
                                     model_path, parse_folder_name, read_json, read_options)
from dfl.models.store.listing import (ModelInfo, diagnose, find_model, holds_model_files, last_saved, list_models,
                                      repair_hint)
from dfl.models.store.ownership import delete_model, lock_model, remove_if_unused, rename_model
from dfl.models.store.reading import Checkpoint, load_model, load_weights, read_checkpoint
from dfl.models.store.record import read_weights_header, recover_state, save_record, weights_record
from dfl.models.store.repair import rebuild_options, set_aside, weights_mismatch
from dfl.models.store.saving import (commit_save, mark_complete, recover, save_checkpoint, serialize_weights,
                                     write_staged)

__all__ = [
    "BACKUPS_DIR", "COMPLETE", "LOCK", "OPTIMIZER", "OPTIONS", "PREVIEWS", "RECORD_PREFIX", "SAVED_FILES",
    "SAVING_DIR", "STATE", "WEIGHTS", "Checkpoint", "ModelInfo", "check_name", "commit_save", "delete_model",
    "diagnose", "find_model", "holds_model_files", "last_saved", "list_backups", "list_models", "load_model", "load_weights",
    "lock_model", "make_backup", "mark_complete", "model_path", "parse_folder_name", "read_checkpoint",
    "read_json", "read_options", "read_weights_header", "rebuild_options", "recover", "recover_state",
    "remove_if_unused", "rename_model", "repair_hint", "restore_backup", "save_checkpoint", "save_record",
    "serialize_weights", "set_aside", "weights_mismatch", "weights_record", "write_staged",
]
