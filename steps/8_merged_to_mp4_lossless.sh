#!/bin/sh
# DeepFaceLab step 8_merged_to_mp4_lossless: runs dfl on the workspace next to this folder ($DFL_WORKSPACE overrides it).
DFL_WORKSPACE="${DFL_WORKSPACE:-$(dirname "$0")/../workspace}" exec dfl video --lossless "$@"
