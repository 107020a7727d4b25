/* The mLSTM's matrix memory in its parallel form, stabilised (xLSTM, Beck et al., 2024), in
 * C: forward and backward, one call each.
 *
 * Built with the other native engines into one library by ntm/engines/native and called
 * through ctypes from ntm/engines/native/mlstm.py. For every sequence b and head, with the
 * forget gates' running sums F_0 = 0, F_{t+1} = F_t + log sigmoid(f_t),
 *
 *     L[t, s] = F_{t+1} - F_{s+1} + i_s          (s <= t; no term for s > t)
 *     m_t     = max_s L[t, s]
 *     C[t, s] = (q_t . k_s / sqrt(DH)) exp(L[t, s] - m_t)
 *     n_t     = max(|sum_s C[t, s]|, exp(-m_t))
 *     h_t     = sum_s C[t, s] v_s / (n_t + eps)
 *
 * which is what the xlstm package's parallel_stabilized_simple computes. PyTorch builds
 * the (T, T) matrices of every head as a dozen tensors, each a pass over memory; here a
 * row t at a time stays in the cache. The forward pass keeps the row sums; the
 * backward pass computes each row again. The gradient of m_t goes, as torch.max's does, to
 * the first s where L[t, s] is largest; h_t depends on m_t through eps alone, so that
 * gradient is of the order of eps and no comparison with the package in float64 can see
 * it.
 *
 * Dimension legend: B batch, T time, NH heads, DH a head's width. Arrays are float32,
 * row-major and contiguous; the caller allocates them all. */

#include "kernels.h"

typedef struct {
    int B, T, NH, DH;
    float eps;
} CellDims;

enum {
    MF_Q,     /* (B, T, NH, DH) */
    MF_K,     /* (B, T, NH, DH) */
    MF_V,     /* (B, T, NH, DH) */
    MF_GATES, /* (B, T, 2 NH): the input gates' pre-activations, then the forget gates' */
    MF_H,     /* out (B, T, NH, DH) */
    MF_SUM,   /* out (B, NH, T): sum_s C[t, s] */
    MF_WORK,  /* workspace (2 (T + 1)) */
    MF_COUNT
};

int mlstm_cell_forward_pointers(void) { return MF_COUNT; }

static inline float log_sigmoid(float x) { return x < 0.0f ? x - log1pf(expf(x)) : -log1pf(expf(-x)); }

static inline float dot(int n, const float *restrict a, const float *restrict b) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) sum += a[i] * b[i];
    return sum;
}

/* y += a x */
static inline void axpy(int n, float a, const float *restrict x, float *restrict y) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* The running sums F of head j of sequence b's forget gates into F (T + 1). */
static void forget_sums(const CellDims *d, const float *gates, int b, int j, float *F) {
    const int T = d->T, NH = d->NH;
    F[0] = 0.0f;
    for (int t = 0; t < T; t++)
        F[t + 1] = F[t] + log_sigmoid(gates[((idx)b * T + t) * 2 * NH + NH + j]);
}

/* Row t's exponents L[t, s] for s <= t into L, and their maximum (the first where tied). */
static float exponents(const CellDims *d, const float *gates, int b, int j, int t,
                       const float *F, float *L, int *at) {
    const int T = d->T, NH = d->NH;
    float best = -INFINITY;
    for (int s = 0; s <= t; s++) {
        L[s] = F[t + 1] - F[s + 1] + gates[((idx)b * T + s) * 2 * NH + j];
        if (L[s] > best) {
            best = L[s];
            *at = s;
        }
    }
    return best;
}

int mlstm_cell_forward(const CellDims *d, void **p) {
    const int B = d->B, T = d->T, NH = d->NH, DH = d->DH;
    const float *q = p[MF_Q], *k = p[MF_K], *v = p[MF_V], *gates = p[MF_GATES];
    float *h = p[MF_H], *sums = p[MF_SUM];
    float *F = p[MF_WORK], *row = F + T + 1;
    const float scale = 1.0f / sqrtf((float)DH);
    const idx step = (idx)NH * DH; /* from one time step to the next */
    for (int b = 0; b < B; b++)
        for (int j = 0; j < NH; j++) {
            const idx base = (idx)b * T * step + (idx)j * DH;
            forget_sums(d, gates, b, j, F);
            for (int t = 0; t < T; t++) {
                int at = 0;
                const float m = exponents(d, gates, b, j, t, F, row, &at);
                const float *qt = q + base + t * step;
                for (int s = 0; s <= t; s++) row[s] = expf(row[s] - m); /* 8 at a time */
                float sum = 0.0f;
                for (int s = 0; s <= t; s++) {
                    row[s] *= dot(DH, qt, k + base + s * step) * scale;
                    sum += row[s];
                }
                const float norm = fmaxf(fabsf(sum), expf(-m)) + d->eps;
                float *ht = h + base + t * step;
                for (int i = 0; i < DH; i++) ht[i] = 0.0f;
                for (int s = 0; s <= t; s++) axpy(DH, row[s] / norm, v + base + s * step, ht);
                sums[((idx)b * NH + j) * T + t] = sum;
            }
        }
    return 0;
}

/* The backward pass takes the forward pass's pointers, MF_H unused and MF_WORK larger
 * (5 (T + 1)), then these. */
enum {
    MB_GH = MF_COUNT, /* (B, T, NH, DH): the gradient of h */
    MB_GQ,            /* out (B, T, NH, DH) */
    MB_GK,            /* out (B, T, NH, DH) */
    MB_GV,            /* out (B, T, NH, DH) */
    MB_GGATES,        /* out (B, T, 2 NH) */
    MB_COUNT
};

int mlstm_cell_backward_pointers(void) { return MB_COUNT; }

int mlstm_cell_backward(const CellDims *d, void **p) {
    const int B = d->B, T = d->T, NH = d->NH, DH = d->DH;
    const float *q = p[MF_Q], *k = p[MF_K], *v = p[MF_V], *gates = p[MF_GATES];
    const float *sums = p[MF_SUM], *gh = p[MB_GH];
    float *gq = p[MB_GQ], *gk = p[MB_GK], *gv = p[MB_GV], *ggates = p[MB_GGATES];
    float *F = p[MF_WORK], *L = F + T + 1, *S = L + T + 1, *D = S + T + 1, *gF = D + T + 1;
    const float scale = 1.0f / sqrtf((float)DH);
    const idx step = (idx)NH * DH;
    const size_t all = sizeof(float) * (size_t)B * T * step;
    memset(gq, 0, all);
    memset(gk, 0, all);
    memset(gv, 0, all);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < NH; j++) {
            const idx base = (idx)b * T * step + (idx)j * DH;
            float *gi = ggates + (idx)b * T * 2 * NH + j, *gf = gi + NH; /* stride 2 NH */
            forget_sums(d, gates, b, j, F);
            for (int t = 0; t <= T; t++) gF[t] = 0.0f;
            for (int t = 0; t < T; t++) gi[(idx)t * 2 * NH] = 0.0f;
            for (int t = 0; t < T; t++) {
                int at = 0;
                const float m = exponents(d, gates, b, j, t, F, L, &at);
                const float sum = sums[((idx)b * NH + j) * T + t];
                const float floor = expf(-m), norm = fmaxf(fabsf(sum), floor) + d->eps;
                const float *qt = q + base + t * step, *ght = gh + base + t * step;
                float *gqt = gq + base + t * step;
                /* h_t = sum_s C[t, s] v_s / norm: the gradients of C's row and of norm */
                float g_norm = 0.0f;
                for (int s = 0; s <= t; s++) D[s] = expf(L[s] - m); /* 8 at a time */
                for (int s = 0; s <= t; s++) {
                    S[s] = dot(DH, qt, k + base + s * step) * scale;
                    const float c = S[s] * D[s];
                    const float *vs = v + base + s * step;
                    const float g_c = dot(DH, ght, vs); /* of C[t, s] / norm */
                    axpy(DH, c / norm, ght, gv + base + s * step);
                    g_norm -= g_c * c / (norm * norm);
                    L[s] = g_c / norm; /* L now holds the gradient of C[t, s], in part */
                }
                /* norm = max(|sum|, exp(-m)) + eps, torch.maximum's gradient: half each
                 * where they tie */
                const float absolute = fabsf(sum);
                const float g_sum = (absolute > floor ? g_norm : absolute == floor ? g_norm / 2 : 0.0f) *
                                    (sum > 0.0f ? 1.0f : sum < 0.0f ? -1.0f : 0.0f);
                float g_m = (absolute < floor ? g_norm : absolute == floor ? g_norm / 2 : 0.0f) * -floor;
                for (int s = 0; s <= t; s++) {
                    const float g_c = L[s] + g_sum;
                    const float g_s = g_c * D[s] * scale; /* of q_t . k_s */
                    const float g_exponent = g_c * S[s] * D[s];
                    axpy(DH, g_s, k + base + s * step, gqt);
                    axpy(DH, g_s, qt, gk + base + s * step);
                    g_m -= g_exponent;
                    L[s] = g_exponent; /* the gradient of L[t, s] */
                }
                L[at] += g_m;
                for (int s = 0; s <= t; s++) {
                    gi[(idx)s * 2 * NH] += L[s];
                    gF[t + 1] += L[s];
                    gF[s + 1] -= L[s];
                }
            }
            /* F_{t+1} = sum_{r <= t} log sigmoid(f_r) */
            float running = 0.0f;
            for (int r = T - 1; r >= 0; r--) {
                running += gF[r + 1];
                const float f = gates[((idx)b * T + r) * 2 * NH + NH + j];
                gf[(idx)r * 2 * NH] = running * sigmoidf(-f);
            }
        }
    return 0;
}
