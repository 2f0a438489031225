#!/bin/sh
# DeepFaceLab step 3_extract_images_from_video_data_dst_full_fps: runs dfl on the workspace next to this folder ($DFL_WORKSPACE overrides it).
DFL_WORKSPACE="${DFL_WORKSPACE:-$(dirname "$0")/../workspace}" exec dfl extract-frames dst --fps 0 "$@"
