/*  build - see build.h */
#include "base/build.h"

#ifndef LMP_BUILD_ID
#define LMP_BUILD_ID "lmpress (unknown build)"
#endif

const char *lmp_build_id(void) {
    return LMP_BUILD_ID;
}
