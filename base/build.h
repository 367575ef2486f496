/*  build - what of this build changes the numbers a job computes
 *
 *  Two builds of the same source can give different codebooks for the same job: the
 *  optimisation level and flags (Debug -O0 vs Release -O3, -march=native) change the
 *  order and fusing of floating-point operations. An artifact records the build that
 *  wrote it and a resume by another build is refused (artifact/artifact.h), so one
 *  artifact never mixes layers of two builds.
 *
 *  The id is "lmpress VERSION BUILD_TYPE COMPILER_ID COMPILER_VERSION FLAGS", set by
 *  base/CMakeLists.txt at configure time; FLAGS are the C flags of the build type and
 *  the options that change code generation (-march=native, CUDA). Warnings, sanitizers
 *  and MPI do not change the numbers and are left out.
 */
#ifndef LMP_BASE_BUILD_H
#define LMP_BASE_BUILD_H

/* The build id (see the file comment); a static string. */
const char *lmp_build_id(void);

#endif /* LMP_BASE_BUILD_H */
