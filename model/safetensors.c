/*  safetensors - see safetensors.h */
#include "model/safetensors.h"

#include <cjson/cJSON.h> /* defines: cJSON_ParseWithLengthOpts, cJSON */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every dtype name the format defines, with its element size in bytes, and the
 * lmpress dtype when we can compute with it. */
static const struct {
    const char *name;
    int         bytes;
    int         lmp; /* enum lmp_dtype, or -1 */
} st_dtypes[] = {
    {"F32", 4, LMP_DTYPE_F32},
    {"F16", 2, LMP_DTYPE_F16},
    {"BF16", 2, LMP_DTYPE_BF16},
    {"F64", 8, -1},
    {"I64", 8, -1},
    {"U64", 8, -1},
    {"I32", 4, -1},
    {"U32", 4, -1},
    {"I16", 2, -1},
    {"U16", 2, -1},
    {"I8", 1, -1},
    {"U8", 1, -1},
    {"BOOL", 1, -1},
    {"F8_E4M3", 1, -1},
    {"F8_E5M2", 1, -1},
    {"F8_E8M0", 1, -1},
};

/* A JSON number that is a non-negative integer exactly representable in a double
 * (cJSON's valueint saturates at 2^31-1, so offsets past 2 GiB need valuedouble). */
static int json_u53(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0.0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int cmp_name(const void *a, const void *b) {
    const struct lmp_st_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* One entry "name": {"dtype": ..., "shape": [...], "data_offsets": [b, e]}. */
static enum lmp_status parse_entry(const cJSON *e, const char *name, uint64_t data_size,
                                   struct lmp_st_tensor *t, struct lmp_err *err) {
    const char *key = e->string;
    if (strlen(key) >= sizeof(t->name))
        return lmp_err_set(err, LMP_EFORMAT, "'%s': tensor name too long (%zu bytes): '%.60s...'",
                           name, strlen(key), key);
    snprintf(t->name, sizeof(t->name), "%s", key);
    if (!cJSON_IsObject(e))
        return lmp_err_set(err, LMP_EFORMAT, "'%s': tensor '%s': entry is not an object", name,
                           key);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || dt->valuestring == NULL)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': tensor '%s': missing or non-string dtype", name,
                           key);
    if (!cJSON_IsArray(sh))
        return lmp_err_set(err, LMP_EFORMAT, "'%s': tensor '%s': missing or non-array shape", name,
                           key);
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': tensor '%s': data_offsets is not a [begin, end] pair", name, key);

    int elem_bytes = 0;
    t->unsup       = "dtype";
    for (size_t i = 0; i < sizeof(st_dtypes) / sizeof(st_dtypes[0]); i++) {
        if (strcmp(dt->valuestring, st_dtypes[i].name) != 0) continue;
        elem_bytes = st_dtypes[i].bytes;
        if (st_dtypes[i].lmp >= 0) {
            t->dtype = (enum lmp_dtype)st_dtypes[i].lmp;
            t->unsup = NULL;
        }
        break;
    }
    snprintf(t->dtype_name, sizeof(t->dtype_name), "%s", dt->valuestring);

    /* shape: the element count must not overflow, whatever the rank */
    const uint64_t limit  = UINT64_C(1) << 60;
    uint64_t       n_elem = 1;
    int            n_dims = 0;
    const cJSON   *d;
    cJSON_ArrayForEach(d, sh) {
        uint64_t v;
        if (!json_u53(d, &v))
            return lmp_err_set(err, LMP_EFORMAT,
                               "'%s': tensor '%s': shape entry %d is not a non-negative integer",
                               name, key, n_dims);
        if (v > 0 && n_elem > limit / v)
            return lmp_err_set(err, LMP_EFORMAT, "'%s': tensor '%s': shape is too large", name,
                               key);
        n_elem *= v;
        if (n_dims < LMP_MAX_DIMS) t->shape[n_dims] = (int64_t)v;
        n_dims++;
    }
    t->n_dims = n_dims;
    if (n_dims > LMP_MAX_DIMS && t->unsup == NULL) t->unsup = "rank";

    uint64_t b, en;
    if (!json_u53(cJSON_GetArrayItem(of, 0), &b) || !json_u53(cJSON_GetArrayItem(of, 1), &en))
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': tensor '%s': data_offsets are not non-negative integers", name,
                           key);
    if (b > en || en > data_size)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': tensor '%s': data_offsets [%llu, %llu] outside the data section "
                           "(%llu bytes)",
                           name, key, (unsigned long long)b, (unsigned long long)en,
                           (unsigned long long)data_size);
    t->begin = b;
    t->end   = en;
    if (elem_bytes > 0 && en - b != n_elem * (uint64_t)elem_bytes)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': tensor '%s': %llu bytes in data_offsets, but shape and dtype %s "
                           "need %llu",
                           name, key, (unsigned long long)(en - b), t->dtype_name,
                           (unsigned long long)(n_elem * (uint64_t)elem_bytes));
    return LMP_OK;
}

enum lmp_status lmp_safetensors_parse_header(const uint8_t *data, size_t size, const char *name,
                                             struct lmp_safetensors *out, struct lmp_err *err) {
    memset(out, 0, sizeof(*out));
    if (size < 8)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': truncated: safetensors file has %zu bytes, less than the 8-byte "
                           "header length",
                           name, size);
    uint64_t n_hdr = 0;
    for (int i = 7; i >= 0; i--) n_hdr = n_hdr << 8 | data[i];
    if (n_hdr > size - 8)
        return lmp_err_set(err, LMP_EFORMAT,
                           "'%s': truncated: safetensors header length %llu beyond the file "
                           "(%zu bytes)",
                           name, (unsigned long long)n_hdr, size);
    if (n_hdr > LMP_SAFETENSORS_MAX_HEADER || n_hdr < 2)
        return lmp_err_set(err, LMP_EFORMAT, "'%s': implausible safetensors header length %llu",
                           name, (unsigned long long)n_hdr);
    out->data_offset = 8 + n_hdr;
    out->data_size   = size - out->data_offset;

    const char     *json = (const char *)data + 8;
    const char     *end  = NULL;
    enum lmp_status st   = LMP_OK;
    cJSON          *root = cJSON_ParseWithLengthOpts(json, (size_t)n_hdr, &end, 0);
    if (root == NULL || !cJSON_IsObject(root)) {
        st = lmp_err_set(err, LMP_EFORMAT, "'%s': safetensors header is not a JSON object", name);
        goto out;
    }
    /* writers pad the header with spaces to align the data section */
    for (const char *p = end; p < json + n_hdr; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            st = lmp_err_set(err, LMP_EFORMAT,
                             "'%s': safetensors header has trailing bytes after the JSON object",
                             name);
            goto out;
        }
    }

    int64_t      n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) n++;
    if (n > 0 && (out->tensors = calloc((size_t)n, sizeof(*out->tensors))) == NULL) {
        st = lmp_err_set(err, LMP_ENOMEM, "out of memory parsing '%s'", name);
        goto out;
    }
    cJSON_ArrayForEach(e, root) {
        if (e->string == NULL) { /* cannot happen for a parsed object */
            st = lmp_err_set(err, LMP_EFORMAT, "'%s': unnamed safetensors entry", name);
            goto out;
        }
        if (strcmp(e->string, "__metadata__") == 0) continue;
        struct lmp_st_tensor *t = &out->tensors[out->n_tensors];
        if ((st = parse_entry(e, name, out->data_size, t, err)) != LMP_OK) goto out;
        out->n_tensors++;
    }

    /* duplicate names (JSON allows them; a "\u0000" can also make two names equal) */
    if (out->n_tensors > 1) {
        const struct lmp_st_tensor **sorted = malloc((size_t)out->n_tensors * sizeof(*sorted));
        if (sorted == NULL) {
            st = lmp_err_set(err, LMP_ENOMEM, "out of memory parsing '%s'", name);
            goto out;
        }
        for (int64_t i = 0; i < out->n_tensors; i++) sorted[i] = &out->tensors[i];
        qsort(sorted, (size_t)out->n_tensors, sizeof(*sorted), cmp_name);
        for (int64_t i = 1; i < out->n_tensors && st == LMP_OK; i++)
            if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0)
                st = lmp_err_set(err, LMP_EFORMAT, "'%s': duplicate tensor '%s'", name,
                                 sorted[i]->name);
        free(sorted);
    }
out:
    cJSON_Delete(root);
    return st;
}

void lmp_safetensors_release(struct lmp_safetensors *st) {
    if (st == NULL) return;
    free(st->tensors);
    memset(st, 0, sizeof(*st));
}

const struct lmp_st_tensor *lmp_safetensors_find(const struct lmp_safetensors *st,
                                                 const char                   *name) {
    for (int64_t i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}
