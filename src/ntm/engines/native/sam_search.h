/* Sparse Access Memory's nearest-neighbour search (Rae et al., 2016, section 3.5), behind
 * a small interface:
 *
 *   sam_index_row_changed(index, slot)  after memory row `slot` has changed;
 *   sam_index_search(index, queries, heads, k, out)  each head's k slots of the largest
 *       cosine similarity to its query, largest first, equal ones lower slot first.
 *
 * Two searches sit behind it, chosen per workspace (SamIndex.ivf):
 *
 * - Exhaustive and exact (ivf NULL): each search scans the N rows in blocks, a block's
 *   similarities for every head at once (one pass over the memory per step, not one per
 *   head), keeping each head's k best in a sorted list. O(N W) per search.
 * - The inverted-file index of sam_index.h (ivf set, one per sequence): each changed row is
 *   moved to its nearest cell, and a search scans the centroids and the rows of the probed
 *   cells, and never the rows never written. Approximate where some cells go unprobed;
 *   with every cell probed it ranks as the exhaustive search does, up to rounding.
 *
 * Either way the rows' norms sqrt(|row|^2 + eps) are kept here, updated by
 * sam_index_row_changed, so that a row's norm is computed once per write rather than once
 * per search (the engine logs them for its backward pass).
 *
 * The similarity is ntm.models.ntm.addressing.cosine_similarity's,
 * q . M(i) / (sqrt(|q|^2 + eps) sqrt(|M(i)|^2 + eps)), and the order that of
 * ntm.models.sam.addressing.top_k. */

#ifndef NTM_SAM_SEARCH_H
#define NTM_SAM_SEARCH_H

#include <stdint.h>

#include "kernels.h"
#include "sam_index.h"

/* One sequence's memory (n rows of w floats, row-major) and what the search keeps of it. */
typedef struct {
    const float *memory;
    float *norms; /* (n): sqrt(|row|^2 + eps) */
    int n, w;
    float eps;
    sam_index *ivf; /* the inverted file, updated and searched; NULL: exhaustive search */
} SamIndex;

/* Rows scored at a time: a block of a 20-float word size is 20 KiB, in cache for every head. */
#define SAM_SEARCH_BLOCK 256

static inline float sam_row_norm(const float *restrict row, int w, float eps) {
    float sum = 0.0f;
    for (int m = 0; m < w; m++) sum += row[m] * row[m];
    return sqrtf(sum + eps);
}

/* SAM_INDEX_OK, or SAM_INDEX_NO_MEMORY where the inverted file could not grow. */
static int sam_index_row_changed(SamIndex *index, int slot) {
    const float *row = index->memory + (idx)slot * index->w;
    index->norms[slot] = sam_row_norm(row, index->w, index->eps);
    return index->ivf ? sam_index_update(index->ivf, slot, row) : SAM_INDEX_OK;
}

/* queries (heads, w); out (heads, k). k <= n, and k <= SAM_INDEX_MAX_K with the index. */
static void sam_index_search(const SamIndex *index, const float *restrict queries, int heads,
                             int k, int64_t *restrict out) {
    const int n = index->n, w = index->w;
    if (index->ivf) {
        sam_index_query_many(index->ivf, queries, heads, k, out, NULL);
        return;
    }
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
