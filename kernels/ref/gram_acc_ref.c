/*  gram_acc_ref - accumulate the Gram matrix of a layer's inputs
 *
 *      h[a, b] += sum_t x[t, a] * x[t, b]        (h = X^T X, symmetric)
 *
 *  Products of two floats are exact in double, and the sums are taken in double so
 *  that millions of calibration tokens do not drift.
 */
#include "kernels/kernels.h"

void lmp_gram_acc_ref(double      *h, /* (n_in, n_in) in/out */
                      const float *x, /* (n_tok, n_in) */
                      int64_t n_tok, int64_t n_in) {
    for (int64_t a = 0; a < n_in; a++) {
        for (int64_t b = a; b < n_in; b++) {
            double s = 0.0;
            for (int64_t t = 0; t < n_tok; t++)
                s += (double)x[t * n_in + a] * (double)x[t * n_in + b];
            h[a * n_in + b] += s;
            if (b != a) h[b * n_in + a] += s;
        }
    }
}
