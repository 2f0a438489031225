"""The one exception type users see.

Every failure that is the user's to fix (a missing file, a bad option, a corrupt faceset) is raised as
:class:`DflError` with a message that names the file and the problem.  The CLI prints it as a single
line on stderr and exits non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class DflError(Exception):
    """A problem with the user's input or environment, printed as one line by the CLI."""
