#!/bin/sh
# DeepFaceLab step "5.2) data_dst util faceset enhance": runs dfl on the workspace next to this folder ($DFL_WORKSPACE overrides it).
DFL_WORKSPACE="${DFL_WORKSPACE:-$(dirname "$0")/../workspace}" exec dfl faceset enhance dst "$@"
