/* winograd.c: 3x3 stride-1 conv2d (any dilation) by Winograd's minimal filtering algorithm
 * F(m x m, 3 x 3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
 *
 * x is (N, C, H, W), w is (OC, C/G, 3, 3), b is (OC,) or NULL, y is (N, OC, OH, OW), any
 * padding ph, pw >= 0 (the bottom / right padding is whatever OH, OW imply), any G.
 *
 * Variants (conv2d's `variant`, enum fc_conv_variant in fastconv.h; conv2d.c calls in):
 *   winograd_f2  F(2x2, 3x3): 4x4 input tiles, 16 multiplies per 2x2 outputs instead of 36
 *   winograd_f3  F(3x3, 3x3): 5x5 input tiles, 25 multiplies per 3x3 outputs instead of 81
 *                (points 0, 1, -1, 2, infinity)
 *   winograd_f4  F(4x4, 3x3): 6x6 input tiles, 36 multiplies per 4x4 outputs instead of 144
 * With alpha = m + 2, one output tile Y (m x m) of one channel o is
 *     Y = A^T [ sum_c (G g_oc G^T) .* (B^T d_c B) ] A
 * where d_c is the alpha x alpha input tile of channel c and g_oc the 3x3 filter: after the
 * transforms the sum over c is, for each of the alpha^2 positions e of the tile, a matrix
 * product U_e (OC/G x C/G) times V_e (C/G x tiles), run by gemm.c's packed micro-kernel.
 *
 * The steps of one call (fc_winograd_conv2d):
 *   weights  U_e = (G g G^T)_e in double, rounded to T, written straight into the GEMM's
 *            packed-A layout: taken from the weight cache (below) when it holds them, else
 *            built for every chunk into a new cache entry (chunks: output channels that fit
 *            half the workspace bound; without the cache one chunk at a time, per call)
 *   per task (group, block of tiles, part of the output channels), on the thread pool:
 *     input  V_e = (B^T d B)_e of every channel and tile of the block, in the packed-B layout
 *            (wino_gather_row: 32 tiles side by side, vectorised across tiles, each reading
 *            its inputs from zero-padded copies of its tile row's input rows)
 *     GEMMs  M_e = U_e V_e for the alpha^2 positions, a block of output channels at a time
 *     output Y = A^T M A + bias of 32 tiles side by side into a buffer (wino_store_gather),
 *            the fused epilogue, if any, there, then into y (wino_scatter: the one place
 *            that writes y)
 * Tiles: each phase of the dilation (per axis, the outputs o with the same o mod d) is an
 * undilated conv over every d-th input, tiled on its own (wino_axis); d = 1 is one phase.
 * The tile blocks are sized so that V (alpha^2 x C/G x tiles) stays in L2 between the
 * input transform and the GEMMs; each thread holds one V, one block of M and row buffers,
 * all inside `work_bytes` with the packed weights. When there are too few tile blocks for
 * the threads and the output channels are split into parts instead, the parts share one V
 * per (group, tile block), transformed once by all threads in channel pieces
 * (wino_input_pieces), if it fits the bound beside U and the workspaces.
 *
 * Weight cache: inference calls a layer with the same weights again and again, and on small
 * images the weights' transform was 80-95% of a call; so the packed U of every chunk is kept
 * in a process-wide cache (wino_cache_*), keyed by the weights' address and what shapes U
 * (OC, C/G, G, m, GEMM kernel and mr, dtype, the plan's chunk of output channels). An entry
 * also holds a copy of the weights and is used only while memcmp finds the current weights
 * equal to it, bit for bit (a weight changed in place, or new weights at a recycled address,
 * rebuild the entry; reading 2x the weights costs far less than the transform). Entries with
 * a non-finite U are never kept (the call declines, as above). Budget: 256 MiB of U and
 * weight copies by default (fc_winograd_cache_set_limit, 0: off; Python
 * fastconv.backends.c.set_winograd_cache_limit), least recently used entries evicted first;
 * an entry over the budget, or one that cannot be allocated, leaves the call on the uncached
 * path (one chunk of U at a time, in the workspace). Threads: lookups and inserts under one
 * mutex, never held during a transform or GEMM; a call holds a reference to its entry, and
 * eviction frees only unreferenced entries (a replaced entry in use is freed by its last
 * user). fork(): the lock is taken around it, the child reinitialises it.
 *
 * Numerics: the transforms cost accuracy (F4's B and A hold 4, 5 and 8, G holds 1/6 and
 * 1/24; F3's 2, 3 and 4, G 1/2 and 1/6): see docs/conv_variants.md for the measured errors;
 * conv2d's automatic choice uses F4 / F3 / F2 for float32 only where that error stays
 * within 1e-5 (fc_winograd_choice). Every tap's weight enters each output's transform, the
 * taps on the zero padding included (their terms cancel only in exact arithmetic), so an
 * output whose few valid taps cancel has a larger relative error than the im2col sum's. A NaN
 * or Inf in x or w would spread over its whole tile (and 0 x Inf over the tile's other
 * outputs), unlike the direct definition (docs/nonfinite.md): when a transformed weight or
 * input is not finite the call returns FC_WINOGRAD_DECLINED and conv2d.c runs the im2col
 * path instead, as it does for a geometry Winograd does not cover.
 *
 * Build: `python csrc/build_ffi.py`. Test: `pytest tests/test_winograd.py`;
 * time: `python bench/winograd.py`.
 */
#ifndef FC_TYPED

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* Target bytes of one task's transformed input V (alpha^2 x C/G x tiles): within L2 (2 MiB on
 * the machine of bench/RESULTS.md) together with a block of M. */
#define WINO_V_TARGET (1280 * 1024)
/* Tiles per step of the input and output transforms (wino_gather_row, wino_store_gather). */
#define WINO_GCHUNK 32
/* Tile rows one such step of the input transform spans at most (each holds its padded rows). */
#define WINO_GROWS 4
/* Target bytes of one block of GEMM outputs M (alpha^2 x channels x tiles). */
#define WINO_M_TARGET (256 * 1024)

/* The tiles along one axis (rows or columns) of an output of O values, dilation d: output
 * o depends only on inputs o - pad + d*k, so the outputs of one phase (o mod d) form an
 * undilated conv of their own, and each phase is tiled on its own (d = 1: one phase). With
 * O = q*d + r, phases p < r hold q + 1 outputs in T1 tiles of m, the others q in T0; the
 * axis has T = r*T1 + (d - r)*T0 tiles, phase after phase. */
typedef struct {
    int64_t d, q, r, T1, T0, T;
} wino_axis;

static wino_axis wino_axis_make(int64_t O, int64_t d, int m) {
    wino_axis ax = {.d = d, .q = O / d, .r = O % d};
    ax.T1 = ceil_div(ax.q + 1, m);
    ax.T0 = ceil_div(ax.q, m);
    ax.T = ax.r * ax.T1 + (d - ax.r) * ax.T0;
    return ax;
}

/* Tile v of the axis (v < T): returns its first output o0; *nout: the outputs of its phase
 * from that one on (the tile holds min(m, *nout)). The tile's outputs are o0 + d*j (j < m)
 * and its inputs o0 - pad + d*i (i < m + 2). */
static inline int64_t wino_axis_at(const wino_axis *ax, int m, int64_t v, int64_t *nout) {
    int64_t p, t, cnt;
    if (v < ax->r * ax->T1) {
        p = v / ax->T1, t = v % ax->T1, cnt = ax->q + 1;
    } else {
        const int64_t u = v - ax->r * ax->T1;
        p = ax->r + u / ax->T0, t = u % ax->T0, cnt = ax->q;
    }
    *nout = cnt - t * m;
    return p + ax->d * t * m;
}

/* Tiles of F(m x m, 3 x 3) on one image of s, each phase of the dilation tiled on its own. */
static int64_t wino_image_tiles(const fc_conv_shape *s, int m) {
    return wino_axis_make(s->OH, s->dh, m).T * wino_axis_make(s->OW, s->dw, m).T;
}

/* Where the outputs of a step's tiles go (wino_scatter): tile v's first
 * output at plane offset at[v] (image and position, without the channel), its nrow[v] x
 * ncol[v] outputs unclipped. */
typedef struct {
    int64_t at[WINO_GCHUNK], nrow[WINO_GCHUNK], ncol[WINO_GCHUNK];
} wino_tiles;

/* How one call is cut into tasks; every field is fixed before the tasks run. */
typedef struct {
    int m, alpha, alpha2;  /* output tile m x m, input tile alpha x alpha, alpha^2 GEMMs */
    int64_t Cg, M;         /* C/G, OC/G */
    wino_axis ah, aw;      /* the tiles along the output's rows and columns */
    int64_t TH, TW, ntiles;/* tile rows and columns of one image; N*TH*TW tiles per group */
    int64_t tstep, nb;     /* tiles per task (a multiple of nr unless all tiles), blocks */
    int64_t ochunk;        /* output channels whose packed U is held at a time (mult. of mr) */
    int64_t ostep;         /* output channels per round of GEMMs inside a task (mult. of mr) */
    int64_t pstep, nparts; /* output channels of the chunk per task (mult. of mr), parts */
    int64_t vst, ldm;      /* elements of one V_e plane; row stride of M */
    int64_t rpl;           /* one zero-padded input row of the input transform */
    int64_t u_elems;       /* packed U of one chunk, all groups */
    int64_t work_elems;    /* per-thread workspace */
    int nthreads;
} wino_plan;

static int64_t wino_task_work(const wino_plan *p) {
    return p->alpha2 * p->vst                  /* V */
           + p->alpha2 * p->ostep * p->ldm     /* M */
           + WINO_GROWS * p->alpha * p->rpl    /* padded input rows */
           + p->m * p->m * WINO_GCHUNK         /* the residual of a step's outputs */
           + 4 * 16;                           /* alignment of the buffers */
}

/* ---- the cache of packed transformed weights ----
 * One entry: the packed U of every chunk of output channels of one call's plan, chunk after
 * chunk, and a copy of the weights it was built from. Key: the weights' address and all that
 * shapes U (OC, C/G, G, m, GEMM kernel and its mr, dtype, the plan's chunk of output
 * channels); validity: memcmp of the current weights with the copy, outside the lock (the
 * entry is referenced meanwhile, so it cannot be freed). The list is in use order, most
 * recent first; eviction takes the least recent entries that no call references. An entry
 * that was replaced or evicted while in use is unlinked and freed by its last release. */
typedef struct {
    const void *w;
    int64_t OC, Cg, G, ochunk;
    int m, kernel, mr, is_f64;
} wino_key;

typedef struct wino_entry {
    struct wino_entry *prev, *next; /* the use-order list, while linked */
    wino_key key;
    int refs;       /* calls using it */
    int linked;     /* in the list (counted in wino_bytes); else freed by its last release */
    int64_t bytes;  /* what it counts against the budget: U and the weights' copy */
    int64_t wbytes; /* bytes of the weights' copy */
    void *wcopy;    /* the weights U was built from */
    void *u;        /* packed U, 64-byte aligned */
} wino_entry;

#define WINO_CACHE_DEFAULT ((int64_t)256 << 20)

#if defined(_WIN32)
/* no pthreads: no cache (every call transforms its weights) */
void fc_winograd_cache_set_limit(int64_t bytes) { (void)bytes; }
void fc_winograd_cache_info(int64_t *out) {
    for (int i = 0; i < 5; i++) out[i] = 0;
}
static wino_entry *wino_cache_acquire(const wino_key *k, const void *w, int64_t wbytes,
                                      int nthreads) {
    (void)k, (void)w, (void)wbytes, (void)nthreads;
    return NULL;
}
static wino_entry *wino_cache_new(const wino_key *k, const void *w, int64_t wbytes,
                                  int64_t ubytes) {
    (void)k, (void)w, (void)wbytes, (void)ubytes;
    return NULL;
}
static void wino_cache_insert(wino_entry *e) { (void)e; }
static void wino_cache_release(wino_entry *e, int stale) { (void)e, (void)stale; }
#else
#include <pthread.h>

/* Bytes [0, n) of a and b equal, compared on the thread pool in 64 KiB pieces: the validity
 * check reads twice the weights, serial it was 15% of a cached 256-channel 14x14 call on two
 * threads (perf). */
typedef struct {
    const char *a, *b;
    int64_t n;
    _Atomic int differ;
} wino_cmp_args;
#define WINO_CMP_PIECE (64 * 1024)
static void wino_cmp_pieces(void *ctx, int64_t q0, int64_t q1, int slot) {
    wino_cmp_args *c = ctx;
    (void)slot;
    for (int64_t q = q0; q < q1 && !c->differ; q++) {
        const int64_t o = q * WINO_CMP_PIECE, len = min64(WINO_CMP_PIECE, c->n - o);
        if (memcmp(c->a + o, c->b + o, (size_t)len)) c->differ = 1;
    }
}
static int wino_equal(const void *a, const void *b, int64_t n, int nthreads) {
    wino_cmp_args c = {.a = a, .b = b, .n = n, .differ = 0};
    const int64_t pieces = ceil_div(n, WINO_CMP_PIECE), cost = fc_cost_mem(2 * n, 0);
    const int team = fc_team_for(cost, nthreads);
    fc_parallel_for(pieces, fc_chunk_for(pieces, cost, team), team, wino_cmp_pieces, &c);
    return !c.differ;
}

static pthread_mutex_t wino_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t wino_once = PTHREAD_ONCE_INIT;
/* all below under wino_mu */
static wino_entry *wino_head, *wino_tail;
static int64_t wino_limit = WINO_CACHE_DEFAULT, wino_bytes, wino_count, wino_hits, wino_misses;

/* fork(): hold the lock across it, so that the child's list is consistent; in the child the
 * threads that referenced entries are gone (an entry unlinked while in use stays allocated
 * there, never reachable again). */
static void wino_before_fork(void) { pthread_mutex_lock(&wino_mu); }
static void wino_after_fork_parent(void) { pthread_mutex_unlock(&wino_mu); }
static void wino_after_fork_child(void) {
    pthread_mutex_init(&wino_mu, NULL);
    for (wino_entry *e = wino_head; e; e = e->next) e->refs = 0;
}
static void wino_init(void) {
    pthread_atfork(wino_before_fork, wino_after_fork_parent, wino_after_fork_child);
}

static int wino_key_eq(const wino_key *a, const wino_key *b) {
    return a->w == b->w && a->OC == b->OC && a->Cg == b->Cg && a->G == b->G &&
           a->ochunk == b->ochunk && a->m == b->m && a->kernel == b->kernel && a->mr == b->mr &&
           a->is_f64 == b->is_f64;
}

/* under wino_mu */
static void wino_unlink(wino_entry *e) {
    FC_ASSERT(e->linked);
    if (e->prev) e->prev->next = e->next; else wino_head = e->next;
    if (e->next) e->next->prev = e->prev; else wino_tail = e->prev;
    e->prev = e->next = NULL;
    e->linked = 0;
    wino_bytes -= e->bytes;
    wino_count--;
}
static void wino_link_front(wino_entry *e) {
    e->prev = NULL;
    e->next = wino_head;
    if (wino_head) wino_head->prev = e; else wino_tail = e;
    wino_head = e;
    e->linked = 1;
    wino_bytes += e->bytes;
    wino_count++;
}
/* Evict unreferenced entries, least recent first, until `need` more bytes fit the budget. */
static void wino_evict_for(int64_t need) {
    for (wino_entry *e = wino_tail; e && wino_bytes + need > wino_limit;) {
        wino_entry *prev = e->prev;
        if (e->refs == 0) {
            wino_unlink(e);
            free(e);
        }
        e = prev;
    }
}

void fc_winograd_cache_set_limit(int64_t bytes) {
    pthread_once(&wino_once, wino_init);
    pthread_mutex_lock(&wino_mu);
    wino_limit = bytes < 0 ? 0 : bytes;
    wino_evict_for(0);
    pthread_mutex_unlock(&wino_mu);
}

void fc_winograd_cache_info(int64_t *out) {
    pthread_mutex_lock(&wino_mu);
    out[0] = wino_count;
    out[1] = wino_bytes;
    out[2] = wino_hits;
    out[3] = wino_misses;
    out[4] = wino_limit;
    pthread_mutex_unlock(&wino_mu);
}

/* The valid entry for key k and the weights w (wbytes bytes), referenced, or NULL (a miss,
 * or the cache is off). */
static wino_entry *wino_cache_acquire(const wino_key *k, const void *w, int64_t wbytes,
                                      int nthreads) {
    pthread_once(&wino_once, wino_init);
    pthread_mutex_lock(&wino_mu);
    if (wino_limit == 0) {
        pthread_mutex_unlock(&wino_mu);
        return NULL;
    }
    wino_entry *e = wino_head;
    while (e && !wino_key_eq(&e->key, k)) e = e->next;
    if (e) {
        e->refs++;
        if (e != wino_head) { /* most recent first */
            wino_unlink(e);
            wino_link_front(e);
        }
    }
    pthread_mutex_unlock(&wino_mu);
    /* exact: weights changed in place, or new ones at a recycled address, never match */
    const int ok = e && e->wbytes == wbytes && wino_equal(e->wcopy, w, wbytes, nthreads);
    pthread_mutex_lock(&wino_mu);
    if (ok) {
        wino_hits++;
    } else {
        wino_misses++;
        if (e) {
            e->refs--;
            if (e->linked) wino_unlink(e); /* stale */
            if (e->refs > 0) e = NULL;     /* its other users free it */
        }
    }
    pthread_mutex_unlock(&wino_mu);
    if (!ok) {
        free(e); /* NULL, or a stale entry no one uses any more */
        return NULL;
    }
    return e;
}

/* A new, unlinked entry (referenced once) holding a copy of the weights and room for ubytes
 * of U, or NULL when the cache is off, the entry would exceed the budget, or no memory. */
static wino_entry *wino_cache_new(const wino_key *k, const void *w, int64_t wbytes,
                                  int64_t ubytes) {
    const int64_t bytes = ubytes + wbytes;
    pthread_mutex_lock(&wino_mu);
    const int64_t limit = wino_limit;
    pthread_mutex_unlock(&wino_mu);
    if (bytes > limit) return NULL;
    wino_entry *e = malloc(sizeof(wino_entry) + (size_t)wbytes + (size_t)ubytes + 64);
    if (!e) return NULL;
    *e = (wino_entry){.key = *k, .refs = 1, .bytes = bytes, .wbytes = wbytes};
    e->wcopy = e + 1;
    memcpy(e->wcopy, w, (size_t)wbytes);
    e->u = (void *)(((uintptr_t)((char *)e->wcopy + wbytes) + 63) & ~(uintptr_t)63);
    return e;
}

/* Link a built entry (still referenced by its builder), replacing one of the same key, when
 * it fits the budget after evicting unused entries; else it stays unlinked (freed on release). */
static void wino_cache_insert(wino_entry *e) {
    pthread_mutex_lock(&wino_mu);
    for (wino_entry *o = wino_head; o;) {
        wino_entry *next = o->next;
        if (wino_key_eq(&o->key, &e->key)) {
            wino_unlink(o);
            if (o->refs == 0) free(o);
        }
        o = next;
    }
    if (e->bytes <= wino_limit) {
        wino_evict_for(e->bytes);
        if (wino_bytes + e->bytes <= wino_limit) wino_link_front(e);
    }
    pthread_mutex_unlock(&wino_mu);
}

/* The end of a call's use of e; stale: unlink it (its weights did not hold up). */
static void wino_cache_release(wino_entry *e, int stale) {
    pthread_mutex_lock(&wino_mu);
    FC_ASSERT(e->refs > 0);
    e->refs--;
    if (stale && e->linked) wino_unlink(e);
    const int unused = !e->linked && e->refs == 0;
    pthread_mutex_unlock(&wino_mu);
    if (unused) free(e);
}
#endif

int fc_winograd_eligible(const fc_conv_shape *s) {
    return s->KH == 3 && s->KW == 3 && s->sh == 1 && s->sw == 1 && s->dh >= 1 && s->dw >= 1 &&
           s->OH >= 1 && s->OW >= 1 && s->N >= 1 && s->OC >= 1;
}

static _Atomic int fc_winograd_auto_on = 1;

void fc_winograd_set_auto(int on) { fc_winograd_auto_on = on != 0; }

/* The automatic choice (conv2d's variant=None), from bench/winograd.py's measurements on the
 * machine of bench/RESULTS.md (float32, 2 and 1 threads), in the steady state: the weights'
 * transform already cached (inference calls a layer with the same weights again and again;
 * the choice never looks at the cache, so a given call always takes the same path). Per call
 * Winograd then still reads 2x the weights (the validity check) and U (alpha^2/9 times the
 * weights), against the weights once for im2col; only enough tiles per call repay that:
 *  - float32 only: float64 is for correctness (the tests' float64 bound holds, but it gains
 *    less: 8-lane FMAs and twice the bytes in the transforms);
 *  - at least 32 input and output channels per group: thinner GEMMs (ResNeXt's 4 per group)
 *    run below a quarter of the micro-kernel's rate;
 *  - F4 from 48 F4 tiles in the batch when its edge tiles waste at most 15% (128@28 N=1, 49
 *    tiles: 1.9x im2col), or from 128 tiles whatever the waste (14x14 and 7x7 images waste
 *    31%: 256@14 N=8, 128 tiles, F4 2.2x against F2 1.75x; 512@7 N=8, 32 tiles, F2 1.66x
 *    beat F4's 1.37x);
 *  - else F2 from 48 F2 tiles (256@14 N=1, 49 tiles: 1.45x), or F3 where its tiles need fewer
 *    multiplies (256@14 N=1 again: 25 F3 tiles, 10-12% faster than F2);
 *  - more than 256 x 256 channels (C/G x OC/G; U of F2 over 16 MB, F4's over 37 MB): F2 only,
 *    from 128 F2 tiles on images of at most 14x14 (512@7 N=8, 128 tiles: F2 1.66x, F4
 *    1.37x), since im2col runs these at 190-230 GFLOP/s on larger images: VGG-16 512@28 N=1
 *    (F2 0.98x, F4 0.82x), 512@14 N=1 (F2 0.94x) and 512@7 N=1 (F2 0.45x, 0.84x on 1 thread)
 *    lost: the weights' bytes read per call, not the multiply-adds, bound such calls.
 * F4's float32 error on ResNet-50's 3x3 layers is 1.2e-6 .. 2.0e-6 in norm (F2 2e-7 ..
 * 3.4e-7), within the 1e-5 the tests allow; it grows slowly with C/G, so the rule stops at
 * C/G <= 1024. */
int fc_winograd_choice(const fc_conv_shape *s, int is_f64, int nthreads) {
    (void)nthreads;
    if (!fc_winograd_auto_on || is_f64 || !fc_winograd_eligible(s)) return 0;
    const int64_t Cg = s->C / s->G, M = s->OC / s->G;
    if (Cg < 32 || M < 32 || Cg > 1024) return 0;
    if (s->dh > 1 || s->dw > 1) {
        /* Dilated: each phase is tiled on its own (wino_axis), so the edge waste depends on
         * the phases' lengths; the m with the fewest GEMM multiplies (alpha^2 per tile)
         * wins, if that is at most 0.4 of the direct sum's 9 per output (transforms and the
         * weights' traffic cost the rest). DeepLab's ASPP, 256 -> 256 @33, 2 threads (the
         * transforms still along tile rows): d2 F4 2.58 ms (im2col 4.8), d6 F3 3.12 (F2
         * 3.81, F4 4.57), d12 F3 2.99 (F4 4.38); bench/RESULTS.md has the figures of the
         * transforms across tiles. More than 256 x 256 channels: not measured, im2col. */
        if (Cg * M > 256 * 256) return 0;
        int best = 0;
        int64_t best_e = 0;
        for (int m = 2; m <= 4; m++) {
            const int64_t tiles = s->N * wino_image_tiles(s, m), e = tiles * (m + 2) * (m + 2);
            if (tiles >= 48 && (!best || e < best_e)) best = m, best_e = e;
        }
        return best && best_e * 10 <= s->N * s->OH * s->OW * 9 * 4 ? best : 0;
    }
    const int64_t t2 = wino_image_tiles(s, 2), t3 = wino_image_tiles(s, 3);
    const int64_t t4 = wino_image_tiles(s, 4);
    const int tight = t4 * 16 * 100 <= s->OH * s->OW * 115; /* edge waste <= 15% */
    if (Cg * M > 256 * 256) /* U over the caches: im2col at its best on larger images */
        return s->N * t2 >= 128 && s->OH * s->OW <= 196 ? 2 : 0;
    if ((s->N * t4 >= 48 && tight) || s->N * t4 >= 128) return 4;
    /* F2 or F3, whichever multiplies less (ResNet-50's 256@14 at batch 1: F3 25 tiles of 25
     * against F2 49 of 16; 2 threads 0.76-0.78 ms against 0.86-0.91 hot, 1.05-1.13 against
     * 1.12-1.18 after a 128 MB read; 1 thread 1.15-1.17 against 1.31-1.34) */
    if (s->N * t2 >= 48) return t3 * 25 < t2 * 16 ? 3 : 2;
    return 0;
}

/* The busiest thread's tiles over the mean, in percent, when G groups of ntiles tiles in
 * blocks of tstep (the last one short) go to nthr threads in turn (the pool hands tasks out
 * in order; a thread that finishes early takes the next). */
static int64_t wino_imbalance(int64_t ntiles, int64_t tstep, int64_t G, int64_t nthr) {
    int64_t load[64] = {0}, most = 0;
    if (nthr > 64) nthr = 64;
    for (int64_t g = 0; g < G; g++)
        for (int64_t t0 = 0; t0 < ntiles; t0 += tstep) {
            int64_t k = 0; /* the least loaded thread takes the next task */
            for (int64_t j = 1; j < nthr; j++)
                if (load[j] < load[k]) k = j;
            load[k] += min64(tstep, ntiles - t0);
        }
    for (int64_t j = 0; j < nthr; j++) most = max64(most, load[j]);
    return most * nthr * 100 / max64(1, G * ntiles);
}

static int wino_plan_make(const fc_conv_shape *s, int m, int kernel, int is_f64, int nthreads,
                          int64_t work_bytes, wino_plan *p) {
    const int64_t es = is_f64 ? 8 : 4;
    const int64_t mr = fc_gemm_mr(kernel, is_f64), nr = fc_gemm_nr(kernel, is_f64);
    p->m = m;
    p->alpha = m + 2;
    p->alpha2 = p->alpha * p->alpha;
    p->Cg = s->C / s->G;
    p->M = s->OC / s->G;
    p->ah = wino_axis_make(s->OH, s->dh, m);
    p->aw = wino_axis_make(s->OW, s->dw, m);
    /* a padded row: pw zeros, the W inputs, zeros up to the last column a tile reads */
    p->rpl = max64(s->pw + s->W, s->OW + s->dw * (m + 1)) + 1;
    p->TH = p->ah.T;
    p->TW = p->aw.T;
    p->ntiles = s->N * p->TH * p->TW;
    const int64_t Mr = round_up(p->M, mr);

    /* tiles per task: V near its target, at least one sliver of nr tiles */
    int64_t t = WINO_V_TARGET / (p->alpha2 * p->Cg * es) / nr * nr;
    p->tstep = min64(max64(t, nr), round_up(p->ntiles, nr));
    /* output channels held packed at a time: all of them, unless that is over half the bound */
    int64_t per_ch = s->G * p->alpha2 * p->Cg * es; /* bytes of U per output channel */
    p->ochunk = min64(Mr, max64(mr, (work_bytes / 2) / per_ch / mr * mr));
    /* enough tasks for the threads: split the output channels when the tiles are few */
    int64_t nb = ceil_div(p->ntiles, p->tstep), base = s->G * nb;
    p->pstep = p->ochunk;
    /* few tasks of unequal size (the last tile block is short: ResNet-50's 64@56 under F4
     * was blocks of 128 and 68 tiles) leave a thread idle: when the busiest thread's share
     * is over the mean by more than 15%, blocks of ntiles / threads rounded down to slivers
     * (96, 96 and 4 there) share the tiles evenly; splitting the output channels instead
     * (each part transforms its tiles' input again) measured slower on 64 channels */
    const int64_t nthr = nthreads < 1 ? 1 : nthreads;
    if (nthr > 1 && base % nthr == 0 && base < 4 * nthr &&
        wino_imbalance(p->ntiles, p->tstep, s->G, nthr) > 115) {
        const int64_t even = p->ntiles / nthr / nr * nr;
        if (even >= nr && even < p->tstep) {
            p->tstep = even;
            nb = ceil_div(p->ntiles, p->tstep);
            base = s->G * nb;
        }
    }
    if (nthreads > 1 && base % nthreads != 0 && base < 4 * nthreads &&
        wino_imbalance(p->ntiles, p->tstep, s->G, nthr) > 115) {
        int64_t parts = nthreads / gcd64(base, nthreads);
        if (p->ntiles >= parts * 2 * nr && nb == 1)
            p->tstep = round_up(ceil_div(p->ntiles, parts), nr);
        else
            p->pstep = min64(p->ochunk, max64(mr, round_up(ceil_div(p->ochunk, parts), mr)));
    }
    p->nparts = ceil_div(p->ochunk, p->pstep);
    p->nb = ceil_div(p->ntiles, p->tstep);
    p->nthreads = (int)min64(nthreads < 1 ? 1 : nthreads, s->G * p->nb * p->nparts);
    p->u_elems = s->G * p->alpha2 * p->ochunk * p->Cg + 16;

    /* the bound: shrink the tile block (to one sliver), then the output-channel block */
    const int64_t budget = (work_bytes / es - p->u_elems) / p->nthreads;
    for (;;) {
        int64_t tr = round_up(min64(p->tstep, p->ntiles), nr);
        p->vst = tr * p->Cg;
        p->ldm = round_up(min64(p->tstep, p->ntiles), 16);
        if (p->ostep == 0 || p->ostep > p->pstep) {
            int64_t o = WINO_M_TARGET / (p->alpha2 * p->ldm * es) / mr * mr;
            p->ostep = min64(p->pstep, max64(mr, o));
        }
        p->work_elems = wino_task_work(p);
        if (p->work_elems <= budget) break;
        if (p->tstep > nr) {
            p->tstep = max64(nr, p->tstep / 2 / nr * nr);
        } else if (p->ostep > mr) {
            p->ostep = max64(mr, p->ostep / 2 / mr * mr);
        } else {
            return 0; /* below Winograd's smallest workspace: the caller uses im2col */
        }
    }
    p->nb = ceil_div(p->ntiles, p->tstep);
    return budget > 0;
}

#define FC_INSTANTIATE "winograd.c"
#include "common.h"

#else /* ------------------------------------------------------------ typed section */

/* The per-m copies of a transform: from FN(name_body)(int m, ...), name2 / name3 / name4
 * (m a constant: the body's loops unroll), each compiled per instruction set
 * (FC_MULTIVERSION), and FN(name)(m, ...), which runs the one of m. */
#define WINO_UNPAREN(...) __VA_ARGS__
#define WINO_PER_M(name, params, args)                                                       \
    FC_INLINE void FC_CAT(FN(name##2), _body) params { FN(name##_body)(2, WINO_UNPAREN args); } \
    FC_INLINE void FC_CAT(FN(name##3), _body) params { FN(name##_body)(3, WINO_UNPAREN args); } \
    FC_INLINE void FC_CAT(FN(name##4), _body) params { FN(name##_body)(4, WINO_UNPAREN args); } \
    FC_MULTIVERSION(FN(name##2), params, args)                                               \
    FC_MULTIVERSION(FN(name##3), params, args)                                               \
    FC_MULTIVERSION(FN(name##4), params, args)                                               \
    static void FN(name)(int m, WINO_UNPAREN params) {                                       \
        if (m == 2)                                                                          \
            FN(name##2) args;                                                                \
        else if (m == 3)                                                                     \
            FN(name##3) args;                                                                \
        else                                                                                 \
            FN(name##4) args;                                                                \
    }

/* ---- the 1-D transforms (the 2-D ones apply them to rows, then columns) ---- */

/* t = B^T d, d of alpha values. */
FC_INLINE void FN(wino_bt)(int m, const T *d, T *t) {
    if (m == 2) {
        t[0] = d[0] - d[2];
        t[1] = d[1] + d[2];
        t[2] = d[2] - d[1];
        t[3] = d[1] - d[3];
    } else if (m == 3) {
        t[0] = (T)2 * (d[0] - d[2]) - d[1] + d[3];
        t[1] = d[3] - (T)2 * d[1] - d[2];
        t[2] = (T)2 * d[1] - (T)3 * d[2] + d[3];
        t[3] = d[3] - d[1];
        t[4] = (T)2 * (d[1] - d[3]) - d[2] + d[4];
    } else {
        t[0] = (T)4 * d[0] - (T)5 * d[2] + d[4];
        t[1] = -(T)4 * (d[1] + d[2]) + d[3] + d[4];
        t[2] = (T)4 * (d[1] - d[2]) - d[3] + d[4];
        t[3] = (T)2 * (d[3] - d[1]) - d[2] + d[4];
        t[4] = (T)2 * (d[1] - d[3]) - d[2] + d[4];
        t[5] = (T)4 * d[1] - (T)5 * d[3] + d[5];
    }
}

/* o = A^T v, v of alpha values, o of m. */
FC_INLINE void FN(wino_at)(int m, const T *v, T *o) {
    if (m == 2) {
        o[0] = v[0] + v[1] + v[2];
        o[1] = v[1] - v[2] - v[3];
    } else if (m == 3) {
        o[0] = v[0] + v[1] + v[2] + v[3];
        o[1] = v[1] - v[2] + (T)2 * v[3];
        o[2] = v[1] + v[2] + (T)4 * v[3] + v[4];
    } else {
        const T a = v[1] + v[2], bb = v[1] - v[2], c = v[3] + v[4], d = v[3] - v[4];
        o[0] = v[0] + a + c;
        o[1] = bb + (T)2 * d;
        o[2] = a + (T)4 * c;
        o[3] = bb + (T)8 * d + v[5];
    }
}

/* u = G g, g of 3 values, u of alpha; in double whatever T (the weights are transformed once). */
FC_INLINE void FN(wino_g)(int m, const double *g, double *u) {
    if (m == 2) {
        u[0] = g[0];
        u[1] = 0.5 * (g[0] + g[1] + g[2]);
        u[2] = 0.5 * (g[0] - g[1] + g[2]);
        u[3] = g[2];
    } else if (m == 3) {
        const double s6 = 1.0 / 6;
        u[0] = 0.5 * g[0];
        u[1] = -0.5 * (g[0] + g[1] + g[2]);
        u[2] = s6 * (g[1] - g[0] - g[2]);
        u[3] = s6 * (g[0] + 2 * g[1] + 4 * g[2]);
        u[4] = g[2];
    } else {
        /* multiplies by the reciprocals: five divisions a call made the weights' transform
         * cost more than the GEMMs on small images */
        const double s6 = 1.0 / 6, s24 = 1.0 / 24, e = g[0] + g[2];
        u[0] = 0.25 * g[0];
        u[1] = -s6 * (e + g[1]);
        u[2] = -s6 * (e - g[1]);
        u[3] = s24 * (g[0] + 2 * g[1] + 4 * g[2]);
        u[4] = s24 * (g[0] - 2 * g[1] + 4 * g[2]);
        u[5] = g[2];
    }
}

/* ---- input transform ---- */

/* The input transform of channel c for nv <= WINO_GCHUNK consecutive tiles, whatever their
 * phase and tile row, side by side (vectorised across tiles), tile v reading its input
 * (i, u) from rp[col[v] + i*rpl + dw*u], rp holding the zero-padded input rows of its tile
 * row; V_e at lanes lane0 .. lane0+nv-1: Vp[e*vst + (lane/nr)*Cg*nr + c*nr + lane%nr].
 * (The transforms once ran along one tile row at a time, sharing the overlapping columns of
 * neighbouring tiles; a dilated layer's phases hold 2 tiles per row on 33x33 at dilation 6,
 * which ran at half the rate, and across tiles measured 5-15% faster on undilated layers.) */
FC_INLINE void FN(wino_gather_row_body)(int m, const T *rp, int64_t rpl, int64_t dw,
                                        const int64_t *col, int64_t nv, int64_t lane0,
                                        int64_t c, int64_t Cg, int64_t nr, int64_t vst, T *Vp) {
    const int alpha = m + 2;
    T E[6][6][WINO_GCHUNK]; /* E[k][u][v] = (B^T d)[k] of column u of tile v */
    for (int u = 0; u < alpha; u++)
        for (int64_t v = 0; v < nv; v++) {
            T d[6], t[6];
            const T *r = rp + col[v] + dw * u;
#pragma GCC unroll 6
            for (int i = 0; i < alpha; i++) d[i] = r[i * rpl];
            FN(wino_bt)(m, d, t);
#pragma GCC unroll 6
            for (int k = 0; k < alpha; k++) E[k][u][v] = t[k];
        }
    for (int64_t v0 = 0; v0 < nv;) { /* B across; runs of lanes in one sliver */
        const int64_t lane = lane0 + v0, run = min64(nv - v0, nr - lane % nr);
        T *vp = Vp + (lane / nr) * Cg * nr + c * nr + lane % nr;
        for (int k = 0; k < alpha; k++)
            for (int64_t v = 0; v < run; v++) {
                T d[6], t[6];
#pragma GCC unroll 6
                for (int u = 0; u < alpha; u++) d[u] = E[k][u][v0 + v];
                FN(wino_bt)(m, d, t);
#pragma GCC unroll 6
                for (int l = 0; l < alpha; l++) vp[(k * alpha + l) * vst + v] = t[l];
            }
        v0 += run;
    }
}
WINO_PER_M(wino_gather_row,
           (const T *rp, int64_t rpl, int64_t dw, const int64_t *col, int64_t nv, int64_t lane0,
            int64_t c, int64_t Cg, int64_t nr, int64_t vst, T *Vp),
           (rp, rpl, dw, col, nv, lane0, c, Cg, nr, vst, Vp))

/* ---- output transform ---- */

/* The output transform of nv <= WINO_GCHUNK consecutive tiles side by side
 * (as wino_gather_row): Yb[(a*m + j)*nv + v] = output (a, j) of tile v + bias. */
FC_INLINE void FN(wino_store_gather_body)(int m, const T *Mo, int64_t mst, T bias, int64_t nv,
                                          int64_t lane0, T *Yb) {
    const int alpha = m + 2;
    T P[4][6][WINO_GCHUNK]; /* P[a][l][v] = (A^T M)[a][l] of tile v */
    for (int l = 0; l < alpha; l++)
        for (int64_t v = 0; v < nv; v++) {
            T w[6], r[4];
#pragma GCC unroll 6
            for (int k = 0; k < alpha; k++) w[k] = Mo[(k * alpha + l) * mst + lane0 + v];
            FN(wino_at)(m, w, r);
#pragma GCC unroll 4
            for (int a = 0; a < m; a++) P[a][l][v] = r[a];
        }
    for (int a = 0; a < m; a++)
        for (int64_t v = 0; v < nv; v++) {
            T w[6], r[4];
#pragma GCC unroll 6
            for (int l = 0; l < alpha; l++) w[l] = P[a][l][v];
            FN(wino_at)(m, w, r);
#pragma GCC unroll 4
            for (int j = 0; j < m; j++) Yb[(a * m + j) * nv + v] = r[j] + bias;
        }
}
WINO_PER_M(wino_store_gather,
           (const T *Mo, int64_t mst, T bias, int64_t nv, int64_t lane0, T *Yb),
           (Mo, mst, bias, nv, lane0, Yb))

/* 1 when some element of v[0 .. n) is NaN or +-Inf: the largest magnitude, compared as
 * integers (an integer max vectorises; a float reduction would need -ffast-math). */
static int FN(wino_nonfinite)(const T *v, int64_t n) {
#if IS_F64
    const uint64_t *u = (const uint64_t *)v, mask = 0x7fffffffffffffffull;
    uint64_t big = 0, inf = 0x7ff0000000000000ull;
#else
    const uint32_t *u = (const uint32_t *)v, mask = 0x7fffffffu;
    uint32_t big = 0, inf = 0x7f800000u;
#endif
    for (int64_t i = 0; i < n; i++) big = (u[i] & mask) > big ? (u[i] & mask) : big;
    return big >= inf;
}

/* ---- the driver ---- */

typedef struct {
    const T *x, *w, *b;
    T *y;
    const fc_conv_shape *s;
    const wino_plan *pl;
    int kernel;
    int64_t oc0, oc1; /* the chunk of output channels (within a group) of this pass */
    T *Up;            /* its packed U: [G][alpha^2][round_up(chunk, mr)][Cg] in slivers */
    T **works;
    const fc_epilogue *ep; /* the fused epilogue, or NULL */
    T *Vs;            /* shared V of every (group, tile block), or NULL: each task its own */
    int64_t cpieces;  /* channel pieces of the shared input transform per (group, block) */
    _Atomic int failed, nonfinite;
} FN(wino_args);

/* The outputs wino_store_gather left in Yb for nv tiles go to y (tile v's
 * output (i, j) at y[o*OH*OW + at[v] + dh*OW*i + dw*j], i < nrow[v], j < ncol[v]), the
 * fused epilogue applied first in Yb (on the residual's matching values, gathered into rr;
 * zero at the clipped positions, which are not stored). */
static void FN(wino_scatter)(const FN(wino_args) *a, int64_t o, int64_t m,
                             const wino_tiles *tl, int64_t nv, T *Yb, T *rr) {
    const fc_conv_shape *s = a->s;
    const T *res = a->ep ? a->ep->residual : NULL;
    const int64_t dw = s->dw, rs = s->dh * s->OW, plane = o * s->OH * s->OW;
    if (a->ep) {
        if (res)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < m; j++)
                    for (int64_t v = 0; v < nv; v++)
                        rr[(i * m + j) * nv + v] = i < tl->nrow[v] && j < tl->ncol[v]
                                                       ? res[plane + tl->at[v] + rs * i + dw * j]
                                                       : (T)0;
        FN(fc_epilogue_row)(a->ep, o, Yb, res ? rr : NULL, m * m * nv);
    }
    T *yo = a->y + plane;
    for (int64_t v = 0; v < nv; v++)
        for (int64_t i = 0; i < tl->nrow[v]; i++)
            for (int64_t j = 0; j < tl->ncol[v]; j++)
                yo[tl->at[v] + rs * i + dw * j] = Yb[(i * m + j) * nv + v];
}

/* Transform and pack the weights of output channels [oc0, oc1) of every group, slivers
 * q = g*nsl + (o - oc0)/mr in [q0, q1) (nsl slivers of mr channels per group); rows past the
 * chunk are zero. One sliver is built c by c in a small buffer and stored as alpha^2
 * contiguous runs of mr values, one per plane: the planes are far apart, and writing them
 * one output channel at a time rewrote each cache line mr times (measured 10x slower). */
static void FN(wino_pack_u)(void *ctx, int64_t q0, int64_t q1, int slot) {
    FN(wino_args) *a = ctx;
    const wino_plan *pl = a->pl;
    const int m = pl->m, alpha = pl->alpha, alpha2 = pl->alpha2;
    const int64_t mr = fc_gemm_mr(a->kernel, IS_F64), len = a->oc1 - a->oc0;
    const int64_t Mrc = round_up(len, mr), Cg = pl->Cg, nsl = Mrc / mr;
    T buf[36 * 16];
    int bad = 0;
    (void)slot;
    FC_ASSERT(mr <= 16 && alpha2 <= 36);
    for (int64_t q = q0; q < q1; q++) {
        const int64_t g = q / nsl, i0 = q % nsl * mr, mi = min64(mr, len - i0);
        T *ug = a->Up + g * alpha2 * Mrc * Cg + i0 * Cg;
        for (int64_t c = 0; c < Cg; c++) {
            for (int64_t i = 0; i < mr; i++) {
                if (i >= mi) {
                    for (int e = 0; e < alpha2; e++) buf[e * mr + i] = 0;
                    continue;
                }
                const T *wc = a->w + ((g * pl->M + a->oc0 + i0 + i) * Cg + c) * 9;
                double t[6][3], u[6], col[3], row[6];
                for (int j = 0; j < 3; j++) {
                    for (int r = 0; r < 3; r++) col[r] = (double)wc[r * 3 + j];
                    FN(wino_g)(m, col, row);
                    for (int k = 0; k < alpha; k++) t[k][j] = row[k];
                }
                for (int k = 0; k < alpha; k++) {
                    FN(wino_g)(m, t[k], u);
                    for (int l = 0; l < alpha; l++) {
                        const T v = (T)u[l];
                        bad |= v - v != 0; /* NaN or +-Inf (also a float overflow) */
                        buf[(k * alpha + l) * mr + i] = v;
                    }
                }
            }
            for (int e = 0; e < alpha2; e++)
                memcpy(ug + e * Mrc * Cg + c * mr, buf + e * mr, (size_t)mr * sizeof(T));
        }
    }
    if (bad) a->nonfinite = 1;
}

/* A task's workspace, carved: its V, its block of M, the padded input rows of the input
 * transform (rp) and the residual buffer of the output's (rr). */
typedef struct {
    T *Vp, *Mb, *rp, *rr;
} FN(wino_bufs);
static FN(wino_bufs) FN(wino_carve)(const wino_plan *pl, T *work) {
    FN(wino_bufs) w;
    w.Vp = (T *)(((uintptr_t)work + 63) & ~(uintptr_t)63);
    w.Mb = (T *)(((uintptr_t)(w.Vp + pl->alpha2 * pl->vst) + 63) & ~(uintptr_t)63);
    w.rp = (T *)(((uintptr_t)(w.Mb + pl->alpha2 * pl->ostep * pl->ldm) + 63) & ~(uintptr_t)63);
    w.rr = w.rp + WINO_GROWS * pl->alpha * pl->rpl;
    FC_ASSERT((w.rr + pl->m * pl->m * WINO_GCHUNK) - work <= pl->work_elems);
    return w;
}

/* The input transform of group g, tiles [t0, t1), channels [c0, c1) into Vp (V of the
 * block: alpha^2 planes of vst), with the lanes past the block zeroed and the non-finite
 * check on what it wrote. Returns 0, or 1 if a value is not finite. */
static int FN(wino_input)(FN(wino_args) *a, int64_t g, int64_t t0, int64_t t1, int64_t c0,
                          int64_t c1, T *Vp, const FN(wino_bufs) *wb) {
    const wino_plan *pl = a->pl;
    const fc_conv_shape *s = a->s;
    const int m = pl->m;
    const int64_t nr = fc_gemm_nr(a->kernel, IS_F64), Cg = pl->Cg, nt = t1 - t0;
    const int64_t per_img = pl->TH * pl->TW;
    /* WINO_GCHUNK tiles at a time (fewer where they would span over WINO_GROWS tile rows) */
    const int64_t rpl = pl->rpl, rows = pl->alpha * rpl;
    T *rp = wb->rp;
    memset(rp, 0, (size_t)(WINO_GROWS * rows) * sizeof(T)); /* the margins stay zero */
    for (int64_t t = t0; t < t1;) {
        int64_t nv = 0, nk = 0, key[WINO_GROWS], ih0[WINO_GROWS], col[WINO_GCHUNK];
        int64_t lo[WINO_GROWS], hi[WINO_GROWS];
        for (; nv < WINO_GCHUNK && t + nv < t1; nv++) {
            const int64_t tt = t + nv, r = tt % per_img; /* tt / TW: image and tile row */
            int64_t nh, nw;
            if (nk == 0 || key[nk - 1] != tt / pl->TW) {
                if (nk == WINO_GROWS) break;
                key[nk] = tt / pl->TW;
                ih0[nk++] = wino_axis_at(&pl->ah, m, r / pl->TW, &nh) - s->ph;
            }
            /* the tile's first padded column (iw0 + pw), in its tile row's rows */
            col[nv] = (nk - 1) * rows + wino_axis_at(&pl->aw, m, r % pl->TW, &nw);
        }
        /* the input columns the tiles of each tile row read: [lo, hi) of the W */
        for (int64_t k = 0; k < nk; k++) lo[k] = s->W, hi[k] = 0;
        for (int64_t v = 0; v < nv; v++) {
            const int64_t k = col[v] / rows, iw0 = col[v] % rows - s->pw;
            lo[k] = min64(lo[k], max64(0, iw0));
            hi[k] = max64(hi[k], min64(s->W, iw0 + s->dw * (m + 1) + 1));
        }
        for (int64_t c = c0; c < c1; c++) {
            for (int64_t k = 0; k < nk; k++) {
                const int64_t n = key[k] / pl->TH;
                const T *xc = a->x + ((n * s->C + g * Cg + c) * s->H) * s->W;
                if (hi[k] <= lo[k]) continue; /* every tap on the zero margins */
                for (int i = 0; i < pl->alpha; i++) {
                    const int64_t ih = ih0[k] + s->dh * i;
                    T *row = rp + k * rows + i * rpl + s->pw + lo[k];
                    if (ih < 0 || ih >= s->H)
                        memset(row, 0, (size_t)(hi[k] - lo[k]) * sizeof(T));
                    else
                        memcpy(row, xc + ih * s->W + lo[k], (size_t)(hi[k] - lo[k]) * sizeof(T));
                }
            }
            FN(wino_gather_row)(m, rp, rpl, s->dw, col, nv, t - t0, c, Cg, nr, pl->vst, Vp);
        }
        t += nv;
    }
    /* lanes past the block in the last sliver: zero (the GEMM multiplies them, never stores) */
    if (nt % nr)
        for (int64_t e = 0; e < pl->alpha2; e++)
            for (int64_t c = c0; c < c1; c++)
                memset(Vp + e * pl->vst + (nt / nr) * Cg * nr + c * nr + nt % nr, 0,
                       (size_t)(nr - nt % nr) * sizeof(T));
    /* only what this call wrote: a shorter last block leaves the end of each plane as
     * malloc left it, and a NaN there made a finite call decline */
    for (int64_t e = 0; e < pl->alpha2; e++)
        for (int64_t sl = 0; sl < ceil_div(nt, nr); sl++)
            if (FN(wino_nonfinite)(Vp + e * pl->vst + sl * Cg * nr + c0 * nr, (c1 - c0) * nr))
                return 1;
    return 0;
}

/* One task: group g, tiles [t0, t1), part `part` of the chunk's output channels; its V is
 * the shared one (a->Vs) or transformed here into its workspace. */
static void FN(wino_task)(FN(wino_args) *a, int64_t task, T *work) {
    const wino_plan *pl = a->pl;
    const fc_conv_shape *s = a->s;
    const int m = pl->m;
    const int64_t mr = fc_gemm_mr(a->kernel, IS_F64), nr = fc_gemm_nr(a->kernel, IS_F64);
    const int64_t part = task % pl->nparts, blk = task / pl->nparts % pl->nb;
    const int64_t g = task / pl->nparts / pl->nb;
    const int64_t t0 = blk * pl->tstep, t1 = min64(pl->ntiles, t0 + pl->tstep), nt = t1 - t0;
    const int64_t len = a->oc1 - a->oc0, Mrc = round_up(len, mr), Cg = pl->Cg;
    const int64_t p0 = part * pl->pstep, p1 = min64(len, p0 + pl->pstep);
    const int64_t per_img = pl->TH * pl->TW;
    FC_ASSERT(0 <= t0 && t0 < t1 && nt <= pl->tstep && g < s->G && p0 < p1);
    FC_ASSERT(round_up(nt, nr) * Cg <= pl->vst && nt <= pl->ldm);
    const FN(wino_bufs) wb = FN(wino_carve)(pl, work);
    T *Vp = wb.Vp, *Mb = wb.Mb;
    if (a->Vs) {
        Vp = a->Vs + (g * pl->nb + blk) * pl->alpha2 * pl->vst;
    } else if (FN(wino_input)(a, g, t0, t1, 0, Cg, Vp, &wb)) {
        a->nonfinite = 1;
        return;
    }

    /* GEMMs and output transform, a block of output channels at a time */
    for (int64_t ob = p0; ob < p1; ob += pl->ostep) {
        const int64_t mo = min64(pl->ostep, p1 - ob);
        for (int64_t e = 0; e < pl->alpha2; e++)
            FN(fc_gemm_packed)(a->kernel, mo, nt, Cg, a->Up + (g * pl->alpha2 + e) * Mrc * Cg +
                                                          ob * Cg,
                               Cg, Vp + e * pl->vst, Mb + e * pl->ostep * pl->ldm, pl->ldm, 0);
        /* the output transform, WINO_GCHUNK tiles at a time, into y */
        for (int64_t t = t0; t < t1;) {
            const int64_t nv = min64(WINO_GCHUNK, t1 - t);
            wino_tiles tl;
            for (int64_t v = 0; v < nv; v++) {
                const int64_t r = (t + v) % per_img;
                int64_t nh, nw;
                const int64_t oh0 = wino_axis_at(&pl->ah, m, r / pl->TW, &nh);
                const int64_t ow0 = wino_axis_at(&pl->aw, m, r % pl->TW, &nw);
                tl.at[v] = (t + v) / per_img * s->OC * s->OH * s->OW + oh0 * s->OW + ow0;
                tl.nrow[v] = min64(m, nh);
                tl.ncol[v] = min64(m, nw);
            }
            for (int64_t i = 0; i < mo; i++) {
                T Yb[16 * WINO_GCHUNK];
                const int64_t o = g * pl->M + a->oc0 + ob + i;
                FN(wino_store_gather)(m, Mb + i * pl->ldm, pl->ostep * pl->ldm,
                                      a->b ? a->b[o] : (T)0, nv, t - t0, Yb);
                FN(wino_scatter)(a, o, m, &tl, nv, Yb, wb.rr);
            }
            t += nv;
        }
    }
}

/* The pool slot's workspace, allocated on its first use in the call; NULL (and the call
 * failed) when out of memory. */
static T *FN(wino_work)(FN(wino_args) *a, int slot) {
    if (!a->works[slot] &&
        !(a->works[slot] = malloc((size_t)(a->pl->work_elems + 1) * sizeof(T))))
        a->failed = 1;
    return a->works[slot];
}

static void FN(wino_tasks)(void *ctx, int64_t t0, int64_t t1, int slot) {
    FN(wino_args) *a = ctx;
    T *work = FN(wino_work)(a, slot);
    for (int64_t task = t0; task < t1 && work && !a->nonfinite; task++)
        FN(wino_task)(a, task, work);
}

/* The shared input transform: piece q = (group, tile block, channel piece) into a->Vs. */
static void FN(wino_input_pieces)(void *ctx, int64_t q0, int64_t q1, int slot) {
    FN(wino_args) *a = ctx;
    const wino_plan *pl = a->pl;
    T *work = FN(wino_work)(a, slot);
    if (!work) return;
    const FN(wino_bufs) wb = FN(wino_carve)(pl, work); /* its row buffers */
    for (int64_t q = q0; q < q1 && !a->nonfinite; q++) {
        const int64_t piece = q % a->cpieces, gb = q / a->cpieces;
        const int64_t blk = gb % pl->nb, g = gb / pl->nb;
        const int64_t t0 = blk * pl->tstep, t1 = min64(pl->ntiles, t0 + pl->tstep);
        const int64_t c0 = piece * pl->Cg / a->cpieces, c1 = (piece + 1) * pl->Cg / a->cpieces;
        if (c1 > c0 && FN(wino_input)(a, g, t0, t1, c0, c1,
                                      a->Vs + gb * pl->alpha2 * pl->vst, &wb))
            a->nonfinite = 1;
    }
}

/* Transform and pack the weights of the chunk [a->oc0, a->oc1) into a->Up, on the pool. */
static void FN(wino_pack_chunk)(FN(wino_args) *a, const fc_conv_shape *s, const wino_plan *pl,
                                int64_t mr) {
    const int64_t Mrc = round_up(a->oc1 - a->oc0, mr), rows = s->G * (Mrc / mr);
    FC_ASSERT(s->G * pl->alpha2 * Mrc * pl->Cg + 16 <= pl->u_elems);
    const int64_t cost = fc_cost_mem(s->G * pl->alpha2 * Mrc * pl->Cg * (int64_t)sizeof(T),
                                     rows * mr * pl->Cg * 200);
    const int pteam = fc_team_for(cost, pl->nthreads);
    a->pl = pl;
    fc_parallel_for(rows, fc_chunk_for(rows, cost, pteam), pteam, FN(wino_pack_u), a);
}

int FN(fc_winograd_conv2d)(const T *x, const T *w, const T *b, T *y, const fc_conv_shape *s,
                           int m, int kernel, int nthreads, int64_t work_bytes,
                           const fc_epilogue *ep) {
    /* m is 2, 3 or 4; any shape (one Winograd does not cover returns FC_WINOGRAD_DECLINED);
     * returns 0, 1 when out of memory, FC_WINOGRAD_DECLINED: y is for the caller to fill */
    FC_ASSERT_CONV_SHAPE(s);
    FC_ASSERT(m >= 2 && m <= 4);
    if (!fc_winograd_eligible(s) || m < 2 || m > 4) return FC_WINOGRAD_DECLINED;
    if (kernel == FC_GEMM_NAIVE) kernel = FC_GEMM_PORTABLE; /* the packed GEMM only */
    const int64_t macs = s->N * s->OC * s->OH * s->OW * (s->C / s->G) * 9;
    const int team = fc_team_for(fc_cost_macs(macs / (m == 2 ? 2 : 3)), nthreads);
    wino_plan pl = {0};
    if (!wino_plan_make(s, m, kernel, IS_F64, team, work_bytes, &pl)) return FC_WINOGRAD_DECLINED;
    const int64_t mr = fc_gemm_mr(kernel, IS_F64);
    T *works[FC_POOL_SLOTS] = {0};
    FN(wino_args) a = {.x = x, .w = w, .b = b, .y = y, .s = s, .pl = &pl, .kernel = kernel,
                       .works = works, .ep = fc_epilogue_active(ep) ? ep : NULL,
                       .failed = 0, .nonfinite = 0};

    /* the packed U of every chunk, from the cache, or built into a new entry (chunk k at
     * k * uchunk: every chunk but the last holds ochunk channels, a multiple of mr) */
    const int64_t nchunks = ceil_div(pl.M, pl.ochunk);
    const int64_t uchunk = s->G * pl.alpha2 * pl.ochunk * pl.Cg;
    const int64_t wbytes = s->OC * pl.Cg * 9 * (int64_t)sizeof(T);
    const wino_key key = {.w = w, .OC = s->OC, .Cg = pl.Cg, .G = s->G, .ochunk = pl.ochunk,
                          .m = m, .kernel = kernel, .mr = (int)mr, .is_f64 = IS_F64};
    wino_entry *e = wino_cache_acquire(&key, w, wbytes, pl.nthreads);
    if (!e && (e = wino_cache_new(&key, w, wbytes, nchunks * uchunk * (int64_t)sizeof(T)))) {
        for (int64_t k = 0; k < nchunks && !a.nonfinite; k++) {
            a.oc0 = k * pl.ochunk;
            a.oc1 = min64(pl.M, a.oc0 + pl.ochunk);
            a.Up = (T *)e->u + k * uchunk;
            FN(wino_pack_chunk)(&a, s, &pl, mr);
        }
        if (a.nonfinite) { /* never cached */
            wino_cache_release(e, 1);
            return FC_WINOGRAD_DECLINED;
        }
        wino_cache_insert(e);
    }
    /* without an entry (cache off, over its budget, no memory): one chunk's U at a time */
    T *ubuf = NULL, *vshared = NULL;
    if (!e && !(ubuf = malloc((size_t)pl.u_elems * sizeof(T)))) return 1;

    for (int64_t k = 0; k < nchunks && !a.failed && !a.nonfinite; k++) {
        a.oc0 = k * pl.ochunk;
        a.oc1 = min64(pl.M, a.oc0 + pl.ochunk);
        if (e) {
            a.Up = (T *)e->u + k * uchunk;
        } else {
            a.Up = (T *)(((uintptr_t)ubuf + 63) & ~(uintptr_t)63);
            FN(wino_pack_chunk)(&a, s, &pl, mr);
            if (a.nonfinite) break;
        }
        const int64_t ntasks = s->G * pl.nb * ceil_div(a.oc1 - a.oc0, pl.pstep);
        wino_plan plc = pl; /* the last chunk may have fewer parts */
        plc.nparts = ceil_div(a.oc1 - a.oc0, pl.pstep);
        a.pl = &plc;
        /* Output channels split into parts (few tile blocks for the threads): each part's
         * task would transform the same input again (ResNet-50's 256@14 under F2: 15% of the
         * call, twice); instead the threads transform it once, by channel pieces, into one
         * shared V per (group, tile block), when it fits the bound beside U and every
         * thread's workspace (the plan sized those without it). */
        const int64_t vs_elems = s->G * pl.nb * pl.alpha2 * pl.vst;
        if (plc.nparts > 1 && pl.nthreads > 1 && k == 0 &&
            (vs_elems + 16 + pl.u_elems + pl.nthreads * (pl.work_elems + 1)) *
                    (int64_t)sizeof(T) <= work_bytes &&
            (vshared = malloc((size_t)(vs_elems + 16) * sizeof(T)))) {
            a.Vs = (T *)(((uintptr_t)vshared + 63) & ~(uintptr_t)63);
            a.cpieces = min64(pl.Cg, 4 * (int64_t)pl.nthreads);
            const int64_t npieces = s->G * pl.nb * a.cpieces;
            fc_parallel_for(npieces, 1, pl.nthreads, FN(wino_input_pieces), &a);
            if (a.failed || a.nonfinite) break;
        }
        fc_parallel_for(ntasks, 1, pl.nthreads, FN(wino_tasks), &a);
    }
    for (int i = 0; i < FC_POOL_SLOTS; i++) free(works[i]);
    free(ubuf);
    free(vshared);
    if (e) wino_cache_release(e, 0);
    if (a.nonfinite) return FC_WINOGRAD_DECLINED;
    return a.failed;
}

#endif /* FC_TYPED */
