/*
 * gemm_bf16.c - bfloat16 conversion and fnn_gemm_bf16: bf16 inputs, float32 accumulation.
 *
 * Two paths, the same numerics (inputs rounded to bf16 to nearest even, exact products, float32
 * sums; only the order of the float32 additions differs):
 *   reference (FNN_BF16_REF, any CPU): round both operands into float32 scratch and run the float32
 *     GEMM on them. A bf16 x bf16 product has at most 16 significant bits, so the float32 FMA adds
 *     it exactly as a bf16 dot product does. Also the path for small products (see below).
 *   packed (AVX512-BF16, AMX): the BLIS loops of gemm_tmpl.h around a k-pair microkernel; the
 *     operands are converted while packed, so a float32 activation is read once per packing and
 *     a bf16 weight copy (FNN_A_BF16 / FNN_B_BF16) costs half the bytes.
 * KC blocks depend on k only and every C element is computed by the same instructions whatever
 * the thread grid, so results do not depend on the thread count.
 */
#if !defined(_POSIX_C_SOURCE) || _POSIX_C_SOURCE < 200112L
#undef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200112L
#endif
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm_bf16_internal.h"
#include "../core/internal.h"

/* ---- conversion ---------------------------------------------------------------------------- */

static const fnn_gemm_desc_bf16 *bf16_desc(void);

/* A kernel's vectorised conversion over chunks of 4096 values (whole vectors: the same bits
 * whatever the split between threads); y has elements of ysize bytes. */
static void convert_chunked(void (*fn)(int64_t, const float *, void *), int64_t n, const float *x, char *y,
                            size_t ysize, int nt)
{
    const int64_t chunks = (n + 4095) / 4096;
    FNN_PARALLEL_FOR(nt, c, chunks, {
        const int64_t i0 = c * 4096;
        fn((n - i0 < 4096) ? n - i0 : 4096, x + i0, y + (size_t)i0 * ysize);
    });
}

int fnn_f32_to_bf16(int64_t n, const float *x, uint16_t *y, int n_threads)
{
    if (n < 0 || (n > 0 && (x == NULL || y == NULL)))
        return FNN_ERR_ARG;
    const int nt = n >= FNN_PAR_MIN_ELEMS ? n_threads : 1;
    const fnn_gemm_desc_bf16 *d = bf16_desc();
    if (d != NULL && d->convert != NULL) {
        convert_chunked(d->convert, n, x, (char *)y, sizeof(*y), nt);
        return FNN_OK;
    }
    FNN_PARALLEL_FOR(nt, i, n, y[i] = fnn_bf16_from_f32(x[i]););
    return FNN_OK;
}

int fnn_bf16_to_f32(int64_t n, const uint16_t *x, float *y, int n_threads)
{
    if (n < 0 || (n > 0 && (x == NULL || y == NULL)))
        return FNN_ERR_ARG;
    const int nt = n >= FNN_PAR_MIN_ELEMS ? n_threads : 1;
    FNN_PARALLEL_FOR(nt, i, n, y[i] = fnn_bf16_to_float(x[i]););
    return FNN_OK;
}

int fnn_round_bf16_f32(int64_t n, const float *x, float *y, int n_threads)
{
    if (n < 0 || (n > 0 && (x == NULL || y == NULL)))
        return FNN_ERR_ARG;
    const int nt = n >= FNN_PAR_MIN_ELEMS ? n_threads : 1;
    const fnn_gemm_desc_bf16 *d = bf16_desc();
    if (d != NULL && d->round != NULL) {
        convert_chunked(d->round, n, x, (char *)y, sizeof(*y), nt);
        return FNN_OK;
    }
    FNN_PARALLEL_FOR(nt, i, n, y[i] = fnn_bf16_to_float(fnn_bf16_from_f32(x[i])););
    return FNN_OK;
}

/* ---- portable packing ---------------------------------------------------------------------- */

static inline uint32_t bf16_at(int src_bf16, const void *src, int64_t off)
{
    return src_bf16 ? ((const uint16_t *)src)[off] : fnn_bf16_from_f32(((const float *)src)[off]);
}

void fnn_bf16_pack_copy_ref(int W, int64_t w, int64_t kc, int src_bf16, const void *src, int64_t ld,
                            uint32_t *dst)
{
    const int64_t kq = (kc + 1) / 2;
    for (int64_t q = 0; q < kq; q++) {
        const int64_t p = 2 * q;
        for (int64_t i = 0; i < w; i++) {
            const uint32_t lo = bf16_at(src_bf16, src, p * ld + i);
            const uint32_t hi = p + 1 < kc ? bf16_at(src_bf16, src, (p + 1) * ld + i) : 0;
            dst[q * W + i] = lo | (hi << 16);
        }
        for (int64_t i = w; i < W; i++)
            dst[q * W + i] = 0;
    }
}

void fnn_bf16_pack_trans_ref(int W, int64_t w, int64_t kc, int src_bf16, const void *src, int64_t ld,
                             uint32_t *dst)
{
    const int64_t kq = (kc + 1) / 2;
    for (int64_t i = 0; i < w; i++) {
        for (int64_t q = 0; q < kq; q++) {
            const int64_t p = 2 * q;
            const uint32_t lo = bf16_at(src_bf16, src, i * ld + p);
            const uint32_t hi = p + 1 < kc ? bf16_at(src_bf16, src, i * ld + p + 1) : 0;
            dst[q * W + i] = lo | (hi << 16);
        }
    }
    for (int64_t q = 0; q < kq; q++)
        for (int64_t i = w; i < W; i++)
            dst[q * W + i] = 0;
}

/* ---- per-thread scratch ---------------------------------------------------------------------
 * One 64-byte aligned buffer per thread (packed panels, or the reference path's rounded copies),
 * grown on demand and freed when the thread exits; apart from gemm.c's so that the reference
 * path can hold its copies while the float32 GEMM packs into its own. */
typedef struct {
    void *p;
    size_t size;
} bf16_ws;

static pthread_key_t ws_key;
static pthread_once_t ws_once = PTHREAD_ONCE_INIT;
static int ws_key_ok;

static void ws_free(void *v)
{
    bf16_ws *w = (bf16_ws *)v;
    if (w) {
        free(w->p);
        free(w);
    }
}

static void ws_init(void)
{
    ws_key_ok = (pthread_key_create(&ws_key, ws_free) == 0);
}

static void *bf16_workspace(size_t bytes)
{
    pthread_once(&ws_once, ws_init);
    if (!ws_key_ok)
        return NULL;
    bf16_ws *w = (bf16_ws *)pthread_getspecific(ws_key);
    if (w == NULL) {
        w = (bf16_ws *)calloc(1, sizeof(*w));
        if (w == NULL)
            return NULL;
        if (pthread_setspecific(ws_key, w) != 0) {
            free(w);
            return NULL;
        }
    }
    if (w->size < bytes) {
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

/* ---- reference path ------------------------------------------------------------------------ */

/* dst (rows x cols, contiguous) = float(bf16(src)) for a stored operand. */
static void round_operand(int64_t rows, int64_t cols, int src_bf16, const void *src, int64_t ld, float *dst,
                          int n_threads)
{
    const int nt = rows * cols >= FNN_PAR_MIN_ELEMS ? n_threads : 1;
    /* the kernel's vectorised rounding where it has one (the same bits): this path serves many
     * small products (measured on Zen 4: a 1-channel 3x3 convolution's weight gradient, batch 64 of
     * 28x28, 1.26 -> 1.01 ms; a 256 x 10 x 512 output layer 72 -> 55 us) */
    const fnn_gemm_desc_bf16 *kd = bf16_desc();
    void (*round_row)(int64_t, const float *, void *) = kd != NULL ? kd->round : NULL;
    FNN_PARALLEL_FOR(nt, r, rows, {
        float *d = dst + r * cols;
        if (src_bf16) {
            const uint16_t *s = (const uint16_t *)src + r * ld;
            for (int64_t j = 0; j < cols; j++)
                d[j] = fnn_bf16_to_float(s[j]);
        } else if (round_row != NULL) {
            round_row(cols, (const float *)src + r * ld, d);
        } else {
            const float *s = (const float *)src + r * ld;
            for (int64_t j = 0; j < cols; j++)
                d[j] = fnn_bf16_to_float(fnn_bf16_from_f32(s[j]));
        }
    });
}

static int gemm_bf16_ref(int flags, int64_t m, int64_t n, int64_t k, float alpha, float beta, const void *a,
                         int64_t lda, const void *b, int64_t ldb, const float *bias, float *c, int64_t ldc,
                         int n_threads)
{
    const int trans_a = (flags & FNN_TRANS_A) != 0, trans_b = (flags & FNN_TRANS_B) != 0;
    const int64_t ar = trans_a ? k : m, ac = trans_a ? m : k;
    const int64_t br = trans_b ? n : k, bc = trans_b ? k : n;
    const size_t a_elems = ((size_t)(ar * ac) + 15) / 16 * 16;
    float *ws = (float *)bf16_workspace((a_elems + (size_t)(br * bc)) * sizeof(float));
    if (ws == NULL)
        return FNN_ERR_NOMEM;
    round_operand(ar, ac, (flags & FNN_A_BF16) != 0, a, lda, ws, n_threads);
    round_operand(br, bc, (flags & FNN_B_BF16) != 0, b, ldb, ws + a_elems, n_threads);
    return fnn_gemm_f32(flags & ~(FNN_A_BF16 | FNN_B_BF16), m, n, k, alpha, beta, ws, ac > 0 ? ac : 1,
                        ws + a_elems, bc > 0 ? bc : 1, bias, c, ldc, n_threads);
}

/* ---- packed path --------------------------------------------------------------------------- */

typedef struct {
    const fnn_gemm_desc_bf16 *d;
    int trans_a, trans_b, a16, b16, bias_row, relu;
    int64_t m, n, k, kcb, kq_max;
    float alpha, beta;
    const void *a;
    int64_t lda;
    const void *b;
    int64_t ldb;
    const float *bias;
    float *c;
    int64_t ldc;
} bf16_args;

static inline const void *at(const void *base, int is16, int64_t off)
{
    return is16 ? (const void *)((const uint16_t *)base + off) : (const void *)((const float *)base + off);
}

/* The serial blocked algorithm on rows [i0, i1) and columns [j0, j1) of C (gemm_tmpl.h's loops). */
static void bf16_part(const bf16_args *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1, uint32_t *ap,
                      uint32_t *bp)
{
    const fnn_gemm_desc_bf16 *d = g->d;
    const int MR = d->mr, NR = d->nr;
    const int64_t MC = d->mc, NC = d->nc, k = g->k, ka = fnn_bf16_k_align(d);
    const fnn_bf16_pack_fn pack_a_copy = d->pack_a_copy ? d->pack_a_copy : d->pack_copy;
    const fnn_bf16_pack_fn pack_a_trans = d->pack_a_trans ? d->pack_a_trans : d->pack_trans;
    fnn_gemm_epi_f32 epi;
    epi.alpha = g->alpha;
    for (int64_t jc = j0; jc < j1; jc += NC) {
        const int64_t nc = (j1 - jc < NC) ? j1 - jc : NC;
        for (int64_t pc = 0; pc < k; pc += g->kcb) {
            const int64_t kc = (k - pc < g->kcb) ? k - pc : g->kcb;
            const int64_t kq = fnn_bf16_panel_pairs(kc, ka);
            const int first = (pc == 0), last = (pc + kc == k);
            for (int64_t jr = 0; jr < nc; jr += NR) {
                const int64_t nr = (nc - jr < NR) ? nc - jr : NR;
                uint32_t *dst = bp + jr * kq;
                if (g->trans_b)
                    d->pack_trans(NR, nr, kc, g->b16, at(g->b, g->b16, (jc + jr) * g->ldb + pc), g->ldb, dst);
                else
                    d->pack_copy(NR, nr, kc, g->b16, at(g->b, g->b16, pc * g->ldb + jc + jr), g->ldb, dst);
            }
            epi.beta = first ? g->beta : 1.0f;
            epi.flags = ((first && g->beta == 0) ? FNN_GEMM_E_BETA0 : 0) | ((last && g->relu) ? FNN_GEMM_E_RELU : 0) |
                        (g->bias_row ? FNN_GEMM_E_BIASROW : 0);
            const float *bias = last ? g->bias : NULL;
            for (int64_t ic = i0; ic < i1; ic += MC) {
                const int64_t mc = (i1 - ic < MC) ? i1 - ic : MC;
                for (int64_t ir = 0; ir < mc; ir += MR) {
                    const int64_t mr = (mc - ir < MR) ? mc - ir : MR;
                    uint32_t *dst = ap + ir * kq;
                    if (g->trans_a)
                        pack_a_copy(MR, mr, kc, g->a16, at(g->a, g->a16, pc * g->lda + ic + ir), g->lda, dst);
                    else
                        pack_a_trans(MR, mr, kc, g->a16, at(g->a, g->a16, (ic + ir) * g->lda + pc), g->lda, dst);
                }
                for (int64_t ir = 0; ir < mc; ir += MR) {
                    const int mr = (int)((mc - ir < MR) ? mc - ir : MR);
                    float *crow = g->c + (ic + ir) * g->ldc;
                    for (int64_t jr = 0; jr < nc; jr += NR) {
                        const int nr = (int)((nc - jr < NR) ? nc - jr : NR);
                        const float *tb = bias ? (g->bias_row ? bias + ic + ir : bias + jc + jr) : NULL;
                        d->ukr(kq, ap + ir * kq, bp + jr * kq, crow + jc + jr, g->ldc, mr, nr, &epi, tb);
                    }
                }
            }
        }
    }
}

/* Threads and the tm x tn grid of C blocks (in whole tiles) with the smallest busiest block,
 * counting its products and the packing of its A rows and B columns; ties to fewer threads.
 * Below 2^18 multiply-adds per thread a second thread costs more than it saves. */
static int bf16_grid(int64_t m, int64_t n, int64_t k, int mr, int nr, int n_threads, int *tm_out, int *tn_out)
{
    int nt = n_threads < 1 ? 1 : n_threads;
#ifndef _OPENMP
    nt = 1;
#endif
    const double work = (double)m * (double)n * (double)k;
    if (work / (double)(1 << 18) < nt)
        nt = work < (double)(1 << 18) ? 1 : (int)(work / (double)(1 << 18));
    const int64_t tiles_m = (m + mr - 1) / mr, tiles_n = (n + nr - 1) / nr;
    if (nt > tiles_m * tiles_n)
        nt = (int)(tiles_m * tiles_n);
    int best_tm = 1, best_tn = 1;
    double best = 0;
    for (int t = 1; t <= nt; t++)
        for (int tm = 1; tm <= t; tm++) {
            const int tn = t / tm;
            if (tm * tn != t || tm > tiles_m || tn > tiles_n)
                continue;
            const int64_t bt_m = (tiles_m + tm - 1) / tm, bt_n = (tiles_n + tn - 1) / tn;
            const double rows = (double)(bt_m * mr < m ? bt_m * mr : m);
            const double cols = (double)(bt_n * nr < n ? bt_n * nr : n);
            const double cost = rows * cols + 16.0 * (rows + cols);
            if (best == 0 || cost < best * 0.98) {
                best = cost;
                best_tm = tm;
                best_tn = tn;
            }
        }
    *tm_out = best_tm;
    *tn_out = best_tn;
    return best_tm * best_tn;
}

static int gemm_bf16_packed(const fnn_gemm_desc_bf16 *d, int flags, int64_t m, int64_t n, int64_t k, float alpha,
                            float beta, const void *a, int64_t lda, const void *b, int64_t ldb, const float *bias,
                            float *c, int64_t ldc, int n_threads)
{
    bf16_args g = {.d = d, .trans_a = (flags & FNN_TRANS_A) != 0, .trans_b = (flags & FNN_TRANS_B) != 0,
                   .a16 = (flags & FNN_A_BF16) != 0, .b16 = (flags & FNN_B_BF16) != 0,
                   .bias_row = (flags & FNN_BIAS_ROW) != 0, .relu = (flags & FNN_EPI_RELU) != 0, .m = m, .n = n,
                   .k = k, .alpha = alpha, .beta = beta, .a = a, .lda = lda, .b = b, .ldb = ldb, .bias = bias,
                   .c = c, .ldc = ldc};
    /* Equal KC blocks of a multiple of the kernel's step (a k-pair, or an AMX tile row, never
     * straddles two blocks), from k alone. */
    const int64_t ka = fnn_bf16_k_align(d);
    const int64_t nb = (k + d->kc - 1) / d->kc;
    int64_t kcb = (k + nb - 1) / nb;
    kcb = (kcb + ka - 1) / ka * ka;
    g.kcb = kcb;
    const int64_t kq = fnn_bf16_panel_pairs(kcb < k ? kcb : k, ka);
    int tm, tn;
    const int nt = bf16_grid(m, n, k, d->mr, d->nr, n_threads, &tm, &tn);
    const int64_t tiles_m = (m + d->mr - 1) / d->mr, tiles_n = (n + d->nr - 1) / d->nr;
    int64_t rows = (tiles_m + tm - 1) / tm * d->mr, cols = (tiles_n + tn - 1) / tn * d->nr;
    rows = rows < d->mc ? rows : (d->mc + d->mr - 1) / d->mr * d->mr;
    cols = cols < d->nc ? cols : (d->nc + d->nr - 1) / d->nr * d->nr;
    const size_t b_elems = ((size_t)(kq * cols) + 15) / 16 * 16;
    const size_t bytes = (b_elems + (size_t)(kq * rows)) * sizeof(uint32_t);
    int fail = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
        int tid = 0, nth = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nth = omp_get_num_threads();
#endif
        uint32_t *ws = (uint32_t *)bf16_workspace(bytes);
        if (ws == NULL) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
            fail = 1;
        } else {
            if (d->thread_init)
                d->thread_init();
            for (int part = tid; part < tm * tn; part += nth) {
                const int pi = part / tn, pj = part % tn;
                const int64_t i0 = tiles_m * pi / tm * d->mr, i1 = (pi + 1 == tm) ? m : tiles_m * (pi + 1) / tm * d->mr;
                const int64_t j0 = tiles_n * pj / tn * d->nr, j1 = (pj + 1 == tn) ? n : tiles_n * (pj + 1) / tn * d->nr;
                if (i0 < i1 && j0 < j1)
                    bf16_part(&g, i0, i1, j0, j1, ws + b_elems, ws);
            }
            if (d->thread_fini)
                d->thread_fini();
        }
    }
    return fail ? FNN_ERR_NOMEM : FNN_OK;
}

/* ---- self-check -----------------------------------------------------------------------------
 * A kernel that could not be run before it shipped (AMX: written and tested on an emulation of its
 * instructions) is checked on first use against a float64 product of the same rounded operands:
 * edge shapes (a partial tile in m, n and k, two KC blocks), both transposes, bf16-stored operands
 * and the whole epilogue. Bound: the float32 accumulation error, (k + 4) 2^-24 times the sum of
 * the magnitudes; a wrong tile, pair or stride is off by about 1 instead. */
int fnn_bf16_selfcheck(const fnn_gemm_desc_bf16 *d, char *why, size_t why_len)
{
    static const struct {
        int flags;
        int64_t m, n, k;
        float alpha, beta;
    } cases[] = {
        {0, 33, 47, 70, 1.0f, 0.0f},
        {FNN_TRANS_A | FNN_EPI_RELU, 17, 40, 1, 1.0f, 0.5f},
        {FNN_TRANS_B | FNN_BIAS_ROW, 64, 33, 31, 0.5f, 1.0f},
        {FNN_TRANS_A | FNN_TRANS_B | FNN_B_BF16, 35, 65, 600, 1.0f, 0.0f},
        {FNN_A_BF16 | FNN_EPI_RELU, 3, 17, 1100, 2.0f, -1.0f},
    };
    const int64_t len = 96 * 1100;
    float *a = (float *)malloc(sizeof(float) * (size_t)len), *b = (float *)malloc(sizeof(float) * (size_t)len);
    uint16_t *a16 = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)len);
    uint16_t *b16 = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)len);
    float *c = (float *)malloc(sizeof(float) * 96 * 96), *c0 = (float *)malloc(sizeof(float) * 96 * 96);
    float bias[96];
    int bad = -1;
    if (a && b && a16 && b16 && c && c0) {
        bad = 0;
        uint32_t r = 0x12345678u; /* a fixed xorshift sequence: the same check in every process */
        for (int64_t i = 0; i < len; i++) {
            r ^= r << 13, r ^= r >> 17, r ^= r << 5;
            a[i] = (float)(r >> 8) / 8388608.0f - 1.0f;
            r ^= r << 13, r ^= r >> 17, r ^= r << 5;
            b[i] = (float)(r >> 8) / 8388608.0f - 1.0f;
            a16[i] = fnn_bf16_from_f32(a[i]);
            b16[i] = fnn_bf16_from_f32(b[i]);
        }
        for (int i = 0; i < 96 * 96; i++)
            c0[i] = a[i + 7];
        for (int i = 0; i < 96; i++)
            bias[i] = b[i + 11];
    }
    for (size_t t = 0; bad == 0 && t < sizeof(cases) / sizeof(cases[0]); t++) {
        const int fl = cases[t].flags, ta = (fl & FNN_TRANS_A) != 0, tb = (fl & FNN_TRANS_B) != 0;
        const int64_t m = cases[t].m, n = cases[t].n, k = cases[t].k, ldc = n + 3;
        const int64_t lda = (ta ? m : k) + 1, ldb = (tb ? k : n) + 2;
        const float alpha = cases[t].alpha, beta = cases[t].beta;
        const void *av = (fl & FNN_A_BF16) ? (const void *)a16 : (const void *)a;
        const void *bv = (fl & FNN_B_BF16) ? (const void *)b16 : (const void *)b;
        memcpy(c, c0, sizeof(float) * (size_t)(m * ldc));
        if (gemm_bf16_packed(d, fl, m, n, k, alpha, beta, av, lda, bv, ldb, bias, c, ldc, 1) != FNN_OK) {
            bad = -1;
            break;
        }
        for (int64_t i = 0; i < m && !bad; i++)
            for (int64_t j = 0; j < ldc && !bad; j++) {
                const float got = c[i * ldc + j];
                if (j >= n) {
                    if (memcmp(&got, &c0[i * ldc + j], sizeof(got)) != 0)
                        bad = 1;
                    if (bad)
                        snprintf(why, why_len, "case %d (%lldx%lldx%lld): wrote C[%lld,%lld] past n", (int)t,
                                 (long long)m, (long long)n, (long long)k, (long long)i, (long long)j);
                    continue;
                }
                double want;
                if (!fnn_bf16_elem_ok(got, fl, i, j, k, alpha, beta, a16, lda, b16, ldb, c0[i * ldc + j], bias,
                                      &want)) {
                    bad = 1;
                    snprintf(why, why_len, "self-check case %d (%lldx%lldx%lld, flags %d): C[%lld,%lld] = %.9g, want %.9g",
                             (int)t, (long long)m, (long long)n, (long long)k, fl, (long long)i, (long long)j,
                             (double)got, want);
                }
            }
    }
    if (bad < 0)
        snprintf(why, why_len, "self-check could not run (out of memory)");
    free(a), free(b), free(a16), free(b16), free(c), free(c0);
    return bad;
}

/* ---- entry point --------------------------------------------------------------------------- */

#ifdef FNN_HAVE_AMX
/* The AMX kernel is used only where the OS grants the tile state and the self-check passes,
 * decided once per process; otherwise the AVX512-BF16 kernel runs (every AMX CPU has it) and
 * amx_note says why. */
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;
static int amx_usable;
static char amx_note[256];

static void amx_decide(void)
{
    if (!fnn_amx_request()) {
        snprintf(amx_note, sizeof(amx_note),
                 "amx: the OS refused the tile state (arch_prctl ARCH_REQ_XCOMP_PERM: %s); using avx512bf16",
                 strerror(fnn_amx_request_errno()));
        return;
    }
    char why[200] = "";
    if (fnn_bf16_selfcheck(&fnn_gemm_desc_amx, why, sizeof(why)) != 0) {
        snprintf(amx_note, sizeof(amx_note), "amx: kernel failed its first-use %s; using avx512bf16", why);
        return;
    }
    amx_usable = 1;
}

static const fnn_gemm_desc_bf16 *amx_or_fallback(void)
{
    pthread_once(&amx_once, amx_decide);
    if (amx_usable)
        return &fnn_gemm_desc_amx;
#ifdef FNN_HAVE_AVX512BF16
    return &fnn_gemm_desc_avx512bf16;
#else
    return NULL;
#endif
}
#endif

#ifdef FNN_BF16_TEST
/* Test-only (the C harness, csrc/gemm/test): 1 dispatches as if the CPU picked AMX (the harness
 * builds the emulated kernel), through the gate; 2 runs the AMX kernel whatever the gate decided
 * and sends every shape to it, the small ones the dispatcher gives to ref included. */
int fnn_bf16_test_mode;
#endif

static const fnn_gemm_desc_bf16 *bf16_desc(void)
{
#if defined(FNN_BF16_TEST) && defined(FNN_HAVE_AMX)
    if (fnn_bf16_test_mode)
        return fnn_bf16_test_mode == 2 ? &fnn_gemm_desc_amx : amx_or_fallback();
#endif
#if FNN_X86
    switch (fnn_bf16_get()) {
#ifdef FNN_HAVE_AMX
    case FNN_BF16_AMX: return amx_or_fallback();
#endif
#ifdef FNN_HAVE_AVX512BF16
    case FNN_BF16_AVX512: return &fnn_gemm_desc_avx512bf16;
#endif
    default: return NULL;
    }
#else
    return NULL;
#endif
}

const char *fnn_bf16_note(void)
{
#ifdef FNN_HAVE_AMX
    int amx = fnn_bf16_get() == FNN_BF16_AMX;
#ifdef FNN_BF16_TEST
    amx = amx || fnn_bf16_test_mode;
#endif
    if (amx) {
        (void)amx_or_fallback(); /* decides once, as the first product would */
        if (amx_note[0] != '\0')
            return amx_note;
    }
#endif
    return "";
}

int fnn_gemm_bf16(int flags, int64_t m, int64_t n, int64_t k, float alpha, float beta, const void *a, int64_t lda,
                  const void *b, int64_t ldb, const float *bias, float *c, int64_t ldc, int n_threads)
{
    const int trans_a = (flags & FNN_TRANS_A) != 0, trans_b = (flags & FNN_TRANS_B) != 0;
    if (flags & ~(FNN_TRANS_A | FNN_TRANS_B | FNN_BIAS_ROW | FNN_EPI_RELU | FNN_A_BF16 | FNN_B_BF16))
        return FNN_ERR_ARG;
    if (m < 0 || n < 0 || k < 0)
        return FNN_ERR_ARG;
    if (m == 0 || n == 0)
        return FNN_OK;
    if (c == NULL || ldc < n)
        return FNN_ERR_ARG;
    if (k > 0) {
        if (a == NULL || lda < (trans_a ? m : k) || b == NULL || ldb < (trans_b ? k : n))
            return FNN_ERR_ARG;
    }
    if (k == 0 || alpha == 0)
        return fnn_gemm_f32(flags & ~(FNN_A_BF16 | FNN_B_BF16), m, n, k, alpha, beta, NULL, 1, NULL, 1, bias, c,
                            ldc, n_threads);
    const fnn_gemm_desc_bf16 *d = bf16_desc();
    /* The float32 GEMM on rounded copies, the same numerics, where the packed kernel wastes its
     * tile: one or two rows (a single sample: all of B converted and packed to be used once) or
     * at most half a tile of columns (a 10-class output layer: 128 x 128 x 10 measured 6 us
     * this way against 12 us packed on Zen 4). */
    int small = m <= 2 || n <= (d != NULL ? d->nr / 2 : 0);
#ifdef FNN_BF16_TEST
    small = small && fnn_bf16_test_mode < 2;
#endif
    if (d == NULL || small)
        return gemm_bf16_ref(flags, m, n, k, alpha, beta, a, lda, b, ldb, bias, c, ldc, n_threads);
    return gemm_bf16_packed(d, flags, m, n, k, alpha, beta, a, lda, b, ldb, bias, c, ldc, n_threads);
}

/* ---- gathered B rows (the convolution's implicit im2col; csrc/core/internal.h) -------------- */

int fnn_gemm_rows_width_bf16(void)
{
    const fnn_gemm_desc_bf16 *d = bf16_desc();
    return d != NULL && d->ukg != NULL ? d->nr / 2 : 0;
}

int fnn_gemm_rows_bf16(int flags, int64_t m, int64_t kq, const uint32_t *a, int64_t lda, const uint32_t *b,
                       const int64_t *boff, int64_t b2, int nr0, int nr1, const float *bias, float *c, int64_t ldc,
                       int64_t c2)
{
    const fnn_gemm_desc_bf16 *d = bf16_desc();
    if (d == NULL || d->ukg == NULL || fnn_gemm_rows_bad(flags, m, kq, d->nr / 2, nr0, nr1, c2, a, lda, b, boff, c))
        return FNN_ERR_ARG;
    const int bias_row = (flags & FNN_BIAS_ROW) != 0;
    fnn_gemm_epi_f32 epi;
    epi.alpha = 1;
    epi.beta = 0;
    epi.flags = fnn_gemm_rows_epi_flags(flags);
    for (int64_t i = 0; i < m; i += d->mr) {
        const int mr = (int)((m - i < d->mr) ? m - i : d->mr);
        d->ukg(kq, a + i * lda, lda, b, boff, b2, c + i * ldc, ldc, c2, mr, nr0, nr1, &epi,
               bias && bias_row ? bias + i : bias);
    }
    return FNN_OK;
}
