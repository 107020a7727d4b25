/* Sparse Access Memory's nearest-neighbour search (Rae et al., 2016, section 3.5), behind
 * the small interface an approximate index may later take over:
 *
 *   sam_index_row_changed(index, slot)  after memory row `slot` has changed;
 *   sam_index_search(index, queries, heads, k, out)  each head's k slots of the largest
 *       cosine similarity to its query, largest first, equal ones lower slot first.
 *
 * This one is exhaustive and exact: each search scans the N rows in blocks, a block's
 * similarities for every head at once (one pass over the memory per step, not one per
 * head), keeping each head's k best in a sorted list. It keeps the rows' norms
 * sqrt(|row|^2 + eps), updated by sam_index_row_changed, so that a row's norm is computed
 * once per write rather than once per search. Its cost is O(N W) per search, the one part
 * of the engine that grows with N; an index changes only this file.
 *
 * The similarity is ntm.models.ntm.addressing.cosine_similarity's,
 * q . M(i) / (sqrt(|q|^2 + eps) sqrt(|M(i)|^2 + eps)), and the order that of
 * ntm.models.sam.addressing.top_k. */

#ifndef NTM_SAM_SEARCH_H
#define NTM_SAM_SEARCH_H

#include <stdint.h>

#include "kernels.h"

/* One sequence's memory (n rows of w floats, row-major) and what the search keeps of it. */
typedef struct {
    const float *memory;
    float *norms; /* (n): sqrt(|row|^2 + eps) */
    int n, w;
    float eps;
} SamIndex;

/* Rows scored at a time: a block of a 20-float word size is 20 KiB, in cache for every head. */
#define SAM_SEARCH_BLOCK 256

static inline float sam_row_norm(const float *restrict row, int w, float eps) {
    float sum = 0.0f;
    for (int m = 0; m < w; m++) sum += row[m] * row[m];
    return sqrtf(sum + eps);
}

static void sam_index_row_changed(SamIndex *index, int slot) {
    index->norms[slot] = sam_row_norm(index->memory + (idx)slot * index->w, index->w, index->eps);
}

/* queries (heads, w); out (heads, k). k <= n. */
static void sam_index_search(const SamIndex *index, const float *restrict queries, int heads,
                             int k, int64_t *restrict out) {
    const int n = index->n, w = index->w;
    float query_norm[heads], best[(idx)heads * k], score[SAM_SEARCH_BLOCK];
    int count[heads];
    for (int h = 0; h < heads; h++) {
        query_norm[h] = sam_row_norm(queries + (idx)h * w, w, index->eps);
        count[h] = 0;
    }
    for (int start = 0; start < n; start += SAM_SEARCH_BLOCK) {
        const int size = n - start < SAM_SEARCH_BLOCK ? n - start : SAM_SEARCH_BLOCK;
        const float *rows = index->memory + (idx)start * w, *norms = index->norms + start;
        for (int h = 0; h < heads; h++) {
            const float *q = queries + (idx)h * w;
            for (int i = 0; i < size; i++) {
                const float *row = rows + (idx)i * w;
                float dot = 0.0f;
                for (int m = 0; m < w; m++) dot += q[m] * row[m];
                score[i] = dot / (query_norm[h] * norms[i]);
            }
            float *top = best + (idx)h * k;
            int64_t *slots = out + (idx)h * k;
            int c = count[h];
            for (int i = 0; i < size; i++) {
                const float s = score[i];
                /* Scanned in slot order: an equal score never displaces an earlier slot. */
                if (c == k && !(s > top[k - 1])) continue;
                int at = c < k ? c++ : k - 1;
                for (; at > 0 && s > top[at - 1]; at--) {
                    top[at] = top[at - 1];
                    slots[at] = slots[at - 1];
                }
                top[at] = s;
                slots[at] = start + i;
            }
            count[h] = c;
        }
    }
}

#endif
