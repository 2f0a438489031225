#!/bin/sh
# DeepFaceLab step 5.2_data_dst_util_faceset_enhance: runs dfl on the workspace next to this folder ($DFL_WORKSPACE overrides it).
DFL_WORKSPACE="${DFL_WORKSPACE:-$(dirname "$0")/../workspace}" exec dfl faceset enhance dst "$@"
