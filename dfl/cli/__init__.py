"""``dfl``: one subcommand per DeepFaceLab step.

The commands are thin: parse options, call one function of the core, print a one-line summary.  Each
area keeps its commands in a module of this package (``frames``, ``extract``, ``train``, ``merge``, ...),
registered on the one group below.  A :class:`~dfl.errors.DflError`, or an OSError the core did not
turn into one (a full disk, a name too long, a file where a folder should be), becomes one line on
stderr and exit code 1; Ctrl+C (or SIGTERM) exits with 130 (143) after the core has saved what it must.
"""

from __future__ import annotations

import errno
import importlib
import sys
from typing import NoReturn

import click

from dfl import __version__
from dfl.errors import DflError
from dfl.interrupt import exit_code, sigterm_as_interrupt

# Modules that add commands to ``cli``; each is imported if present so areas land independently.
COMMAND_MODULES = ("frames", "demo", "extract", "faceset", "xseg", "train", "merge", "interop", "export", "live")


class DflGroup(click.Group):
    """Lists commands in workflow order (as added) rather than alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=DflGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dfl")
def cli() -> None:
    """DeepFaceLab's face-swap workflow.  Steps, in order:

    \b
    1  dfl clear                  empty the workspace's generated folders
    2  dfl extract-frames src     data_src.mp4 -> data_src/*.png
    3  dfl extract-frames dst     data_dst.mp4 -> data_dst/*.png
       dfl cut-video / denoise-frames   optional: trim data_dst.mp4, denoise frames
    4  dfl extract-faces src      faces of data_src -> data_src/aligned
    5  dfl extract-faces dst      faces of data_dst -> data_dst/aligned
       dfl xseg edit|apply ...    optional: XSeg masks (label faces, apply a mask model)
    6  dfl train                  learn the swap (SAEHD, AMP, Quick96)
    7  dfl merge                  put the learned face into data_dst/merged
    8  dfl video                  data_dst/merged -> result.mp4 with the dst's audio

    \b
    dfl model export NAME         a trained model as a .dfm for DeepFaceLive
    dfl live --name NAME --source VIDEO|CAMERA   swap a video or camera frame by frame

    dfl demo writes a demo workspace (no download needed; --run runs every step on it); dfl faceset info shows faces' metadata.
    Every command works on ./workspace unless --workspace or $DFL_WORKSPACE says otherwise.
    """


for _name in COMMAND_MODULES:
    try:
        importlib.import_module(f"dfl.cli.{_name}")
    except ModuleNotFoundError as exc:  # an area that has not landed yet
        if exc.name != f"dfl.cli.{_name}":
            raise


_PLAIN_REASONS = {
    errno.ENOSPC: "no space left on the device; free some space and run the step again (it resumes)",
    errno.EDQUOT: "disk quota exceeded; free some space and run the step again (it resumes)",
    errno.ENAMETOOLONG: "name too long (a file or folder name may have at most 255 bytes)",
    errno.EEXIST: "already exists (a file where dfl needs a folder?)",
    errno.ENOTDIR: "a file where a folder is needed",
}


def os_error_line(exc: OSError) -> str:
    """``<path>: <reason>`` for an OSError, in words a user can act on."""
    reason = _PLAIN_REASONS.get(exc.errno) or exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename is not None else reason


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the group and turn user errors into one line.

    SIGTERM stops a command as Ctrl+C does (:mod:`dfl.interrupt`): the step keeps what it finished, prints
    its summary where it has one, and the exit status is 130 (Ctrl+C) or 143 (SIGTERM).
    """
    with sigterm_as_interrupt():
        try:
            cli.main(args=argv, prog_name="dfl", standalone_mode=False)
        except DflError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except click.exceptions.Abort as exc:   # click wraps a KeyboardInterrupt into Abort (as its cause)
            _stopped(exc.__cause__, "Aborted.")
        except KeyboardInterrupt as exc:
            _stopped(exc, "Interrupted.")
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except BrokenPipeError:
            sys.exit(1)
        except OSError as exc:
            click.echo(f"Error: {os_error_line(exc)}", err=True)
            sys.exit(1)


def _stopped(stop: BaseException | None, default: str) -> NoReturn:
    """Ctrl+C, SIGTERM or an aborted prompt: the step's own last words (:class:`Interrupted`) or ``default``."""
    message = getattr(stop, "message", "") or ("Interrupted." if isinstance(stop, KeyboardInterrupt) else default)
    click.echo(message, err=True)
    sys.exit(exit_code(stop))
