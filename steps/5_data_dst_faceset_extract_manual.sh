#!/bin/sh
# DeepFaceLab step "5) data_dst faceset extract MANUAL": runs dfl on the workspace next to this folder ($DFL_WORKSPACE overrides it).
DFL_WORKSPACE="${DFL_WORKSPACE:-$(dirname "$0")/../workspace}" exec dfl extract-faces dst --manual "$@"
