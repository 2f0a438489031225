#!/bin/sh
# DeepFaceLab step 2_extract_images_from_video_data_src: runs dfl on the workspace next to this folder ($DFL_WORKSPACE overrides it).
DFL_WORKSPACE="${DFL_WORKSPACE:-$(dirname "$0")/../workspace}" exec dfl extract-frames src "$@"
