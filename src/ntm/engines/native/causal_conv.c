/* The causal depthwise convolution and SiLU of Mamba's and the xLSTM's blocks, in C.
 *
 * Built with the other native engines into one library by ntm/engines/native and called
 * through ctypes from ntm/engines/native/conv.py. For every sequence b, step t and channel
 * e, with a kernel of K taps per channel,
 *
 *     pre_t[e] = bias[e] + sum_k w[k, e] x_{t + k - (K - 1)}[e]     (x before step 0: zero)
 *     y_t[e]   = silu(pre_t[e]) = pre_t[e] sigmoid(pre_t[e])
 *
 * which is what PyTorch's grouped conv1d (one group a channel, padding K - 1, the last
 * K - 1 outputs dropped) followed by SiLU computes. On the CPU that convolution's backward
 * pass costs milliseconds for a few hundred thousand multiply-adds; here it is one pass
 * over the sequence. The backward pass computes the pre-activations again, a sequence at
 * a time, into a (T, E) workspace rather than keep them.
 *
 * Dimension legend: B batch, T time, E channels, K taps. Arrays are float32, row-major and
 * contiguous, the channels innermost (the blocks' (B, T, E) layout); the caller allocates
 * them all. */

#include "kernels.h"

typedef struct {
    int B, T, E, K;
} ConvDims;

enum {
    CF_X,    /* (B, T, E) */
    CF_W,    /* (K, E): tap k of every channel, the oldest step first */
    CF_BIAS, /* (E) */
    CF_Y,    /* out (B, T, E) */
    CF_COUNT
};

int causal_conv_forward_pointers(void) { return CF_COUNT; }

/* The pre-activations of one sequence's step t into out (E). */
static inline void pre_activation(const ConvDims *d, const float *restrict xb,
                                  const float *restrict w, const float *restrict bias, int t,
                                  float *restrict out) {
    const int E = d->E, K = d->K;
    for (int e = 0; e < E; e++) out[e] = bias[e];
    for (int k = 0; k < K; k++) {
        const int s = t + k - (K - 1);
        if (s < 0) continue;
        const float *restrict xs = xb + (long)s * E;
        const float *restrict wk = w + (long)k * E;
        for (int e = 0; e < E; e++) out[e] += wk[e] * xs[e];
    }
}

int causal_conv_forward(const ConvDims *d, void **p) {
    const int B = d->B, T = d->T, E = d->E;
    const float *x = p[CF_X], *w = p[CF_W], *bias = p[CF_BIAS];
    float *y = p[CF_Y];
    for (int b = 0; b < B; b++) {
        const float *xb = x + (long)b * T * E;
        for (int t = 0; t < T; t++) {
            float *restrict yt = y + ((long)b * T + t) * E;
            pre_activation(d, xb, w, bias, t, yt);
            for (int e = 0; e < E; e++) yt[e] *= sigmoidf(yt[e]);
        }
    }
    return 0;
}

enum {
    CB_X,     /* (B, T, E) */
    CB_W,     /* (K, E) */
    CB_BIAS,  /* (E) */
    CB_GY,    /* (B, T, E): the gradient of y */
    CB_GX,    /* out (B, T, E) */
    CB_GW,    /* out (K, E) */
    CB_GBIAS, /* out (E) */
    CB_PRE,   /* workspace (T, E): one sequence's pre-activations, then their gradients */
    CB_COUNT
};

int causal_conv_backward_pointers(void) { return CB_COUNT; }

int causal_conv_backward(const ConvDims *d, void **p) {
    const int B = d->B, T = d->T, E = d->E, K = d->K;
    const float *x = p[CB_X], *w = p[CB_W], *bias = p[CB_BIAS], *gy = p[CB_GY];
    float *gx = p[CB_GX], *gw = p[CB_GW], *gbias = p[CB_GBIAS], *pre = p[CB_PRE];
    for (int i = 0; i < K * E; i++) gw[i] = 0.0f;
    for (int e = 0; e < E; e++) gbias[e] = 0.0f;
    for (int b = 0; b < B; b++) {
        const float *xb = x + (long)b * T * E;
        const float *gyb = gy + (long)b * T * E;
        float *gxb = gx + (long)b * T * E;
        /* The pre-activations' gradients: gy silu'(pre), silu' = s (1 + pre (1 - s)). */
        for (int t = 0; t < T; t++) {
            float *restrict gt = pre + (long)t * E;
            const float *restrict gyt = gyb + (long)t * E;
            pre_activation(d, xb, w, bias, t, gt);
            for (int e = 0; e < E; e++) {
                const float s = sigmoidf(gt[e]);
                gt[e] = gyt[e] * s * (1.0f + gt[e] * (1.0f - s));
                gbias[e] += gt[e];
            }
        }
        for (int i = 0; i < T * E; i++) gxb[i] = 0.0f;
        for (int t = 0; t < T; t++) {
            const float *restrict gt = pre + (long)t * E;
            for (int k = 0; k < K; k++) {
                const int s = t + k - (K - 1);
                if (s < 0) continue;
                const float *restrict xs = xb + (long)s * E;
                const float *restrict wk = w + (long)k * E;
                float *restrict gxs = gxb + (long)s * E;
                float *restrict gwk = gw + (long)k * E;
                for (int e = 0; e < E; e++) {
                    gxs[e] += wk[e] * gt[e];
                    gwk[e] += xs[e] * gt[e];
                }
            }
        }
    }
    return 0;
}
