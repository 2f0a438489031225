#!/bin/sh
# The whole DeepFaceLab workflow on the offline demo workspace (demo videos -> clear -> frames -> faces ->
# Quick96 for 5 minutes -> merge -> result.mp4), now one command that also works without a shell (Windows):
#   dfl demo --run -w demo_workspace [--minutes M | --iterations N]
# Usage: scripts/demo_pipeline.sh [WORKSPACE] [more `dfl demo --run` options]   (default ./demo_workspace)
WS="${1:-demo_workspace}"; [ $# -gt 0 ] && shift; exec dfl demo --run -w "$WS" "$@"
