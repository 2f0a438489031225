#!/bin/sh
# DeepFaceLab step 6_export_SAEHD_as_dfm: runs dfl on the workspace next to this folder ($DFL_WORKSPACE overrides it).
# Exports the most recent SAEHD model (or the one named, e.g. "6_export_SAEHD_as_dfm.sh me") to model/<name>_SAEHD/<name>.dfm.
DFL_WORKSPACE="${DFL_WORKSPACE:-$(dirname "$0")/../workspace}" exec dfl model export --model SAEHD "$@"
