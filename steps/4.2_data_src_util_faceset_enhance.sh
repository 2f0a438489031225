#!/bin/sh
# DeepFaceLab step 4.2_data_src_util_faceset_enhance: runs dfl on the workspace next to this folder ($DFL_WORKSPACE overrides it).
DFL_WORKSPACE="${DFL_WORKSPACE:-$(dirname "$0")/../workspace}" exec dfl faceset enhance src "$@"
