/*  gen_wire_seeds - writes the seed corpus of fuzz_wire (a few small packed envelopes)
 *
 *      cmake --build build --target lmp_proto && \
 *      cc -I. -Ibuild -o /tmp/gen_wire_seeds tests/fuzz/gen_wire_seeds.c \
 *          build/proto/liblmp_proto.a build/proto/liblmp_base.a -lprotobuf-c -lzmq && \
 *          /tmp/gen_wire_seeds tests/fuzz/corpus/fuzz_wire
 *
 *  Not built by CMake (only tests/fuzz/fuzz_*.c are); deterministic output. Regenerate
 *  after a protocol change.
 */
#include "proto/wire.h"

#include <stdio.h>
#include <stdlib.h>

static void save(const char *dir, const char *name, const Lmp__Envelope *env) {
    uint8_t       *buf;
    size_t         len;
    struct lmp_err err = {0};
    char           path[1024];
    if (lmp_wire_pack(env, &buf, &len, &err) != LMP_OK) {
        fprintf(stderr, "%s: %s\n", name, err.msg);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    free(buf);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_wire_seeds <dir>\n");
        return 2;
    }
    const char   *dir = argv[1];
    Lmp__Envelope env;

    Lmp__Hello        hello;
    Lmp__Capabilities caps = LMP__CAPABILITIES__INIT;
    Lmp__Gpu          gpu = LMP__GPU__INIT, *gpus[] = {&gpu};
    char             *variants[] = {"ref", "avx512", "cuda"};
    gpu.name                     = "H100";
    gpu.memory_bytes             = 80ull << 30;
    gpu.compute_capability       = 90;
    caps.cores                   = 16;
    caps.memory_bytes            = 128ull << 30;
    caps.hostname                = "node7";
    caps.n_gpus                  = 1;
    caps.gpus                    = gpus;
    caps.n_kernel_variants       = 3;
    caps.kernel_variants         = variants;
    caps.device                  = "cuda:0";
    lmp_wire_hello_init(&env, &hello, 1, LMP__ROLE__ROLE_WORKER, "w7", &caps);
    save(dir, "hello.bin", &env);

    Lmp__HelloAck ack;
    lmp_wire_hello_ack_init(&env, &ack, 1, 1, "coord", "w-7", 1000, 10000, LMP_WIRE_MAX_FRAME);
    save(dir, "hello_ack.bin", &env);

    Lmp__Error eb;
    lmp_wire_error_init(&env, &eb, 9, 8, LMP_EIO, "cannot open '/data/x.gguf'");
    save(dir, "error.bin", &env);

    Lmp__MethodSpec   method = LMP__METHOD_SPEC__INIT;
    Lmp__CalibSpec    calib  = LMP__CALIB_SPEC__INIT;
    Lmp__FinetuneSpec ft     = LMP__FINETUNE_SPEC__INIT;
    Lmp__JobSpec      spec   = LMP__JOB_SPEC__INIT;
    Lmp__JobSubmit    sub    = LMP__JOB_SUBMIT__INIT;
    char             *keep[] = {"output", "*.lm_head"};
    method.method            = LMP__METHOD__METHOD_AQLM;
    method.scheme            = "2x8g8";
    method.beam              = 8;
    calib.source             = LMP__CALIB_SOURCE__CALIB_SOURCE_FILE;
    calib.path               = "wiki.txt";
    calib.nsamples           = 128;
    calib.ctx                = 2048;
    calib.seed               = 7;
    ft.enabled               = 1;
    ft.epochs                = 1;
    ft.lr                    = 1e-5f;
    spec.name                = "smol";
    spec.model_path          = "m.gguf";
    spec.out_path            = "m.h5";
    spec.method              = &method;
    spec.calib               = &calib;
    spec.finetune            = &ft;
    spec.mode                = LMP__MODE__MODE_SEQUENTIAL;
    spec.n_keep              = 2;
    spec.keep                = keep;
    spec.embed_bits          = 4;
    sub.spec                 = &spec;
    lmp_wire_init(&env, 2, 0);
    env.body_case  = LMP__ENVELOPE__BODY_JOB_SUBMIT;
    env.job_submit = &sub;
    save(dir, "job_submit.bin", &env);

    Lmp__BlobRef    ref = LMP__BLOB_REF__INIT;
    Lmp__Blob       in = LMP__BLOB__INIT, *ins[] = {&in};
    Lmp__RowRange   rows = LMP__ROW_RANGE__INIT;
    Lmp__TaskAssign ta   = LMP__TASK_ASSIGN__INIT;
    ref.path             = "/scratch/job1/gram.h5";
    ref.dataset          = "/blk.0/attn_q";
    ref.length           = 4096;
    in.name              = "gram";
    in.where_case        = LMP__BLOB__WHERE_REF;
    in.ref               = &ref;
    rows.begin           = 0;
    rows.end             = 2;
    ta.job_id            = 1;
    ta.task_id           = 3;
    ta.attempt           = 1;
    ta.kind              = LMP__TASK_KIND__TASK_KIND_QUANTIZE_ROWS;
    ta.layer             = "blk.0.attn_q";
    ta.rows              = &rows;
    ta.method            = &method;
    ta.model_path        = "m.gguf";
    ta.n_inputs          = 1;
    ta.inputs            = ins;
    lmp_wire_init(&env, 3, 0);
    env.body_case   = LMP__ENVELOPE__BODY_TASK_ASSIGN;
    env.task_assign = &ta;
    save(dir, "task_assign.bin", &env);

    uint16_t codes[2 * 2 * 2] = {0, 1, 2, 3, 3, 2, 1, 0};
    float    cb[2 * 4 * 2], sc[2] = {0.5f, 2.0f};
    for (int i = 0; i < 16; i++) cb[i] = (float)i / 16.0f;
    uint64_t        sh_codes[3] = {2, 2, 2}, sh_cb[3] = {2, 4, 2}, sh_sc[1] = {2};
    Lmp__Tensor     tc, tcb, ts;
    Lmp__TaskStats  stats = LMP__TASK_STATS__INIT;
    Lmp__TaskResult tr    = LMP__TASK_RESULT__INIT;
    lmp_wire_tensor_init(&tc, "codes", LMP__DTYPE__DTYPE_U16, sh_codes, 3, codes, sizeof(codes));
    lmp_wire_tensor_init(&tcb, "codebooks", LMP__DTYPE__DTYPE_F32, sh_cb, 3, cb, sizeof(cb));
    lmp_wire_tensor_init(&ts, "scales", LMP__DTYPE__DTYPE_F32, sh_sc, 1, sc, sizeof(sc));
    stats.rel_err_before  = 0.2;
    stats.rel_err_after   = 0.05;
    stats.bits_per_weight = 2.02;
    stats.seconds         = 1.5;
    stats.steps           = 100;
    tr.job_id             = 1;
    tr.task_id            = 3;
    tr.attempt            = 1;
    tr.kind               = LMP__TASK_KIND__TASK_KIND_QUANTIZE_ROWS;
    tr.layer              = "blk.0.attn_q";
    tr.rows               = &rows;
    tr.codes              = &tc;
    tr.codebooks          = &tcb;
    tr.codebook_grad      = &tcb;
    tr.scales             = &ts;
    tr.stats              = &stats;
    lmp_wire_init(&env, 4, 3);
    env.body_case   = LMP__ENVELOPE__BODY_TASK_RESULT;
    env.task_result = &tr;
    save(dir, "task_result.bin", &env);

    Lmp__LayerInfo  li = LMP__LAYER_INFO__INIT, *lis[] = {&li, &li};
    Lmp__JobInfo    ji = LMP__JOB_INFO__INIT, *jis[] = {&ji};
    Lmp__WorkerInfo wi = LMP__WORKER_INFO__INIT, *wis[] = {&wi};
    Lmp__JobStatus  js = LMP__JOB_STATUS__INIT;
    li.name            = "blk.0.attn_q";
    li.state           = LMP__TASK_STATE__TASK_STATE_RUNNING;
    li.loss            = 0.1;
    ji.job_id          = 1;
    ji.state           = LMP__JOB_STATE__JOB_STATE_RUNNING;
    ji.eta_s           = 300;
    ji.n_layers        = 2;
    ji.layers          = lis;
    wi.id              = "w-7";
    wi.state           = LMP__WORKER_STATE__WORKER_STATE_BUSY;
    wi.caps            = &caps;
    js.n_jobs          = 1;
    js.jobs            = jis;
    js.n_workers       = 1;
    js.workers         = wis;
    Lmp__TuneInfo ti   = LMP__TUNE_INFO__INIT;
    ti.step            = 3;
    ti.n_steps         = 100;
    ti.kl              = 0.9;
    ti.ranks           = 2;
    ji.tune            = &ti;
    lmp_wire_init(&env, 5, 4);
    env.body_case  = LMP__ENVELOPE__BODY_JOB_STATUS;
    env.job_status = &js;
    save(dir, "job_status.bin", &env);

    /* 1.8: a PV-Tuning job, a rank of it, an int64 sum */
    Lmp__TuneSpec  tune  = LMP__TUNE_SPEC__INIT;
    Lmp__JobSpec   tspec = LMP__JOB_SPEC__INIT;
    Lmp__JobSubmit tsub  = LMP__JOB_SUBMIT__INIT;
    tune.artifact        = "m.aqlm.h5";
    tune.data            = "tail.txt";
    tune.ctx             = 512;
    tune.val_windows     = 2;
    tune.steps           = 100;
    tune.batch           = 8;
    tune.micro           = 1;
    tune.v_every         = 1;
    tune.beam            = 8;
    tune.lr              = 1e-4f;
    tune.code_lr         = 1e-3f;
    tune.code_frac       = 0.01;
    tune.train_norms     = 1;
    tune.seed            = 1;
    tune.checkpoint_s    = 600;
    tune.replicas        = 2;
    tune.stages          = 2;
    tspec.model_path     = "m.gguf";
    tspec.out_path       = "m.h5";
    tspec.tune           = &tune;
    tsub.spec            = &tspec;
    lmp_wire_init(&env, 6, 0);
    env.body_case  = LMP__ENVELOPE__BODY_JOB_SUBMIT;
    env.job_submit = &tsub;
    save(dir, "job_submit_tune.bin", &env);

    Lmp__TaskAssign tta = LMP__TASK_ASSIGN__INIT;
    tta.job_id          = 1;
    tta.task_id         = (UINT64_C(3) << 32) + 1;
    tta.attempt         = 1;
    tta.kind            = LMP__TASK_KIND__TASK_KIND_TUNE;
    tta.model_path      = "m.gguf";
    tta.out_dir         = "m.h5";
    tta.tune            = &tune;
    tta.rank            = 1;
    tta.ranks           = 4;
    lmp_wire_init(&env, 7, 0);
    env.body_case   = LMP__ENVELOPE__BODY_TASK_ASSIGN;
    env.task_assign = &tta;
    save(dir, "task_assign_tune.bin", &env);

    int64_t          ipart[4] = {1, -2, INT64_C(1) << 50, -(INT64_C(1) << 40)};
    Lmp__RowsPartial rp       = LMP__ROWS_PARTIAL__INIT;
    rp.job_id                 = 1;
    rp.task_id                = (UINT64_C(3) << 32) + 1;
    rp.attempt                = 1;
    rp.step                   = 1;
    rp.ipart.data             = (uint8_t *)ipart;
    rp.ipart.len              = sizeof(ipart);
    lmp_wire_init(&env, 8, 0);
    env.body_case    = LMP__ENVELOPE__BODY_ROWS_PARTIAL;
    env.rows_partial = &rp;
    save(dir, "rows_partial_int.bin", &env);
    return 0;
}
