#!/usr/bin/env bash
# The main job on the default model: compress SmolLM2-135M-Instruct with AQLM (sequential
# calibration, block fine-tuning), PV-Tuning against the original (docs/pv-tuning.md), then
# the WikiText-2 perplexity (ctx 512) of the original and of the compressed model before and
# after PV-Tuning, measured the same way.
# Run deploy/setup.sh first. Environment (all optional):
#   SCHEME       AQLM scheme (default 2x8g8, ~2.15 bits per linear weight; 2x8g4 is ~4.1 bits
#                and beats llama.cpp's Q2_K on this model, see docs/results.md)
#   LMP_TEXT     evaluation text (default ../shared/data/wikitext2_test_join.txt)
#   MAX_WINDOWS  evaluation windows of 512 tokens (default 40; "all" for the whole text)
#   LMP_CALIB    calibration text, or "generate" (the model writes its own). Default: the
#                evaluation text from byte 400000 on, general text held out from the
#                evaluated windows (up to 150 of them, about 340 KB); with more windows or
#                "all", generate. Measured (docs/pv-tuning.md, "Calibration and tuning
#                text"): held-out WikiText-2 text gave ppl 107, self-generated 184, the
#                TinyStories sample 810, the same quick compression evaluated on 40 windows.
#   LMP_PV_DATA  PV-Tuning text (default the same held-out text; where there is none,
#                "generate": windows the original model writes; never the evaluated text).
#                Measured (docs/pv-tuning.md): 12 tuning steps from the same bad start gave
#                ppl 187 on held-out WikiText-2 text, 330 on generated windows, 440 on the
#                TinyStories sample
#   LMP_OUT      the artifact (default ~/.cache/lmpress/runs/smollm2-SCHEME-seq-ft-pv.h5; the
#                quantized one before PV-Tuning beside it as ...-pv.aqlm.h5); a rerun resumes
#   PV_STEPS     PV-Tuning steps of 4 windows after the compression (default 40; 0: none)
# Extra arguments go to `lmpress compress` (e.g. --threads 4, --ft-epochs 2).
# Wall time on a 2-core machine: about 20-40 minutes for the compression, about 15 for 40
# PV-Tuning steps (4 windows of 512 each, ~90 tokens/s), 1 minute per evaluation of 40 windows.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${LMP_CACHE:-$HOME/.cache/lmpress}
build=${LMP_BUILD_DIR:-$here/build}
lmpress="$build/cli/lmpress"
model="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
text=${LMP_TEXT:-$here/../shared/data/wikitext2_test_join.txt}
scheme=${SCHEME:-2x8g8}
windows=${MAX_WINDOWS:-40}
pv_steps=${PV_STEPS:-40}
out=${LMP_OUT:-$cache/runs/smollm2-$scheme-seq-ft$( [ "$pv_steps" -gt 0 ] && echo -pv || true).h5}
[ -x "$lmpress" ] || { echo "run-default: no lmpress at '$lmpress': run deploy/setup.sh" >&2; exit 4; }
[ -s "$model" ] || { echo "run-default: no model at '$model': run deploy/setup.sh" >&2; exit 4; }
[ -s "$text" ] || { echo "run-default: no text at '$text': set LMP_TEXT to a text file" >&2; exit 4; }
win=(--max-windows "$windows")
[ "$windows" = all ] && win=()
mkdir -p "$(dirname "$out")"
# general text held out from the evaluation: the evaluated text past byte 400000 (150
# windows of 512 tokens are about 340 KB of WikiText-2)
held=
if [ "$windows" != all ] && [ "$windows" -le 150 ] && [ "$(stat -c %s "$text")" -gt 500000 ]; then
    held="$cache/runs/$(basename "$text" .txt).from400000.txt"
    tail -c +400001 "$text" > "$held.part" && mv "$held.part" "$held"
fi
calib=${LMP_CALIB:-${held:-generate}}
if [ "$calib" != generate ] && [ ! -s "$calib" ]; then
    echo "run-default: no calibration text at '$calib': the model generates its own" >&2
    calib=generate
fi

pv=()
if [ "$pv_steps" -gt 0 ]; then
    pv_data=${LMP_PV_DATA:-${held:-generate}}
    [ "$pv_data" = generate ] || [ -s "$pv_data" ] ||
        { echo "run-default: no PV-Tuning text at '$pv_data': set LMP_PV_DATA" >&2; exit 4; }
    pv=(--pv --pv-data "$pv_data" --pv-steps "$pv_steps" --pv-batch 4)
fi
aqlm=${out%.h5}.aqlm.h5
echo "== compress $model -> $out (AQLM $scheme, sequential calibration on $calib, block fine-tuning${pv:+, then $pv_steps PV-Tuning steps on $pv_data})"
"$lmpress" compress --model "$model" --calib "$calib" --nsamples 128 --ctx 512 --scheme "$scheme" \
    --mode sequential --finetune --ft-epochs 1 --out "$out" ${pv[@]+"${pv[@]}"} "$@"
echo "== original model"
"$lmpress" eval --model "$model" --text "$text" --ctx 512 "${win[@]}"
if [ "${#pv[@]}" -gt 0 ]; then
    echo "== compressed model before PV-Tuning ($aqlm)"
    "$lmpress" eval --artifact "$aqlm" --text "$text" --ctx 512 "${win[@]}"
fi
echo "== compressed model"
"$lmpress" eval --artifact "$out" --text "$text" --ctx 512 "${win[@]}"
"$lmpress" inspect "$out" | head -3
