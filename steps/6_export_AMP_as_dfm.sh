#!/bin/sh
# DeepFaceLab step 6_export_AMP_as_dfm: runs dfl on the workspace next to this folder ($DFL_WORKSPACE overrides it).
# Exports the most recent AMP model (or the one named, e.g. "6_export_AMP_as_dfm.sh me") to model/<name>_AMP/<name>.dfm.
DFL_WORKSPACE="${DFL_WORKSPACE:-$(dirname "$0")/../workspace}" exec dfl model export --model AMP "$@"
