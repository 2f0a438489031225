#!/bin/sh
# DeepFaceLab step "5.XSeg) train": runs dfl on the workspace next to this folder ($DFL_WORKSPACE overrides it).
DFL_WORKSPACE="${DFL_WORKSPACE:-$(dirname "$0")/../workspace}" exec dfl train --model XSeg "$@"
