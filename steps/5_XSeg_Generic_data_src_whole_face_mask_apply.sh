#!/bin/sh
# DeepFaceLab step "5.XSeg Generic) data_src whole_face mask - apply": runs dfl on the workspace next to this folder ($DFL_WORKSPACE overrides it).
DFL_WORKSPACE="${DFL_WORKSPACE:-$(dirname "$0")/../workspace}" exec dfl xseg apply src --generic "$@"
