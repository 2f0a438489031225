"""``dfl clear``: deletes only generated things, only inside a real workspace (more in test_faults_files)."""

from __future__ import annotations

import os
from pathlib import Path

from dfl.workspace import Workspace


def _populate(ws: Workspace) -> None:
    """Everything the steps generate, plus things of the user's that must survive."""
    for folder in (ws.aligned_dir("src"), ws.debug_dir("src"), ws.aligned_dir("dst"), ws.debug_dir("dst"),
                   ws.merged_dir, ws.merged_mask_dir, ws.model_dir / "me_SAEHD"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "x.jpg").write_bytes(b"x")
    (ws.data_src / "00001.png").write_bytes(b"frame")
    (ws.data_dst / "00001.png").write_bytes(b"frame")
    ws.result.write_bytes(b"result")
    ws.result_mask.write_bytes(b"mask")
    (ws.root / "notes.txt").write_text("mine")


def test_clear_removes_generated_keeps_videos(demo_workspace: Workspace, dfl_run) -> None:
    ws = demo_workspace
    _populate(ws)
    res = dfl_run("clear", "--yes", "-w", ws.root)
    assert res.code == 0, res.err
    assert ws.video("src") is not None and ws.video("dst") is not None
    assert (ws.root / "notes.txt").read_text() == "mine"
    assert not ws.result.exists() and not ws.result_mask.exists() and not ws.merged_dir.exists()
    assert not (ws.data_src / "00001.png").exists() and not ws.debug_dir("dst").exists()
    # DFL's empty layout is back, ready for the next run; faces and results wait in the trash
    assert ws.aligned_dir("src").is_dir() and ws.aligned_dir("dst").is_dir() and ws.model_dir.is_dir()
    assert list(ws.aligned_dir("src").iterdir()) == []
    trash = next(ws.trash_dir.iterdir())
    assert (trash / "data_src" / "aligned" / "x.jpg").read_bytes() == b"x" and (trash / "result.mp4").is_file()
    # a model is never removed unasked
    assert (ws.model_dir / "me_SAEHD" / "x.jpg").read_bytes() == b"x"


def test_clear_videos_only_when_asked(demo_workspace: Workspace, dfl_run) -> None:
    ws = demo_workspace
    (ws.root / "data_dst.mkv").write_bytes(b"second dst video")
    (ws.root / "data_dst_cut.mp4").write_bytes(b"a cut")
    assert dfl_run("clear", "--yes", "--videos", "-w", ws.root).code == 0
    assert ws.video("src") is None and ws.video("dst") is None
    trash = next(ws.trash_dir.iterdir())                       # the cut dfl wrote goes along (issue 21)
    assert not (ws.root / "data_dst_cut.mp4").exists() and (trash / "data_dst_cut.mp4").read_bytes() == b"a cut"
    assert (trash / "data_dst.mkv").read_bytes() == b"second dst video"


def test_clear_asks_and_never_hangs_without_a_terminal(demo_workspace: Workspace, dfl_run) -> None:
    ws = demo_workspace
    _populate(ws)
    res = dfl_run("clear", "-w", ws.root)  # stdin is not a terminal under pytest
    assert res.code == 1 and "--yes" in res.err and "Traceback" not in res.err
    assert ws.result.exists() and (ws.data_src / "00001.png").exists()


def test_clear_refuses_a_folder_that_is_not_a_workspace(tmp_path: Path, dfl_run) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print()")
    (project / "aligned").mkdir()
    res = dfl_run("clear", "--yes", "-w", project)
    assert res.code == 1 and "not look like a dfl workspace" in res.err
    assert (project / "src" / "main.py").exists() and (project / "aligned").is_dir()
    missing = dfl_run("clear", "--yes", "-w", tmp_path / "missing")
    assert missing.code == 1 and not (tmp_path / "missing").exists()


def test_clear_does_not_follow_symlinks_out_of_the_workspace(demo_workspace: Workspace, tmp_path: Path,
                                                            dfl_run) -> None:
    outside = tmp_path / "elsewhere"
    (outside / "aligned").mkdir(parents=True)
    (outside / "precious.png").write_bytes(b"keep")
    ws = demo_workspace
    os.rmdir(ws.model_dir)
    os.symlink(outside, ws.model_dir)
    (ws.data_dst / "link_to_outside").symlink_to(outside)
    assert dfl_run("clear", "--yes", "-w", ws.root).code == 0
    assert (outside / "precious.png").read_bytes() == b"keep" and (outside / "aligned").is_dir()
    assert ws.model_dir.is_symlink()                       # a model folder stays unless --models
    assert dfl_run("clear", "--yes", "--models", "-w", ws.root).code == 0
    assert (outside / "precious.png").read_bytes() == b"keep" and (outside / "aligned").is_dir()
    assert ws.model_dir.is_dir() and not ws.model_dir.is_symlink()  # the link went to the trash, as a link
    assert any(p.is_symlink() for p in ws.trash_dir.rglob("model"))


def test_clear_on_a_fresh_workspace_has_nothing_to_do(tmp_path: Path, dfl_run) -> None:
    fresh = tmp_path / "workspace"
    fresh.mkdir()
    (fresh / "README.md").write_text("the default workspace")
    res = dfl_run("clear", "-w", fresh)
    assert res.code == 0 and "nothing to clear" in res.out
    assert sorted(os.listdir(fresh)) == ["README.md"]
