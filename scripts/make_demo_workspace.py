#!/usr/bin/env python3
"""Write the offline demo workspace; the same as ``dfl demo`` (arguments are passed on, see --help)."""

import sys

from dfl.cli import main

if __name__ == "__main__":
    main(["demo", *sys.argv[1:]])
