#!/bin/sh
# DeepFaceLab step 3_optional_denoise_data_dst_images: runs dfl on the workspace next to this folder ($DFL_WORKSPACE overrides it).
DFL_WORKSPACE="${DFL_WORKSPACE:-$(dirname "$0")/../workspace}" exec dfl denoise-frames dst "$@"
