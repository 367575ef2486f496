#!/usr/bin/env bash
# The main job on the default model: WikiText-2 perplexity (ctx 512) of SmolLM2-135M-Instruct.
# Run deploy/setup.sh first. Text: $LMP_TEXT, else ../shared/data/wikitext2_test_join.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${LMP_CACHE:-$HOME/.cache/lmpress}
build=${LMP_BUILD_DIR:-$here/build}
model="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
text=${LMP_TEXT:-$here/../shared/data/wikitext2_test_join.txt}
[ -s "$model" ] || { echo "run-default: no model at '$model': run deploy/setup.sh" >&2; exit 4; }
[ -s "$text" ] || { echo "run-default: no text at '$text': set LMP_TEXT to a text file" >&2; exit 4; }
exec "$build/coordinator/lmpress" eval --model "$model" --text "$text" --ctx 512 "$@"
