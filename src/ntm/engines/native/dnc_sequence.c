/* The DNC's recurrence in C: a whole sequence forward, and its backward, in one call each.
 *
 * Built with ntm_sequence.c into one library by ntm/native/__init__.py and called through
 * ctypes from ntm/native/dnc.py. It computes what ntm.DNCCell.step computes (the equations
 * of ntm/dnc.py): the LSTM controller's recurrence, the interface vector's clip and
 * activations, retention, usage, allocation, content weighting, the write, the temporal
 * links and precedence, the read weightings and the reads. The input's share of every
 * controller layer's gate inputs, the output layer and every weight gradient stay in
 * PyTorch, as whole-sequence matrix products.
 *
 * The memory is held transposed, (M, N) per sequence, slots innermost, as the NTM's engine
 * holds it; the link matrix is (N, N) per sequence, L[i][j] for slot i written after j, or
 * with sparse links (Dims.sparsity K > 0) lists of each row's K kept entries (see "Sparse
 * links" below), the initial state's and the final one's alone dense.
 *
 * Dimension legend: T time, B batch, L controller layers, C controller size, G = 4C gate
 * rows, R read heads, N slots, M word size, P interface size.
 *
 * Every array is float32 (the sort orders int32), row-major and contiguous; the caller
 * allocates them all. Arrays of the state before each step ("per state") have T + 1
 * entries when the backward pass is to follow (keep = 1), else 2 used in turn; arrays of
 * what a step computes ("per step") have T entries, else 1. The link matrices are the
 * exception: one array per state, F_LINKS holding their addresses (a few megabytes each,
 * where one array for all would be large enough for the C library to map it afresh, and
 * fault in its pages, at every call), and with keep = 1 only every link_every-th state's
 * is kept, the others sharing two arrays in turn; the backward pass recomputes them from
 * the kept ones (K_LINKS): 1 / link_every of the memory, at about the same speed. With
 * keep = 0 both states may name one array, which each step then updates in place. */

#include <stdint.h>

#include "kernels.h"

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

/* Subnormal floats read and made as zero for the duration of a call (x86's FTZ and DAZ
 * bits): the allocation's products of usages and the links' repeated decay reach them
 * often, and each takes the processor's slow path (about a tenth of the engine's time on
 * copy's model). Their values, below 1.2e-38, are lost. Returns the setting to restore. */
static unsigned int flush_subnormals(void) {
#if defined(__SSE__)
    unsigned int saved = _mm_getcsr();
    _mm_setcsr(saved | 0x8040);
    return saved;
#else
    return 0;
#endif
}

static void restore_subnormals(unsigned int saved) {
#if defined(__SSE__)
    _mm_setcsr(saved);
#else
    (void)saved;
#endif
}

/* The interface vector's parts, in ntm.dnc.InterfaceLayout's order. */
enum {
    I_READ_KEYS, I_READ_STRENGTHS, I_WRITE_KEY, I_WRITE_STRENGTH, I_ERASE, I_WRITE_VECTOR,
    I_FREE_GATES, I_ALLOCATION_GATE, I_WRITE_GATE, I_READ_MODES, I_PARTS
};

typedef struct {
    int T, B, L, C, R, N, M, P, keep, link_every;
    int sparsity; /* K of the sparse links with 0 < K < N, else 0: the dense ones */
    int part[I_PARTS]; /* where each part starts: ntm.dnc.InterfaceLayout's, passed in */
    float eps, interface_clip;
} Dims;

/* Entry of the state before step t (t = 0..T) and of step t's saved values. */
static inline idx state_at(const Dims *d, int t) { return d->keep ? t : t & 1; }
static inline idx step_at(const Dims *d, int t) { return d->keep ? t : 0; }

/* oneplus(x) = 1 + softplus(x), and its derivative, as torch's softplus (threshold 20). */
static inline float oneplusf(float x) { return 1.0f + softplusf(x); }
static inline float oneplus_slope(float x) { return x > 20.0f ? 1.0f : sigmoidf(x); }

/* The activated interface vector (P) from the clipped raw one, part by part. */
static void activate(const Dims *d, const float *restrict raw, float *restrict act) {
    const int R = d->R, M = d->M;
    const int *at = d->part;
    for (int i = 0; i < d->P; i++) act[i] = raw[i]; /* keys and the write vector as they are */
    for (int r = 0; r < R; r++) {
        int i = at[I_READ_STRENGTHS] + r;
        act[i] = oneplusf(raw[i]);
    }
    act[at[I_WRITE_STRENGTH]] = oneplusf(raw[at[I_WRITE_STRENGTH]]);
    for (int m = 0; m < M; m++) act[at[I_ERASE] + m] = sigmoidf(raw[at[I_ERASE] + m]);
    for (int r = 0; r < R; r++) act[at[I_FREE_GATES] + r] = sigmoidf(raw[at[I_FREE_GATES] + r]);
    act[at[I_ALLOCATION_GATE]] = sigmoidf(raw[at[I_ALLOCATION_GATE]]);
    act[at[I_WRITE_GATE]] = sigmoidf(raw[at[I_WRITE_GATE]]);
    for (int r = 0; r < R; r++) softmax(act + at[I_READ_MODES] + 3 * r, 3);
}

/* From the gradient of the activated interface vector (d_act) to the raw one's (d_raw),
 * zero where the clip held the raw value. */
static void activation_backward(const Dims *d, const float *restrict raw_unclipped,
                                const float *restrict raw, const float *restrict act,
                                const float *restrict d_act, float *restrict d_raw) {
    const int R = d->R, M = d->M;
    const int *at = d->part;
    for (int i = 0; i < d->P; i++) d_raw[i] = d_act[i];
    for (int r = 0; r < R; r++) {
        int i = at[I_READ_STRENGTHS] + r;
        d_raw[i] *= oneplus_slope(raw[i]);
    }
    d_raw[at[I_WRITE_STRENGTH]] *= oneplus_slope(raw[at[I_WRITE_STRENGTH]]);
    for (int m = 0; m < M; m++) {
        int i = at[I_ERASE] + m;
        d_raw[i] *= act[i] * (1.0f - act[i]);
    }
    for (int r = 0; r < R; r++) {
        int i = at[I_FREE_GATES] + r;
        d_raw[i] *= act[i] * (1.0f - act[i]);
    }
    for (int k = I_ALLOCATION_GATE; k <= I_WRITE_GATE; k++) {
        int i = at[k];
        d_raw[i] *= act[i] * (1.0f - act[i]);
    }
    for (int r = 0; r < R; r++) {
        const float *pi = act + at[I_READ_MODES] + 3 * r;
        float *g = d_raw + at[I_READ_MODES] + 3 * r;
        float dot = g[0] * pi[0] + g[1] * pi[1] + g[2] * pi[2];
        for (int k = 0; k < 3; k++) g[k] = pi[k] * (g[k] - dot);
    }
    if (d->interface_clip > 0.0f)
        for (int i = 0; i < d->P; i++)
            if (raw_unclipped[i] < -d->interface_clip || raw_unclipped[i] > d->interface_clip)
                d_raw[i] = 0.0f;
}

/* The row norms sqrt(sum_m M[m][n]^2 + eps) of a memory (M, N). */
static void row_norms(const Dims *d, const float *restrict mem, float *restrict norm) {
    const int N = d->N;
    for (int n = 0; n < N; n++) norm[n] = 0.0f;
    for (int m = 0; m < d->M; m++)
        for (int n = 0; n < N; n++) norm[n] += mem[(idx)m * N + n] * mem[(idx)m * N + n];
    for (int n = 0; n < N; n++) norm[n] = sqrtf(norm[n] + d->eps);
}

/* Content weighting softmax_n(strength * cos(key, M[n])) on memory (M, N) with its row
 * norms: the weights, and the cosines the backward pass needs. */
static void content(const Dims *d, const float *restrict mem, const float *restrict norm,
                    const float *restrict key, float strength, float *restrict cosine,
                    float *restrict weights) {
    const int N = d->N, M = d->M;
    float kn = 0.0f;
    for (int m = 0; m < M; m++) kn += key[m] * key[m];
    kn = sqrtf(kn + d->eps);
    for (int n = 0; n < N; n++) cosine[n] = 0.0f;
    for (int m = 0; m < M; m++) {
        const float km = key[m], *row = mem + (idx)m * N;
        for (int n = 0; n < N; n++) cosine[n] += km * row[n];
    }
    for (int n = 0; n < N; n++) {
        cosine[n] /= kn * norm[n];
        weights[n] = strength * cosine[n];
    }
    softmax(weights, N);
}

/* content()'s backward from d_w: accumulates the memory's gradient into d_mem (M, N), sets
 * d_key (M) and returns the strength's gradient. scratch holds 2N floats. */
static float content_backward(const Dims *d, const float *restrict mem, const float *restrict norm,
                              const float *restrict key, float strength,
                              const float *restrict cosine, const float *restrict weights,
                              const float *restrict d_w, float *restrict d_mem,
                              float *restrict d_key, float *restrict scratch) {
    const int N = d->N, M = d->M;
    float *d_dots = scratch, *d_rows = scratch + N; /* d_rows: through the row norms */
    float kn = 0.0f;
    for (int m = 0; m < M; m++) kn += key[m] * key[m];
    kn = sqrtf(kn + d->eps);
    float dot = 0.0f, d_strength = 0.0f, d_kn = 0.0f;
    for (int n = 0; n < N; n++) dot += d_w[n] * weights[n];
    for (int n = 0; n < N; n++) {
        float d_score = weights[n] * (d_w[n] - dot);
        d_strength += d_score * cosine[n];
        float d_cos = d_score * strength;
        d_dots[n] = d_cos / (kn * norm[n]);
        float d_cc = d_cos * cosine[n];
        d_kn -= d_cc;
        d_rows[n] = -d_cc / (norm[n] * norm[n]);
    }
    d_kn /= kn * kn;
    for (int m = 0; m < M; m++) {
        const float *row = mem + (idx)m * N;
        float *d_row = d_mem + (idx)m * N;
        float km = key[m], acc = 0.0f;
        for (int n = 0; n < N; n++) {
            acc += d_dots[n] * row[n];
            d_row[n] += km * d_dots[n] + d_rows[n] * row[n];
        }
        d_key[m] = acc + d_kn * km;
    }
    return d_strength;
}

/* From this many slots on, sort_slots sorts by radix, O(N), instead of counting each slot's
 * place, O(N^2): at N = 1,024 the count took a fifth of a step without gradients. */
#define RADIX_FROM 256

/* A float's place in torch's ascending order as an unsigned integer: -0 with +0, NaN after
 * +infinity. On the bits, which no fast-maths flag of the build rewrites (with
 * -fno-signed-zeros, a test x == 0 on the float may be dropped). */
static inline uint32_t order_key(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    const uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return 0xffffffffu; /* NaN */
    if (magnitude == 0) return 0x80000000u;          /* -0 and +0 */
    return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}

/* order: the slots by ascending usage, equal usages in slot order (torch's stable sort;
 * NaN last), on order_key(). Below RADIX_FROM slots, each slot's place is the count of
 * slots before it, which vectorises: for N = 128, faster than a merge sort's unpredictable
 * branches. From there, a stable least-significant-digit radix sort in three passes of 11
 * bits. scratch holds 3N floats. */
static void sort_slots(int N, const float *restrict usage, int32_t *restrict order,
                       float *restrict scratch) {
    if (N < RADIX_FROM) {
        int32_t *key = (int32_t *)scratch; /* signed, for the vector compares */
        for (int n = 0; n < N; n++) key[n] = (int32_t)(order_key(usage[n]) ^ 0x80000000u);
        for (int i = 0; i < N; i++) {
            const int32_t ki = key[i];
            int place = 0;
            for (int j = 0; j < i; j++) place += key[j] <= ki;
            for (int j = i + 1; j < N; j++) place += key[j] < ki;
            order[place] = i;
        }
        return;
    }
    uint32_t *keys = (uint32_t *)scratch, *keys_next = keys + N;
    int32_t *slots = order, *slots_next = (int32_t *)(keys_next + N);
    for (int n = 0; n < N; n++) {
        keys[n] = order_key(usage[n]);
        slots[n] = n;
    }
    for (int shift = 0; shift < 32; shift += 11) {
        int count[2048] = {0};
        for (int n = 0; n < N; n++) count[(keys[n] >> shift) & 2047]++;
        for (int digit = 0, total = 0; digit < 2048; digit++) {
            const int here = count[digit];
            count[digit] = total;
            total += here;
        }
        for (int n = 0; n < N; n++) {
            const int place = count[(keys[n] >> shift) & 2047]++;
            keys_next[place] = keys[n];
            slots_next[place] = slots[n];
        }
        uint32_t *k = keys;
        keys = keys_next;
        keys_next = k;
        int32_t *s = slots;
        slots = slots_next;
        slots_next = s;
    }
    if (slots != order) memcpy(order, slots, sizeof(int32_t) * (size_t)N);
}

/* The new link L[i][j] = (1 - w[i] - w[j]) L_old[i][j] + w[i] p[j], off the diagonal
 * (off = 1), or 0 on it (off = 0); every path computes it so, to the same value. */
static inline float link_value(float wi, float wj, float old, float p, float off) {
    return off * ((1.0f - wi - wj) * old + wi * p);
}

/* Row i of the new link matrix, from the old row. */
static inline void link_row(int N, int i, const float *restrict ww, const float *restrict old,
                            const float *restrict p_old, float *restrict row) {
    for (int j = 0; j < N; j++)
        row[j] = link_value(ww[i], ww[j], old[j], p_old[j], j == i ? 0.0f : 1.0f);
}

/* Row i of the new link matrix, and in the same pass its share of the directions from the
 * last read weightings: f[i] = sum_j L[i][j] w[j] (set), b[j] += L[i][j] w[i]. Inlined with
 * R a constant, as link_row_backward. */
static inline __attribute__((always_inline)) void link_row_forward(
    int R, int N, int i, const float *restrict ww, const float *restrict old,
    const float *restrict p_old, const float *restrict rw_old, float *restrict row,
    float *restrict fwd, float *restrict bwd) {
    float w_i[R], acc[R];
    for (int r = 0; r < R; r++) {
        w_i[r] = rw_old[(idx)r * N + i];
        acc[r] = 0.0f;
    }
    for (int j = 0; j < N; j++) {
        const float x = link_value(ww[i], ww[j], old[j], p_old[j], j == i ? 0.0f : 1.0f);
        row[j] = x;
        for (int r = 0; r < R; r++) {
            acc[r] += x * rw_old[(idx)r * N + j];
            bwd[(idx)r * N + j] += x * w_i[r];
        }
    }
    for (int r = 0; r < R; r++) fwd[(idx)r * N + i] = acc[r];
}

/* link_row_forward() on the row in place: with keep = 0 one link array serves every state
 * (row i of the new links needs only row i of the old), so that a step streams the
 * matrix once, read and written, with no second array to fill. */
static inline __attribute__((always_inline)) void link_row_forward_in_place(
    int R, int N, int i, const float *restrict ww, const float *restrict p_old,
    const float *restrict rw_old, float *restrict row, float *restrict fwd,
    float *restrict bwd) {
    float w_i[R], acc[R];
    for (int r = 0; r < R; r++) {
        w_i[r] = rw_old[(idx)r * N + i];
        acc[r] = 0.0f;
    }
    for (int j = 0; j < N; j++) {
        const float x = link_value(ww[i], ww[j], row[j], p_old[j], j == i ? 0.0f : 1.0f);
        row[j] = x;
        for (int r = 0; r < R; r++) {
            acc[r] += x * rw_old[(idx)r * N + j];
            bwd[(idx)r * N + j] += x * w_i[r];
        }
    }
    for (int r = 0; r < R; r++) fwd[(idx)r * N + i] = acc[r];
}

/* Row i of the links' backward, in one pass: the new link row's whole gradient g (the
 * carry dl's, and the directions' f = L w, b = L^T w from the last read weightings), and
 * from it the old links' (into dl), the write weighting's (d_ww), the old precedence's
 * (d_p_old) and the last read weightings' (d_rw_old). Inlined with R a constant, the loop
 * over the heads unrolls and the row's loop vectorises. */
static inline __attribute__((always_inline)) void link_row_backward(
    int R, int N, int i, const float *restrict ww, const float *restrict old,
    const float *restrict p_old, const float *restrict rw_old, const float *restrict d_fwd,
    const float *restrict d_bwd, float *restrict dl, float *restrict d_ww,
    float *restrict d_p_old, float *restrict d_rw_old) {
    const float wi = ww[i];
    float df_i[R], w_i[R], acc[R], row = 0.0f;
    for (int r = 0; r < R; r++) {
        df_i[r] = d_fwd[(idx)r * N + i];
        w_i[r] = rw_old[(idx)r * N + i];
        acc[r] = 0.0f;
    }
    for (int j = 0; j < N; j++) {
        const float off = j == i ? 0.0f : 1.0f, keep = 1.0f - wi - ww[j];
        const float lnew = link_value(wi, ww[j], old[j], p_old[j], off);
        float g = dl[j];
        for (int r = 0; r < R; r++) {
            const float db = d_bwd[(idx)r * N + j];
            g += df_i[r] * rw_old[(idx)r * N + j] + w_i[r] * db;
            d_rw_old[(idx)r * N + j] += lnew * df_i[r];
            acc[r] += lnew * db;
        }
        g *= off;
        row += g * (p_old[j] - old[j]);
        d_ww[j] -= g * old[j];
        d_p_old[j] += g * wi;
        dl[j] = keep * g;
    }
    d_ww[i] += row;
    for (int r = 0; r < R; r++) d_rw_old[(idx)r * N + i] += acc[r];
}

/* Sparse links (link_sparsity K, 0 < K < N; ntm.dnc.sparse_link). A state's links are
 * held as lists, one per row, of the entries kept (K at most: the column and the value,
 * kept zeros included); every other entry is 0. A step changes the rows of the write
 * weighting's K kept slots and the columns of the precedence's, and no row or column then
 * has more than 2K non-zero entries: the update, each row's and column's K largest, the
 * directions and the backward all take O(N K) a step. */

/* The K-th largest entry of a line (a row or a column): the line's K largest are those at
 * or ahead of it, ahead meaning a larger value, or an equal one at a lower index. */
typedef struct {
    float value;
    int index;
} Bound;

static inline int ahead(float value, int index, float other, int other_index) {
    return value > other || (value == other && index < other_index);
}

static inline int within(float value, int index, Bound bound) {
    return value > bound.value || (value == bound.value && index <= bound.index);
}

/* The K largest entries of x (N), equal ones in slot order: their slots (chosen, K) and x
 * with every other entry 0 (kept). */
static void keep_largest(int N, int K, const float *restrict x, int *restrict chosen,
                         float *restrict kept) {
    int count = 0;
    for (int n = 0; n < N; n++) {
        const float v = x[n];
        if (count == K && !(v > x[chosen[K - 1]])) continue;
        int at = count < K ? count++ : K - 1;
        for (; at > 0 && v > x[chosen[at - 1]]; at--) chosen[at] = chosen[at - 1];
        chosen[at] = n;
    }
    for (int n = 0; n < N; n++) kept[n] = 0.0f;
    for (int k = 0; k < K; k++) kept[chosen[k]] = x[chosen[k]];
}

/* The bound of the K largest of a line of N entries whose non-zero ones are among the n
 * listed (index, value), line[] holding every entry. sorted: room for n. */
static Bound line_bound(int N, int K, int n, const int *restrict index,
                        const float *restrict value, const float *restrict line,
                        Bound *restrict sorted) {
    int positive = 0, negative = 0;
    for (int k = 0; k < n; k++) {
        positive += value[k] > 0.0f;
        negative += value[k] < 0.0f;
    }
    const int zeros = N - positive - negative;
    if (positive < K && positive + zeros >= K) /* a zero: the (K - positive)-th by index */
        for (int j = 0, need = K - positive; j < N; j++)
            if (line[j] == 0.0f && --need == 0) return (Bound){0.0f, j};
    if (positive == K) { /* the last of the positive ones */
        Bound last = {INFINITY, -1};
        for (int k = 0; k < n; k++)
            if (value[k] > 0.0f && !ahead(value[k], index[k], last.value, last.index))
                last = (Bound){value[k], index[k]};
        return last;
    }
    int m = 0; /* the non-zero entries in order, by insertion: 2K of them at most */
    for (int k = 0; k < n; k++) {
        if (value[k] == 0.0f) continue;
        int at = m++;
        for (; at > 0 && ahead(value[k], index[k], sorted[at - 1].value, sorted[at - 1].index);
             at--)
            sorted[at] = sorted[at - 1];
        sorted[at] = (Bound){value[k], index[k]};
    }
    const int rank = positive > K ? K : K - zeros; /* among the positive, or the negative */
    return rank >= 1 && rank <= m ? sorted[rank - 1] : (Bound){-INFINITY, N}; /* NaN: all */
}

/* Scratch of the sparse links' forward and backward, for one sequence at a time. line and
 * where are all 0 and all -1 between uses. */
typedef struct {
    Bound *column_bound, *sorted;  /* N; 2K */
    float *w, *p, *line, *d_w, *d_p; /* N each: the kept write weighting and precedence */
    float *row_value, *column_value; /* N * 2K each: each line's entries that may be non-zero */
    int *w_slots, *p_slots;          /* K each: the slots they keep */
    int *where, *row_count, *column_count; /* N each */
    int *row_index, *row_from, *column_index; /* N * 2K each */
    void *block;
} SparseWork;

static int sparse_work_alloc(int N, int K, SparseWork *s) {
    const size_t n = (size_t)N, k2 = 2 * (size_t)K;
    s->block = malloc(sizeof(Bound) * (n + k2) + sizeof(float) * (5 * n + 2 * n * k2) +
                      sizeof(int) * (2 * (size_t)K + 3 * n + 3 * n * k2));
    if (!s->block) return 2;
    s->column_bound = s->block;
    s->sorted = s->column_bound + n;
    s->w = (float *)(s->sorted + k2);
    s->p = s->w + n;
    s->line = s->p + n;
    s->d_w = s->line + n;
    s->d_p = s->d_w + n;
    s->row_value = s->d_p + n;
    s->column_value = s->row_value + n * k2;
    s->w_slots = (int *)(s->column_value + n * k2);
    s->p_slots = s->w_slots + K;
    s->where = s->p_slots + K;
    s->row_count = s->where + n;
    s->column_count = s->row_count + n;
    s->row_index = s->column_count + n;
    s->row_from = s->row_index + n * k2;
    s->column_index = s->row_from + n * k2;
    for (int i = 0; i < N; i++) {
        s->line[i] = 0.0f;
        s->where[i] = -1;
    }
    return 0;
}

/* One step's sparse links for one sequence, from the lists before it (cols, values, counts:
 * (N, K), (N, K), (N)), the write weighting ww, the precedence before the step p_old and
 * the read weightings before it rw_old (R, N): the lists after it (new_cols, new_values,
 * new_counts), where each entry kept was in its row's list before (from: its place there,
 * -1 if none) and the directions fwd, bwd (R, N) along the new links. */
static void sparse_link_forward(int R, int N, int K, const int32_t *restrict cols,
                                const float *restrict values, const int32_t *restrict counts,
                                const float *restrict ww, const float *restrict p_old,
                                const float *restrict rw_old, int32_t *restrict new_cols,
                                float *restrict new_values, int32_t *restrict new_counts,
                                int32_t *restrict from, float *restrict fwd,
                                float *restrict bwd, const SparseWork *s) {
    const idx K2 = 2 * (idx)K;
    keep_largest(N, K, ww, s->w_slots, s->w);
    keep_largest(N, K, p_old, s->p_slots, s->p);
    const float *w = s->w, *p = s->p;
    float *line = s->line;
    int *where = s->where;
    /* Each row's entries that may be non-zero: the ones it kept, updated, and for the rows
     * of the kept write slots, w[i] p[j] at the kept precedence slots. */
    for (int i = 0; i < N; i++) {
        int *index = s->row_index + i * K2, *source = s->row_from + i * K2;
        float *value = s->row_value + i * K2;
        const int32_t *c = cols + (idx)i * K;
        const float *v = values + (idx)i * K;
        for (int k = 0; k < counts[i]; k++) {
            const int j = c[k];
            index[k] = j;
            source[k] = k;
            value[k] = link_value(w[i], w[j], v[k], p[j], j == i ? 0.0f : 1.0f);
        }
        s->row_count[i] = counts[i];
    }
    for (int a = 0; a < K; a++) {
        const int i = s->w_slots[a], listed = s->row_count[i];
        int *index = s->row_index + i * K2, *source = s->row_from + i * K2, n = listed;
        float *value = s->row_value + i * K2;
        for (int k = 0; k < listed; k++) where[index[k]] = k;
        for (int e = 0; e < K; e++) {
            const int j = s->p_slots[e];
            if (j == i || where[j] >= 0) continue;
            index[n] = j;
            source[n] = -1;
            value[n++] = link_value(w[i], w[j], 0.0f, p[j], 1.0f);
        }
        for (int k = 0; k < listed; k++) where[index[k]] = -1;
        s->row_count[i] = n;
    }
    /* The columns' non-zero entries, and the bound of each column's K largest. */
    for (int j = 0; j < N; j++) s->column_count[j] = 0;
    for (int i = 0; i < N; i++)
        for (int k = 0; k < s->row_count[i]; k++) {
            const float x = s->row_value[i * K2 + k];
            if (x == 0.0f) continue;
            const int j = s->row_index[i * K2 + k], n = s->column_count[j]++;
            s->column_index[j * K2 + n] = i;
            s->column_value[j * K2 + n] = x;
        }
    for (int j = 0; j < N; j++) {
        const int n = s->column_count[j], *index = s->column_index + j * K2;
        const float *value = s->column_value + j * K2;
        for (int k = 0; k < n; k++) line[index[k]] = value[k];
        s->column_bound[j] = line_bound(N, K, n, index, value, line, s->sorted);
        for (int k = 0; k < n; k++) line[index[k]] = 0.0f;
    }
    /* Each row keeps what is among its K largest and its column's; then the directions. */
    for (int k = 0; k < R * N; k++) bwd[k] = 0.0f;
    for (int i = 0; i < N; i++) {
        const int n = s->row_count[i], *index = s->row_index + i * K2,
                  *source = s->row_from + i * K2;
        const float *value = s->row_value + i * K2;
        int32_t *kept_cols = new_cols + (idx)i * K, *kept_from = from + (idx)i * K;
        float *kept_values = new_values + (idx)i * K;
        for (int k = 0; k < n; k++) {
            line[index[k]] = value[k];
            where[index[k]] = k;
        }
        const Bound bound = line_bound(N, K, n, index, value, line, s->sorted);
        int kept = 0;
        for (int k = 0; k < n && kept < K; k++) {
            const int j = index[k];
            const float x = value[k];
            if (x != 0.0f && within(x, j, bound) && within(x, i, s->column_bound[j])) {
                kept_cols[kept] = j;
                kept_values[kept] = x;
                kept_from[kept++] = source[k];
            }
        }
        if (bound.value <= 0.0f) { /* its zeros, the lowest columns first */
            const int last = bound.value == 0.0f ? bound.index : N - 1;
            for (int j = 0; j <= last && kept < K; j++)
                if (line[j] == 0.0f && within(0.0f, i, s->column_bound[j])) {
                    kept_cols[kept] = j;
                    kept_values[kept] = 0.0f;
                    kept_from[kept++] = where[j] >= 0 ? source[where[j]] : -1;
                }
        }
        new_counts[i] = kept;
        for (int k = 0; k < n; k++) {
            line[index[k]] = 0.0f;
            where[index[k]] = -1;
        }
        for (int r = 0; r < R; r++) {
            const float *wr = rw_old + (idx)r * N, wi = wr[i];
            float *br = bwd + (idx)r * N, acc = 0.0f;
            for (int k = 0; k < kept; k++) {
                acc += kept_values[k] * wr[kept_cols[k]];
                br[kept_cols[k]] += kept_values[k] * wi;
            }
            fwd[(idx)r * N + i] = acc;
        }
    }
}

/* sparse_link_forward()'s backward for one sequence, from the gradient of the new lists'
 * values (d_new, aligned with them) and the directions' (d_fwd, d_bwd): accumulates the
 * write weighting's (d_ww), the old precedence's (d_p_old) and the last read weightings'
 * (d_rw_old) gradients, and sets the old links': aligned with the old lists (d_old), or
 * where d_old_dense is not NULL, as a dense (N, N) matrix (the first step's, whose links
 * came in dense; values then lists every non-zero entry of them). */
static void sparse_link_backward(int R, int N, int K, const float *restrict values,
                                 const int32_t *restrict new_cols,
                                 const float *restrict new_values,
                                 const int32_t *restrict new_counts,
                                 const int32_t *restrict from, const float *restrict ww,
                                 const float *restrict p_old, const float *restrict rw_old,
                                 const float *restrict d_fwd, const float *restrict d_bwd,
                                 const float *restrict d_new, float *restrict d_old,
                                 float *restrict d_old_dense, float *restrict d_ww,
                                 float *restrict d_p_old, float *restrict d_rw_old,
                                 const SparseWork *s) {
    keep_largest(N, K, ww, s->w_slots, s->w);
    keep_largest(N, K, p_old, s->p_slots, s->p);
    const float *w = s->w, *p = s->p;
    float *d_w = s->d_w, *d_p = s->d_p;
    for (int n = 0; n < N; n++) d_w[n] = d_p[n] = 0.0f;
    if (d_old_dense)
        for (idx k = 0; k < (idx)N * N; k++) d_old_dense[k] = 0.0f;
    else
        for (idx k = 0; k < (idx)N * K; k++) d_old[k] = 0.0f;
    for (int i = 0; i < N; i++)
        for (int k = 0; k < new_counts[i]; k++) {
            const idx at = (idx)i * K + k;
            const int j = new_cols[at], source = from[at];
            const float x = new_values[at];
            float g = d_new[at];
            for (int r = 0; r < R; r++) {
                const float *wr = rw_old + (idx)r * N;
                const float df = d_fwd[(idx)r * N + i], db = d_bwd[(idx)r * N + j];
                g += df * wr[j] + wr[i] * db;
                d_rw_old[(idx)r * N + j] += x * df;
                d_rw_old[(idx)r * N + i] += x * db;
            }
            if (j == i) continue; /* the diagonal is 0 whatever the inputs */
            const float old = source >= 0 ? values[(idx)i * K + source] : 0.0f;
            d_w[i] += g * (p[j] - old);
            d_w[j] -= g * old;
            d_p[j] += g * w[i];
            const float d_link = (1.0f - w[i] - w[j]) * g;
            if (d_old_dense)
                d_old_dense[(idx)i * N + j] = d_link;
            else if (source >= 0)
                d_old[(idx)i * K + source] = d_link;
        }
    for (int k = 0; k < K; k++) {
        d_ww[s->w_slots[k]] += d_w[s->w_slots[k]];
        d_p_old[s->p_slots[k]] += d_p[s->p_slots[k]];
    }
}

/* Pointers of dnc_forward, in order (int32_t where said, float for the rest). */
enum {
    F_PRE,      /* (T, L, B, G): the input's share of each layer's gate inputs, biases in */
    F_READ_WT,  /* (L, R*M, G): each layer's weights of the last reads, transposed */
    F_BELOW_WT, /* (L - 1, C, G): layer i's weights of layer i - 1's hidden state */
    F_HH_WT,    /* (L, C, G): recurrent weights */
    F_IF_WT,    /* (L*C, P): the interface layer's weights, transposed */
    F_IF_B,     /* (P) */
    F_MEMS,     /* per state (B, M, N) */
    F_READS,    /* (T + 1, B, R*M) */
    F_RW,       /* per state (B, R, N): read weightings */
    F_WW,       /* per state (B, N): write weightings */
    F_USAGE,    /* per state (B, N) */
    F_PREC,     /* per state (B, N): precedence */
    F_LINKS,    /* per state: the address of its link matrices (B, N, N); with keep = 1
                 * the states not a multiple of link_every share two arrays in turn. With
                 * sparse links two only: the initial state's, read, and the final one's,
                 * written; the states between are F_LINK_COLS' lists */
    F_NORMS,    /* per state (B, N): the memory's row norms */
    F_HS,       /* (T + 1, L, B, C) */
    F_CS,       /* per state (L, B, C) */
    F_GATES,    /* per step (L, B, G): activated gates */
    F_TANHC,    /* per step (L, B, C) */
    F_RAW,      /* per step (B, P): the interface vector before the clip */
    F_ORDER,    /* per step (B, N): the slots by ascending usage */
    F_ALLOC,    /* per step (B, N): allocation weighting */
    F_W_COS,    /* per step (B, N): the write key's cosines */
    F_W_CONTENT, /* per step (B, N): write content weighting */
    F_R_COS,    /* per step (B, R, N) */
    F_R_CONTENT, /* per step (B, R, N) */
    F_FORWARD,  /* per step (B, R, N): forward weightings */
    F_BACKWARD, /* per step (B, R, N): backward weightings */
    /* The sparse links' lists (sparsity K > 0; one float each otherwise, unused): */
    F_LINK_COLS,   /* per state (B, N, K), int32: each row's kept columns */
    F_LINK_VALUES, /* per state (B, N, K): their values */
    F_LINK_COUNTS, /* per state (B, N), int32: how many each row keeps */
    F_LINK_FROM,   /* per step (B, N, K), int32: each kept entry's place in its row's list
                    * before the step, -1 if none */
    F_COUNT
};

int dnc_forward_pointers(void) { return F_COUNT; }

/* The memory part of step t for sequence b: from the state before the step and the
 * clipped interface vector (act holds it activated on return), the state after it. */
static void memory_step(const Dims *d, void **p, int t, int b, const float *restrict raw,
                        float *restrict act, float *restrict scratch,
                        const SparseWork *sparse) {
    const int B = d->B, R = d->R, N = d->N, M = d->M;
    const idx MN = (idx)M * N, NN = (idx)N * N;
    const int *at = d->part;
    const idx s0 = state_at(d, t) * B + b, s1 = state_at(d, t + 1) * B + b,
              st = step_at(d, t) * B + b;
    float **f = (float **)p;
    const float *mem_old = f[F_MEMS] + s0 * MN, *norm_old = f[F_NORMS] + s0 * N;
    float *mem_new = f[F_MEMS] + s1 * MN, *norm_new = f[F_NORMS] + s1 * N;
    const float *rw_old = f[F_RW] + s0 * R * N, *ww_old = f[F_WW] + s0 * N;
    float *rw_new = f[F_RW] + s1 * R * N, *ww_new = f[F_WW] + s1 * N;
    const float *u_old = f[F_USAGE] + s0 * N, *p_old = f[F_PREC] + s0 * N;
    float *u_new = f[F_USAGE] + s1 * N, *p_new = f[F_PREC] + s1 * N;
    int32_t *order = (int32_t *)p[F_ORDER] + st * N;
    float *alloc = f[F_ALLOC] + st * N, *w_cos = f[F_W_COS] + st * N,
          *w_content = f[F_W_CONTENT] + st * N;
    float *r_cos = f[F_R_COS] + st * R * N, *r_content = f[F_R_CONTENT] + st * R * N,
          *fwd = f[F_FORWARD] + st * R * N, *bwd = f[F_BACKWARD] + st * R * N;
    float *reads = f[F_READS] + ((idx)(t + 1) * B + b) * R * M;
    float *psi = scratch, *sort_scratch = scratch + N;

    activate(d, raw, act);
    const float *free_gates = act + at[I_FREE_GATES];
    /* Retention and usage. */
    for (int n = 0; n < N; n++) psi[n] = 1.0f - free_gates[0] * rw_old[n];
    for (int r = 1; r < R; r++)
        for (int n = 0; n < N; n++) psi[n] *= 1.0f - free_gates[r] * rw_old[(idx)r * N + n];
    for (int n = 0; n < N; n++) u_new[n] = (u_old[n] + (1.0f - u_old[n]) * ww_old[n]) * psi[n];
    /* Allocation: the least used slots first. */
    sort_slots(N, u_new, order, sort_scratch);
    float before = 1.0f;
    for (int j = 0; j < N; j++) {
        int k = order[j];
        alloc[k] = (1.0f - u_new[k]) * before;
        before *= u_new[k];
    }
    /* Write weighting, from allocation and content on the old memory. */
    content(d, mem_old, norm_old, act + at[I_WRITE_KEY], act[at[I_WRITE_STRENGTH]], w_cos,
            w_content);
    float ga = act[at[I_ALLOCATION_GATE]], gw = act[at[I_WRITE_GATE]];
    for (int n = 0; n < N; n++) ww_new[n] = gw * (ga * alloc[n] + (1.0f - ga) * w_content[n]);
    /* Erase then add, and the new row norms. */
    const float *erase = act + at[I_ERASE], *vector = act + at[I_WRITE_VECTOR];
    for (int n = 0; n < N; n++) norm_new[n] = 0.0f;
    for (int m = 0; m < M; m++) {
        const float e = erase[m], v = vector[m], *row = mem_old + (idx)m * N;
        float *row_new = mem_new + (idx)m * N;
        for (int n = 0; n < N; n++) {
            float x = row[n] * (1.0f - ww_new[n] * e) + ww_new[n] * v;
            row_new[n] = x;
            norm_new[n] += x * x;
        }
    }
    for (int n = 0; n < N; n++) norm_new[n] = sqrtf(norm_new[n] + d->eps);
    /* Links, then the directions along them from the last read weightings. */
    if (d->sparsity) {
        const int K = d->sparsity;
        int32_t *cols = (int32_t *)p[F_LINK_COLS], *counts = (int32_t *)p[F_LINK_COUNTS];
        float *values = f[F_LINK_VALUES];
        sparse_link_forward(R, N, K, cols + s0 * N * K, values + s0 * N * K, counts + s0 * N,
                            ww_new, p_old, rw_old, cols + s1 * N * K, values + s1 * N * K,
                            counts + s1 * N, (int32_t *)p[F_LINK_FROM] + st * N * K, fwd, bwd,
                            sparse);
    } else {
        float *const *links = (float *const *)p[F_LINKS];
        const float *link_old = links[state_at(d, t)] + (idx)b * NN;
        float *link_new = links[state_at(d, t + 1)] + (idx)b * NN;
        for (int k = 0; k < R * N; k++) bwd[k] = 0.0f;
        for (int i = 0; i < N; i++) {
            const float *old = link_old + (idx)i * N;
            float *row = link_new + (idx)i * N;
            if (old == row) /* one array for every state (keep = 0) */
                switch (R) {
#define ROW(heads) link_row_forward_in_place(heads, N, i, ww_new, p_old, rw_old, row, fwd, bwd)
                case 1: ROW(1); break;
                case 2: ROW(2); break;
                case 4: ROW(4); break;
                default: ROW(R);
#undef ROW
                }
            else
                switch (R) {
#define ROW(heads) link_row_forward(heads, N, i, ww_new, old, p_old, rw_old, row, fwd, bwd)
                case 1: ROW(1); break;
                case 2: ROW(2); break;
                case 4: ROW(4); break;
                default: ROW(R);
#undef ROW
                }
        }
    }
    float written = 0.0f;
    for (int n = 0; n < N; n++) written += ww_new[n];
    for (int n = 0; n < N; n++) p_new[n] = (1.0f - written) * p_old[n] + ww_new[n];
    /* Read weightings: the modes' mixture of backward, content and forward; then read. */
    for (int r = 0; r < R; r++) {
        const float *pi = act + at[I_READ_MODES] + 3 * r;
        float *c = r_content + (idx)r * N, *w = rw_new + (idx)r * N;
        const float *fr = fwd + (idx)r * N, *br = bwd + (idx)r * N;
        content(d, mem_new, norm_new, act + at[I_READ_KEYS] + r * M,
                act[at[I_READ_STRENGTHS] + r], r_cos + (idx)r * N, c);
        for (int n = 0; n < N; n++) w[n] = pi[0] * br[n] + pi[1] * c[n] + pi[2] * fr[n];
        for (int m = 0; m < M; m++) {
            const float *row = mem_new + (idx)m * N;
            float acc = 0.0f;
            for (int n = 0; n < N; n++) acc += w[n] * row[n];
            reads[r * M + m] = acc;
        }
    }
}

/* The lists of sparse links (N, K) from a dense link matrix (N, N): every non-zero entry.
 * Returns 3, with the lists unfinished, where a row or a column has more than K. column
 * holds N ints. */
static int sparse_links_from_dense(int N, int K, const float *restrict link,
                                   int32_t *restrict cols, float *restrict values,
                                   int32_t *restrict counts, int *restrict column) {
    for (int j = 0; j < N; j++) column[j] = 0;
    for (int i = 0; i < N; i++) {
        int n = 0;
        for (int j = 0; j < N; j++) {
            const float x = link[(idx)i * N + j];
            if (x == 0.0f) continue;
            if (n == K || column[j]++ == K) return 3;
            cols[(idx)i * K + n] = j;
            values[(idx)i * K + n++] = x;
        }
        counts[i] = n;
    }
    return 0;
}

/* The dense link matrix (N, N) of sparse links' lists (N, K). */
static void dense_from_sparse_links(int N, int K, const int32_t *restrict cols,
                                    const float *restrict values,
                                    const int32_t *restrict counts, float *restrict link) {
    for (idx k = 0; k < (idx)N * N; k++) link[k] = 0.0f;
    for (int i = 0; i < N; i++)
        for (int k = 0; k < counts[i]; k++)
            link[(idx)i * N + cols[(idx)i * K + k]] = values[(idx)i * K + k];
}

/* The whole sequence forward. Entry 0 of the per-state arrays, reads and hs holds the
 * initial state on entry; entry t + 1 (per state: of t + 1 in turn) the state after step t
 * on exit. With sparse links, returns 3 where the initial links have more than K non-zero
 * entries in a row or a column (the caller checks first). */
static int forward_sequence(const Dims *d, void **p) {
    const int T = d->T, B = d->B, L = d->L, C = d->C, G = 4 * C, R = d->R, N = d->N,
              M = d->M, RM = R * M, P = d->P, K = d->sparsity;
    float **f = (float **)p;
    SparseWork sparse = {0};
    if (K && sparse_work_alloc(N, K, &sparse)) return 2;
    float *work = malloc(sizeof(float) * ((size_t)B * (G + 2 * (size_t)P) + 4 * (size_t)N));
    if (!work) {
        free(sparse.block);
        return 2;
    }
    float *pre = work, *raw_c = pre + (size_t)B * G, *act = raw_c + (size_t)B * P,
          *scratch = act + (size_t)B * P; /* memory_step's: 4N */
    for (int b = 0; b < B; b++)
        row_norms(d, f[F_MEMS] + (idx)b * M * N, f[F_NORMS] + (idx)b * N);
    int32_t *link_cols = (int32_t *)p[F_LINK_COLS], *link_counts = (int32_t *)p[F_LINK_COUNTS];
    float *const *links = (float *const *)p[F_LINKS];
    for (int b = 0; K && b < B; b++)
        if (sparse_links_from_dense(N, K, links[0] + (idx)b * N * N, link_cols + (idx)b * N * K,
                                    f[F_LINK_VALUES] + (idx)b * N * K, link_counts + (idx)b * N,
                                    sparse.where)) {
            free(work);
            free(sparse.block);
            return 3;
        }
    for (int i = 0; K && i < N; i++) sparse.where[i] = -1; /* as sparse_work_alloc left it */
    for (int t = 0; t < T; t++) {
        const float *reads = f[F_READS] + (idx)t * B * RM;
        const idx s0 = state_at(d, t), s1 = state_at(d, t + 1), st = step_at(d, t);
        /* The controller, then the interface vector from every layer's hidden state. */
        float *raw = f[F_RAW] + st * B * P;
        controller_forward(B, L, C, RM, P, f[F_PRE] + (idx)t * L * B * G, reads, f[F_READ_WT],
                           f[F_BELOW_WT], f[F_HH_WT], f[F_HS] + (idx)t * L * B * C,
                           f[F_CS] + s0 * L * B * C, f[F_HS] + (idx)(t + 1) * L * B * C,
                           f[F_CS] + s1 * L * B * C, f[F_GATES] + st * L * B * G,
                           f[F_TANHC] + st * L * B * C, pre, f[F_IF_WT], f[F_IF_B], raw);
        clamp_copy(raw, raw_c, B * P, d->interface_clip);
        for (int b = 0; b < B; b++)
            memory_step(d, p, t, b, raw_c + (idx)b * P, act + (idx)b * P, scratch, &sparse);
    }
    const idx last = state_at(d, T) * B;
    for (int b = 0; K && b < B; b++)
        dense_from_sparse_links(N, K, link_cols + (last + b) * N * K,
                                f[F_LINK_VALUES] + (last + b) * N * K,
                                link_counts + (last + b) * N, links[1] + (idx)b * N * N);
    free(work);
    free(sparse.block);
    return 0;
}

/* Pointers of dnc_backward after dnc_forward's, in order. */
enum {
    K_READ_W = F_COUNT, /* (L, G, R*M) */
    K_BELOW_W,          /* (L - 1, G, C) */
    K_HH_W,             /* (L, G, C) */
    K_IF_W,             /* (P, L*C) */
    K_D_HIDDEN,         /* (T, B, L*C): the output layer's gradient of the hidden states */
    K_D_READS_OUT,      /* (T, B, R*M): the output layer's gradient of the reads */
    K_D_RAW,            /* out (T, B, P): the interface vector's gradient, before the clip */
    K_D_GATES,          /* out (T, L, B, G): the gate inputs' gradients */
    K_LINKS,            /* (link_every - 1): addresses of arrays (B, N, N) for the links
                         * recomputed between two kept ones */
    /* The carries: the gradient of the final state on entry, of the initial one on exit. */
    K_D_MEM,   /* (B, M, N) */
    K_D_READS, /* (B, R*M) */
    K_D_RW,    /* (B, R, N) */
    K_D_WW,    /* (B, N) */
    K_D_USAGE, /* (B, N) */
    K_D_PREC,  /* (B, N) */
    K_D_LINK,  /* (B, N, N) */
    K_D_H,     /* (L, B, C) */
    K_D_C,     /* (L, B, C) */
    K_COUNT
};

int dnc_backward_pointers(void) { return K_COUNT; }

static int backward_sequence(const Dims *d, void **p);

int dnc_forward(const Dims *d, void **p) {
    unsigned int saved = flush_subnormals();
    int status = forward_sequence(d, p);
    restore_subnormals(saved);
    return status;
}

int dnc_backward(const Dims *d, void **p) {
    unsigned int saved = flush_subnormals();
    int status = backward_sequence(d, p);
    restore_subnormals(saved);
    return status;
}

/* memory_step()'s backward for sequence b: from the carries (the gradient of the state
 * after step t), its links before the step (N, N) and the reads' gradient d_reads (R*M),
 * the carries of the state before it and the interface vector's gradient d_raw (P, before
 * the clip). work holds 2P + (8 + 4R) N floats. With sparse links, link_old is unused and
 * the links' carries are d_links_new (N, K), aligned with the lists after the step, and
 * d_links_old, with those before it (after the first step: the dense K_D_LINK's). */
static void memory_backward(const Dims *d, void **p, int t, int b, const float *restrict raw,
                            const float *restrict link_old, const float *restrict d_reads,
                            float *restrict d_raw, float *restrict work,
                            const float *restrict d_links_new, float *restrict d_links_old,
                            const SparseWork *sparse) {
    const int B = d->B, R = d->R, N = d->N, M = d->M, P = d->P;
    const idx MN = (idx)M * N, NN = (idx)N * N;
    const int *at = d->part;
    const idx s0 = (idx)t * B + b, s1 = (idx)(t + 1) * B + b; /* keep = 1 here */
    float **f = (float **)p;
    const float *mem_old = f[F_MEMS] + s0 * MN, *norm_old = f[F_NORMS] + s0 * N;
    const float *mem_new = f[F_MEMS] + s1 * MN, *norm_new = f[F_NORMS] + s1 * N;
    const float *rw_old = f[F_RW] + s0 * R * N, *ww_old = f[F_WW] + s0 * N;
    const float *rw_new = f[F_RW] + s1 * R * N, *ww_new = f[F_WW] + s1 * N;
    const float *u_old = f[F_USAGE] + s0 * N, *u_new = f[F_USAGE] + s1 * N;
    const float *p_old = f[F_PREC] + s0 * N;
    const int32_t *order = (const int32_t *)p[F_ORDER] + s0 * N;
    const float *alloc = f[F_ALLOC] + s0 * N, *w_cos = f[F_W_COS] + s0 * N,
                *w_content = f[F_W_CONTENT] + s0 * N;
    const float *r_cos = f[F_R_COS] + s0 * R * N, *r_content = f[F_R_CONTENT] + s0 * R * N,
                *fwd = f[F_FORWARD] + s0 * R * N, *bwd = f[F_BACKWARD] + s0 * R * N;
    const float *raw_unclipped = f[F_RAW] + s0 * P;
    float *d_mem = f[K_D_MEM] + (idx)b * MN, *d_link = f[K_D_LINK] + (idx)b * NN;
    float *carry_rw = f[K_D_RW] + (idx)b * R * N, *carry_ww = f[K_D_WW] + (idx)b * N,
          *carry_u = f[K_D_USAGE] + (idx)b * N, *carry_p = f[K_D_PREC] + (idx)b * N;
    float *act = work, *d_act = act + P, *d_rw = d_act + P, *d_fwd = d_rw + (idx)R * N,
          *d_bwd = d_fwd + (idx)R * N, *d_rw_old = d_bwd + (idx)R * N,
          *d_ww = d_rw_old + (idx)R * N,
          *d_u = d_ww + N, *d_p_old = d_u + N, *psi = d_p_old + N, *g = psi + N,
          *lnew = g + N, *scratch = lnew + N; /* scratch: 2N; g, lnew: scratch too */

    activate(d, raw, act);
    for (int i = 0; i < P; i++) d_act[i] = 0.0f;
    /* Read: r = M_t^T w. */
    for (int k = 0; k < R * N; k++) d_rw[k] = carry_rw[k];
    for (int r = 0; r < R; r++) {
        const float *w = rw_new + (idx)r * N;
        float *dw = d_rw + (idx)r * N;
        for (int m = 0; m < M; m++) {
            const float *row = mem_new + (idx)m * N;
            float *d_row = d_mem + (idx)m * N, dr = d_reads[r * M + m];
            for (int n = 0; n < N; n++) {
                dw[n] += dr * row[n];
                d_row[n] += dr * w[n];
            }
        }
    }
    /* Read weightings: the modes, the directions' gradients and read content. */
    for (int r = 0; r < R; r++) {
        const float *pi = act + at[I_READ_MODES] + 3 * r, *dw = d_rw + (idx)r * N;
        const float *br = bwd + (idx)r * N, *c = r_content + (idx)r * N, *fr = fwd + (idx)r * N;
        float *d_pi = d_act + at[I_READ_MODES] + 3 * r, *d_c = g; /* g as scratch here */
        float s_b = 0.0f, s_c = 0.0f, s_f = 0.0f;
        for (int n = 0; n < N; n++) {
            s_b += dw[n] * br[n];
            s_c += dw[n] * c[n];
            s_f += dw[n] * fr[n];
            d_bwd[(idx)r * N + n] = pi[0] * dw[n];
            d_c[n] = pi[1] * dw[n];
            d_fwd[(idx)r * N + n] = pi[2] * dw[n];
        }
        d_pi[0] = s_b;
        d_pi[1] = s_c;
        d_pi[2] = s_f;
        d_act[at[I_READ_STRENGTHS] + r] = content_backward(
            d, mem_new, norm_new, act + at[I_READ_KEYS] + r * M, act[at[I_READ_STRENGTHS] + r],
            r_cos + (idx)r * N, c, d_c, d_mem, d_act + at[I_READ_KEYS] + r * M, scratch);
    }
    /* Precedence: p_t = (1 - sum w) p_{t-1} + w. */
    float written = 0.0f, dp_p = 0.0f;
    for (int n = 0; n < N; n++) {
        written += ww_new[n];
        dp_p += carry_p[n] * p_old[n];
    }
    for (int n = 0; n < N; n++) {
        d_ww[n] = carry_ww[n] + carry_p[n] - dp_p;
        d_p_old[n] = (1.0f - written) * carry_p[n];
    }
    /* Links and directions, row by row, the row's loop specialised to a few head counts. */
    for (int k = 0; k < R * N; k++) d_rw_old[k] = 0.0f;
    if (d->sparsity) {
        const int K = d->sparsity;
        const int32_t *cols = (const int32_t *)p[F_LINK_COLS],
                      *counts = (const int32_t *)p[F_LINK_COUNTS];
        const float *values = f[F_LINK_VALUES];
        sparse_link_backward(R, N, K, values + s0 * N * K, cols + s1 * N * K,
                             values + s1 * N * K, counts + s1 * N,
                             (const int32_t *)p[F_LINK_FROM] + s0 * N * K, ww_new, p_old,
                             rw_old, d_fwd, d_bwd, d_links_new, d_links_old,
                             t == 0 ? d_link : NULL, d_ww, d_p_old, d_rw_old, sparse);
    }
    for (int i = 0; !d->sparsity && i < N; i++) {
        const float *old = link_old + (idx)i * N;
        float *dl = d_link + (idx)i * N;
        switch (R) {
#define ROW(heads) link_row_backward(heads, N, i, ww_new, old, p_old, rw_old, d_fwd, d_bwd, dl, \
                                     d_ww, d_p_old, d_rw_old)
        case 1: ROW(1); break;
        case 2: ROW(2); break;
        case 4: ROW(4); break;
        default: ROW(R);
#undef ROW
        }
    }
    /* Erase then add. */
    const float *erase = act + at[I_ERASE], *vector = act + at[I_WRITE_VECTOR];
    for (int m = 0; m < M; m++) {
        const float e = erase[m], v = vector[m], *old = mem_old + (idx)m * N;
        float *d_row = d_mem + (idx)m * N, d_e = 0.0f, d_v = 0.0f;
        for (int n = 0; n < N; n++) {
            float dm = d_row[n], dk = dm * old[n];
            d_ww[n] += v * dm - dk * e;
            d_e -= dk * ww_new[n];
            d_v += ww_new[n] * dm;
            d_row[n] = dm * (1.0f - ww_new[n] * e);
        }
        d_act[at[I_ERASE] + m] = d_e;
        d_act[at[I_WRITE_VECTOR] + m] = d_v;
    }
    /* Write weighting: w = g_w (g_a a + (1 - g_a) c). */
    float ga = act[at[I_ALLOCATION_GATE]], gw = act[at[I_WRITE_GATE]], d_gw = 0.0f, d_ga = 0.0f;
    float *d_alloc = g, *d_wc = lnew;
    for (int n = 0; n < N; n++) {
        d_gw += d_ww[n] * (ga * alloc[n] + (1.0f - ga) * w_content[n]);
        d_ga += d_ww[n] * (alloc[n] - w_content[n]);
        d_alloc[n] = gw * ga * d_ww[n];
        d_wc[n] = gw * (1.0f - ga) * d_ww[n];
    }
    d_act[at[I_WRITE_GATE]] = d_gw;
    d_act[at[I_ALLOCATION_GATE]] = gw * d_ga;
    d_act[at[I_WRITE_STRENGTH]] = content_backward(
        d, mem_old, norm_old, act + at[I_WRITE_KEY], act[at[I_WRITE_STRENGTH]], w_cos,
        w_content, d_wc, d_mem, d_act + at[I_WRITE_KEY], scratch);
    /* Allocation, in sorted order: a_j = (1 - u_j) prod_{i<j} u_i, so
     * d u_j = prod_{i<j} u_i (S_j - d a_j) with S_j = sum_{k>j} d a_k (1 - u_k)
     * prod_{j<i<k} u_i, built from the end without dividing by a usage. */
    for (int n = 0; n < N; n++) d_u[n] = carry_u[n];
    float *before = scratch, *sorted = scratch + N;
    float prod = 1.0f;
    for (int j = 0; j < N; j++) {
        before[j] = prod;
        sorted[j] = u_new[order[j]];
        prod *= sorted[j];
    }
    float tail = 0.0f; /* S_j */
    for (int j = N - 1; j >= 0; j--) {
        int k = order[j];
        d_u[k] += before[j] * (tail - d_alloc[k]);
        tail = d_alloc[k] * (1.0f - sorted[j]) + sorted[j] * tail;
    }
    /* Usage: u_t = (u + (1 - u) w^w) psi, with u, w^w of the step before. */
    const float *free_gates = act + at[I_FREE_GATES];
    for (int n = 0; n < N; n++) psi[n] = 1.0f - free_gates[0] * rw_old[n];
    for (int r = 1; r < R; r++)
        for (int n = 0; n < N; n++) psi[n] *= 1.0f - free_gates[r] * rw_old[(idx)r * N + n];
    float *d_psi = g;
    for (int n = 0; n < N; n++) {
        carry_u[n] = d_u[n] * psi[n] * (1.0f - ww_old[n]);
        carry_ww[n] = d_u[n] * psi[n] * (1.0f - u_old[n]);
        d_psi[n] = d_u[n] * (u_old[n] + (1.0f - u_old[n]) * ww_old[n]);
    }
    /* Retention: psi = prod_r (1 - f_r w_r); the product of the other heads' factors. */
    for (int r = 0; r < R; r++) {
        const float *w = rw_old + (idx)r * N, fr = free_gates[r];
        float *dw_old = d_rw_old + (idx)r * N, d_f = 0.0f;
        for (int n = 0; n < N; n++) {
            float others = 1.0f;
            for (int s = 0; s < R; s++)
                if (s != r) others *= 1.0f - free_gates[s] * rw_old[(idx)s * N + n];
            float d_factor = d_psi[n] * others;
            d_f -= d_factor * w[n];
            dw_old[n] -= d_factor * fr;
        }
        d_act[at[I_FREE_GATES] + r] = d_f;
    }
    for (int k = 0; k < R * N; k++) carry_rw[k] = d_rw_old[k];
    for (int n = 0; n < N; n++) carry_p[n] = d_p_old[n];
    activation_backward(d, raw_unclipped, raw, act, d_act, d_raw);
}

/* The whole sequence backward, last step first, after dnc_forward with keep = 1. */
static int backward_sequence(const Dims *d, void **p) {
    const int T = d->T, B = d->B, L = d->L, C = d->C, G = 4 * C, R = d->R, N = d->N,
              RM = R * d->M, P = d->P, LC = L * C, K = d->sparsity;
    if (!d->keep || d->link_every < 1) return 1;
    float **f = (float **)p;
    size_t work_size = (size_t)B * P                            /* clipped raw */
                       + (size_t)B * LC                         /* d_hidden */
                       + 2 * (size_t)P + (8 + 4 * (size_t)R) * N  /* memory_backward's */
                       + 2 * (size_t)B * N * K;                 /* the sparse links' carries */
    SparseWork sparse = {0};
    if (K && sparse_work_alloc(N, K, &sparse)) return 2;
    float *work = malloc(sizeof(float) * work_size);
    if (!work) {
        free(sparse.block);
        return 2;
    }
    float *raw_c = work, *d_hidden = raw_c + (size_t)B * P, *step_work = d_hidden + (size_t)B * LC;
    float *carries[2] = {step_work + 2 * (size_t)P + (8 + 4 * (size_t)R) * N, NULL};
    carries[1] = carries[0] + (size_t)B * N * K;
    float *const *kept = (float *const *)p[F_LINKS], *const *between = (float *const *)p[K_LINKS];
    const int every = d->link_every;
    const idx NN = (idx)N * N, NK = (idx)N * K;
    float *d_reads = f[K_D_READS];
    /* The sparse links' carry on entry: the final links' gradient at their lists' entries. */
    for (int b = 0; K && b < B; b++) {
        const idx at = (idx)T * B + b;
        const int32_t *cols = (const int32_t *)p[F_LINK_COLS] + at * NK,
                      *counts = (const int32_t *)p[F_LINK_COUNTS] + at * N;
        const float *d_link = f[K_D_LINK] + b * NN;
        float *carry = carries[T & 1] + b * NK;
        for (int i = 0; i < N; i++)
            for (int k = 0; k < counts[i]; k++)
                carry[(idx)i * K + k] = d_link[(idx)i * N + cols[(idx)i * K + k]];
    }
    for (int t = T - 1; t >= 0; t--) {
        const float *raw = f[F_RAW] + (idx)t * B * P;
        float *d_raw = f[K_D_RAW] + (idx)t * B * P;
        const int first = t - t % every; /* the kept state this step's links grew from */
        if (!K && t > first && (t == T - 1 || t % every == every - 1)) /* links first..t anew */
            for (int s = first; s < t; s++)
                for (int b = 0; b < B; b++) {
                    const float *old = (s == first ? kept[s] : between[s - first - 1]) + b * NN;
                    const float *ww = f[F_WW] + ((idx)(s + 1) * B + b) * N;
                    const float *p_old = f[F_PREC] + ((idx)s * B + b) * N;
                    float *links = between[s - first] + b * NN;
                    for (int i = 0; i < N; i++)
                        link_row(N, i, ww, old + (idx)i * N, p_old, links + (idx)i * N);
                }
        const float *links = K ? NULL : t == first ? kept[t] : between[t - first - 1];
        clamp_copy(raw, raw_c, B * P, d->interface_clip);
        for (int b = 0; b < B; b++) {
            float *dr = d_reads + (idx)b * RM;
            const float *out = f[K_D_READS_OUT] + ((idx)t * B + b) * RM;
            for (int j = 0; j < RM; j++) dr[j] += out[j];
            memory_backward(d, p, t, b, raw_c + (idx)b * P, K ? NULL : links + b * NN, dr,
                            d_raw + (idx)b * P, step_work, carries[(t + 1) & 1] + b * NK,
                            carries[t & 1] + b * NK, &sparse);
        }
        /* The interface layer and the controller, top layer first. */
        controller_backward(B, L, C, RM, P, d_raw, f[K_IF_W], f[K_D_HIDDEN] + (idx)t * B * LC,
                            d_hidden, f[F_GATES] + (idx)t * L * B * G,
                            f[F_TANHC] + (idx)t * L * B * C, f[F_CS] + (idx)t * L * B * C,
                            f[K_D_GATES] + (idx)t * L * B * G, f[K_D_H], f[K_D_C], f[K_HH_W],
                            f[K_READ_W], f[K_BELOW_W], d_reads);
    }
    free(work);
    free(sparse.block);
    return 0;
}
