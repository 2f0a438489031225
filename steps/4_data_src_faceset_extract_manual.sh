#!/bin/sh
# DeepFaceLab step "4) data_src faceset extract MANUAL": runs dfl on the workspace next to this folder ($DFL_WORKSPACE overrides it).
DFL_WORKSPACE="${DFL_WORKSPACE:-$(dirname "$0")/../workspace}" exec dfl extract-faces src --manual "$@"
