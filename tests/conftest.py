"""Shared fixtures for the whole suite.  Keep them small: every test file may use them.

``dfl_home``                 $DFL_HOME for the session (autouse): the precision cache, never ~/.dfl.
``shared_dir``               Path of ../shared (conformance data, media); skips the test when missing.
``demo_workspace_session``   The ``dfl demo`` workspace (data_src.mp4, data_dst.mp4 with audio, 3 s at
                             25 fps = 75 frames each), made once per session.  READ ONLY: copy it first.
``demo_frames_session``      The same plus frames extracted once (png): data_src/00001.png ... and
                             data_dst/00001.png ... (75 each).  READ ONLY: copy it first.
``demo_run_session``         ``(workspace, stdout, stderr)`` of one ``dfl demo --run`` on a tiny demo (10 frames a
                             side, Quick96 "demo" trained to iteration 1), made once per session.  READ ONLY.
``demo_workspace``           A fresh copy of the demo workspace (videos only) in tmp_path, to modify.
``copy_workspace``           ``copy_workspace(src_ws, dest=None) -> Workspace``: copy a session workspace.
``dfl_run``                  ``dfl_run(*args) -> CliResult(code, out, err)``: runs the ``dfl`` CLI in-process
                             exactly as the console script does (errors -> one line, exit code).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from dfl.workspace import Workspace

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session", autouse=True)
def dfl_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's dfl folder ($DFL_HOME: the measured-precision cache) in a temporary folder for the whole
    session, never the real ~/.dfl; one measurement per model configuration serves every test."""
    import os

    home = tmp_path_factory.mktemp("dfl_home")
    old = os.environ.get("DFL_HOME")
    os.environ["DFL_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("DFL_HOME", None)
    else:
        os.environ["DFL_HOME"] = old


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (= /work/shared); the test is skipped when it is not there (e.g. on a fresh clone)."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not available")
    return SHARED


@pytest.fixture(scope="session")
def demo_workspace_session(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The demo workspace, made once per session (about 2 s).  Do not modify it: use ``demo_workspace``."""
    from dfl.demo import make_demo_workspace
    return make_demo_workspace(tmp_path_factory.mktemp("demo") / "workspace")


@pytest.fixture(scope="session")
def demo_frames_session(demo_workspace_session: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """Demo workspace with png frames of both videos extracted (75 + 75).  Do not modify it."""
    from dfl.video import extract_frames
    ws = Workspace(tmp_path_factory.mktemp("demo_frames") / "workspace")
    shutil.copytree(demo_workspace_session.root, ws.root, symlinks=True)
    for side in ("src", "dst"):
        extract_frames(ws.require_video(side), ws.frames_dir(side), desc=None)
    return ws


# --minutes that has run out before the first iteration ends: the clock stops training after one iteration
# (it always makes at least one), before the iteration target; the model is saved either way.
DEMO_RUN_ARGS = ("--seconds", "0.4", "--iterations", "2", "--minutes", "0.0001", "--image-size", "128",
                 "--workers", "0", "--seed", "0")


@pytest.fixture(scope="session")
def demo_run_session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, str, str]:
    """``dfl demo --run`` once (about 30 s on 2 cores), in-process as the console script runs it."""
    import contextlib
    import io

    from dfl.cli import main

    ws = Workspace(tmp_path_factory.mktemp("demo_run") / "ws")
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["demo", "--run", "-w", str(ws.root), *DEMO_RUN_ARGS])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    assert code == 0, err.getvalue()[-3000:]
    return ws, out.getvalue(), err.getvalue()


def _copy(src: Workspace, dest: Path) -> Workspace:
    shutil.copytree(src.root, dest, symlinks=True)
    return Workspace(dest)


@pytest.fixture
def copy_workspace(tmp_path: Path) -> Callable[..., Workspace]:
    """``copy_workspace(ws, dest=None)``: a modifiable copy of ``ws`` (default ``tmp_path/"workspace"``)."""
    def copy(src: Workspace, dest: Path | None = None) -> Workspace:
        return _copy(src, dest if dest is not None else tmp_path / "workspace")
    return copy


@pytest.fixture
def demo_workspace(demo_workspace_session: Workspace, tmp_path: Path) -> Workspace:
    """A private copy of the demo workspace (videos and empty folders) under tmp_path."""
    return _copy(demo_workspace_session, tmp_path / "workspace")


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def dfl_run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run ``dfl ARGS...`` in-process through the console entry point; returns exit code and output.

    $DFL_WORKSPACE is removed so a developer's environment does not leak in.
    """
    from dfl.cli import main
    monkeypatch.delenv("DFL_WORKSPACE", raising=False)

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)
    return run
