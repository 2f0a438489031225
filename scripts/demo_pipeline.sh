#!/bin/sh
# The whole DeepFaceLab workflow on the offline demo workspace, one command after another:
# demo videos -> clear -> frames -> faces -> a short Quick96 training -> merge -> result.mp4.
# Usage: scripts/demo_pipeline.sh [WORKSPACE] [TRAIN_ITERATIONS]   (defaults: ./demo_workspace, 300)
# A real swap needs hours of training; a few hundred iterations only show that every step works.
set -e
WS="${1:-demo_workspace}"
ITERS="${2:-300}"
dfl demo -w "$WS" --overwrite
dfl clear -w "$WS" --yes
dfl extract-frames src -w "$WS"
dfl extract-frames dst -w "$WS"
dfl extract-faces src -w "$WS" --non-interactive
dfl extract-faces dst -w "$WS" --non-interactive
dfl train -w "$WS" --model Quick96 --name demo --non-interactive --target-iter "$ITERS"
dfl merge -w "$WS" --model Quick96 --name demo --non-interactive --mode overlay \
    --mask-mode 'learned-prd*learned-dst' --color-transfer rct
dfl video -w "$WS"
echo "demo: done -> $WS/result.mp4"
