/*
 * gemm.c - fnn_gemm_f32 / fnn_gemm_f64: the driver (blocking, packing, threads) around the
 * microkernel that CPU dispatch selected. The type-generic body is gemm_tmpl.h.
 */
#if !defined(_POSIX_C_SOURCE) || _POSIX_C_SOURCE < 200112L
#undef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200112L
#endif
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "gemm_internal.h"
#include "../core/internal.h"

/* ---- per-thread packing workspace ---------------------------------------------------------
 * Each thread (a Python thread calling us, or an OpenMP worker) keeps one 64-byte aligned
 * buffer for its packed A and B blocks, grown when a call needs more and freed when the
 * thread exits. Nothing is shared between threads, so concurrent calls need no locks. */
typedef struct {
    void *p;
    size_t size;
} fnn_gemm_ws;

static pthread_key_t ws_key;
static pthread_once_t ws_once = PTHREAD_ONCE_INIT;
static int ws_key_ok;

static void ws_free(void *v)
{
    fnn_gemm_ws *w = (fnn_gemm_ws *)v;
    if (w) {
        free(w->p);
        free(w);
    }
}

static void ws_init(void)
{
    ws_key_ok = (pthread_key_create(&ws_key, ws_free) == 0);
}

static void *fnn_gemm_workspace(size_t bytes)
{
    pthread_once(&ws_once, ws_init);
    if (!ws_key_ok)
        return NULL;
    fnn_gemm_ws *w = (fnn_gemm_ws *)pthread_getspecific(ws_key);
    if (w == NULL) {
        w = (fnn_gemm_ws *)calloc(1, sizeof(*w));
        if (w == NULL)
            return NULL;
        if (pthread_setspecific(ws_key, w) != 0) {
            free(w);
            return NULL;
        }
    }
    if (w->size < bytes) {
        /* Grow by at least half so a sequence of slightly larger calls reallocates rarely. */
        size_t want = bytes + bytes / 2;
        want = (want + 4095) & ~(size_t)4095;
        void *p = NULL;
        free(w->p);
        w->p = NULL;
        w->size = 0;
        if (posix_memalign(&p, 64, want) != 0)
            return NULL;
        w->p = p;
        w->size = want;
    }
    return w->p;
}

#ifdef FNN_GEMM_TUNE
static int64_t tune_env(const char *name, int64_t def)
{
    const char *s = getenv(name);
    return s ? atoll(s) : def;
}
#define FNN_GEMM_DIRECT_MAX_A_TRAFFIC ((double)tune_env("FNN_DIRECT_A", 4 << 20))
#define FNN_GEMM_DOT_MAX_MN ((double)tune_env("FNN_DOT_MN", 2048))
#define FNN_GEMM_DOT_MIN_K tune_env("FNN_DOT_K", 32)
#define FNN_GEMM_DOT_MAX_BYTES ((double)tune_env("FNN_DOT_BYTES", 1 << 20))
#else
#define FNN_GEMM_DIRECT_MAX_A_TRAFFIC ((double)(4 << 20))
/* The dot-product path (see gemm()): C of at most this many elements, k of at least this much,
 * both operands within this many bytes. */
#define FNN_GEMM_DOT_MAX_MN 2048.0
#define FNN_GEMM_DOT_MIN_K 32
#define FNN_GEMM_DOT_MAX_BYTES ((double)(1 << 20))
#endif

/* ---- thread partition ---------------------------------------------------------------------
 * Below this much work per thread, waking another thread costs more than it saves. Measured
 * with hot (spinning) OpenMP workers on 2 cores: unpacked products break even near 2^18
 * multiply-adds in all (about 4 us) and win clearly from 2^19; packed ones, which pack some
 * operand twice when split, need twice that. Work counts n rounded up to 16 columns (a
 * narrow C runs the kernel at partial width) and at least 4 rows (1-2 rows are bound by
 * reading B, which two cores share: 9.3 -> 7.4 us for 1 x 784 x 256). */
#ifdef FNN_GEMM_TUNE
#define FNN_GEMM_MIN_MACS_PER_THREAD tune_env("FNN_MIN_MACS", (int64_t)1 << 17)
#else
#define FNN_GEMM_MIN_MACS_PER_THREAD ((int64_t)1 << 17)
#endif

/* Picks the number of threads and a tm x tn grid of C blocks (in whole MR x NR tiles) that
 * minimises the busiest thread's cost: its share of the product, with partial tiles costed
 * by the rows and columns they really compute, plus a term for the inputs it must bring in,
 * (rows + cols) x k: packed, a thread packs all the A rows and B columns of its block (a
 * 2 x 1 grid packs B twice, 1 x 2 packs A twice); direct, they are its working set in L2
 * (measured: 784x256x128 runs 5-10% faster split by rows, 128x784x256 by columns, as this
 * term predicts). Ties go to fewer threads. */
static int fnn_gemm_threads(int64_t m, int64_t n, int64_t k, int mr, int nr, int n_threads, int packed,
                            int *tm_out, int *tn_out)
{
    int nt = n_threads < 1 ? 1 : n_threads;
#ifndef _OPENMP
    nt = 1;
#endif
    if (nt > 1) {
        const double work = (double)(m < 4 ? 4 : m) * (double)((n + 15) / 16 * 16) * (double)k;
        const double cap = work / (double)(FNN_GEMM_MIN_MACS_PER_THREAD * (packed ? 2 : 1));
        if (cap < nt)
            nt = cap < 1 ? 1 : (int)cap;
    }
    const int64_t tiles_m = (m + mr - 1) / mr, tiles_n = (n + nr - 1) / nr;
    if (nt > tiles_m * tiles_n)
        nt = (int)(tiles_m * tiles_n);
    *tm_out = 1;
    *tn_out = 1;
    if (nt <= 1)
        return 1;

    /* Packing one element costs about as much as 16 multiply-adds in the kernel. */
    const double pack_cost = 16.0;
    double best = 0;
    int best_tm = 1, best_tn = 1;
    for (int t = 2; t <= nt; t++)
        for (int tm = 1; tm <= t; tm++) {
            const int tn = t / tm;
            if (tm * tn != t || tm > tiles_m || tn > tiles_n)
                continue;
            /* the largest block: ceil(tiles/t) tiles, the last one possibly partial */
            const int64_t bt_m = (tiles_m + tm - 1) / tm, bt_n = (tiles_n + tn - 1) / tn;
            const double rows = (double)(bt_m * mr < m ? bt_m * mr : m);
            const double cols = (double)(bt_n * nr < n ? bt_n * nr : n);
            const double cost = rows * cols + pack_cost * (rows + cols);
            if (best == 0 || cost < best * 0.98) {
                best = cost;
                best_tm = tm;
                best_tn = tn;
            }
        }
#ifdef FNN_GEMM_TUNE
    if (getenv("FNN_GRID_TM") && nt % atoi(getenv("FNN_GRID_TM")) == 0) {
        best_tm = atoi(getenv("FNN_GRID_TM"));
        best_tn = nt / best_tm;
    }
#endif
    *tm_out = best_tm;
    *tn_out = best_tn;
    return best_tm * best_tn;
}

/* Rows [i0, i1) and columns [j0, j1) of block `part` of a tm x tn grid over an m x n C cut in
 * whole mr x nr tiles (the last block of a row or column takes the remainder). */
static inline void fnn_gemm_block(int part, int tm, int tn, int64_t m, int64_t n, int mr, int nr, int64_t *i0,
                                  int64_t *i1, int64_t *j0, int64_t *j1)
{
    const int64_t tiles_m = (m + mr - 1) / mr, tiles_n = (n + nr - 1) / nr;
    const int pi = part / tn, pj = part % tn;
    *i0 = tiles_m * pi / tm * mr;
    *i1 = (pi + 1 == tm) ? m : tiles_m * (pi + 1) / tm * mr;
    *j0 = tiles_n * pj / tn * nr;
    *j1 = (pj + 1 == tn) ? n : tiles_n * (pj + 1) / tn * nr;
}

/* ---- the two instantiations --------------------------------------------------------------- */
#define FNN_T float
#define FNN_DESC fnn_gemm_desc_f32
#define FNN_EPI fnn_gemm_epi_f32
#define FNN_ARGS gemm_args_f32
#define FNN_NAME(x) x##_f32
#include "gemm_tmpl.h"
#undef FNN_T
#undef FNN_DESC
#undef FNN_EPI
#undef FNN_ARGS
#undef FNN_NAME

#define FNN_T double
#define FNN_DESC fnn_gemm_desc_f64
#define FNN_EPI fnn_gemm_epi_f64
#define FNN_ARGS gemm_args_f64
#define FNN_NAME(x) x##_f64
#include "gemm_tmpl.h"
#undef FNN_T
#undef FNN_DESC
#undef FNN_EPI
#undef FNN_ARGS
#undef FNN_NAME

static const fnn_gemm_desc_f32 *gemm_desc_f32(void)
{
    switch (fnn_arch_get()) {
#if FNN_X86
    case FNN_ARCH_AVX2: return &fnn_gemm_desc_avx2_f32;
#endif
#if FNN_X86
    case FNN_ARCH_AVX512: return &fnn_gemm_desc_avx512_f32;
#endif
    default: return &fnn_gemm_desc_ref_f32;
    }
}

static const fnn_gemm_desc_f64 *gemm_desc_f64(void)
{
    switch (fnn_arch_get()) {
#if FNN_X86
    case FNN_ARCH_AVX2: return &fnn_gemm_desc_avx2_f64;
#endif
#if FNN_X86
    case FNN_ARCH_AVX512: return &fnn_gemm_desc_avx512_f64;
#endif
    default: return &fnn_gemm_desc_ref_f64;
    }
}

int fnn_gemm_f32(int flags, int64_t m, int64_t n, int64_t k, float alpha, float beta, const float *a,
                 int64_t lda, const float *b, int64_t ldb, const float *bias, float *c, int64_t ldc,
                 int n_threads)
{
    return gemm_f32(gemm_desc_f32(), flags, m, n, k, alpha, beta, a, lda, b, ldb, bias, c, ldc,
                    n_threads);
}

int fnn_gemm_f64(int flags, int64_t m, int64_t n, int64_t k, double alpha, double beta, const double *a,
                 int64_t lda, const double *b, int64_t ldb, const double *bias, double *c, int64_t ldc,
                 int n_threads)
{
    return gemm_f64(gemm_desc_f64(), flags, m, n, k, alpha, beta, a, lda, b, ldb, bias, c, ldc,
                    n_threads);
}

/* ---- gathered B rows (the convolution's implicit im2col; csrc/core/internal.h) ---------- */
int fnn_gemm_rows_width_f32(void) { return gemm_desc_f32()->ukg ? gemm_desc_f32()->nr / 2 : 0; }
int fnn_gemm_rows_width_f64(void) { return gemm_desc_f64()->ukg ? gemm_desc_f64()->nr / 2 : 0; }

/* Whether a stride-1 forward convolution with output rows of ow values, wp = ow + kw - 1 wide
 * columns on the explicit path and k taps should take the gathered-rows kernel (vector width vw):
 * a row takes ceil(ow / vw) vectors, or one when two rows share a call (ow <= vw). */
static int rows_take(int vw, int min_k, int vs_wide, int64_t ow, int64_t wp, int64_t k)
{
    if (vw <= 0 || k < min_k)
        return 0;
    const int64_t lanes = ow <= vw ? vw : (ow + vw - 1) / vw * vw;
    return !vs_wide || lanes < wp;
}

int fnn_gemm_rows_take_f32(int64_t ow, int64_t wp, int64_t k)
{
    const fnn_gemm_desc_f32 *d = gemm_desc_f32();
    return rows_take(fnn_gemm_rows_width_f32(), d->rows_min_k, d->rows_vs_wide, ow, wp, k);
}

int fnn_gemm_rows_take_f64(int64_t ow, int64_t wp, int64_t k)
{
    const fnn_gemm_desc_f64 *d = gemm_desc_f64();
    return rows_take(fnn_gemm_rows_width_f64(), d->rows_min_k, d->rows_vs_wide, ow, wp, k);
}

int fnn_gemm_rows_f32(int flags, int64_t m, int64_t k, const float *a, int64_t lda, const float *b,
                      const int64_t *boff, int64_t b2, int nr0, int nr1, const float *bias, float *c, int64_t ldc,
                      int64_t c2)
{
    return gemm_rows_f32(gemm_desc_f32(), flags, m, k, a, lda, b, boff, b2, nr0, nr1, bias, c, ldc, c2);
}

int fnn_gemm_rows_f64(int flags, int64_t m, int64_t k, const double *a, int64_t lda, const double *b,
                      const int64_t *boff, int64_t b2, int nr0, int nr1, const double *bias, double *c, int64_t ldc,
                      int64_t c2)
{
    return gemm_rows_f64(gemm_desc_f64(), flags, m, k, a, lda, b, boff, b2, nr0, nr1, bias, c, ldc, c2);
}
