/* Sparse Access Memory's nearest-neighbour search (Rae et al. 2016, §3.5): the K memory rows
 * most similar to a read key by cosine similarity, from an index that the memory's writes
 * update in place, a row at a time, instead of one rebuilt every step.
 *
 * Similarity, as ntm.models.ntm.addressing.cosine_similarity computes it:
 *     K(q, M(i)) = q . M(i) / (sqrt(|q|^2 + eps) sqrt(|M(i)|^2 + eps)).
 * Ranking: larger similarity first; equal similarities, the lower slot first (as
 * ntm.models.sam.addressing.top_k).
 *
 * Rows never written since the index was made or last reset are taken to be zero (similarity
 * 0 with every key); they are not stored. A query answers as if every such row were a
 * candidate of similarity exactly 0: so when fewer than k written rows are found, or when
 * those found score below 0, the answer is completed by never-written rows, lowest slots
 * first, at similarity 0, ranked among written rows of similarity 0 by slot.
 *
 * The index is an inverted file over the unit sphere (a coarse quantiser): `cells` centroids,
 * fixed once chosen, each with the rows nearest to it (by cosine) stored contiguously; a query
 * scores the centroids and scans the rows of the `probes` nearest cells exactly, or of every
 * cell while the index holds at most 16 rows a cell (`cells` x 16), no more than the probes
 * scan in a full memory: a memory filling up is answered exactly. Centroids are the
 * directions of the first `cells` non-zero rows written to a slot not written before since
 * sam_index_new (a row written again to a slot seeds none); at each reset of an index that
 * held at least `cells` rows they are replaced by as many of those rows, taken at an even
 * stride through the cells, so that they follow what is written.
 *
 * Standalone C99 (libc and libm only); no global state: distinct indexes may be used from
 * distinct threads, and sam_index_query, which does not change the index, from several
 * threads at once on one index. */

#ifndef SAM_INDEX_H
#define SAM_INDEX_H

#include <stddef.h>
#include <stdint.h>

/* The most k a query or sam_exact_topk takes, and the most probes (stack buffers). */
#define SAM_INDEX_MAX_K 1024
#define SAM_INDEX_MAX_PROBES 1024

/* Status codes. */
#define SAM_INDEX_OK 0
#define SAM_INDEX_BAD_ARGUMENT (-1)
#define SAM_INDEX_NO_MEMORY (-2)

typedef struct {
    int cells;  /* centroids; 0: sam_index_default_cells(n) */
    int probes; /* cells scanned per query (at most cells); 0: sam_index_default_probes(n) */
    float eps;  /* the similarity's guard (SAMConfig.eps) */
} sam_index_params;

typedef struct sam_index sam_index;

/* An empty index over n slots of rows of width w; NULL when out of memory or for n < 1,
 * w < 1 or a negative setting. params NULL: the defaults, eps 1e-8. */
sam_index *sam_index_new(int n, int w, const sam_index_params *params);
void sam_index_free(sam_index *index);

/* Every slot back to never written, in time proportional to the rows written (and the
 * cells), not to n. Keeps the storage it has grown. */
void sam_index_reset(sam_index *index);

/* Slot `slot` now holds `row` (w floats): a row written the first time or changed. */
int sam_index_update(sam_index *index, int slot, const float *row);

/* The k (1 <= k <= min(n, SAM_INDEX_MAX_K)) slots most similar to `key` (w floats), best
 * first, into out_slots; their similarities into out_scores unless NULL. Approximate: exact
 * among the rows of the probed cells (every cell while the index holds at most 16 rows a
 * cell, or when fewer than k written rows lie in the probed ones) and the never-written rows. A zero key scores 0 with every row: slots 0..k-1. */
int sam_index_query(const sam_index *index, const float *key, int k, int64_t *out_slots,
                    float *out_scores);

/* The same for `count` rows (count x w) into `slots`, one after the other; and for r keys
 * (r x w) into r x k outputs. Stop at the first failure and return its status. */
int sam_index_update_many(sam_index *index, const int64_t *slots, const float *rows, int count);
int sam_index_query_many(const sam_index *index, const float *keys, int r, int k,
                         int64_t *out_slots, float *out_scores);

/* The exact answer over a whole memory (n x w, row-major) for r keys (r x w): out_slots and
 * out_scores (NULL allowed) are r x k. The rows are read in blocks, each block once for all
 * the keys. Zero rows score 0, as never-written ones do in the index. */
int sam_exact_topk(const float *memory, int n, int w, const float *keys, int r, int k, float eps,
                   int64_t *out_slots, float *out_scores);

/* Defaults: about sqrt(n) cells (a power of two, 1 to 4096); and the probes that keep the
 * recall of the true top 8 of a key near a stored row above 0.9 on random rows of width 20
 * (benchmarks/sam_index.py measures it). */
int sam_index_default_cells(int n);
int sam_index_default_probes(int n);

/* What the index holds: written rows; bytes allocated (itself, its slot table, centroids and
 * cells, capacity included); slots cleared by the last reset (0 before any). */
int sam_index_rows(const sam_index *index);
size_t sam_index_bytes(const sam_index *index);
int64_t sam_index_reset_work(const sam_index *index);
int sam_index_cells(const sam_index *index);
int sam_index_probes(const sam_index *index);

/* Changes the probes of later queries (1 to cells, at most SAM_INDEX_MAX_PROBES). */
int sam_index_set_probes(sam_index *index, int probes);

#endif
