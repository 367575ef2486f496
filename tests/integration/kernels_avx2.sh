#!/usr/bin/env bash
# kernels_avx2 - the avx2 kernel table (CPUs with AVX2 + FMA, without AVX-512) gives the
# avx512 table's artifact: `lmpress compress` of stories260K with LMP_KERNELS=avx2 and
# LMP_KERNELS=avx512 (independent 2x6g8; sequential 2x6g4 with fine-tuning) gives
# identical datasets, and `lmpress eval` the same perplexity within 1e-6 with either table.
# The AVX2 variants do the AVX-512 variants' operations lane for lane (docs/kernels.md
# "AVX2"). Needs a CPU that runs both tables (AVX-512 F/BW/VL, AVX2, FMA); elsewhere it is
# skipped, in CI too: the CPU, not the setup, lacks the second table.
set -u
. "$(dirname "$0")/lib.bash"
for f in avx2 fma avx512f avx512bw avx512vl; do
    grep -qw "$f" /proc/cpuinfo 2> /dev/null || { echo "skip: the CPU lacks $f"; exit 77; }
done
lmp_need_stories
lmp_need_cmds h5diff h5dump
lmp_workdir
head -c 120000 "$TXT" > cal.txt
tail -c 50000 "$TXT" > eval.txt
MOD=(--model "$M/stories260K.bin" --tokenizer "$M/tok512.bin")
CAL=(--calib cal.txt --nsamples 12 --ctx 96 --max-rounds 4 --adam-steps 50 --seed 5 --threads 2)

for job in ind_g8 seq_g4; do
    args=(--scheme 2x6g8 --keep '*.down_proj' --mode independent)
    [ $job = seq_g4 ] &&
        args=(--scheme 2x6g4 --keep '*.down_proj' --mode sequential --finetune --ft-epochs 1)
    for k in avx512 avx2; do
        LMP_KERNELS=$k "$LMPRESS" compress "${MOD[@]}" "${CAL[@]}" "${args[@]}" \
            --out "$job-$k.h5" > "$job-$k.out" 2>&1 || { bad "$job $k"; tail -3 "$job-$k.out"; }
        ! grep -q "not a kernel table" "$job-$k.out" || bad "$job: LMP_KERNELS=$k not taken"
    done
    r=$(same_layers "$job-avx512.h5" "$job-avx2.h5") || bad "$job: avx2 artifact differs: $r"
    echo "$job: $r"
done

declare -A p
for k in avx512 avx2; do
    p[$k]=$(LMP_KERNELS=$k "$LMPRESS" eval --artifact seq_g4-avx2.h5 --text eval.txt --ctx 128 \
        --threads 2 --json 2> /dev/null | sed -n 's/.*"ppl":\([^,]*\).*/\1/p')
done
echo "eval ppl: avx512 table ${p[avx512]}, avx2 table ${p[avx2]}"
near "${p[avx2]}" "${p[avx512]}" 1e-6 || bad "eval ppl avx2 '${p[avx2]}' != avx512 '${p[avx512]}'"

exit $fail
