/* What the native engines share (ntm_sequence.c, dnc_sequence.c, sam_sequence.c):
 * activations, the softmax, a small matrix product for the controllers' per-step products,
 * an LSTM layer's step forward and backward, and the DNC's and SAM's whole controller step.
 *
 * Every function is static: each engine's file includes this one and gets its own copy. */

#ifndef NTM_KERNELS_H
#define NTM_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Vector versions from glibc's libmvec when the compiler and library offer them; the loops
 * over slots and gates then run 8 at a time. Plain scalar calls otherwise. */
#if defined(NTM_LIBMVEC)
float expf(float) __attribute__((simd("notinbranch")));
float logf(float) __attribute__((simd("notinbranch")));
#endif

typedef ptrdiff_t idx;

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }
static inline float tanh_f(float x) { return 2.0f / (1.0f + expf(-2.0f * x)) - 1.0f; }
/* torch.nn.functional.softplus with its default threshold of 20. */
static inline float softplusf(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
/* Rows b..b+3, columns o..o+8*NV-1: 4 x NV accumulators (12 at most) in registers. */
static inline __attribute__((always_inline)) void block(int NV, int K, const float *restrict x,
                                                        idx xs, const float *restrict w, idx ws,
                                                        float *restrict y, idx ys,
                                                        int accumulate) {
    __m256 c[4][3];
    for (int i = 0; i < 4; i++)
        for (int v = 0; v < NV; v++)
            c[i][v] = accumulate ? _mm256_loadu_ps(y + i * ys + 8 * v) : _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        __m256 wv[3];
        for (int v = 0; v < NV; v++) wv[v] = _mm256_loadu_ps(w + k * ws + 8 * v);
        for (int i = 0; i < 4; i++) {
            __m256 a = _mm256_broadcast_ss(x + i * xs + k);
            for (int v = 0; v < NV; v++) c[i][v] = _mm256_fmadd_ps(a, wv[v], c[i][v]);
        }
    }
    for (int i = 0; i < 4; i++)
        for (int v = 0; v < NV; v++) _mm256_storeu_ps(y + i * ys + 8 * v, c[i][v]);
}
/* Rows b..b+3, the last n < 8 columns: one masked vector per row. */
static void block_tail(int n, int K, const float *restrict x, idx xs, const float *restrict w,
                       idx ws, float *restrict y, idx ys, int accumulate) {
    __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 c[4];
    for (int i = 0; i < 4; i++)
        c[i] = accumulate ? _mm256_maskload_ps(y + i * ys, mask) : _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        __m256 wv = _mm256_maskload_ps(w + k * ws, mask);
        for (int i = 0; i < 4; i++)
            c[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(x + i * xs + k), wv, c[i]);
    }
    for (int i = 0; i < 4; i++) _mm256_maskstore_ps(y + i * ys, mask, c[i]);
}
#define BLOCKED 1
#else
#define BLOCKED 0
#endif

/* Columns from..O of rows from..B, row by row. */
static void gemm_rest(int B, int K, int O, int row_from, int column_from, const float *restrict x,
                      idx xs, const float *restrict w, idx ws, float *restrict y, idx ys,
                      int accumulate) {
    for (int b = 0; b < B; b++) {
        float *yb = y + b * ys;
        int from = b < row_from ? column_from : 0;
        if (!accumulate)
            for (int o = from; o < O; o++) yb[o] = 0.0f;
        for (int k = 0; k < K; k++) {
            float xv = x[b * xs + k];
            const float *wk = w + k * ws;
            for (int o = from; o < O; o++) yb[o] += xv * wk[o];
        }
    }
}

/* y (B x O, row stride ys) = or += x (B x K, row stride xs) @ w (K x O, row stride ws).
 * With AVX2, blocks of 4 rows by 24, 16 or 8 columns stay in registers for the whole k
 * loop; the rest (and everything without AVX2) runs row by row, k outer, columns inner. */
static void gemm(int B, int K, int O, const float *restrict x, idx xs, const float *restrict w,
                 idx ws, float *restrict y, idx ys, int accumulate) {
    int rows = 0, columns = 0;
#if BLOCKED
    rows = B - B % 4;
    for (int b = 0; b < rows; b += 4) {
        const float *xb = x + b * xs;
        float *yb = y + b * ys;
        int o = 0;
        for (; o + 24 <= O; o += 24) block(3, K, xb, xs, w + o, ws, yb + o, ys, accumulate);
        if (o + 16 <= O) {
            block(2, K, xb, xs, w + o, ws, yb + o, ys, accumulate);
            o += 16;
        }
        if (o + 8 <= O) {
            block(1, K, xb, xs, w + o, ws, yb + o, ys, accumulate);
            o += 8;
        }
        if (o < O) block_tail(O - o, K, xb, xs, w + o, ws, yb + o, ys, accumulate);
        columns = O;
    }
#endif
    if (rows == 0) columns = 0; /* nothing blocked: every row from column 0 */
    gemm_rest(B, K, O, rows, columns, x, xs, w, ws, y, ys, accumulate);
}

/* The largest of v[0..n), n >= 1, eight lanes at a time. */
static float max_of(const float *restrict v, int n) {
    float lanes[8], mx = v[0];
    int i = 1;
    if (n >= 8) {
        for (int j = 0; j < 8; j++) lanes[j] = v[j];
        for (i = 8; i + 8 <= n; i += 8)
            for (int j = 0; j < 8; j++) lanes[j] = v[i + j] > lanes[j] ? v[i + j] : lanes[j];
        for (int j = 0; j < 8; j++) mx = lanes[j] > mx ? lanes[j] : mx;
    }
    for (; i < n; i++) mx = v[i] > mx ? v[i] : mx;
    return mx;
}

static void softmax(float *restrict v, int n) {
    float mx = max_of(v, n);
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        v[i] = expf(v[i] - mx);
        sum += v[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) v[i] *= inv;
}

/* An LSTM layer's step for one sequence: the activated gates (4C: input, forget, cell,
 * output, as PyTorch orders them) from their inputs g, the new cell state, its tanh and the
 * new hidden state. */
static void lstm_forward(int C, const float *restrict g, const float *restrict c_prev,
                         float *restrict ga, float *restrict c_new, float *restrict tanhc,
                         float *restrict h_new) {
    for (int j = 0; j < 2 * C; j++) ga[j] = sigmoidf(g[j]);
    for (int j = 2 * C; j < 3 * C; j++) ga[j] = tanh_f(g[j]);
    for (int j = 3 * C; j < 4 * C; j++) ga[j] = sigmoidf(g[j]);
    for (int j = 0; j < C; j++) {
        float c = ga[C + j] * c_prev[j] + ga[j] * ga[2 * C + j];
        float tc = tanh_f(c);
        c_new[j] = c;
        tanhc[j] = tc;
        h_new[j] = ga[3 * C + j] * tc;
    }
}

/* Its backward for one sequence: the gates' input gradients dg (4C), and the cell state's
 * gradient into the previous step (d_c, in place). */
static void lstm_backward(int C, const float *restrict ga, const float *restrict tanhc,
                          const float *restrict c_prev, const float *restrict d_x,
                          const float *restrict d_h, float *restrict d_c, float *restrict dg) {
    for (int j = 0; j < C; j++) {
        float gi = ga[j], gf = ga[C + j], gg = ga[2 * C + j], go = ga[3 * C + j];
        float tc = tanhc[j];
        float d_hi = d_x[j] + d_h[j];
        float d_ci = d_c[j] + d_hi * go * (1.0f - tc * tc);
        dg[j] = d_ci * gg * gi * (1.0f - gi);
        dg[C + j] = d_ci * c_prev[j] * gf * (1.0f - gf);
        dg[2 * C + j] = d_ci * gi * (1.0f - gg * gg);
        dg[3 * C + j] = d_hi * tc * go * (1.0f - go);
        d_c[j] = d_ci * gf;
    }
}

/* The controller of the DNC's and SAM's sequences (dnc_sequence.c, sam_sequence.c) for one
 * step of a batch of B: L LSTM layers of C units, layer i fed its input part pre_in (its
 * input weights applied and biases added), the previous reads (B, RW) through read_wt, the
 * new hidden state of the layer below through below_wt and its own previous one through
 * hh_wt (the weights transposed, (in, 4C)); then the interface vector raw (B, P): if_b
 * plus every layer's new hidden state through if_wt. Layer i's rows lie at i * B * width
 * from each base (hs_prev, cs_prev, hs_new, cs_new, gates, tanhc, pre_in); pre is scratch
 * of B * 4C. */
static inline void controller_forward(int B, int L, int C, int RW, int P,
                                      const float *pre_in, const float *reads,
                                      const float *read_wt, const float *below_wt,
                                      const float *hh_wt, const float *hs_prev,
                                      const float *cs_prev, float *hs_new, float *cs_new,
                                      float *gates, float *tanhc, float *pre,
                                      const float *if_wt, const float *if_b, float *raw) {
    const int G = 4 * C;
    for (int i = 0; i < L; i++) {
        const float *h_prev = hs_prev + (idx)i * B * C, *c_prev = cs_prev + (idx)i * B * C;
        float *h_new = hs_new + (idx)i * B * C, *c_new = cs_new + (idx)i * B * C;
        float *ga = gates + (idx)i * B * G, *tc = tanhc + (idx)i * B * C;
        memcpy(pre, pre_in + (idx)i * B * G, sizeof(float) * B * G);
        gemm(B, RW, G, reads, RW, read_wt + (idx)i * RW * G, G, pre, G, 1);
        if (i > 0)
            gemm(B, C, G, h_new - (idx)B * C, C, below_wt + (idx)(i - 1) * C * G, G, pre, G, 1);
        gemm(B, C, G, h_prev, C, hh_wt + (idx)i * C * G, G, pre, G, 1);
        for (int b = 0; b < B; b++)
            lstm_forward(C, pre + (idx)b * G, c_prev + (idx)b * C, ga + (idx)b * G,
                         c_new + (idx)b * C, tc + (idx)b * C, h_new + (idx)b * C);
    }
    for (int b = 0; b < B; b++) memcpy(raw + (idx)b * P, if_b, sizeof(float) * P);
    for (int i = 0; i < L; i++)
        gemm(B, C, P, hs_new + (idx)i * B * C, C, if_wt + (idx)i * C * P, P, raw, P, 1);
}

/* Its backward for one step: d_hidden (B, L*C) from the interface's gradient d_raw (B, P)
 * through if_w (P, L*C) plus the output layer's share d_out; then the layers, the top one
 * first, into the gates' gradients d_gates, the hidden and cell states' gradients into the
 * previous step (d_h, d_c: (L, B, C), d_c in place) and the reads' (d_reads (B, RW),
 * overwritten). gates, tanhc, cs_prev and d_gates: the step's, layer i at i * B * width;
 * hh_w, read_w and below_w: the weights as stored, (4C, in). */
static inline void controller_backward(int B, int L, int C, int RW, int P, const float *d_raw,
                                       const float *if_w, const float *d_out, float *d_hidden,
                                       const float *gates, const float *tanhc,
                                       const float *cs_prev, float *d_gates, float *d_h,
                                       float *d_c, const float *hh_w, const float *read_w,
                                       const float *below_w, float *d_reads) {
    const int G = 4 * C, LC = L * C;
    gemm(B, P, LC, d_raw, P, if_w, LC, d_hidden, LC, 0);
    for (idx j = 0; j < (idx)B * LC; j++) d_hidden[j] += d_out[j];
    memset(d_reads, 0, sizeof(float) * B * RW);
    for (int i = L - 1; i >= 0; i--) {
        float *dg = d_gates + (idx)i * B * G;
        float *dh = d_h + (idx)i * B * C, *dc = d_c + (idx)i * B * C;
        const float *ga = gates + (idx)i * B * G, *tc = tanhc + (idx)i * B * C;
        const float *c_prev = cs_prev + (idx)i * B * C;
        for (int b = 0; b < B; b++)
            lstm_backward(C, ga + (idx)b * G, tc + (idx)b * C, c_prev + (idx)b * C,
                          d_hidden + (idx)b * LC + (idx)i * C, dh + (idx)b * C, dc + (idx)b * C,
                          dg + (idx)b * G);
        gemm(B, G, C, dg, G, hh_w + (idx)i * G * C, C, dh, C, 0);
        gemm(B, G, RW, dg, G, read_w + (idx)i * G * RW, RW, d_reads, RW, 1);
        if (i > 0)
            gemm(B, G, C, dg, G, below_w + (idx)(i - 1) * G * C, C, d_hidden + (idx)(i - 1) * C,
                 LC, 1);
    }
}

static void clamp_copy(const float *src, float *dst, int n, float bound) {
    for (int i = 0; i < n; i++) {
        float v = src[i];
        if (bound > 0.0f) v = v < -bound ? -bound : (v > bound ? bound : v);
        dst[i] = v;
    }
}

#endif
