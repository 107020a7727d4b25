/* The NTM's recurrence in C: a whole sequence forward, and its backward, in one call each.
 *
 * Built at first use by ntm/native/__init__.py (the system's C compiler, -O3 for this
 * machine) and called through ctypes, so a training step costs two calls instead of
 * hundreds of tensor operations. It computes what ntm/fused.py's _forward_step and
 * _backward_step compute, with the same memory layout (B, M, N): slots innermost. The
 * input projection of the first controller layer, the output layer and every weight
 * gradient stay in PyTorch, as whole-sequence matrix products.
 *
 * Dimension legend: T time, B batch, L controller layers, C controller size, G gate rows
 * (4C for an LSTM, C for a feedforward layer), R/W read/write heads, N slots, M word size,
 * K shift range (S = 2K + 1 offsets), P head parameters of all heads.
 *
 * Every array is float32, row-major and contiguous; the caller allocates them all. */

#include "kernels.h"

typedef struct {
    int T, B, L, C, lstm, R, W, N, M, K;
    float eps, head_clip;
} Dims;

static inline int gates_of(const Dims *d) { return d->lstm ? 4 * d->C : d->C; }
static inline int read_size(const Dims *d) { return d->M + 3 + 2 * d->K + 1; }
static inline int write_size(const Dims *d) { return read_size(d) + 2 * d->M; }
static inline int params_of(const Dims *d) { return d->R * read_size(d) + d->W * write_size(d); }

/* A head's activated addressing parameters, from its (clamped) raw parameters. */
typedef struct {
    const float *key;
    float strength, gate, gamma;
    float shift[64];
} Head;

static void activate(const Dims *d, const float *raw, Head *h) {
    int m = d->M, s = 2 * d->K + 1;
    h->key = raw;
    h->strength = softplusf(raw[m]);
    h->gate = sigmoidf(raw[m + 1]);
    h->gamma = 1.0f + softplusf(raw[m + 2]);
    for (int j = 0; j < s; j++) h->shift[j] = raw[m + 3 + j];
    softmax(h->shift, s);
}

/* The row norms sqrt(sum_m M[m][n]^2 + eps) of a memory (M, N). */
static void row_norms(const Dims *d, const float *restrict mem, float *restrict norm) {
    int n_ = d->N;
    for (int n = 0; n < n_; n++) norm[n] = 0.0f;
    for (int m = 0; m < d->M; m++)
        for (int n = 0; n < n_; n++) norm[n] += mem[m * n_ + n] * mem[m * n_ + n];
    for (int n = 0; n < n_; n++) norm[n] = sqrtf(norm[n] + d->eps);
}

/* Content, interpolation, shift and sharpening of one head on memory (M, N): the weights,
 * and what the backward pass needs (cosine, content, gated, shifted). */
static void address(const Dims *d, const float *restrict mem, const float *restrict norm,
                    const Head *h, const float *restrict prev, float *restrict cosine,
                    float *restrict content, float *restrict gated, float *restrict shifted,
                    float *restrict weights) {
    int n_ = d->N, k = d->K;
    float kn = 0.0f;
    for (int m = 0; m < d->M; m++) kn += h->key[m] * h->key[m];
    kn = sqrtf(kn + d->eps);
    for (int n = 0; n < n_; n++) cosine[n] = 0.0f;
    for (int m = 0; m < d->M; m++) {
        float km = h->key[m];
        for (int n = 0; n < n_; n++) cosine[n] += km * mem[m * n_ + n];
    }
    for (int n = 0; n < n_; n++) {
        cosine[n] /= kn * norm[n];
        content[n] = h->strength * cosine[n];
    }
    softmax(content, n_);
    for (int n = 0; n < n_; n++) gated[n] = h->gate * content[n] + (1.0f - h->gate) * prev[n];
    /* shifted[n] = sum_j s_j gated[(n - j + K) mod N] */
    for (int n = 0; n < n_; n++) shifted[n] = 0.0f;
    for (int j = 0; j < 2 * k + 1; j++) {
        int off = ((k - j) % n_ + n_) % n_; /* source index n + off (mod N) */
        float sj = h->shift[j];
        for (int n = 0; n + off < n_; n++) shifted[n] += sj * gated[n + off];
        for (int n = n_ - off; n < n_; n++) shifted[n] += sj * gated[n + off - n_];
    }
    for (int n = 0; n < n_; n++) weights[n] = h->gamma * logf(shifted[n] + d->eps);
    softmax(weights, n_);
}

/* The backward pass of address(): from d_w, the gradient of the weights, accumulate the
 * memory's gradient into d_mem (M, N) and return the previous weights' gradient and the
 * head's parameter gradients (d_key (M), then strength, gate, gamma, shift (S)) in d_head.
 * scratch holds 4N floats. */
static void address_backward(const Dims *d, const float *restrict mem, const float *restrict norm,
                             const Head *h, const float *restrict prev,
                             const float *restrict cosine, const float *restrict content,
                             const float *restrict gated, const float *restrict shifted,
                             const float *restrict weights, const float *restrict d_w,
                             float *restrict d_mem, float *restrict d_prev,
                             float *restrict d_head,
                             float *restrict scratch) {
    int n_ = d->N, k = d->K, m_ = d->M, s = 2 * k + 1;
    float *d_shifted = scratch, *d_gated = scratch + n_, *d_dots = scratch + 2 * n_,
          *d_rows = scratch + 3 * n_; /* through the row norms, per unit of memory */
    /* Sharpening: w = softmax(gamma * log(shifted + eps)). */
    float dot = 0.0f;
    for (int n = 0; n < n_; n++) dot += d_w[n] * weights[n];
    float d_gamma = 0.0f;
    for (int n = 0; n < n_; n++) {
        float d_logit = weights[n] * (d_w[n] - dot);
        d_gamma += d_logit * logf(shifted[n] + d->eps);
        d_shifted[n] = d_logit * h->gamma / (shifted[n] + d->eps);
    }
    /* Shift. */
    for (int n = 0; n < n_; n++) d_gated[n] = 0.0f;
    float *d_shift = d_head + m_ + 3;
    for (int j = 0; j < s; j++) {
        int off = ((k - j) % n_ + n_) % n_;
        float sj = h->shift[j], acc = 0.0f;
        for (int n = 0; n + off < n_; n++) {
            d_gated[n + off] += sj * d_shifted[n];
            acc += gated[n + off] * d_shifted[n];
        }
        for (int n = n_ - off; n < n_; n++) {
            d_gated[n + off - n_] += sj * d_shifted[n];
            acc += gated[n + off - n_] * d_shifted[n];
        }
        d_shift[j] = acc;
    }
    /* Interpolation. */
    float g = h->gate, d_gate = 0.0f, dc_dot = 0.0f;
    for (int n = 0; n < n_; n++) {
        d_prev[n] = (1.0f - g) * d_gated[n];
        d_gate += d_gated[n] * (content[n] - prev[n]);
        dc_dot += g * d_gated[n] * content[n];
    }
    /* Content: softmax(strength * cosine). */
    float kn = 0.0f;
    for (int m = 0; m < m_; m++) kn += h->key[m] * h->key[m];
    kn = sqrtf(kn + d->eps);
    float d_strength = 0.0f, d_kn = 0.0f;
    for (int n = 0; n < n_; n++) {
        float d_score = content[n] * (g * d_gated[n] - dc_dot);
        d_strength += d_score * cosine[n];
        float d_cos = d_score * h->strength;
        d_dots[n] = d_cos / (kn * norm[n]);
        float d_cc = d_cos * cosine[n];
        d_kn -= d_cc;
        d_rows[n] = -d_cc / (norm[n] * norm[n]);
    }
    d_kn /= kn;
    for (int m = 0; m < m_; m++) {
        const float *row = mem + m * n_;
        float *d_row = d_mem + m * n_;
        float km = h->key[m], acc = 0.0f;
        for (int n = 0; n < n_; n++) {
            acc += d_dots[n] * row[n];
            d_row[n] += km * d_dots[n] + d_rows[n] * row[n];
        }
        d_head[m] = acc + d_kn / kn * km;
    }
    d_head[m_] = d_strength;
    d_head[m_ + 1] = d_gate;
    d_head[m_ + 2] = d_gamma;
}

/* Raw-parameter gradients of a head (its activation functions' derivatives), in place:
 * d_head holds d_key, d_strength, d_gate, d_gamma, d_shift (and for write heads d_erase,
 * d_add) on entry, the raw parameters' gradients on exit. */
static void activation_backward(const Dims *d, const float *raw, const Head *h, float *d_head,
                                int write) {
    int m = d->M, s = 2 * d->K + 1, p = read_size(d);
    d_head[m] *= sigmoidf(raw[m]); /* softplus' derivative */
    d_head[m + 1] *= h->gate * (1.0f - h->gate);
    d_head[m + 2] *= sigmoidf(raw[m + 2]);
    float *d_shift = d_head + m + 3, dot = 0.0f;
    for (int j = 0; j < s; j++) dot += d_shift[j] * h->shift[j];
    for (int j = 0; j < s; j++) d_shift[j] = h->shift[j] * (d_shift[j] - dot);
    if (write) {
        for (int i = 0; i < m; i++) {
            float e = sigmoidf(raw[p + i]), a = tanh_f(raw[p + m + i]);
            d_head[p + i] *= e * (1.0f - e);
            d_head[p + m + i] *= 1.0f - a * a;
        }
    }
}

/* Pointers of ntm_forward, in order. */
enum {
    F_PRE_INPUT, F_READ_WT, F_IH_WT, F_BIAS, F_HH_WT, F_HEAD_WT, F_HEAD_B,
    F_MEMS, F_READS, F_RW, F_WW, F_HS, F_CS, F_GATES, F_TANHC, F_RAW, F_NORMS,
    F_R_COS, F_R_CONTENT, F_R_GATED, F_R_SHIFTED,
    F_W_COS, F_W_CONTENT, F_W_GATED, F_W_SHIFTED, F_COUNT
};

int ntm_forward_pointers(void) { return F_COUNT; }

/* The whole sequence forward. Index 0 of mems, reads, rw, ww, hs, cs holds the initial
 * state on entry; index t + 1 the state after step t on exit. */
int ntm_forward(const Dims *d, float **p) {
    const int T = d->T, B = d->B, L = d->L, C = d->C, G = gates_of(d), R = d->R, W = d->W,
              N = d->N, M = d->M, RM = R * M, P = params_of(d), PR = read_size(d),
              PW = write_size(d), MN = M * N;
    if (2 * d->K + 1 > 64) return 1;
    float *pre = malloc(sizeof(float) * ((size_t)B * G + (size_t)B * P));
    if (!pre) return 2;
    float *raw_c = pre + (size_t)B * G;
    Head head;
    for (int b = 0; b < B; b++) row_norms(d, p[F_MEMS] + (idx)b * MN, p[F_NORMS] + (idx)b * N);
    for (int t = 0; t < T; t++) {
        const float *reads = p[F_READS] + (idx)t * B * RM;
        const float *x = reads;
        idx xs = RM;
        for (int i = 0; i < L; i++) {
            const float *h_prev = p[F_HS] + ((idx)t * L + i) * B * C;
            const float *c_prev = p[F_CS] + ((idx)t * L + i) * B * C;
            float *h_new = p[F_HS] + ((idx)(t + 1) * L + i) * B * C;
            float *c_new = p[F_CS] + ((idx)(t + 1) * L + i) * B * C;
            if (i == 0) {
                memcpy(pre, p[F_PRE_INPUT] + (idx)t * B * G, sizeof(float) * B * G);
                gemm(B, RM, G, x, xs, p[F_READ_WT], G, pre, G, 1);
            } else {
                for (int b = 0; b < B; b++)
                    memcpy(pre + (idx)b * G, p[F_BIAS] + (idx)(i - 1) * G, sizeof(float) * G);
                gemm(B, C, G, x, xs, p[F_IH_WT] + (idx)(i - 1) * C * G, G, pre, G, 1);
            }
            if (d->lstm) {
                gemm(B, C, G, h_prev, C, p[F_HH_WT] + (idx)i * C * G, G, pre, G, 1);
                float *gates = p[F_GATES] + ((idx)t * L + i) * B * G;
                float *tanhc = p[F_TANHC] + ((idx)t * L + i) * B * C;
                for (int b = 0; b < B; b++)
                    lstm_forward(C, pre + (idx)b * G, c_prev + (idx)b * C, gates + (idx)b * G,
                                 c_new + (idx)b * C, tanhc + (idx)b * C, h_new + (idx)b * C);
            } else {
                for (idx j = 0; j < (idx)B * C; j++) h_new[j] = tanh_f(pre[j]);
            }
            x = h_new;
            xs = C;
        }
        /* Head parameters: [top, reads] @ head_w^T + head_b. */
        float *raw = p[F_RAW] + (idx)t * B * P;
        for (int b = 0; b < B; b++) memcpy(raw + (idx)b * P, p[F_HEAD_B], sizeof(float) * P);
        gemm(B, C, P, x, C, p[F_HEAD_WT], P, raw, P, 1);
        gemm(B, RM, P, reads, RM, p[F_HEAD_WT] + (idx)C * P, P, raw, P, 1);
        clamp_copy(raw, raw_c, B * P, d->head_clip);
        for (int b = 0; b < B; b++) {
            const float *mem = p[F_MEMS] + ((idx)t * B + b) * MN;
            float *mem_new = p[F_MEMS] + ((idx)(t + 1) * B + b) * MN;
            const float *rb = raw_c + (idx)b * P;
            /* Write heads address the old memory, then erase and add. */
            for (int w = 0; w < W; w++) {
                const float *hr = rb + R * PR + w * PW;
                idx at = (((idx)t * B + b) * W + w) * N;
                activate(d, hr, &head);
                address(d, mem, p[F_NORMS] + ((idx)t * B + b) * N, &head,
                        p[F_WW] + (((idx)t * B + b) * W + w) * N, p[F_W_COS] + at,
                        p[F_W_CONTENT] + at, p[F_W_GATED] + at, p[F_W_SHIFTED] + at,
                        p[F_WW] + (((idx)(t + 1) * B + b) * W + w) * N);
            }
            float *norm_new = p[F_NORMS] + ((idx)(t + 1) * B + b) * N;
            if (W == 1) { /* erase, add and the new row norms in one pass */
                const float *hr = rb + R * PR;
                const float *ww = p[F_WW] + ((idx)(t + 1) * B + b) * N;
                for (int n = 0; n < N; n++) norm_new[n] = 0.0f;
                for (int m = 0; m < M; m++) {
                    float e = sigmoidf(hr[PR + m]), a = tanh_f(hr[PR + M + m]);
                    const float *row = mem + (idx)m * N;
                    float *row_new = mem_new + (idx)m * N;
                    for (int n = 0; n < N; n++) {
                        float v = row[n] * (1.0f - ww[n] * e) + a * ww[n];
                        row_new[n] = v;
                        norm_new[n] += v * v;
                    }
                }
                for (int n = 0; n < N; n++) norm_new[n] = sqrtf(norm_new[n] + d->eps);
            } else {
                memcpy(mem_new, mem, sizeof(float) * MN);
                for (int w = 0; w < W; w++) {
                    const float *hr = rb + R * PR + w * PW;
                    const float *ww = p[F_WW] + (((idx)(t + 1) * B + b) * W + w) * N;
                    for (int m = 0; m < M; m++) {
                        float e = sigmoidf(hr[PR + m]);
                        float *row = mem_new + (idx)m * N;
                        for (int n = 0; n < N; n++) row[n] *= 1.0f - ww[n] * e;
                    }
                }
                for (int w = 0; w < W; w++) {
                    const float *hr = rb + R * PR + w * PW;
                    const float *ww = p[F_WW] + (((idx)(t + 1) * B + b) * W + w) * N;
                    for (int m = 0; m < M; m++) {
                        float a = tanh_f(hr[PR + M + m]);
                        float *row = mem_new + (idx)m * N;
                        for (int n = 0; n < N; n++) row[n] += a * ww[n];
                    }
                }
                row_norms(d, mem_new, norm_new);
            }
            /* Read heads address the new memory and read it. */
            float *reads_new = p[F_READS] + ((idx)(t + 1) * B + b) * RM;
            for (int r = 0; r < R; r++) {
                idx at = (((idx)t * B + b) * R + r) * N;
                float *rw = p[F_RW] + (((idx)(t + 1) * B + b) * R + r) * N;
                activate(d, rb + r * PR, &head);
                address(d, mem_new, norm_new, &head, p[F_RW] + (((idx)t * B + b) * R + r) * N,
                        p[F_R_COS] + at, p[F_R_CONTENT] + at, p[F_R_GATED] + at,
                        p[F_R_SHIFTED] + at, rw);
                for (int m = 0; m < M; m++) {
                    const float *row = mem_new + (idx)m * N;
                    float acc = 0.0f;
                    for (int n = 0; n < N; n++) acc += rw[n] * row[n];
                    reads_new[r * M + m] = acc;
                }
            }
        }
    }
    free(pre);
    return 0;
}

/* Pointers of ntm_backward after ntm_forward's, in order. */
enum {
    K_READ_W = F_COUNT, K_IH_W, K_HH_W, K_HEAD_W, K_D_TOP, K_D_READS_OUT, K_D_RAW, K_D_GATES,
    K_D_MEM, K_D_READS, K_D_RW, K_D_WW, K_D_H, K_D_C, K_COUNT
};

int ntm_backward_pointers(void) { return K_COUNT; }

/* The whole sequence backward, last step first. The carries (d_mem, d_reads, d_rw, d_ww,
 * d_h, d_c) hold the gradients flowing into the final state on entry (zeros in training)
 * and those of the initial state on exit; d_raw (T, B, P) and d_gates (T, L, B, G) receive
 * the per-step gradients of the head parameters and of the controller's gate inputs. */
int ntm_backward(const Dims *d, float **p) {
    const int T = d->T, B = d->B, L = d->L, C = d->C, G = gates_of(d), R = d->R, W = d->W,
              N = d->N, M = d->M, RM = R * M, P = params_of(d), PR = read_size(d),
              PW = write_size(d), MN = M * N, H = R > W ? R : W;
    if (2 * d->K + 1 > 64) return 1;
    size_t scratch_size = (size_t)B * P         /* clamped raw */
                          + (size_t)B * (C + RM) /* d_head_in */
                          + (size_t)B * C        /* d_x */
                          + (size_t)H * N        /* d_w of every head */
                          + 4 * (size_t)N        /* address_backward's */
                          + (size_t)W * MN       /* keep of every write head */
                          + (size_t)MN           /* d_keep */
                          + (size_t)B * C;       /* d_x of the layer below */
    float *scratch = malloc(sizeof(float) * scratch_size);
    if (!scratch) return 2;
    float *raw_c = scratch, *d_head_in = raw_c + (size_t)B * P, *d_x = d_head_in + (size_t)B * (C + RM),
          *d_w = d_x + (size_t)B * C, *addr = d_w + (size_t)H * N,
          *keep = addr + 4 * (size_t)N, *d_keep = keep + (size_t)W * MN, *d_x2 = d_keep + MN;
    Head head;
    float *d_reads_next = p[K_D_READS];
    for (int t = T - 1; t >= 0; t--) {
        const float *raw = p[F_RAW] + (idx)t * B * P;
        float *d_raw = p[K_D_RAW] + (idx)t * B * P;
        clamp_copy(raw, raw_c, B * P, d->head_clip);
        for (int b = 0; b < B; b++) {
            const float *mem_old = p[F_MEMS] + ((idx)t * B + b) * MN;
            const float *mem_new = p[F_MEMS] + ((idx)(t + 1) * B + b) * MN;
            const float *norm_old = p[F_NORMS] + ((idx)t * B + b) * N;
            const float *norm_new = p[F_NORMS] + ((idx)(t + 1) * B + b) * N;
            const float *rb = raw_c + (idx)b * P;
            float *d_mem = p[K_D_MEM] + (idx)b * MN;
            float *d_rb = d_raw + (idx)b * P;
            float *d_reads = d_reads_next + (idx)b * RM; /* becomes d_reads of this step */
            const float *d_reads_out = p[K_D_READS_OUT] + ((idx)t * B + b) * RM;
            for (int j = 0; j < RM; j++) d_reads[j] += d_reads_out[j];
            /* Read: r = w_r M_t. */
            for (int r = 0; r < R; r++) {
                const float *rw = p[F_RW] + (((idx)(t + 1) * B + b) * R + r) * N;
                float *dw = d_w + (idx)r * N;
                const float *d_rw_next = p[K_D_RW] + ((idx)b * R + r) * N;
                for (int n = 0; n < N; n++) dw[n] = d_rw_next[n];
                for (int m = 0; m < M; m++) {
                    const float *row = mem_new + (idx)m * N;
                    float *d_row = d_mem + (idx)m * N;
                    float dr = d_reads[r * M + m];
                    for (int n = 0; n < N; n++) {
                        dw[n] += dr * row[n];
                        d_row[n] += dr * rw[n];
                    }
                }
            }
            for (int r = 0; r < R; r++) {
                idx at = (((idx)t * B + b) * R + r) * N;
                activate(d, rb + r * PR, &head);
                address_backward(d, mem_new, norm_new, &head,
                                 p[F_RW] + (((idx)t * B + b) * R + r) * N, p[F_R_COS] + at,
                                 p[F_R_CONTENT] + at, p[F_R_GATED] + at, p[F_R_SHIFTED] + at,
                                 p[F_RW] + (((idx)(t + 1) * B + b) * R + r) * N, d_w + (idx)r * N,
                                 d_mem, p[K_D_RW] + ((idx)b * R + r) * N,
                                 d_rb + r * PR, addr);
                activation_backward(d, rb + r * PR, &head, d_rb + r * PR, 0);
            }
            if (W == 1) { /* erase and add in one pass */
                const float *hr = rb + R * PR;
                const float *ww = p[F_WW] + ((idx)(t + 1) * B + b) * N;
                const float *d_ww_next = p[K_D_WW] + (idx)b * N;
                float *d_hw = d_rb + R * PR;
                for (int n = 0; n < N; n++) d_w[n] = d_ww_next[n];
                for (int m = 0; m < M; m++) {
                    float e = sigmoidf(hr[PR + m]), a = tanh_f(hr[PR + M + m]);
                    const float *old = mem_old + (idx)m * N;
                    float *d_row = d_mem + (idx)m * N, d_e = 0.0f, d_a = 0.0f;
                    for (int n = 0; n < N; n++) {
                        float dm = d_row[n];
                        float dk = dm * old[n];
                        d_w[n] += a * dm - dk * e;
                        d_e -= dk * ww[n];
                        d_a += ww[n] * dm;
                        d_row[n] = dm * (1.0f - ww[n] * e);
                    }
                    d_hw[PR + m] = d_e;
                    d_hw[PR + M + m] = d_a;
                }
            } else {
                /* Write: M_t = M_{t-1} * prod_w (1 - w e) + sum_w w^T a. */
                for (int w = 0; w < W; w++) {
                    const float *hr = rb + R * PR + w * PW;
                    const float *ww = p[F_WW] + (((idx)(t + 1) * B + b) * W + w) * N;
                    for (int m = 0; m < M; m++) {
                        float e = sigmoidf(hr[PR + m]);
                        for (int n = 0; n < N; n++) keep[(idx)w * MN + m * N + n] = 1.0f - ww[n] * e;
                    }
                }
                for (int w = 0; w < W; w++) {
                    const float *hr = rb + R * PR + w * PW;
                    const float *ww = p[F_WW] + (((idx)(t + 1) * B + b) * W + w) * N;
                    float *dw = d_w + (idx)w * N;
                    float *d_hw = d_rb + R * PR + w * PW;
                    const float *d_ww_next = p[K_D_WW] + ((idx)b * W + w) * N;
                    for (int i = 0; i < MN; i++) d_keep[i] = d_mem[i] * mem_old[i];
                    for (int v = 0; v < W; v++)
                        if (v != w)
                            for (int i = 0; i < MN; i++) d_keep[i] *= keep[(idx)v * MN + i];
                    for (int n = 0; n < N; n++) dw[n] = d_ww_next[n];
                    for (int m = 0; m < M; m++) {
                        float e = sigmoidf(hr[PR + m]), a = tanh_f(hr[PR + M + m]);
                        const float *d_row = d_mem + (idx)m * N, *dk = d_keep + (idx)m * N;
                        float d_e = 0.0f, d_a = 0.0f;
                        for (int n = 0; n < N; n++) {
                            dw[n] += a * d_row[n] - dk[n] * e;
                            d_e -= dk[n] * ww[n];
                            d_a += ww[n] * d_row[n];
                        }
                        d_hw[PR + m] = d_e;
                        d_hw[PR + M + m] = d_a;
                    }
                }
                for (int w = 0; w < W; w++)
                    for (int i = 0; i < MN; i++) d_mem[i] *= keep[(idx)w * MN + i];
            }
            for (int w = 0; w < W; w++) {
                idx at = (((idx)t * B + b) * W + w) * N;
                const float *hr = rb + R * PR + w * PW;
                float *d_hw = d_rb + R * PR + w * PW;
                activate(d, hr, &head);
                address_backward(d, mem_old, norm_old, &head,
                                 p[F_WW] + (((idx)t * B + b) * W + w) * N, p[F_W_COS] + at,
                                 p[F_W_CONTENT] + at, p[F_W_GATED] + at, p[F_W_SHIFTED] + at,
                                 p[F_WW] + (((idx)(t + 1) * B + b) * W + w) * N, d_w + (idx)w * N,
                                 d_mem, p[K_D_WW] + ((idx)b * W + w) * N, d_hw, addr);
                activation_backward(d, hr, &head, d_hw, 1);
            }
            if (d->head_clip > 0.0f)
                for (int i = 0; i < P; i++) {
                    float v = raw[(idx)b * P + i];
                    if (v < -d->head_clip || v > d->head_clip) d_rb[i] = 0.0f;
                }
        }
        /* Head layer: d_head_in = d_raw @ head_w, (B, C + R*M). */
        gemm(B, P, C + RM, d_raw, P, p[K_HEAD_W], C + RM, d_head_in, C + RM, 0);
        for (int b = 0; b < B; b++) {
            const float *d_top = p[K_D_TOP] + ((idx)t * B + b) * C;
            for (int j = 0; j < C; j++) d_x[b * C + j] = d_top[j] + d_head_in[(idx)b * (C + RM) + j];
            for (int j = 0; j < RM; j++) d_reads_next[(idx)b * RM + j] = d_head_in[(idx)b * (C + RM) + C + j];
        }
        /* Controller, top layer first. */
        for (int i = L - 1; i >= 0; i--) {
            float *d_gates = p[K_D_GATES] + ((idx)t * L + i) * B * G;
            float *d_h = p[K_D_H] + (idx)i * B * C, *d_c = p[K_D_C] + (idx)i * B * C;
            if (d->lstm) {
                const float *gates = p[F_GATES] + ((idx)t * L + i) * B * G;
                const float *tanhc = p[F_TANHC] + ((idx)t * L + i) * B * C;
                const float *c_prev = p[F_CS] + ((idx)t * L + i) * B * C;
                for (int b = 0; b < B; b++)
                    lstm_backward(C, gates + (idx)b * G, tanhc + (idx)b * C, c_prev + (idx)b * C,
                                  d_x + (idx)b * C, d_h + (idx)b * C, d_c + (idx)b * C,
                                  d_gates + (idx)b * G);
                gemm(B, G, C, d_gates, G, p[K_HH_W] + (idx)i * G * C, C, d_h, C, 0);
            } else {
                const float *x_new = p[F_HS] + ((idx)(t + 1) * L + i) * B * C;
                for (idx j = 0; j < (idx)B * C; j++) d_gates[j] = d_x[j] * (1.0f - x_new[j] * x_new[j]);
            }
            if (i > 0) {
                gemm(B, G, C, d_gates, G, p[K_IH_W] + (idx)(i - 1) * G * C, C, d_x2, C, 0);
                memcpy(d_x, d_x2, sizeof(float) * B * C);
            } else {
                gemm(B, G, RM, d_gates, G, p[K_READ_W], RM, d_reads_next, RM, 1);
            }
        }
    }
    free(scratch);
    return 0;
}
