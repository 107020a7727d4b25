/* Sparse Access Memory's recurrence in C: a whole sequence forward, and its backward, in one
 * call each, with a cost per step that does not grow with the number of slots N, apart
 * from the nearest-neighbour search (sam_search.h).
 *
 * Built with the NTM's and the DNC's engines into one library by ntm/engines/native and
 * called through ctypes from ntm/engines/native/sam.py. It computes what
 * ntm.models.sam.model.SAMCell.step computes: the LSTM controller's recurrence, the
 * interface vector's clip and activations, the least recently used slot, the sparse write
 * and the sparse reads, and the usage. The input's share of every controller layer's gate
 * inputs, the output layer and every weight gradient stay in PyTorch.
 *
 * The memory (B, N, W) is held once, in a workspace the caller keeps between calls, and
 * changed in place. Each step logs what it overwrites and what the backward pass needs
 * (O(K R W) per step and sequence): the old values and norms of the S = R K + 1 rows its
 * write touches, its write weights, its least recently used slot, and its read slots and
 * weights. The backward pass walks the log back, restoring M_{t-1} from M_t row by row,
 * and at its end writes the steps again, leaving the memory as the forward pass left it
 * (the final state's). The gradient of the memory is a second (B, N, W) workspace, zero
 * between calls: the backward pass clears the rows it touched.
 *
 * Usage and the least recently used slot. The usage U(i) (the step of slot i's last
 * access) lives in the workspace with a binary min-heap over (U(i), i) and each slot's
 * place in it, so a step's least recently used slot is the heap's top and an access moves
 * one slot, O(log N). A workspace fresh from a zero state (Dims.fresh) has every slot at
 * U = 0, never accessed: those stay out of the heap, which holds only slots accessed since
 * (U >= 1), and the least recently used slot is the lowest slot not in it while one is
 * left, found by a pointer that only moves up (skipping slots the heap holds). A state
 * given by the caller puts every slot in the heap (O(N), as copying it in is).
 *
 * Between calls on a fresh workspace the caller clears what the last call changed
 * (sam_reset, from that call's log): its memory rows, their norms, usages and heap places,
 * and each sequence's index (sam_index_reset: O(rows written)). Every slot a call changes
 * is one of its read slots (its initial read slots included) or one of its least recently
 * used slots, all logged.
 *
 * The search (sam_search.h) is exhaustive, or, with Dims.index, an inverted-file index per
 * sequence (sam_index.h), made at the workspace's first call and kept in it (F_INDEXES),
 * updated by the forward pass's writes. The backward pass searches nothing, and it leaves
 * the memory as the forward pass left it (its restores undone, row for row, by its
 * rewrites), so it leaves the index alone: the index holds the final memory throughout.
 *
 * Dimension legend: T time, B batch, L controller layers, C controller size, G = 4C gate
 * rows, R read heads, K slots per read head, S = R K + 1 write entries, N slots, W word
 * size, P = R W + R + W + 2 interface size.
 *
 * Arrays are float32 unless said otherwise, row-major and contiguous; the caller allocates
 * them all. */

#include <stdint.h>

#include "kernels.h"
#include "sam_search.h"

typedef struct {
    int T, B, L, C, R, N, W, K, P;
    int fresh; /* the workspace holds the zero state: usages 0, heaps empty (see above) */
    int index; /* search with an inverted-file index per sequence (F_INDEXES), not exhaustively */
    float eps, interface_clip, delta;
} SamDims;

/* Pointers of sam_forward, in order. */
enum {
    F_PRE,       /* (T, L, B, G): the input's share of each layer's gate inputs, biases in */
    F_READ_WT,   /* (L, R*W, G): each layer's weights of the last reads, transposed */
    F_BELOW_WT,  /* (L - 1, C, G): layer i's weights of layer i - 1's hidden state */
    F_HH_WT,     /* (L, C, G): recurrent weights */
    F_IF_WT,     /* (L*C, P): the interface layer's weights, transposed */
    F_IF_B,      /* (P) */
    F_READS,     /* (T + 1, B, R*W): entry 0 the initial reads */
    F_HS,        /* (T + 1, L, B, C) */
    F_CS,        /* (T + 1, L, B, C) */
    F_GATES,     /* (T, L, B, G): activated gates */
    F_TANHC,     /* (T, L, B, C) */
    F_RAW,       /* (T, B, P): the interface vector before the clip */
    F_STEPS,     /* (B): the steps taken before the sequence */
    /* The log. */
    F_RW,        /* (T + 1, B, R, K): read weights, entry 0 the initial ones */
    F_RI,        /* (T + 1, B, R, K), int64: their slots */
    F_LRU,       /* (T, B), int32: each step's least recently used slot */
    F_WW,        /* (T, B, S): write weights */
    F_OLD_ROWS,  /* (T, B, S, W): the rows of the write's entries before the step */
    F_OLD_NORMS, /* (T, B, S): their norms */
    /* The workspace, changed in place. */
    F_MEMORY,    /* (B, N, W) */
    F_NORMS,     /* (B, N): the rows' norms, sqrt(|row|^2 + eps) */
    F_USAGE,     /* (B, N) */
    F_HEAP,      /* (B, N), int32: slots, a min-heap over (usage, slot) */
    F_PLACE,     /* (B, N), int32: each slot's place in its heap, -1 if not in it */
    F_INDEXES,   /* (B), int64: each sequence's sam_index, 0 until made (Dims.index) */
    F_COUNT
};

int sam_forward_pointers(void) { return F_COUNT; }
/* sam_reset takes sam_forward's pointers again. */
int sam_reset_pointers(void) { return F_COUNT; }

/* The interface vector's parts, in ntm.models.sam.addressing.InterfaceLayout's order. */
static inline int part_strengths(const SamDims *d) { return d->R * d->W; }
static inline int part_write_gate(const SamDims *d) { return d->R * d->W + d->R; }
static inline int part_add(const SamDims *d) { return d->R * d->W + d->R + 2; }

static inline float oneplusf(float x) { return 1.0f + softplusf(x); }
static inline float oneplus_slope(float x) { return x > 20.0f ? 1.0f : sigmoidf(x); }

static void activate(const SamDims *d, const float *restrict raw, float *restrict act) {
    for (int i = 0; i < d->P; i++) act[i] = raw[i];
    for (int r = 0; r < d->R; r++) act[part_strengths(d) + r] = oneplusf(raw[part_strengths(d) + r]);
    act[part_write_gate(d)] = sigmoidf(raw[part_write_gate(d)]);
    act[part_write_gate(d) + 1] = sigmoidf(raw[part_write_gate(d) + 1]);
}

/* ------------------------------------------------------------------ usage and its heap */

typedef struct {
    float *usage;   /* (N) */
    int32_t *heap;  /* (N) */
    int32_t *place; /* (N) */
    int size;       /* slots in the heap */
    int fresh;      /* the lowest slot that may be unaccessed (fresh workspaces); N: none */
    int n;
} Usage;

static inline int earlier(const Usage *u, int a, int b) {
    return u->usage[a] < u->usage[b] || (u->usage[a] == u->usage[b] && a < b);
}

static inline void heap_put(Usage *u, int at, int slot) {
    u->heap[at] = slot;
    u->place[slot] = at;
}

static void sift_up(Usage *u, int at) {
    const int slot = u->heap[at];
    while (at > 0) {
        const int parent = (at - 1) / 2;
        if (!earlier(u, slot, u->heap[parent])) break;
        heap_put(u, at, u->heap[parent]);
        at = parent;
    }
    heap_put(u, at, slot);
}

static void sift_down(Usage *u, int at) {
    const int slot = u->heap[at];
    for (;;) {
        int child = 2 * at + 1;
        if (child >= u->size) break;
        if (child + 1 < u->size && earlier(u, u->heap[child + 1], u->heap[child])) child++;
        if (!earlier(u, u->heap[child], slot)) break;
        heap_put(u, at, u->heap[child]);
        at = child;
    }
    heap_put(u, at, slot);
}

/* Every slot in the heap, from the usages as they are: O(N), for a state given. */
static void heap_build(Usage *u) {
    u->size = u->n;
    for (int i = 0; i < u->n; i++) heap_put(u, i, i);
    for (int i = u->n / 2 - 1; i >= 0; i--) sift_down(u, i);
    u->fresh = u->n;
}

static int least_recently_used(Usage *u) {
    while (u->fresh < u->n && u->place[u->fresh] >= 0) u->fresh++;
    return u->fresh < u->n ? u->fresh : u->heap[0];
}

static void mark_accessed(Usage *u, int slot, float step) {
    u->usage[slot] = step;
    if (u->place[slot] < 0) {
        heap_put(u, u->size++, slot);
        sift_up(u, u->size - 1);
    } else {
        sift_down(u, u->place[slot]);
        sift_up(u, u->place[slot]);
    }
}

/* ------------------------------------------------------------------ the memory's step */

/* The slot of write entry e: the last read slots, then the least recently used one. */
static inline int64_t entry_slot(const SamDims *d, const int64_t *restrict read_slots, int lru,
                                 int e) {
    return e < d->R * d->K ? read_slots[e] : lru;
}

/* The write on one sequence's memory mem (N, W): row U erased, then w_e a added at each entry's
 * slot in turn. The forward pass and the backward pass's rewrite share it, so that the
 * rewrite's rows are the forward's to the bit. */
static int apply_write(const SamDims *d, float *restrict mem, const int64_t *restrict read_slots,
                       int lru, const float *restrict ww, const float *restrict add,
                       SamIndex *index) {
    const int W = d->W, S = d->R * d->K + 1;
    memset(mem + (idx)lru * W, 0, sizeof(float) * W);
    for (int e = 0; e < S; e++) {
        float *row = mem + entry_slot(d, read_slots, lru, e) * W;
        for (int m = 0; m < W; m++) row[m] += ww[e] * add[m];
    }
    int status = SAM_INDEX_OK;
    for (int e = 0; e < S; e++)
        status |= sam_index_row_changed(index, (int)entry_slot(d, read_slots, lru, e));
    return status;
}

/* Write and read of step t for sequence b, from the clipped interface vector raw; act holds
 * it activated on return. Nonzero where the index could not grow. */
static int memory_step(const SamDims *d, void **p, int t, int b, const float *restrict raw,
                        float *restrict act, Usage *u, SamIndex *index) {
    const int B = d->B, R = d->R, K = d->K, W = d->W, RK = R * K, S = RK + 1;
    float **f = (float **)p;
    const idx s0 = (idx)t * B + b, s1 = (idx)(t + 1) * B + b;
    float *mem = f[F_MEMORY] + (idx)b * d->N * W;
    const float *rw_old = f[F_RW] + s0 * RK;
    const int64_t *ri_old = (const int64_t *)p[F_RI] + s0 * RK;
    float *rw_new = f[F_RW] + s1 * RK;
    int64_t *ri_new = (int64_t *)p[F_RI] + s1 * RK;
    float *ww = f[F_WW] + s0 * S, *old_rows = f[F_OLD_ROWS] + s0 * S * W,
          *old_norms = f[F_OLD_NORMS] + s0 * S;
    float *reads = f[F_READS] + s1 * R * W;

    activate(d, raw, act);
    const float alpha = act[part_write_gate(d)], gamma = act[part_write_gate(d) + 1];
    const float *add = act + part_add(d);
    /* Write: w^W = alpha (gamma w^R_{t-1} + (1 - gamma) I^U); erase U, then add. */
    const int lru = least_recently_used(u);
    ((int32_t *)p[F_LRU])[s0] = lru;
    for (int e = 0; e < RK; e++) ww[e] = gamma * rw_old[e] * alpha;
    ww[RK] = (1.0f - gamma) * alpha;
    for (int e = 0; e < S; e++) {
        const int64_t slot = entry_slot(d, ri_old, lru, e);
        memcpy(old_rows + (idx)e * W, mem + slot * W, sizeof(float) * W);
        old_norms[e] = index->norms[slot];
    }
    if (apply_write(d, mem, ri_old, lru, ww, add, index) != SAM_INDEX_OK) return 1;
    /* Read: each head's K nearest slots, a softmax over them, their weighted sum. */
    sam_index_search(index, act, R, K, ri_new);
    for (int r = 0; r < R; r++) {
        const float *q = act + r * W, strength = act[part_strengths(d) + r];
        const float qn = sam_row_norm(q, W, d->eps);
        float *w = rw_new + r * K;
        for (int j = 0; j < K; j++) {
            const float *row = mem + ri_new[r * K + j] * W;
            float dot = 0.0f;
            for (int m = 0; m < W; m++) dot += row[m] * q[m];
            w[j] = strength * (dot / (qn * sam_row_norm(row, W, d->eps)));
        }
        softmax(w, K);
        float *out = reads + r * W;
        for (int m = 0; m < W; m++) out[m] = 0.0f;
        for (int j = 0; j < K; j++) {
            const float *row = mem + ri_new[r * K + j] * W;
            for (int m = 0; m < W; m++) out[m] += w[j] * row[m];
        }
    }
    /* Usage: a slot whose read weights (all heads) and write weight add up to more than
     * delta was accessed now. Each slot once, at its first entry among reads and writes. */
    const float step = f[F_STEPS][b] + (float)(t + 1);
    for (int i = 0; i < RK + S; i++) {
        const int64_t slot = i < RK ? ri_new[i] : entry_slot(d, ri_old, lru, i - RK);
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = (j < RK ? ri_new[j] : entry_slot(d, ri_old, lru, j - RK)) == slot;
        if (seen) continue;
        float read = 0.0f, written = 0.0f;
        for (int j = 0; j < RK; j++) read += ri_new[j] == slot ? rw_new[j] : 0.0f;
        for (int e = 0; e < S; e++) written += entry_slot(d, ri_old, lru, e) == slot ? ww[e] : 0.0f;
        if (read + written > d->delta) mark_accessed(u, (int)slot, step);
    }
    return 0;
}

static Usage usage_of(const SamDims *d, void **p, int b) {
    const idx at = (idx)b * d->N;
    Usage u = {((float **)p)[F_USAGE] + at, (int32_t *)p[F_HEAP] + at, (int32_t *)p[F_PLACE] + at,
               0, 0, d->N};
    return u;
}

/* Sequence b's search; with_ivf 0: without its index, neither updated nor searched. */
static SamIndex index_of(const SamDims *d, void **p, int b, int with_ivf) {
    float **f = (float **)p;
    sam_index *ivf = with_ivf ? (sam_index *)(intptr_t)((int64_t *)p[F_INDEXES])[b] : NULL;
    SamIndex index = {f[F_MEMORY] + (idx)b * d->N * d->W, f[F_NORMS] + (idx)b * d->N, d->N, d->W,
                      d->eps, ivf};
    return index;
}

/* Each sequence's index, made at a workspace's first call; from a given state, filled with
 * its memory's non-zero rows (zero ones rank as never-written ones do). Nonzero where out
 * of memory. */
static int make_indexes(const SamDims *d, void **p) {
    int64_t *indexes = (int64_t *)p[F_INDEXES];
    const sam_index_params params = {0, 0, d->eps};
    for (int b = 0; b < d->B; b++) {
        if (indexes[b]) continue;
        sam_index *ivf = sam_index_new(d->N, d->W, &params);
        if (!ivf) return 1;
        indexes[b] = (int64_t)(intptr_t)ivf;
        const float *mem = ((float **)p)[F_MEMORY] + (idx)b * d->N * d->W;
        for (int i = 0; !d->fresh && i < d->N; i++) {
            const float *row = mem + (idx)i * d->W;
            int zero = 1;
            for (int m = 0; m < d->W && zero; m++) zero = row[m] == 0.0f;
            if (!zero && sam_index_update(ivf, i, row) != SAM_INDEX_OK) return 1;
        }
    }
    return 0;
}

int sam_forward(const SamDims *d, void **p) {
    const int T = d->T, B = d->B, L = d->L, C = d->C, G = 4 * C, RW = d->R * d->W, P = d->P;
    float **f = (float **)p;
    Usage *usage = malloc(sizeof(Usage) * B);
    float *work = malloc(sizeof(float) * (size_t)B * (G + 2 * (size_t)P));
    if (!usage || !work) {
        free(usage);
        free(work);
        return 2;
    }
    float *pre = work, *raw_c = pre + (size_t)B * G, *act = raw_c + (size_t)B * P;
    int status = d->index ? make_indexes(d, p) : 0;
    for (int b = 0; b < B; b++) {
        usage[b] = usage_of(d, p, b);
        if (!d->fresh) heap_build(&usage[b]);
    }
    for (int t = 0; t < T && !status; t++) {
        const float *reads = f[F_READS] + (idx)t * B * RW;
        float *raw = f[F_RAW] + (idx)t * B * P;
        const idx now = (idx)t * L, next = (idx)(t + 1) * L;
        controller_forward(B, L, C, RW, P, f[F_PRE] + now * B * G, reads, f[F_READ_WT],
                           f[F_BELOW_WT], f[F_HH_WT], f[F_HS] + now * B * C,
                           f[F_CS] + now * B * C, f[F_HS] + next * B * C, f[F_CS] + next * B * C,
                           f[F_GATES] + now * B * G, f[F_TANHC] + now * B * C, pre, f[F_IF_WT],
                           f[F_IF_B], raw);
        clamp_copy(raw, raw_c, B * P, d->interface_clip);
        for (int b = 0; b < B && !status; b++) {
            SamIndex index = index_of(d, p, b, d->index);
            status = memory_step(d, p, t, b, raw_c + (idx)b * P, act + (idx)b * P, &usage[b],
                                 &index);
        }
    }
    free(usage);
    free(work);
    return status ? 2 : 0;
}

/* Clear what a call on a fresh workspace changed, from its log: every slot it read
 * (entry 0 included) or found least recently used gets a zero row, the zero row's norm,
 * usage 0 and no place in the heap; each index holds no row. O(T B K R W), and the
 * indexes' O(rows written + cells). */
int sam_reset(const SamDims *d, void **p) {
    const int T = d->T, B = d->B, N = d->N, W = d->W, RK = d->R * d->K;
    float **f = (float **)p;
    const float zero_norm = sqrtf(d->eps);
    const int64_t *ri = (const int64_t *)p[F_RI];
    const int32_t *lru = (const int32_t *)p[F_LRU];
    for (int t = 0; t <= T; t++)
        for (int b = 0; b < B; b++)
            for (int i = 0; i <= RK; i++) {
                if (i == RK && t == T) continue;
                const int64_t slot = i < RK ? ri[((idx)t * B + b) * RK + i] : lru[(idx)t * B + b];
                const idx at = (idx)b * N + slot;
                memset(f[F_MEMORY] + at * W, 0, sizeof(float) * W);
                f[F_NORMS][at] = zero_norm;
                f[F_USAGE][at] = 0.0f;
                ((int32_t *)p[F_PLACE])[at] = -1;
            }
    const int64_t *indexes = (const int64_t *)p[F_INDEXES];
    for (int b = 0; d->index && b < B; b++)
        if (indexes[b]) sam_index_reset((sam_index *)(intptr_t)indexes[b]);
    return 0;
}

/* Pointers of sam_backward after sam_forward's, in order. */
enum {
    K_READ_W = F_COUNT, /* (L, G, R*W) */
    K_BELOW_W,          /* (L - 1, G, C) */
    K_HH_W,             /* (L, G, C) */
    K_IF_W,             /* (P, L*C) */
    K_D_HIDDEN,         /* (T, B, L*C): the output layer's gradient of the hidden states */
    K_D_READS_OUT,      /* (T, B, R*W): the output layer's gradient of the reads */
    K_D_RAW,            /* out (T, B, P): the interface vector's gradient, before the clip */
    K_D_GATES,          /* out (T, L, B, G): the gate inputs' gradients */
    /* The carries: the gradient of the final state on entry (zero: it carries none), of
     * the initial one on exit. */
    K_D_MEM,   /* (B, N, W): zero on entry; on exit, with fresh = 0, the initial memory's
                * gradient, and with fresh = 1 zero again (the rows touched cleared) */
    K_D_READS, /* (B, R*W) */
    K_D_RW,    /* (B, R, K) */
    K_D_H,     /* (L, B, C) */
    K_D_C,     /* (L, B, C) */
    K_COUNT
};

int sam_backward_pointers(void) { return K_COUNT; }

/* memory_step()'s backward for sequence b, with the memory at M_t on entry and M_{t-1} on
 * exit: from the reads' gradient d_reads (R*W) and the carries, the carries of the state
 * before the step and the interface vector's gradient d_raw (P, before the clip). */
static void memory_backward(const SamDims *d, void **p, int t, int b, const float *restrict raw,
                            const float *restrict d_reads, float *restrict d_raw,
                            float *restrict act, float *restrict d_act, SamIndex *index) {
    const int B = d->B, R = d->R, K = d->K, W = d->W, RK = R * K, S = RK + 1, P = d->P;
    float **f = (float **)p;
    const idx s0 = (idx)t * B + b, s1 = (idx)(t + 1) * B + b;
    float *mem = f[F_MEMORY] + (idx)b * d->N * W, *d_mem = f[K_D_MEM] + (idx)b * d->N * W;
    const float *rw_old = f[F_RW] + s0 * RK, *rw_new = f[F_RW] + s1 * RK;
    const int64_t *ri_old = (const int64_t *)p[F_RI] + s0 * RK,
                  *ri_new = (const int64_t *)p[F_RI] + s1 * RK;
    const int lru = ((const int32_t *)p[F_LRU])[s0];
    const float *ww = f[F_WW] + s0 * S, *old_rows = f[F_OLD_ROWS] + s0 * S * W,
                *old_norms = f[F_OLD_NORMS] + s0 * S;
    float *carry_rw = f[K_D_RW] + (idx)b * RK;

    activate(d, raw, act);
    for (int i = 0; i < P; i++) d_act[i] = 0.0f;
    /* Reads: r = sum_j w_j M(s_j); w = softmax(strength * q . M(s_j) / (|q| |M(s_j)|)). */
    for (int r = 0; r < R; r++) {
        const float *q = act + r * W, strength = act[part_strengths(d) + r];
        const float *dr = d_reads + r * W, *w = rw_new + r * K;
        const float qn = sam_row_norm(q, W, d->eps);
        float *d_q = d_act + r * W, d_w[K], sim[K], rn[K], dot = 0.0f;
        for (int j = 0; j < K; j++) {
            const float *row = mem + ri_new[r * K + j] * W;
            float *d_row = d_mem + ri_new[r * K + j] * W, dots = 0.0f, g = 0.0f;
            for (int m = 0; m < W; m++) {
                dots += row[m] * q[m];
                g += dr[m] * row[m];
                d_row[m] += w[j] * dr[m];
            }
            rn[j] = sam_row_norm(row, W, d->eps);
            sim[j] = dots / (qn * rn[j]);
            d_w[j] = carry_rw[r * K + j] + g;
            dot += d_w[j] * w[j];
        }
        float d_strength = 0.0f, d_qn = 0.0f;
        for (int j = 0; j < K; j++) {
            const float *row = mem + ri_new[r * K + j] * W;
            float *d_row = d_mem + ri_new[r * K + j] * W;
            const float d_score = w[j] * (d_w[j] - dot), d_sim = d_score * strength;
            d_strength += d_score * sim[j];
            const float d_dot = d_sim / (qn * rn[j]);
            d_qn -= d_sim * sim[j] / qn;
            const float d_rn = -d_sim * sim[j] / rn[j];
            for (int m = 0; m < W; m++) {
                d_q[m] += d_dot * row[m];
                d_row[m] += d_dot * q[m] + d_rn * row[m] / rn[j];
            }
        }
        for (int m = 0; m < W; m++) d_q[m] += d_qn * q[m] / qn;
        d_act[part_strengths(d) + r] = d_strength;
    }
    /* Write: M_t(s) = [s != U] M_{t-1}(s) + sum_{e: s_e = s} w_e a. */
    const float alpha = act[part_write_gate(d)], gamma = act[part_write_gate(d) + 1];
    const float *add = act + part_add(d);
    float *d_add = d_act + part_add(d), d_ww[S];
    for (int e = 0; e < S; e++) {
        const float *d_row = d_mem + entry_slot(d, ri_old, lru, e) * W;
        float g = 0.0f;
        for (int m = 0; m < W; m++) {
            g += d_row[m] * add[m];
            d_add[m] += ww[e] * d_row[m];
        }
        d_ww[e] = g;
    }
    memset(d_mem + (idx)lru * W, 0, sizeof(float) * W);
    for (int e = S - 1; e >= 0; e--) { /* M_{t-1}, row by row, as the log holds it */
        const int64_t slot = entry_slot(d, ri_old, lru, e);
        memcpy(mem + slot * W, old_rows + (idx)e * W, sizeof(float) * W);
        index->norms[slot] = old_norms[e];
    }
    /* Write weights: w_e = alpha gamma w^R_{t-1}(e), and alpha (1 - gamma) at U. */
    float d_alpha = d_ww[RK] * (1.0f - gamma), d_gamma = -d_ww[RK] * alpha;
    for (int e = 0; e < RK; e++) {
        d_alpha += d_ww[e] * gamma * rw_old[e];
        d_gamma += d_ww[e] * alpha * rw_old[e];
        carry_rw[e] = d_ww[e] * gamma * alpha;
    }
    d_act[part_write_gate(d)] = d_alpha;
    d_act[part_write_gate(d) + 1] = d_gamma;
    /* Activations and the clip. */
    const float *raw_unclipped = f[F_RAW] + s0 * P;
    for (int i = 0; i < P; i++) d_raw[i] = d_act[i];
    for (int r = 0; r < R; r++) d_raw[part_strengths(d) + r] *= oneplus_slope(raw[part_strengths(d) + r]);
    for (int i = part_write_gate(d); i < part_write_gate(d) + 2; i++)
        d_raw[i] *= act[i] * (1.0f - act[i]);
    if (d->interface_clip > 0.0f)
        for (int i = 0; i < P; i++)
            if (raw_unclipped[i] < -d->interface_clip || raw_unclipped[i] > d->interface_clip)
                d_raw[i] = 0.0f;
}

/* Step t's write again on M_{t-1}, as memory_step made it: M_t. */
static void rewrite(const SamDims *d, void **p, int t, int b, const float *restrict raw,
                    float *restrict act, SamIndex *index) {
    const int RK = d->R * d->K, S = RK + 1;
    float **f = (float **)p;
    const idx s0 = (idx)t * d->B + b;
    const int64_t *ri_old = (const int64_t *)p[F_RI] + s0 * RK;
    const int lru = ((const int32_t *)p[F_LRU])[s0];
    const float *ww = f[F_WW] + s0 * S;
    activate(d, raw, act);
    apply_write(d, f[F_MEMORY] + (idx)b * d->N * d->W, ri_old, lru, ww, act + part_add(d), index);
}

int sam_backward(const SamDims *d, void **p) {
    const int T = d->T, B = d->B, L = d->L, C = d->C, G = 4 * C, RW = d->R * d->W, P = d->P,
              LC = L * C, RK = d->R * d->K, W = d->W;
    float **f = (float **)p;
    float *work = malloc(sizeof(float) * ((size_t)B * P + (size_t)B * LC + 2 * (size_t)P));
    if (!work) return 2;
    float *raw_c = work, *d_hidden = raw_c + (size_t)B * P, *act = d_hidden + (size_t)B * LC,
          *d_act = act + P;
    float *d_reads = f[K_D_READS];
    for (int t = T - 1; t >= 0; t--) {
        const float *raw = f[F_RAW] + (idx)t * B * P;
        float *d_raw = f[K_D_RAW] + (idx)t * B * P;
        clamp_copy(raw, raw_c, B * P, d->interface_clip);
        for (int b = 0; b < B; b++) {
            float *dr = d_reads + (idx)b * RW;
            const float *out = f[K_D_READS_OUT] + ((idx)t * B + b) * RW;
            for (int j = 0; j < RW; j++) dr[j] += out[j];
            SamIndex index = index_of(d, p, b, 0); /* the index keeps the final memory */
            memory_backward(d, p, t, b, raw_c + (idx)b * P, dr, d_raw + (idx)b * P, act, d_act,
                            &index);
        }
        /* The interface layer and the controller, top layer first. */
        controller_backward(B, L, C, RW, P, d_raw, f[K_IF_W], f[K_D_HIDDEN] + (idx)t * B * LC,
                            d_hidden, f[F_GATES] + (idx)t * L * B * G,
                            f[F_TANHC] + (idx)t * L * B * C, f[F_CS] + (idx)t * L * B * C,
                            f[K_D_GATES] + (idx)t * L * B * G, f[K_D_H], f[K_D_C], f[K_HH_W],
                            f[K_READ_W], f[K_BELOW_W], d_reads);
    }
    /* The memory as the forward pass left it, and (fresh) its gradient's rows cleared. */
    for (int t = 0; t < T; t++) {
        const float *raw = f[F_RAW] + (idx)t * B * P;
        clamp_copy(raw, raw_c, B * P, d->interface_clip);
        for (int b = 0; b < B; b++) {
            SamIndex index = index_of(d, p, b, 0);
            rewrite(d, p, t, b, raw_c + (idx)b * P, act, &index);
        }
    }
    const int64_t *ri = (const int64_t *)p[F_RI];
    const int32_t *lru = (const int32_t *)p[F_LRU];
    for (int t = 0; d->fresh && t <= T; t++)
        for (int b = 0; b < B; b++)
            for (int i = 0; i <= RK; i++) {
                if (i == RK && t == T) continue;
                const int64_t slot = i < RK ? ri[((idx)t * B + b) * RK + i] : lru[(idx)t * B + b];
                memset(f[K_D_MEM] + ((idx)b * d->N + slot) * W, 0, sizeof(float) * W);
            }
    free(work);
    return 0;
}
