#!/bin/sh
# DeepFaceLab step 7_merge_AMP: runs dfl on the workspace next to this folder ($DFL_WORKSPACE overrides it).
DFL_WORKSPACE="${DFL_WORKSPACE:-$(dirname "$0")/../workspace}" exec dfl merge --model AMP "$@"
