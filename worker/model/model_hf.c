/*  model_hf - placeholder until the hf reader lands */
#include "worker/model/model.h"

enum lmp_status lmp_model_open_hf(const char *path, struct lmp_model **out, struct lmp_err *err) {
    *out = NULL;
    return lmp_err_set(err, LMP_EUNSUP, "'%s': hf models are not supported yet", path);
}
