/*  test_safetensors - the safetensors header parser on hand-built images in memory */
#include "model/safetensors.h"
#include "tests/check.h"

/* A file image: 8-byte length, the JSON header verbatim, n_data bytes of data. */
static size_t image(uint8_t *buf, size_t cap, const char *json, size_t n_data) {
    size_t n = strlen(json);
    if (8 + n + n_data > cap) abort();
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, json, n);
    memset(buf + 8 + n, 0, n_data);
    return 8 + n + n_data;
}

static uint8_t buf[8192];

static enum lmp_status parse(const char *json, size_t n_data, struct lmp_safetensors *st,
                             struct lmp_err *err) {
    size_t n = image(buf, sizeof(buf), json, n_data);
    memset(err, 0, sizeof(*err));
    return lmp_safetensors_parse_header(buf, n, "t.safetensors", st, err);
}

static void test_parses_tensors_and_ignores_metadata(void) {
    struct lmp_safetensors st;
    struct lmp_err         err;
    const char            *json = "{\"__metadata__\":{\"format\":\"pt\"},"
                                  "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                                  "\"b.bias\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"
                                  "\"c\":{\"dtype\":\"F16\",\"shape\":[1,2,1,2],\"data_offsets\":[32,40]},"
                                  "\"ids\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[40,64]},"
                                  "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[64,68]},"
                                  "\"r5\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[68,76]},"
                                  "\"f8\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[76,80]},"
                                  "\"odd\":{\"dtype\":\"X9\",\"shape\":[4],\"data_offsets\":[0,3]}}   ";
    CHECK(parse(json, 80, &st, &err) == LMP_OK);
    if (err.msg[0]) fprintf(stderr, "%s\n", err.msg);
    CHECK(st.n_tensors == 8);
    CHECK(st.data_offset == 8 + strlen(json));
    CHECK(st.data_size == 80);
    const struct lmp_st_tensor *a = lmp_safetensors_find(&st, "a");
    CHECK(a && !a->unsup && a->dtype == LMP_DTYPE_F32 && a->n_dims == 2 && a->shape[0] == 2 &&
          a->shape[1] == 3 && a->begin == 0 && a->end == 24);
    const struct lmp_st_tensor *b = lmp_safetensors_find(&st, "b.bias");
    CHECK(b && !b->unsup && b->dtype == LMP_DTYPE_BF16 && b->n_dims == 1 && b->begin == 24);
    const struct lmp_st_tensor *c = lmp_safetensors_find(&st, "c");
    CHECK(c && !c->unsup && c->dtype == LMP_DTYPE_F16 && c->n_dims == 4 && c->shape[3] == 2);
    const struct lmp_st_tensor *ids = lmp_safetensors_find(&st, "ids");
    CHECK(ids && ids->unsup && strcmp(ids->dtype_name, "I64") == 0);
    const struct lmp_st_tensor *s = lmp_safetensors_find(&st, "s");
    CHECK(s && !s->unsup && s->n_dims == 0);
    const struct lmp_st_tensor *r5 = lmp_safetensors_find(&st, "r5");
    CHECK(r5 && r5->unsup && strcmp(r5->unsup, "rank") == 0 && r5->n_dims == 5);
    const struct lmp_st_tensor *f8 = lmp_safetensors_find(&st, "f8");
    CHECK(f8 && f8->unsup && strcmp(f8->dtype_name, "F8_E4M3") == 0);
    const struct lmp_st_tensor *odd = lmp_safetensors_find(&st, "odd"); /* size unknown */
    CHECK(odd && odd->unsup && strcmp(odd->dtype_name, "X9") == 0);
    CHECK(lmp_safetensors_find(&st, "__metadata__") == NULL);
    CHECK(lmp_safetensors_find(&st, "missing") == NULL);
    lmp_safetensors_release(&st);
    CHECK(st.tensors == NULL && st.n_tensors == 0);
    lmp_safetensors_release(&st);

    CHECK(parse("{}", 0, &st, &err) == LMP_OK); /* an empty checkpoint is well-formed */
    CHECK(st.n_tensors == 0);
    lmp_safetensors_release(&st);
}

/* Each malformed header fails with EFORMAT and a message containing the given words. */
static void test_rejects_malformed(void) {
    static const struct {
        const char *json;
        size_t      n_data;
        const char *want;
    } cases[] = {
        {"[]", 0, "not a JSON object"},
        {"{\"a\":", 0, "not a JSON object"},
        {"{} x", 0, "trailing bytes"},
        {"{\"a\":1}", 0, "not an object"},
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape entry 0"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "shape entry"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, "shape entry"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}", 4, "shape entry"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1048576,1048576,1048576,1048576],"
         "\"data_offsets\":[0,4]}}",
         4, "too large"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 4,
         "outside the data section"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 16, "outside"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 16, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16, "need 12"},
        {"{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, "need 8"},
        {"{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,4]}}", 16, "need 8"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "duplicate tensor 'a'"},
        {"{\"a\\u0000x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\\u0000y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "duplicate"},
        /* offsets past 2^31 must not saturate (cJSON's valueint would give 2147483647) */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[3000000000,3000000004]}}", 8,
         "[3000000000, 3000000004]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lmp_safetensors st;
        struct lmp_err         err;
        enum lmp_status        s  = parse(cases[i].json, cases[i].n_data, &st, &err);
        bool                   ok = s == LMP_EFORMAT && strstr(err.msg, cases[i].want) != NULL &&
                  strstr(err.msg, "'t.safetensors'") != NULL;
        if (!ok) fprintf(stderr, "case %zu: %s: %s\n", i, lmp_status_str(s), err.msg);
        CHECK(ok);
        lmp_safetensors_release(&st);
    }
}

static void test_rejects_bad_lengths(void) {
    struct lmp_safetensors st;
    struct lmp_err         err = {0};
    /* shorter than the length field */
    CHECK(lmp_safetensors_parse_header(buf, 0, "t", &st, &err) == LMP_EFORMAT);
    CHECK(strstr(err.msg, "truncated") != NULL);
    lmp_safetensors_release(&st);
    memset(&err, 0, sizeof(err));
    CHECK(lmp_safetensors_parse_header((const uint8_t *)"\x02\0\0\0", 4, "t", &st, &err) ==
          LMP_EFORMAT);
    lmp_safetensors_release(&st);
    /* a header length beyond the file, including values that overflow 8 + n */
    static const uint64_t lens[] = {3, 1000, UINT64_C(1) << 40, UINT64_MAX, UINT64_MAX - 7};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t n = image(buf, sizeof(buf), "{}", 0);
        for (int b = 0; b < 8; b++) buf[b] = (uint8_t)(lens[i] >> (8 * b));
        memset(&err, 0, sizeof(err));
        CHECK(lmp_safetensors_parse_header(buf, n, "t", &st, &err) == LMP_EFORMAT);
        CHECK(strstr(err.msg, "beyond the file") != NULL);
        lmp_safetensors_release(&st);
    }
    /* a zero-length header */
    size_t n = image(buf, sizeof(buf), "", 4);
    memset(&err, 0, sizeof(err));
    CHECK(lmp_safetensors_parse_header(buf, n, "t", &st, &err) == LMP_EFORMAT);
    lmp_safetensors_release(&st);
}

int main(void) {
    RUN(test_parses_tensors_and_ignores_metadata);
    RUN(test_rejects_malformed);
    RUN(test_rejects_bad_lengths);
    return check_report();
}
