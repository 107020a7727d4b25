/* Sparse Access Memory's nearest-neighbour index: an inverted file over the unit sphere,
 * updated a row at a time (sam_index.h says what each function promises).
 *
 * Layout: centroids and each cell's rows are stored in blocks of LANES rows, dimension-major
 * inside a block ([block][d][lane]), so that scoring a block against a key is w multiply-adds
 * of LANES-wide vectors whatever w is. A cell keeps its rows' slots and their scales
 * 1 / sqrt(|row|^2 + eps); a slot keeps its cell (-1: never written) and its place there. A
 * changed row is moved out of its cell by putting the cell's last row in its place. */

#include "sam_index.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LANES 16
/* While the index holds at most this many rows a cell, a query scans every cell, exactly: no
 * more rows than the default probes scan in a full memory (n / cells >= 2 cells rows a cell),
 * and a memory filling up is where the centroids taken from its first rows fit it least. */
#define FEW_ROWS_PER_CELL 16

typedef struct {
    int count;      /* rows held */
    int capacity;   /* a multiple of LANES */
    int32_t *slots; /* (capacity) */
    float *scales;  /* (capacity): 1 / sqrt(|row|^2 + eps); 0 past count */
    float *rows;    /* (capacity / LANES, w, LANES) */
} cell;

struct sam_index {
    int n, w, cells, probes;
    float eps;
    int centroids;      /* chosen so far (cells once the first rows are in) */
    float *centroid;    /* (cells / LANES rounded up, w, LANES), unit rows, 0 past centroids */
    cell *cell;         /* (cells) */
    int32_t *cell_of;   /* (n): the slot's cell, -1 never written */
    int32_t *place;     /* (n): the slot's place in its cell */
    int rows;           /* written rows held */
    int first_free;     /* no slot below it is never written */
    int64_t reset_work; /* slots the last reset cleared */
};

typedef struct {
    float score;
    int32_t slot;
} hit;

static inline int better(float score, int32_t slot, hit than) {
    return score > than.score || (score == than.score && slot < than.slot);
}

/* Offers a candidate to a top list of at most k, kept best first. */
static inline void offer(hit *top, int *count, int k, float score, int32_t slot) {
    int i = *count;
    if (i == k) {
        if (!better(score, slot, top[k - 1])) return;
        i = k - 1;
    } else {
        (*count)++;
    }
    while (i > 0 && better(score, slot, top[i - 1])) {
        top[i] = top[i - 1];
        i--;
    }
    top[i].score = score;
    top[i].slot = slot;
}

/* The scores of the LANES rows of one block against key: out[j] = key . row j. */
static inline void block_dots(const float *restrict block, const float *restrict key, int w,
                              float *restrict out) {
    float acc[LANES] = {0};
    for (int d = 0; d < w; d++) {
        const float q = key[d];
        const float *restrict column = block + (size_t)d * LANES;
        for (int j = 0; j < LANES; j++) acc[j] += q * column[j];
    }
    for (int j = 0; j < LANES; j++) out[j] = acc[j];
}

static inline float row_scale(const float *row, int w, float eps) {
    float norm2 = 0.0f;
    for (int d = 0; d < w; d++) norm2 += row[d] * row[d];
    return 1.0f / sqrtf(norm2 + eps);
}

int sam_index_default_cells(int n) {
    int cells = 1;
    while ((int64_t)cells * cells * 2 <= n && cells < 4096) cells *= 2;
    return cells;
}

int sam_index_default_probes(int n) {
    /* About 40 cells keep the recall above 0.9 from n = 2**12 to 2**20 (about sqrt(n)
     * cells); fewer cells need a larger share of them. */
    const int cells = sam_index_default_cells(n);
    return cells <= 16 ? cells : cells <= 64 ? cells / 2 : 48;
}

sam_index *sam_index_new(int n, int w, const sam_index_params *params) {
    sam_index_params p = {0, 0, 1e-8f};
    if (params) p = *params;
    if (n < 1 || w < 1 || p.cells < 0 || p.probes < 0 || !(p.eps >= 0.0f)) return NULL;
    sam_index *index = calloc(1, sizeof *index);
    if (!index) return NULL;
    index->n = n;
    index->w = w;
    index->eps = p.eps;
    index->cells = p.cells ? p.cells : sam_index_default_cells(n);
    index->probes = p.probes ? p.probes : sam_index_default_probes(n);
    if (index->probes > index->cells) index->probes = index->cells;
    if (index->probes > SAM_INDEX_MAX_PROBES) index->probes = SAM_INDEX_MAX_PROBES;
    size_t blocks = (size_t)(index->cells + LANES - 1) / LANES;
    index->centroid = calloc(blocks * w * LANES, sizeof(float));
    index->cell = calloc((size_t)index->cells, sizeof(cell));
    index->cell_of = malloc((size_t)n * sizeof(int32_t));
    index->place = malloc((size_t)n * sizeof(int32_t));
    if (!index->centroid || !index->cell || !index->cell_of || !index->place) {
        sam_index_free(index);
        return NULL;
    }
    for (int i = 0; i < n; i++) index->cell_of[i] = -1;
    return index;
}

void sam_index_free(sam_index *index) {
    if (!index) return;
    if (index->cell) {
        for (int c = 0; c < index->cells; c++) {
            free(index->cell[c].slots);
            free(index->cell[c].scales);
            free(index->cell[c].rows);
        }
    }
    free(index->cell);
    free(index->centroid);
    free(index->cell_of);
    free(index->place);
    free(index);
}

static inline float *lane(float *rows, int w, int place) {
    return rows + (size_t)(place / LANES) * w * LANES + place % LANES;
}

static void store(float *rows, int w, int place, const float *row) {
    float *at = lane(rows, w, place);
    for (int d = 0; d < w; d++) at[(size_t)d * LANES] = row[d];
}

/* Centroid `c` becomes the direction of row (or the first axis for a zero row). */
static void set_centroid(sam_index *index, int c, const float *row) {
    const int w = index->w;
    float norm2 = 0.0f;
    for (int d = 0; d < w; d++) norm2 += row[d] * row[d];
    float *at = lane(index->centroid, w, c);
    for (int d = 0; d < w; d++)
        at[(size_t)d * LANES] = norm2 > 0.0f ? row[d] / sqrtf(norm2) : (d == 0 ? 1.0f : 0.0f);
}

/* Storage back to at most twice what the cell holds (nothing for an empty cell): the cells'
 * sizes change as the centroids do, and the storage follows them instead of keeping the
 * largest each ever had. */
static void shrink(cell *at, int w) {
    int capacity = at->count ? LANES : 0;
    while (capacity < at->count) capacity *= 2;
    if (at->capacity <= 2 * capacity) return;
    if (capacity == 0) {
        free(at->slots);
        free(at->scales);
        free(at->rows);
        at->slots = NULL;
        at->scales = NULL;
        at->rows = NULL;
        at->capacity = 0;
        return;
    }
    /* A smaller realloc may fail and leave the block as it was: then keep it. */
    int32_t *slots = realloc(at->slots, (size_t)capacity * sizeof(int32_t));
    float *scales = slots ? realloc(at->scales, (size_t)capacity * sizeof(float)) : NULL;
    float *rows = scales ? realloc(at->rows, (size_t)capacity * w * sizeof(float)) : NULL;
    if (slots) at->slots = slots;
    if (scales) at->scales = scales;
    if (rows) {
        at->rows = rows;
        at->capacity = capacity;
    }
}

void sam_index_reset(sam_index *index) {
    int64_t work = 0;
    /* Centroids from the rows held, evenly through the cells: the row at chosen * rows /
     * cells for each chosen (a whole stride of rows / cells would take the first cells rows
     * only whenever rows < 2 cells). */
    const int resample = index->rows >= index->cells;
    int64_t seen = 0, chosen = 0;
    float *row = resample ? malloc((size_t)index->w * sizeof(float)) : NULL;
    for (int c = 0; c < index->cells; c++) {
        cell *at = &index->cell[c];
        for (int i = 0; i < at->count; i++, seen++) {
            if (row && chosen < index->cells && seen == chosen * index->rows / index->cells) {
                const float *from = lane(at->rows, index->w, i);
                for (int d = 0; d < index->w; d++) row[d] = from[(size_t)d * LANES];
                set_centroid(index, (int)chosen++, row);
            }
            index->cell_of[at->slots[i]] = -1;
            at->scales[i] = 0.0f;
        }
        work += at->count;
        shrink(at, index->w);
        at->count = 0;
    }
    free(row);
    index->rows = 0;
    index->first_free = 0;
    index->reset_work = work;
}

static int grow(cell *at, int w) {
    if (at->count < at->capacity) return SAM_INDEX_OK;
    const int capacity = at->capacity ? 2 * at->capacity : LANES;
    int32_t *slots = realloc(at->slots, (size_t)capacity * sizeof(int32_t));
    if (slots) at->slots = slots;
    float *scales = realloc(at->scales, (size_t)capacity * sizeof(float));
    if (scales) at->scales = scales;
    float *rows = realloc(at->rows, (size_t)capacity * w * sizeof(float));
    if (rows) at->rows = rows;
    if (!slots || !scales || !rows) return SAM_INDEX_NO_MEMORY;
    const size_t old = (size_t)at->capacity;
    memset(at->scales + old, 0, (capacity - old) * sizeof(float));
    memset(at->rows + old * w, 0, (capacity - old) * w * sizeof(float));
    at->capacity = capacity;
    return SAM_INDEX_OK;
}

/* The cell whose centroid is nearest to row (the first of equals). */
static int nearest_cell(const sam_index *index, const float *row) {
    const int w = index->w;
    float dots[LANES];
    float best = -INFINITY;
    int best_cell = 0;
    for (int b = 0; b * LANES < index->centroids; b++) {
        block_dots(index->centroid + (size_t)b * w * LANES, row, w, dots);
        const int lanes = index->centroids - b * LANES < LANES ? index->centroids - b * LANES
                                                                : LANES;
        for (int j = 0; j < lanes; j++)
            if (dots[j] > best) {
                best = dots[j];
                best_cell = b * LANES + j;
            }
    }
    return best_cell;
}

static void remove_from_cell(sam_index *index, int slot) {
    const int w = index->w;
    cell *at = &index->cell[index->cell_of[slot]];
    const int place = index->place[slot], last = at->count - 1;
    if (place != last) {
        const float *from = lane(at->rows, w, last);
        float *to = lane(at->rows, w, place);
        for (int d = 0; d < w; d++) to[(size_t)d * LANES] = from[(size_t)d * LANES];
        at->slots[place] = at->slots[last];
        at->scales[place] = at->scales[last];
        index->place[at->slots[place]] = place;
    }
    at->scales[last] = 0.0f;
    at->count = last;
    index->cell_of[slot] = -1;
}

int sam_index_update(sam_index *index, int slot, const float *row) {
    if (!index || !row || slot < 0 || slot >= index->n) return SAM_INDEX_BAD_ARGUMENT;
    const int w = index->w;
    int target;
    float norm2 = 0.0f;
    for (int d = 0; d < w; d++) norm2 += row[d] * row[d];
    /* A centroid from a slot's first row only: SAM writes again each step to the slots it
     * read, and centroids taken from those rewrites would point a few ways only. */
    const int first = index->cell_of[slot] < 0;
    if (index->centroids < index->cells && first && (norm2 > 0.0f || index->centroids == 0)) {
        target = index->centroids++;
        set_centroid(index, target, row);
    } else {
        target = nearest_cell(index, row);
    }
    const int from = index->cell_of[slot];
    if (from >= 0 && from != target) {
        remove_from_cell(index, slot);
        index->rows--;
    }
    cell *at = &index->cell[target];
    if (index->cell_of[slot] < 0) {
        const int status = grow(at, w);
        if (status != SAM_INDEX_OK) {
            /* The slot reads as never written now. */
            if (slot < index->first_free) index->first_free = slot;
            return status;
        }
        index->cell_of[slot] = target;
        index->place[slot] = at->count;
        at->slots[at->count++] = slot;
        index->rows++;
    }
    const int place = index->place[slot];
    store(at->rows, w, place, row);
    at->scales[place] = 1.0f / sqrtf(norm2 + index->eps);
    while (index->first_free < index->n && index->cell_of[index->first_free] >= 0)
        index->first_free++;
    return SAM_INDEX_OK;
}

/* Offers every row of cell c. */
static void scan_cell(const sam_index *index, const cell *at, const float *key, hit *top,
                      int *count, int k) {
    const int w = index->w;
    float dots[LANES];
    for (int b = 0; b * LANES < at->count; b++) {
        block_dots(at->rows + (size_t)b * w * LANES, key, w, dots);
        const float *scales = at->scales + (size_t)b * LANES;
        const int lanes = at->count - b * LANES < LANES ? at->count - b * LANES : LANES;
        float best = -INFINITY;
        for (int j = 0; j < LANES; j++) {
            dots[j] *= scales[j];
            best = dots[j] > best ? dots[j] : best;
        }
        /* Most blocks hold nothing better than the k-th found: one comparison for them. */
        if (*count == k && best < top[k - 1].score) continue;
        for (int j = 0; j < lanes; j++)
            offer(top, count, k, dots[j], at->slots[(size_t)b * LANES + j]);
    }
}

int sam_index_query(const sam_index *index, const float *key, int k, int64_t *out_slots,
                    float *out_scores) {
    if (!index || !key || !out_slots || k < 1 || k > index->n || k > SAM_INDEX_MAX_K)
        return SAM_INDEX_BAD_ARGUMENT;
    const int w = index->w;
    float norm2 = 0.0f;
    for (int d = 0; d < w; d++) norm2 += key[d] * key[d];
    if (norm2 == 0.0f) {
        for (int i = 0; i < k; i++) {
            out_slots[i] = i;
            if (out_scores) out_scores[i] = 0.0f;
        }
        return SAM_INDEX_OK;
    }
    hit top[SAM_INDEX_MAX_K];
    int count = 0;
    /* The probes cells whose centroids are nearest the key. */
    hit cells[SAM_INDEX_MAX_PROBES];
    int probed = 0, scanned = 0;
    const int few = index->rows <= (int64_t)FEW_ROWS_PER_CELL * index->cells;
    const int probes = !few && index->probes < index->centroids ? index->probes
                                                                : index->centroids;
    float dots[LANES];
    for (int b = 0; b * LANES < index->centroids; b++) {
        block_dots(index->centroid + (size_t)b * w * LANES, key, w, dots);
        const int lanes = index->centroids - b * LANES < LANES ? index->centroids - b * LANES
                                                                : LANES;
        for (int j = 0; j < lanes; j++) offer(cells, &probed, probes, dots[j], b * LANES + j);
    }
    for (int i = 0; i < probed; i++) {
        const cell *at = &index->cell[cells[i].slot];
        scan_cell(index, at, key, top, &count, k);
        scanned += at->count;
    }
    /* Too few written rows there for an answer of k: the rest of the cells too. */
    if (count < k && scanned < index->rows) {
        for (int c = 0; c < index->centroids; c++) {
            int done = 0;
            for (int i = 0; i < probed; i++) done |= cells[i].slot == c;
            if (!done) scan_cell(index, &index->cell[c], key, top, &count, k);
        }
    }
    /* Never-written rows, similarity 0, lowest slots first: each one that enters the answer
     * does so before any later one could. */
    for (int slot = index->first_free; slot < index->n; slot++) {
        if (index->cell_of[slot] >= 0) continue;
        if (count == k && !better(0.0f, slot, top[k - 1])) break;
        offer(top, &count, k, 0.0f, slot);
    }
    const float key_scale = 1.0f / sqrtf(norm2 + index->eps);
    for (int i = 0; i < k; i++) {
        out_slots[i] = top[i].slot;
        if (out_scores) out_scores[i] = top[i].score * key_scale;
    }
    return SAM_INDEX_OK;
}

int sam_index_update_many(sam_index *index, const int64_t *slots, const float *rows,
                          int count) {
    if (!index || !slots || !rows || count < 0) return SAM_INDEX_BAD_ARGUMENT;
    for (int i = 0; i < count; i++) {
        if (slots[i] < 0 || slots[i] >= index->n) return SAM_INDEX_BAD_ARGUMENT;
        const int status = sam_index_update(index, (int)slots[i], rows + (size_t)i * index->w);
        if (status != SAM_INDEX_OK) return status;
    }
    return SAM_INDEX_OK;
}

int sam_index_query_many(const sam_index *index, const float *keys, int r, int k,
                         int64_t *out_slots, float *out_scores) {
    if (!index || !keys || r < 0) return SAM_INDEX_BAD_ARGUMENT;
    for (int h = 0; h < r; h++) {
        const int status =
            sam_index_query(index, keys + (size_t)h * index->w, k, out_slots + (size_t)h * k,
                            out_scores ? out_scores + (size_t)h * k : NULL);
        if (status != SAM_INDEX_OK) return status;
    }
    return SAM_INDEX_OK;
}

#define EXACT_BLOCK 256

int sam_exact_topk(const float *memory, int n, int w, const float *keys, int r, int k, float eps,
                   int64_t *out_slots, float *out_scores) {
    if (!memory || !keys || !out_slots || n < 1 || w < 1 || r < 1 || k < 1 || k > n ||
        k > SAM_INDEX_MAX_K || !(eps >= 0.0f))
        return SAM_INDEX_BAD_ARGUMENT;
    hit *top = malloc((size_t)r * k * sizeof(hit));
    int *count = calloc((size_t)r, sizeof(int));
    if (!top || !count) {
        free(top);
        free(count);
        return SAM_INDEX_NO_MEMORY;
    }
    float scales[EXACT_BLOCK];
    for (int start = 0; start < n; start += EXACT_BLOCK) {
        const int rows = n - start < EXACT_BLOCK ? n - start : EXACT_BLOCK;
        const float *block = memory + (size_t)start * w;
        for (int i = 0; i < rows; i++) scales[i] = row_scale(block + (size_t)i * w, w, eps);
        for (int h = 0; h < r; h++) {
            const float *key = keys + (size_t)h * w;
            hit *mine = top + (size_t)h * k;
            for (int i = 0; i < rows; i++) {
                const float *row = block + (size_t)i * w;
                float dot = 0.0f;
                for (int d = 0; d < w; d++) dot += key[d] * row[d];
                const float score = dot * scales[i];
                if (count[h] == k && score < mine[k - 1].score) continue;
                offer(mine, &count[h], k, score, start + i);
            }
        }
    }
    for (int h = 0; h < r; h++) {
        const float scale = row_scale(keys + (size_t)h * w, w, eps);
        for (int i = 0; i < k; i++) {
            out_slots[(size_t)h * k + i] = top[(size_t)h * k + i].slot;
            if (out_scores) out_scores[(size_t)h * k + i] = top[(size_t)h * k + i].score * scale;
        }
    }
    free(top);
    free(count);
    return SAM_INDEX_OK;
}

int sam_index_rows(const sam_index *index) { return index->rows; }

size_t sam_index_bytes(const sam_index *index) {
    size_t bytes = sizeof *index + (size_t)index->n * 2 * sizeof(int32_t);
    bytes += (size_t)(index->cells + LANES - 1) / LANES * index->w * LANES * sizeof(float);
    bytes += (size_t)index->cells * sizeof(cell);
    for (int c = 0; c < index->cells; c++)
        bytes += (size_t)index->cell[c].capacity * (sizeof(int32_t) + (1 + index->w) * sizeof(float));
    return bytes;
}

int64_t sam_index_reset_work(const sam_index *index) { return index->reset_work; }
int sam_index_cells(const sam_index *index) { return index->cells; }
int sam_index_probes(const sam_index *index) { return index->probes; }

int sam_index_set_probes(sam_index *index, int probes) {
    if (!index || probes < 1 || probes > index->cells || probes > SAM_INDEX_MAX_PROBES)
        return SAM_INDEX_BAD_ARGUMENT;
    index->probes = probes;
    return SAM_INDEX_OK;
}
