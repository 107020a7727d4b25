/* The xLSTM's head-wise projections in C: a block-diagonal product, forward and backward.
 *
 * Built with the other native engines into one library by ntm/engines/native and called
 * through ctypes from ntm/engines/native/headwise.py. For every row n and head h, with
 * each head's own (O, D) matrix,
 *
 *     y[n, h, o] = sum_d W[h, o, d] x[n, h, d]
 *
 * which is what the xlstm package's LinearHeadwiseExpand computes (less its bias, which
 * PyTorch adds). The mLSTM's queries, keys and values take blocks of 4: PyTorch's batched
 * product over 32 heads of (N, 4) by (4, 4), with the copies around it, costs about a
 * millisecond for a few hundred thousand multiply-adds; here it is one pass over the rows.
 * Blocks of 4 by 4 take 8 outputs (two heads) a vector where AVX2 is there: each of a
 * head's 4 inputs broadcast across its 4 outputs within a 128-bit lane, times the weights
 * laid out a column d at a time, (D, H * O) ("spread"), into a workspace.
 *
 * Dimension legend: N rows (batch times steps), H heads, O outputs and D inputs a head.
 * Arrays are float32, row-major and contiguous; the caller allocates them all. */

#include "kernels.h"

typedef struct {
    int N, H, O, D;
} HeadwiseDims;

enum {
    HF_X,      /* (N, H, D) */
    HF_W,      /* (H, O, D) */
    HF_Y,      /* out (N, H, O) */
    HF_SPREAD, /* workspace (H * O * D) */
    HF_COUNT
};

int headwise_forward_pointers(void) { return HF_COUNT; }

#if defined(__AVX2__) && defined(__FMA__)
/* Each 128-bit lane of v with its element d in all four places. */
#define LANE_BROADCAST(v, d) _mm256_permute_ps((v), (d) * 0x55)

/* Blocks of 4 by 4, H even: W spread to (4, H * 4), spread[d][i] = W[i][d] (i = 4h + o),
 * then each row's 8 outputs at a time. */
static void forward_4x4(idx N, int H, const float *restrict x, const float *restrict W,
                        float *restrict spread, float *restrict y) {
    const int width = 4 * H;
    for (int i = 0; i < width; i++)
        for (int d = 0; d < 4; d++) spread[d * width + i] = W[i * 4 + d];
    for (idx n = 0; n < N; n++) {
        const float *xn = x + n * width;
        float *yn = y + n * width;
        for (int i = 0; i < width; i += 8) {
            const __m256 xv = _mm256_loadu_ps(xn + i);
            __m256 sum = _mm256_mul_ps(LANE_BROADCAST(xv, 0), _mm256_loadu_ps(spread + i));
            for (int d = 1; d < 4; d++)
                sum = _mm256_fmadd_ps(LANE_BROADCAST(xv, d),
                                      _mm256_loadu_ps(spread + d * width + i), sum);
            _mm256_storeu_ps(yn + i, sum);
        }
    }
}

/* Blocks of 4 by 4, H even: the inputs' gradient through W spread by output,
 * spread[o][4h + d] = W[h][o][d], and the weights' gradient spread as forward_4x4 spreads
 * W, gathered back into gW at the end. */
static void backward_4x4(idx N, int H, const float *restrict x, const float *restrict W,
                         const float *restrict gy, float *restrict gx, float *restrict gW,
                         float *restrict spread) {
    const int width = 4 * H;
    float *restrict by_output = spread, *restrict grad = spread + 4 * width;
    for (int j = 0; j < width; j++)
        for (int o = 0; o < 4; o++) by_output[o * width + j] = W[((j / 4) * 4 + o) * 4 + j % 4];
    memset(grad, 0, sizeof(float) * 4 * (size_t)width);
    for (idx n = 0; n < N; n++) {
        const float *xn = x + n * width, *gyn = gy + n * width;
        float *gxn = gx + n * width;
        for (int i = 0; i < width; i += 8) {
            const __m256 xv = _mm256_loadu_ps(xn + i), gv = _mm256_loadu_ps(gyn + i);
            __m256 sum = _mm256_mul_ps(LANE_BROADCAST(gv, 0), _mm256_loadu_ps(by_output + i));
            for (int o = 1; o < 4; o++)
                sum = _mm256_fmadd_ps(LANE_BROADCAST(gv, o),
                                      _mm256_loadu_ps(by_output + o * width + i), sum);
            _mm256_storeu_ps(gxn + i, sum);
            for (int d = 0; d < 4; d++) {
                float *at = grad + d * width + i;
                _mm256_storeu_ps(at, _mm256_fmadd_ps(gv, LANE_BROADCAST(xv, d),
                                                     _mm256_loadu_ps(at)));
            }
        }
    }
    for (int i = 0; i < width; i++)
        for (int d = 0; d < 4; d++) gW[i * 4 + d] = grad[d * width + i];
}
#define HAVE_4X4 1
#else
#define HAVE_4X4 0
#endif

/* Row n's heads, any block shape. */
static void row_forward(int H, int O, int D, const float *restrict x, const float *restrict W,
                        float *restrict y) {
    for (int h = 0; h < H; h++) {
        const float *restrict xh = x + (idx)h * D, *restrict Wh = W + (idx)h * O * D;
        float *restrict yh = y + (idx)h * O;
        for (int o = 0; o < O; o++) {
            float sum = 0.0f;
            for (int d = 0; d < D; d++) sum += Wh[o * D + d] * xh[d];
            yh[o] = sum;
        }
    }
}

int headwise_forward(const HeadwiseDims *dims, void **p) {
    const int N = dims->N, H = dims->H, O = dims->O, D = dims->D;
    const float *x = p[HF_X], *W = p[HF_W];
    float *y = p[HF_Y];
#if HAVE_4X4
    if (O == 4 && D == 4 && H % 2 == 0) { /* the mLSTM's queries, keys and values */
        forward_4x4(N, H, x, W, p[HF_SPREAD], y);
        return 0;
    }
#endif
    for (int n = 0; n < N; n++)
        row_forward(H, O, D, x + (idx)n * H * D, W, y + (idx)n * H * O);
    return 0;
}

enum {
    HB_X,      /* (N, H, D) */
    HB_W,      /* (H, O, D) */
    HB_GY,     /* (N, H, O): the gradient of y */
    HB_GX,     /* out (N, H, D) */
    HB_GW,     /* out (H, O, D) */
    HB_SPREAD, /* workspace (2 * H * O * D) */
    HB_COUNT
};

int headwise_backward_pointers(void) { return HB_COUNT; }

/* Row n's share: the gradient of its inputs, and what it adds to the weights' gradient. */
static void row_backward(int H, int O, int D, const float *restrict x, const float *restrict W,
                         const float *restrict gy, float *restrict gx, float *restrict gW) {
    for (int h = 0; h < H; h++) {
        const float *restrict xh = x + (idx)h * D, *restrict Wh = W + (idx)h * O * D;
        const float *restrict gyh = gy + (idx)h * O;
        float *restrict gxh = gx + (idx)h * D, *restrict gWh = gW + (idx)h * O * D;
        for (int d = 0; d < D; d++) gxh[d] = 0.0f;
        for (int o = 0; o < O; o++) {
            const float g = gyh[o];
            for (int d = 0; d < D; d++) {
                gxh[d] += g * Wh[o * D + d];
                gWh[o * D + d] += g * xh[d];
            }
        }
    }
}

int headwise_backward(const HeadwiseDims *dims, void **p) {
    const int N = dims->N, H = dims->H, O = dims->O, D = dims->D;
    const float *x = p[HB_X], *W = p[HB_W], *gy = p[HB_GY];
    float *gx = p[HB_GX], *gW = p[HB_GW];
#if HAVE_4X4
    if (O == 4 && D == 4 && H % 2 == 0) {
        backward_4x4(N, H, x, W, gy, gx, gW, p[HB_SPREAD]);
        return 0;
    }
#endif
    memset(gW, 0, sizeof(float) * (size_t)H * O * D);
    for (int n = 0; n < N; n++)
        row_backward(H, O, D, x + (idx)n * H * D, W, gy + (idx)n * H * O, gx + (idx)n * H * D,
                     gW);
    return 0;
}
