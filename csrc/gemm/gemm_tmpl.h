/*
 * gemm_tmpl.h - private template of the GEMM driver, included by gemm.c once per element
 * type with FNN_T, FNN_DESC, FNN_EPI, FNN_ARGS and FNN_NAME(x) defined. Everything here
 * is static; the public fnn_gemm_f32 / fnn_gemm_f64 are written out in gemm.c.
 *
 * Algorithm (BLIS): five loops around a register-blocked microkernel.
 *   jc over n by NC      B block kc x nc packed once per (jc, pc), kept in L2
 *   pc over k by KC      KC blocks depend on k only, never on the thread partition
 *   ic over m by MC      A rows packed just before use
 *   ir over MC by MR     the MR x kc A micro-panel stays in L1 ...
 *   jr over NC by NR     ... while the kc x NR B micro-panels stream from L2
 * The ir/jr order is the reverse of BLIS because our kernel broadcasts A (MR scalars per
 * step) and loads B as vectors (NR values per step): the broadcast operand is the small one
 * that fits L1.
 *
 * Small products (few rows, or the narrow shapes of neural-net layers) skip packing when the
 * variant has a direct kernel: see gemm_direct and the rule in gemm().
 *
 * Threads: C is cut into a grid of blocks in whole MR x NR tiles (fnn_gemm_threads picks the
 * grid); each thread runs the serial algorithm on its block with its own packing buffers.
 * Every element is computed by the same instructions in the same order whatever the grid,
 * so results are bit-identical for any thread count.
 */

typedef struct {
    const FNN_DESC *d;
    int trans_a, trans_b, bias_row, relu;
    int64_t m, n, k, kcb;
    FNN_T alpha, beta;
    const FNN_T *a;
    int64_t lda;
    const FNN_T *b;
    int64_t ldb;
    const FNN_T *bias;
    FNN_T *c;
    int64_t ldc;
} FNN_ARGS;

/* ---- portable packing ------------------------------------------------------------------ */

/* W is a compile-time constant after inlining into the switch below, so the inner loops
 * unroll into straight vector copies. */
static inline void FNN_NAME(pack_copy_w)(const int W, int64_t w, int64_t kc, const FNN_T *restrict src,
                                         int64_t ld, FNN_T *restrict dst)
{
    if (w == W) {
        for (int64_t p = 0; p < kc; p++)
            for (int i = 0; i < W; i++)
                dst[p * W + i] = src[p * ld + i];
    } else {
        for (int64_t p = 0; p < kc; p++) {
            for (int64_t i = 0; i < w; i++)
                dst[p * W + i] = src[p * ld + i];
            for (int64_t i = w; i < W; i++)
                dst[p * W + i] = 0;
        }
    }
}

static inline void FNN_NAME(pack_trans_w)(const int W, int64_t w, int64_t kc, const FNN_T *restrict src,
                                          int64_t ld, FNN_T *restrict dst)
{
    /* Blocks of 4 source rows: four sequential read streams, and each destination row
     * segment of 4 values is written at once. */
    int64_t i = 0;
    for (; i + 4 <= w; i += 4) {
        const FNN_T *s0 = src + i * ld, *s1 = s0 + ld, *s2 = s1 + ld, *s3 = s2 + ld;
        FNN_T *d = dst + i;
        for (int64_t p = 0; p < kc; p++) {
            d[p * W + 0] = s0[p];
            d[p * W + 1] = s1[p];
            d[p * W + 2] = s2[p];
            d[p * W + 3] = s3[p];
        }
    }
    for (; i < w; i++) {
        const FNN_T *s = src + i * ld;
        for (int64_t p = 0; p < kc; p++)
            dst[p * W + i] = s[p];
    }
    if (w < W)
        for (int64_t p = 0; p < kc; p++)
            for (int64_t r = w; r < W; r++)
                dst[p * W + r] = 0;
}

#define FNN_PACK_CASES(fn)                                                                     \
    switch (W) {                                                                               \
    case 4: fn(4, w, kc, src, ld, dst); return;                                                \
    case 6: fn(6, w, kc, src, ld, dst); return;                                                \
    case 8: fn(8, w, kc, src, ld, dst); return;                                                \
    case 12: fn(12, w, kc, src, ld, dst); return;                                              \
    case 14: fn(14, w, kc, src, ld, dst); return;                                              \
    case 16: fn(16, w, kc, src, ld, dst); return;                                              \
    case 32: fn(32, w, kc, src, ld, dst); return;                                              \
    default: fn(W, w, kc, src, ld, dst); return;                                               \
    }

static void FNN_NAME(pack_copy)(int W, int64_t w, int64_t kc, const FNN_T *src, int64_t ld, FNN_T *dst)
{
    FNN_PACK_CASES(FNN_NAME(pack_copy_w))
}

static void FNN_NAME(pack_trans)(int W, int64_t w, int64_t kc, const FNN_T *src, int64_t ld, FNN_T *dst)
{
    FNN_PACK_CASES(FNN_NAME(pack_trans_w))
}
#undef FNN_PACK_CASES

/* ---- the serial blocked algorithm on rows [i0, i1) and columns [j0, j1) of C ----------- */

static void FNN_NAME(gemm_part)(const FNN_ARGS *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                                FNN_T *restrict ap, FNN_T *restrict bp)
{
    const FNN_DESC *d = g->d;
    const int MR = d->mr, NR = d->nr;
    const int64_t MC = d->mc, NC = d->nc, k = g->k;
    const int64_t lda = g->lda, ldb = g->ldb, ldc = g->ldc;
    FNN_EPI epi;
    epi.alpha = g->alpha;

    for (int64_t jc = j0; jc < j1; jc += NC) {
        const int64_t nc = (j1 - jc < NC) ? j1 - jc : NC;
        for (int64_t pc = 0; pc < k; pc += g->kcb) {
            const int64_t kc = (k - pc < g->kcb) ? k - pc : g->kcb;
            const int first = (pc == 0), last = (pc + kc == k);

            if (g->trans_b) {
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    const int64_t nr = (nc - jr < NR) ? nc - jr : NR;
                    const FNN_T *src = g->b + (jc + jr) * ldb + pc;
                    if (d->pack_b_trans)
                        d->pack_b_trans(nr, kc, src, ldb, bp + jr * kc);
                    else
                        FNN_NAME(pack_trans)(NR, nr, kc, src, ldb, bp + jr * kc);
                }
            } else {
                /* Bands of 16 rows across all panels: B is read nearly sequentially, which
                 * the hardware prefetchers follow (a panel at a time strides by ldb). */
                for (int64_t p0 = 0; p0 < kc; p0 += 16) {
                    const int64_t pk = (kc - p0 < 16) ? kc - p0 : 16;
                    for (int64_t jr = 0; jr < nc; jr += NR) {
                        const int64_t nr = (nc - jr < NR) ? nc - jr : NR;
                        const FNN_T *src = g->b + (pc + p0) * ldb + jc + jr;
                        FNN_T *dst = bp + jr * kc + p0 * NR;
                        if (d->pack_b_copy)
                            d->pack_b_copy(nr, pk, src, ldb, dst);
                        else
                            FNN_NAME(pack_copy)(NR, nr, pk, src, ldb, dst);
                    }
                }
            }

            /* beta applies once, on the first KC block; bias and ReLU once, on the last. */
            epi.beta = first ? g->beta : (FNN_T)1;
            epi.flags = ((first && g->beta == 0) ? FNN_GEMM_E_BETA0 : 0) |
                        ((last && g->relu) ? FNN_GEMM_E_RELU : 0) |
                        (g->bias_row ? FNN_GEMM_E_BIASROW : 0);
            const FNN_T *bias = last ? g->bias : NULL;

            for (int64_t ic = i0; ic < i1; ic += MC) {
                const int64_t mc = (i1 - ic < MC) ? i1 - ic : MC;
                for (int64_t ir = 0; ir < mc; ir += MR) {
                    const int64_t mr = (mc - ir < MR) ? mc - ir : MR;
                    if (g->trans_a) {
                        const FNN_T *src = g->a + pc * lda + ic + ir;
                        if (d->pack_a_copy)
                            d->pack_a_copy(mr, kc, src, lda, ap + ir * kc);
                        else
                            FNN_NAME(pack_copy)(MR, mr, kc, src, lda, ap + ir * kc);
                    } else {
                        const FNN_T *src = g->a + (ic + ir) * lda + pc;
                        if (d->pack_a_trans)
                            d->pack_a_trans(mr, kc, src, lda, ap + ir * kc);
                        else
                            FNN_NAME(pack_trans)(MR, mr, kc, src, lda, ap + ir * kc);
                    }
                }
                for (int64_t ir = 0; ir < mc; ir += MR) {
                    const int mr = (int)((mc - ir < MR) ? mc - ir : MR);
                    FNN_T *crow = g->c + (ic + ir) * ldc;
                    for (int64_t jr = 0; jr < nc; jr += NR) {
                        const int nr = (int)((nc - jr < NR) ? nc - jr : NR);
                        const FNN_T *tb = bias ? (g->bias_row ? bias + ic + ir : bias + jc + jr) : NULL;
                        d->ukr(kc, ap + ir * kc, bp + jr * kc, crow + jc + jr, ldc, mr, nr, &epi, tb);
                    }
                }
            }
        }
    }
}

/* C = act(beta*C + bias): k == 0 (or alpha == 0, as in BLAS) needs no product. */
static void FNN_NAME(gemm_noproduct)(const FNN_ARGS *g)
{
    for (int64_t i = 0; i < g->m; i++) {
        FNN_T *ci = g->c + i * g->ldc;
        for (int64_t j = 0; j < g->n; j++) {
            FNN_T r = (g->beta == 0) ? (FNN_T)0 : g->beta * ci[j];
            if (g->bias)
                r += g->bias_row ? g->bias[i] : g->bias[j];
            if (g->relu)
                r = (r < 0) ? 0 : r;
            ci[j] = r;
        }
    }
}

#define FNN_GEMM_DIRECT 0 /* ukd: A and B in place */
#define FNN_GEMM_DOT 1    /* ukt: C = A B^T, both in place */

/* The tiles of C block [i0, i1) x [j0, j1) for an unpacked kernel, MR x NR each, whole k per
 * tile. Column strips outer: a strip of B (direct), or a tile's rows of B (dot), stays in
 * cache while every row panel of A streams past it. */
static void FNN_NAME(gemm_tiles)(const FNN_ARGS *g, const FNN_EPI *epi, int kind, int MR, int NR, int64_t i0,
                                 int64_t i1, int64_t j0, int64_t j1)
{
    const int64_t a_rs = g->trans_a ? 1 : g->lda, a_cs = g->trans_a ? g->lda : 1;
    for (int64_t j = j0; j < j1; j += NR) {
        const int nr = (int)((j1 - j < NR) ? j1 - j : NR);
        for (int64_t i = i0; i < i1; i += MR) {
            const int mr = (int)((i1 - i < MR) ? i1 - i : MR);
            const FNN_T *tb = g->bias ? (g->bias_row ? g->bias + i : g->bias + j) : NULL;
            FNN_T *tc = g->c + i * g->ldc + j;
            if (kind == FNN_GEMM_DOT)
                g->d->ukt(g->k, g->a + i * g->lda, g->lda, g->b + j * g->ldb, g->ldb, tc, g->ldc, mr, nr, epi, tb);
            else
                g->d->ukd(g->k, g->a + i * a_rs, a_rs, a_cs, g->b + j, g->ldb, tc, g->ldc, mr, nr, epi, tb);
        }
    }
}

/* The unpacked paths (direct, dot): the whole k in one pass per tile, tiles of MR x NR split
 * between threads on a grid chosen like the packed path's. */
static void FNN_NAME(gemm_unpacked)(const FNN_ARGS *g, int kind, int n_threads)
{
    const int dot = kind == FNN_GEMM_DOT;
    const FNN_DESC *d = g->d;
    FNN_EPI epi;
    epi.alpha = g->alpha;
    epi.beta = g->beta;
    epi.flags = (g->beta == 0 ? FNN_GEMM_E_BETA0 : 0) | (g->relu ? FNN_GEMM_E_RELU : 0) |
                (g->bias_row ? FNN_GEMM_E_BIASROW : 0);
    const int MR = dot ? d->dt_m : d->mr;
    const int NR = dot ? d->dt_n : (kind == FNN_GEMM_DIRECT && g->m <= 2 && d->nr_wide > 0) ? d->nr_wide : d->nr;
    int tm = 1, tn = 1;
    const int nt = fnn_gemm_threads(g->m, g->n, g->k, MR, NR, n_threads, 0, &tm, &tn);
    if (nt <= 1) {
        /* One row on one thread: the widest strips the kernel takes (whole B rows of up to
         * nr_wide1 values stream faster); each element is computed the same way at any width. */
        const int nr1 = kind == FNN_GEMM_DIRECT && g->m == 1 && d->nr_wide1 > NR ? d->nr_wide1 : NR;
        FNN_NAME(gemm_tiles)(g, &epi, kind, MR, nr1, 0, g->m, 0, g->n);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
        int tid = 0, nth = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nth = omp_get_num_threads();
#endif
        for (int part = tid; part < tm * tn; part += nth) {
            int64_t i0, i1, j0, j1;
            fnn_gemm_block(part, tm, tn, g->m, g->n, MR, NR, &i0, &i1, &j0, &j1);
            if (i0 < i1 && j0 < j1)
                FNN_NAME(gemm_tiles)(g, &epi, kind, MR, NR, i0, i1, j0, j1);
        }
    }
}

/* Workspace of one thread: the B block then the A block, both 64-byte aligned. */
static size_t FNN_NAME(gemm_ws_elems)(const FNN_ARGS *g, int64_t rows, int64_t cols, size_t *a_off)
{
    const FNN_DESC *d = g->d;
    int64_t kc = g->kcb < g->k ? g->kcb : g->k;
    int64_t nc = cols < d->nc ? cols : d->nc;
    int64_t mc = rows < d->mc ? rows : d->mc;
    nc = (nc + d->nr - 1) / d->nr * d->nr;
    mc = (mc + d->mr - 1) / d->mr * d->mr;
    size_t bsz = (size_t)(kc * nc), asz = (size_t)(mc * kc);
    const size_t align = 64 / sizeof(FNN_T);
    bsz = (bsz + align - 1) / align * align;
    *a_off = bsz;
    return bsz + asz;
}

static int FNN_NAME(gemm)(const FNN_DESC *d, int flags, int64_t m, int64_t n, int64_t k, FNN_T alpha,
                          FNN_T beta, const FNN_T *a, int64_t lda, const FNN_T *b, int64_t ldb,
                          const FNN_T *bias, FNN_T *c, int64_t ldc, int n_threads)
{
    const int trans_a = (flags & FNN_TRANS_A) != 0, trans_b = (flags & FNN_TRANS_B) != 0;
    if (flags & ~(FNN_TRANS_A | FNN_TRANS_B | FNN_BIAS_ROW | FNN_EPI_RELU))
        return FNN_ERR_ARG;
    if (m < 0 || n < 0 || k < 0)
        return FNN_ERR_ARG;
    if (m == 0 || n == 0)
        return FNN_OK;
    if (c == NULL || ldc < n)
        return FNN_ERR_ARG;
    if (k > 0) {
        if (a == NULL || lda < (trans_a ? m : k))
            return FNN_ERR_ARG;
        if (b == NULL || ldb < (trans_b ? k : n))
            return FNN_ERR_ARG;
    }

#ifdef FNN_GEMM_TUNE
    FNN_DESC dt = *d;
    dt.kc = tune_env("FNN_KC", dt.kc);
    dt.nc = tune_env("FNN_NC", dt.nc);
    dt.mc = tune_env("FNN_MC", dt.mc);
    d = &dt;
#endif
    FNN_ARGS g = {.d = d, .trans_a = trans_a, .trans_b = trans_b, .bias_row = (flags & FNN_BIAS_ROW) != 0,
                  .relu = (flags & FNN_EPI_RELU) != 0, .m = m, .n = n, .k = k, .alpha = alpha, .beta = beta,
                  .a = a, .lda = lda, .b = b, .ldb = ldb, .bias = bias, .c = c, .ldc = ldc};

    if (k == 0 || alpha == 0) {
        FNN_NAME(gemm_noproduct)(&g);
        return FNN_OK;
    }

    /* Direct (unpacked) kernels when B is not transposed and either
     *  - m <= MR or n <= NR: B would be used by one row panel only, or A by one column
     *    strip, so packing it would triple its memory traffic (stores are the scarce
     *    resource when packing), or
     *  - the small products of neural nets: A is re-read from L2 for every NR-column strip
     *    of B (and B strips for every row panel), which costs less than both packings
     *    (about 15% of the time at these sizes) while that re-read traffic stays under a
     *    few MiB. Transposed A measured faster packed, and so did rows of A a multiple of
     *    2 KiB apart: the MR rows read at once then fall into one or two of the 64 L1 set
     *    groups and evict each other. */
    if (d->ukd && !trans_b &&
        (m <= d->mr || n <= d->nr ||
         (!trans_a && (lda * (int64_t)sizeof(FNN_T)) % 2048 != 0 &&
          (double)m * (double)k * sizeof(FNN_T) * (double)((n + d->nr - 1) / d->nr) <=
              FNN_GEMM_DIRECT_MAX_A_TRAFFIC))) {
        FNN_NAME(gemm_unpacked)(&g, FNN_GEMM_DIRECT, n_threads);
        return FNN_OK;
    }

    /* Dot-product kernel for A B^T with a small C over a long k (the weight gradient of a first
     * convolution layer: 16 x 9 over 784 pixels, 2.6x faster than packing both operands), while
     * both operands fit L2 (each row of B is read once, each row of A once per dt_n rows of B).
     * From about m x n = 32 x 144 the packed kernel's larger tiles win (measured 97 vs 107
     * GFLOP/s); up to 32 x 64 the dot kernel is faster or equal. A variant may ask for a longer k
     * (dot_min_k: AVX2's kernel loads the k tail through buffers). The choice depends on the
     * shape only, never on the thread count. */
    if (d->ukt && trans_b && !trans_a && (double)m * (double)n <= FNN_GEMM_DOT_MAX_MN &&
        k >= FNN_GEMM_DOT_MIN_K && k >= d->dot_min_k &&
        (double)(m + n) * (double)k * sizeof(FNN_T) <= FNN_GEMM_DOT_MAX_BYTES) {
        FNN_NAME(gemm_unpacked)(&g, FNN_GEMM_DOT, n_threads);
        return FNN_OK;
    }

    /* KC blocks of equal size (rounded to 8), chosen from k alone: a short last block would
     * cost a full pass over C for little work, and the blocking must not depend on the
     * thread count for results to be reproducible. */
    {
        int64_t nb = (k + d->kc - 1) / d->kc;
        int64_t kcb = (k + nb - 1) / nb;
        kcb = (kcb + 7) / 8 * 8;
        g.kcb = kcb;
    }

    int tm = 1, tn = 1;
    int nt = fnn_gemm_threads(m, n, k, d->mr, d->nr, n_threads, 1, &tm, &tn);

    if (nt <= 1) {
        size_t a_off;
        size_t elems = FNN_NAME(gemm_ws_elems)(&g, m, n, &a_off);
        FNN_T *ws = (FNN_T *)fnn_gemm_workspace(elems * sizeof(FNN_T));
        if (ws == NULL)
            return FNN_ERR_NOMEM;
        FNN_NAME(gemm_part)(&g, 0, m, 0, n, ws + a_off, ws);
        return FNN_OK;
    }

    /* A grid of tm x tn blocks of C in whole tiles; each thread runs the serial algorithm
     * on its blocks with its own packing buffers. */
    const int64_t tiles_m = (m + d->mr - 1) / d->mr, tiles_n = (n + d->nr - 1) / d->nr;
    const int64_t rows_max = (tiles_m + tm - 1) / tm * d->mr;
    const int64_t cols_max = (tiles_n + tn - 1) / tn * d->nr;
    size_t a_off;
    const size_t elems = FNN_NAME(gemm_ws_elems)(&g, rows_max, cols_max, &a_off);
    int fail = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
        int tid = 0, nth = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nth = omp_get_num_threads();
#endif
        FNN_T *ws = (FNN_T *)fnn_gemm_workspace(elems * sizeof(FNN_T));
        if (ws == NULL) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
            fail = 1;
        }
#ifdef _OPENMP
#pragma omp barrier
#endif
        int failed;
#ifdef _OPENMP
#pragma omp atomic read
#endif
        failed = fail;
        if (!failed) {
            for (int part = tid; part < tm * tn; part += nth) {
                int64_t i0, i1, j0, j1;
                fnn_gemm_block(part, tm, tn, m, n, d->mr, d->nr, &i0, &i1, &j0, &j1);
                if (i0 < i1 && j0 < j1)
                    FNN_NAME(gemm_part)(&g, i0, i1, j0, j1, ws + a_off, ws);
            }
        }
    }
    return fail ? FNN_ERR_NOMEM : FNN_OK;
}

/* Rows [0, m) of C = act(A B + bias) for one group of columns, A m x k row-major: nr0 values
 * of row p of B at b + boff[p] (C at c), and nr1 more at b + boff[p] + b2 (C at c + c2); both
 * at most half the kernel's NR (one vector). */
static int FNN_NAME(gemm_rows)(const FNN_DESC *d, int flags, int64_t m, int64_t k, const FNN_T *a, int64_t lda,
                               const FNN_T *b, const int64_t *boff, int64_t b2, int nr0, int nr1, const FNN_T *bias,
                               FNN_T *c, int64_t ldc, int64_t c2)
{
    if (!d->ukg || fnn_gemm_rows_bad(flags, m, k, d->nr / 2, nr0, nr1, c2, a, lda, b, boff, c))
        return FNN_ERR_ARG;
    const int bias_row = (flags & FNN_BIAS_ROW) != 0;
    FNN_EPI epi;
    epi.alpha = 1;
    epi.beta = 0;
    epi.flags = fnn_gemm_rows_epi_flags(flags);
    for (int64_t i = 0; i < m; i += d->mr) {
        const int mr = (int)((m - i < d->mr) ? m - i : d->mr);
        d->ukg(k, a + i * lda, lda, 1, b, boff, b2, c + i * ldc, ldc, c2, mr, nr0, nr1, &epi,
               bias && bias_row ? bias + i : bias);
    }
    return FNN_OK;
}
