/*  model_gguf - placeholder until the gguf reader lands */
#include "worker/model/model.h"

enum lmp_status lmp_model_open_gguf(const char *path, struct lmp_model **out, struct lmp_err *err) {
    *out = NULL;
    return lmp_err_set(err, LMP_EUNSUP, "'%s': gguf models are not supported yet", path);
}
