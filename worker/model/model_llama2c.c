/*  model_llama2c - placeholder until the llama2c reader lands */
#include "worker/model/model.h"

enum lmp_status lmp_model_open_llama2c(const char *path, struct lmp_model **out, struct lmp_err *err) {
    *out = NULL;
    return lmp_err_set(err, LMP_EUNSUP, "'%s': llama2c models are not supported yet", path);
}
