/* Mamba's selective scan in C: a whole sequence forward, and its backward, in one call each.
 *
 * Built with the other native engines into one library by ntm/engines/native and called
 * through ctypes from ntm/engines/native/mamba.py. For every sequence b, channel e and
 * state dimension n, from a zero state,
 *
 *     h_t[e, n] = exp(delta_t[e] A[e, n]) h_{t-1}[e, n] + delta_t[e] B_t[n] x_t[e]
 *     y_t[e]    = sum_n C_t[n] h_t[e, n]
 *
 * which is what mambapy's selective scan computes, less its skip term D x (PyTorch adds
 * it). The scan costs O(B T E N) here, with no padding of T to a power of two and no
 * (B, T, E, N) tensor at all: the states of all sequences (20 MB for a batch of 32 of
 * Mamba's 124 channels over 81 steps) would cost more to write to fresh memory and read
 * back than to compute again.
 *
 * So the forward pass keeps two states in turn, in a (2, E, N) workspace, and the
 * backward pass, a sequence at a time, first computes its states again, and their decays
 * a_t = exp(delta_t A), into two (T, E, N) workspaces that stay in the cache (not its
 * outputs, which it does not need), then walks time back with the gradient of h_t,
 * g_t = C_t gy_t + a_{t+1} g_{t+1}, each decay's exp computed once.
 *
 * Dimension legend: B batch, T time, E channels (expand * d_model), N state size.
 * Arrays are float32, row-major and contiguous; the caller allocates them all. */

#include "kernels.h"

typedef struct {
    int B, T, E, N;
} ScanDims;

enum {
    F_X,      /* (B, T, E) */
    F_DELTA,  /* (B, T, E): the step sizes, after the softplus */
    F_A,      /* (E, N): the state matrix's diagonal, negative */
    F_B,      /* (B, T, N) */
    F_C,      /* (B, T, N) */
    F_Y,      /* out (B, T, E) */
    F_STATES, /* workspace (2, E, N) */
    F_COUNT
};

int mamba_scan_forward_pointers(void) { return F_COUNT; }

/* One channel's step: h_t = exp(step A) h_{t-1} + drive B_t (drive = step x_t; no h_{t-1}
 * at t = 0), and its output C_t . h_t. */
static inline float channel_forward(int N, float step, float drive, const float *restrict Ae,
                                    const float *restrict Bt, const float *restrict Ct,
                                    const float *restrict hpe, float *restrict he) {
    float out = 0.0f;
    if (hpe)
        for (int n = 0; n < N; n++) {
            he[n] = expf(step * Ae[n]) * hpe[n] + drive * Bt[n];
            out += Ct[n] * he[n];
        }
    else
        for (int n = 0; n < N; n++) {
            he[n] = drive * Bt[n];
            out += Ct[n] * he[n];
        }
    return out;
}

/* Sequence b's outputs, its states written in turn to the (2, E, N) workspace states. */
static void sequence_forward(const ScanDims *d, void **p, int b, float *states) {
    const int T = d->T, E = d->E, N = d->N;
    const float *A = p[F_A];
    float *h = states;
    const float *hp = NULL; /* h_{t-1}, none at t = 0 */
    for (int t = 0; t < T; t++) {
        const idx bt = (idx)b * T + t;
        const float *x = (const float *)p[F_X] + bt * E;
        const float *delta = (const float *)p[F_DELTA] + bt * E;
        const float *Bt = (const float *)p[F_B] + bt * N;
        const float *Ct = (const float *)p[F_C] + bt * N;
        float *y = (float *)p[F_Y] + bt * E;
        for (int e = 0; e < E; e++)
            y[e] = channel_forward(N, delta[e], delta[e] * x[e], A + (idx)e * N, Bt, Ct,
                                   hp ? hp + (idx)e * N : NULL, h + (idx)e * N);
        hp = h;
        h = states + (t % 2 ? 0 : (idx)E * N);
    }
}

/* One channel's step as channel_forward's, keeping its decay exp(step A) in ae and
 * giving no output. */
static inline void channel_state(int N, float step, float drive, const float *restrict Ae,
                                 const float *restrict Bt, const float *restrict hpe,
                                 float *restrict he, float *restrict ae) {
    for (int n = 0; n < N; n++) ae[n] = expf(step * Ae[n]);
    if (hpe)
        for (int n = 0; n < N; n++) he[n] = ae[n] * hpe[n] + drive * Bt[n];
    else
        for (int n = 0; n < N; n++) he[n] = drive * Bt[n];
}

/* Sequence b's states h_t and decays a_t, one step after another into the (T, E, N)
 * workspaces states and decays: the forward pass's recurrence, without its outputs. */
static void sequence_states(const ScanDims *d, void **p, int b, float *states, float *decays) {
    const int T = d->T, E = d->E, N = d->N;
    const float *A = p[F_A];
    for (int t = 0; t < T; t++) {
        const idx bt = (idx)b * T + t, at = (idx)t * E * N;
        const float *x = (const float *)p[F_X] + bt * E;
        const float *delta = (const float *)p[F_DELTA] + bt * E;
        const float *Bt = (const float *)p[F_B] + bt * N;
        const float *hp = t ? states + at - (idx)E * N : NULL; /* h_{t-1}, none at t = 0 */
        for (int e = 0; e < E; e++)
            channel_state(N, delta[e], delta[e] * x[e], A + (idx)e * N, Bt,
                          hp ? hp + (idx)e * N : NULL, states + at + (idx)e * N,
                          decays + at + (idx)e * N);
    }
}

int mamba_scan_forward(const ScanDims *d, void **p) {
    for (int b = 0; b < d->B; b++) sequence_forward(d, p, b, p[F_STATES]);
    return 0;
}

/* The backward pass takes the forward pass's pointers, F_Y and F_STATES unused, then
 * these. */
enum {
    K_GY = F_COUNT, /* (B, T, E): the gradient of y */
    K_GX,           /* out (B, T, E) */
    K_GDELTA,       /* out (B, T, E) */
    K_GA,           /* out (E, N) */
    K_GB,           /* out (B, T, N) */
    K_GC,           /* out (B, T, N) */
    K_CARRY,        /* workspace (E, N): g_t, the gradient of h_t, while walking back */
    K_ALL_STATES,   /* workspace (T, E, N): one sequence's states */
    K_ALL_DECAYS,   /* workspace (T, E, N): their decays, exp(delta_t A) */
    K_COUNT
};

int mamba_scan_backward_pointers(void) { return K_COUNT; }

/* One channel's share of step t's backward pass: from g (the carry, a_{t+1} g_{t+1}, plus
 * C_t gy), the gradients of B_t, C_t and A it adds to, the sums that give the gradients
 * of its step size and input, and the carry a_t g_t for step t - 1. No h_{t-1} at t = 0. */
static inline void channel_backward(int N, float step, float input, float grad_y,
                                    const float *restrict Ae, const float *restrict ae,
                                    const float *restrict Bt, const float *restrict Ct,
                                    const float *restrict he, const float *restrict hpe,
                                    float *restrict ge, float *restrict gAe,
                                    float *restrict gB, float *restrict gC, float *g_step,
                                    float *g_drive) {
    float sum_step = 0.0f, sum_drive = 0.0f;
    for (int n = 0; n < N; n++) {
        const float g = ge[n] + grad_y * Ct[n]; /* the gradient of h_t[e, n] */
        const float decay = ae[n];
        /* h_t = decay h_{t-1} + step x B_t, decay = exp(step A) */
        const float g_exponent = hpe ? g * hpe[n] * decay : 0.0f;
        gC[n] += grad_y * he[n];
        gB[n] += g * step * input;
        sum_drive += g * Bt[n];
        sum_step += g_exponent * Ae[n];
        gAe[n] += g_exponent * step;
        ge[n] = g * decay;
    }
    *g_step = sum_step;
    *g_drive = sum_drive;
}

int mamba_scan_backward(const ScanDims *d, void **p) {
    const int T = d->T, E = d->E, N = d->N;
    const float *A = p[F_A];
    float *gA = p[K_GA], *carry = p[K_CARRY];
    memset(gA, 0, sizeof(float) * (size_t)E * N);
    for (int b = 0; b < d->B; b++) {
        float *states = p[K_ALL_STATES], *decays = p[K_ALL_DECAYS];
        sequence_states(d, p, b, states, decays);
        memset(carry, 0, sizeof(float) * (size_t)E * N);
        for (int t = T - 1; t >= 0; t--) {
            const idx bt = (idx)b * T + t;
            const float *x = (const float *)p[F_X] + bt * E;
            const float *delta = (const float *)p[F_DELTA] + bt * E;
            const float *Bt = (const float *)p[F_B] + bt * N;
            const float *Ct = (const float *)p[F_C] + bt * N;
            const float *gy = (const float *)p[K_GY] + bt * E;
            float *gx = (float *)p[K_GX] + bt * E;
            float *gdelta = (float *)p[K_GDELTA] + bt * E;
            float *gB = (float *)p[K_GB] + bt * N;
            float *gC = (float *)p[K_GC] + bt * N;
            const float *h = states + (idx)t * E * N, *a = decays + (idx)t * E * N;
            const float *hp = t ? h - (idx)E * N : NULL;
            memset(gB, 0, sizeof(float) * (size_t)N);
            memset(gC, 0, sizeof(float) * (size_t)N);
            for (int e = 0; e < E; e++) {
                const float step = delta[e], input = x[e];
                float g_step, g_drive;
                channel_backward(N, step, input, gy[e], A + (idx)e * N, a + (idx)e * N, Bt, Ct,
                                 h + (idx)e * N, hp ? hp + (idx)e * N : NULL,
                                 carry + (idx)e * N, gA + (idx)e * N, gB, gC, &g_step,
                                 &g_drive);
                gdelta[e] = g_step + g_drive * input;
                gx[e] = g_drive * step;
            }
        }
    }
    return 0;
}
