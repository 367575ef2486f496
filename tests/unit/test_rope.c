/*  test_rope - RoPE frequencies of every variant (model/rope.h) against the published formulas
 *
 *  Expected values were computed in Python (float64) from Hugging Face's modeling_rope_utils
 *  formulas, written out independently of lmpress:
 *
 *      import math
 *      def base(theta, d): return [theta ** (-(2*i)/d) for i in range(d//2)]
 *      def llama3(theta, d, factor, lo, hi, orig):
 *          out = []
 *          for f in base(theta, d):
 *              wl = 2*math.pi/f
 *              if wl < orig/hi: out.append(f)
 *              elif wl > orig/lo: out.append(f/factor)
 *              else:
 *                  s = (orig/wl - lo)/(hi - lo); out.append((1-s)*f/factor + s*f)
 *          return out
 *      def yarn(theta, d, factor, orig, bf=32, bs=1):
 *          def cd(r): return d*math.log(orig/(r*2*math.pi))/(2*math.log(theta))
 *          low = max(math.floor(cd(bf)), 0); high = min(math.ceil(cd(bs)), d-1)
 *          if low == high: high += 0.001
 *          out = []
 *          for i, f in enumerate(base(theta, d)):
 *              ramp = min(max((i-low)/(high-low), 0), 1); extra = 1 - ramp
 *              out.append(f/factor*(1-extra) + f*extra)
 *          return out, 0.1*math.log(factor) + 1
 *      print(llama3(500000.0, 16, 8.0, 1.0, 4.0, 8192)); print(yarn(10000.0, 16, 4.0, 2048))
 *
 *  The llama3 case puts pairs in all three bands (kept, smoothed, divided); the YaRN case has
 *  pairs below, inside and above the ramp. (The forward pass's use of these tables is
 *  checked by test_gemma3 against a direct implementation.)
 */
#include "model/rope.h"
#include "model/model.h"
#include "tests/check.h" /* defines: CHECK, CHECK_NEAR, RUN, check_report */

#include <math.h>
#include <string.h>

static struct lmp_config plain(float theta, int32_t head_dim) {
    struct lmp_config c;
    memset(&c, 0, sizeof(c));
    c.head_dim   = head_dim;
    c.rope_theta = theta;
    return c;
}

static void check_rel(const double *got, const double *want, int n, double tol) {
    for (int i = 0; i < n; i++) {
        double rel = fabs(got[i] - want[i]) / fabs(want[i]);
        if (rel > tol) fprintf(stderr, "  [%d] got %.17g want %.17g\n", i, got[i], want[i]);
        CHECK(rel <= tol);
    }
}

static void test_rope_plain_is_theta_power(void) {
    struct lmp_config c = plain(10000.0f, 8);
    double            inv[4], ms = 0;
    lmp_rope_freqs(&c, false, inv, &ms);
    static const double want[4] = {1, 0.1, 0.01, 0.001};
    check_rel(inv, want, 4, 1e-14);
    CHECK(ms == 1.0);
}

static void test_rope_linear_divides_by_factor(void) {
    struct lmp_config c = plain(10000.0f, 8);
    c.rope_scaling      = LMP_ROPE_SCALING_LINEAR;
    c.rope_factor       = 4.0f;
    double inv[4], ms = 0;
    lmp_rope_freqs(&c, false, inv, &ms);
    static const double want[4] = {0.25, 0.025, 0.0025, 0.00025};
    check_rel(inv, want, 4, 1e-14);
    CHECK(ms == 1.0);
    lmp_rope_freqs(&c, true, inv, &ms); /* a local layer is never scaled */
    static const double local[4] = {1, 0.1, 0.01, 0.001};
    check_rel(inv, local, 4, 1e-14);
}

static void test_rope_llama3_matches_python(void) {
    struct lmp_config c     = plain(500000.0f, 16);
    c.rope_scaling          = LMP_ROPE_SCALING_LLAMA3;
    c.rope_factor           = 8.0f;
    c.rope_low_freq_factor  = 1.0f;
    c.rope_high_freq_factor = 4.0f;
    c.rope_orig_max_seq     = 8192;
    double inv[8], ms = 0;
    lmp_rope_freqs(&c, false, inv, &ms);
    static const double want[8] = {1,
                                   0.19392274474868576,
                                   0.037606030930863933,
                                   0.0072926647372171093,
                                   0.00052484616099295468,
                                   3.4281021959525912e-05,
                                   6.6478698711812354e-06,
                                   1.2891731721515574e-06};
    check_rel(inv, want, 8, 1e-12);
    CHECK(ms == 1.0);
}

static void test_rope_yarn_matches_python(void) {
    struct lmp_config c = plain(10000.0f, 16);
    c.rope_scaling      = LMP_ROPE_SCALING_YARN;
    c.rope_factor       = 4.0f;
    c.rope_orig_max_seq = 2048;
    c.rope_beta_fast    = 32.0f;
    c.rope_beta_slow    = 1.0f;
    double inv[8], ms = 0;
    lmp_rope_freqs(&c, false, inv, &ms);
    static const double want[8] = {1,
                                   0.31622776601683794,
                                   0.10000000000000001,
                                   0.02569350598886808,
                                   0.0062500000000000003,
                                   0.001383496476323666,
                                   0.00025000000000000001,
                                   7.9056941504209485e-05};
    check_rel(inv, want, 8, 1e-12);
    CHECK_NEAR(ms, 1.1386294361119891, 1e-12);
    c.rope_attn_factor = 1.5f; /* given: replaces 0.1 ln(factor) + 1 */
    lmp_rope_freqs(&c, false, inv, &ms);
    CHECK(ms == 1.5);
}

static void test_rope_freq_factors_divide(void) {
    struct lmp_config  c     = plain(10000.0f, 8);
    static const float ff[4] = {1.0f, 2.0f, 4.0f, 8.0f};
    c.rope_freq_factors      = ff;
    double inv[4], ms = 0;
    lmp_rope_freqs(&c, false, inv, &ms);
    static const double want[4] = {1, 0.05, 0.0025, 0.000125};
    check_rel(inv, want, 4, 1e-14);
}

static void test_rope_partial_dims_and_local(void) {
    struct lmp_config c = plain(1e6f, 16);
    c.rope_dims         = 8; /* the first 8 of 16 dimensions rotate, by theta^(-2i/8) */
    CHECK(lmp_rope_n_dims(&c) == 8);
    double inv[4], ms = 0;
    lmp_rope_freqs(&c, false, inv, &ms);
    static const double want[4] = {1, 0.031622776601683791, 0.001, 3.1622776601683795e-05};
    check_rel(inv, want, 4, 1e-13);
    /* Gemma 3: local layers every block but each 6th, with their own base */
    c.swa_pattern      = 6;
    c.sliding_window   = 512;
    c.rope_theta_local = 10000.0f;
    for (int b = 0; b < 12; b++) CHECK(lmp_rope_block_is_local(&c, b) == ((b + 1) % 6 != 0));
    lmp_rope_freqs(&c, true, inv, &ms);
    static const double local[4] = {1, 0.1, 0.01, 0.001};
    check_rel(inv, local, 4, 1e-14);
    c.sliding_window = 0; /* no window: no local layers */
    CHECK(!lmp_rope_block_is_local(&c, 0));
}

int main(void) {
    RUN(test_rope_plain_is_theta_power);
    RUN(test_rope_linear_divides_by_factor);
    RUN(test_rope_llama3_matches_python);
    RUN(test_rope_yarn_matches_python);
    RUN(test_rope_freq_factors_divide);
    RUN(test_rope_partial_dims_and_local);
    return check_report();
}
