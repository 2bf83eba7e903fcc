/*
 * gemm_avx512.c - AVX-512 GEMM microkernels. Compiled with
 * -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma; called only when dispatch
 * selected FNN_ARCH_AVX512.
 */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <math.h>

#include "../../gemm/gemm_internal.h"

/* Software prefetch distances, in k steps: packed B micro-panels (and B rows read in place,
 * and source rows being packed) FNN_PF_B steps ahead (+4% at 1024^3 over none; 4..16 measured
 * alike), B rows of the 1-2 row GEMV kernel FNN_PF_ROW rows ahead (+10% over none). */
#ifndef FNN_PF_ROW
#define FNN_PF_ROW 4
#endif
#ifndef FNN_PF_B
#define FNN_PF_B 8
#endif

#if defined(__GNUC__)
#define FNN_INLINE static inline __attribute__((always_inline))
#else
#define FNN_INLINE static inline
#endif

static inline __mmask16 mask16(int64_t n)
{
    return (__mmask16)(n >= 16 ? 0xffff : n <= 0 ? 0 : (1u << n) - 1);
}

static inline __mmask8 mask8(int64_t n)
{
    return (__mmask8)(n >= 8 ? 0xff : n <= 0 ? 0 : (1u << n) - 1);
}

/* ---- float: 12 x 32 tiles ----------------------------------------------------------------
 * Two zmm of B per tile row: 12*2 accumulators + 2 B vectors + 1 broadcast of the 32 zmm
 * registers. Each step issues 24 FMAs against 14 loads, and 24 independent chains cover the
 * 4-cycle FMA latency on both FMA ports.
 *
 * kern_f32 is instantiated for every row count R = 1..12 and V = 1 or 2 vectors per row, so
 * an edge tile does only the rows and vectors it needs (m = 64 is 5 full tiles and one of 4
 * rows, not 6 x 12). Edge columns use masks: masked-off lanes are never read or written.
 * Every element goes through the same FMA sequence and epilogue in every instance, so the
 * result of an element does not depend on the tile it falls in (thread-count invariance).
 *
 * direct = 0: a and b are packed panels (a_rs = 1, a_cs = MR, b_rs = NR, aligned).
 * direct = 1: a and b are read in place with the given strides (small m, B not transposed),
 *             B rows through masked loads because nothing is padded. */
#define MR_F32 12
#define NR_F32 32

FNN_INLINE void kern_f32(const int R, const int V, const int direct, int64_t k, const float *restrict a,
                         const int64_t a_rs, const int64_t a_cs, const float *restrict b, const int64_t b_rs,
                         const int64_t *restrict boff,
                         float *restrict c, int64_t ldc, int nr, const int nr1, const int64_t b2,
                         const int64_t c2, const fnn_gemm_epi_f32 *epi, const float *restrict bias)
{
    /* Gathered rows (direct == 2): vector 0 has nr lanes, vector 1 nr1 lanes b2 past it in B
     * and c2 past it in C (two output rows of a convolution); else nr lanes in all, contiguous. */
    const __mmask16 m0 = mask16(nr), m1 = direct == 2 ? mask16(nr1) : mask16(nr - 16);
    const int64_t bo1 = direct == 2 ? b2 : 16, co1 = direct == 2 ? c2 : 16;
    __m512 acc[MR_F32][2];
#pragma GCC unroll 16
    for (int i = 0; i < R; i++) {
        acc[i][0] = _mm512_setzero_ps();
        acc[i][1] = _mm512_setzero_ps();
    }
    /* C rows come from L3 or memory: start fetching them now so the epilogue does not stall
     * on cold lines. */
#pragma GCC unroll 16
    for (int i = 0; i < R; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + (direct == 2 && V > 1 ? co1 + nr1 : nr) - 1), _MM_HINT_T0);
    }
    for (int64_t p = 0; p < k; p++) {
        __m512 b0, b1 = _mm512_setzero_ps();
        if (direct == 2) {
            /* B rows gathered by offset (an implicit im2col): short rows already in L1. */
            b0 = _mm512_maskz_loadu_ps(m0, b + boff[p]);
            if (V > 1)
                b1 = _mm512_maskz_loadu_ps(m1, b + boff[p] + bo1);
        } else if (direct) {
            _mm_prefetch((const char *)(b + FNN_PF_B * b_rs), _MM_HINT_T0);
            if (V > 1)
                _mm_prefetch((const char *)(b + FNN_PF_B * b_rs + nr - 1), _MM_HINT_T0);
            b0 = _mm512_maskz_loadu_ps(m0, b);
            if (V > 1)
                b1 = _mm512_maskz_loadu_ps(m1, b + 16);
        } else {
            /* B micro-panels stream from L2: fetch FNN_PF_B steps ahead. */
            _mm_prefetch((const char *)(b + FNN_PF_B * NR_F32), _MM_HINT_T0);
            if (V > 1)
                _mm_prefetch((const char *)(b + FNN_PF_B * NR_F32 + 16), _MM_HINT_T0);
            b0 = _mm512_load_ps(b);
            if (V > 1)
                b1 = _mm512_load_ps(b + 16);
        }
#pragma GCC unroll 16
        for (int i = 0; i < R; i++) {
            const __m512 ai = _mm512_set1_ps(a[i * a_rs]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            if (V > 1)
                acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += a_cs;
        b += direct == 2 ? 0 : direct ? b_rs : NR_F32;
    }

    const __m512 alpha = _mm512_set1_ps(epi->alpha), beta = _mm512_set1_ps(epi->beta);
    const __m512 zero = _mm512_setzero_ps();
    const int flags = epi->flags;
    const int bias_row = bias && (flags & FNN_GEMM_E_BIASROW);
    __m512 bc0 = zero, bc1 = zero;
    if (bias && !bias_row) {
        bc0 = _mm512_maskz_loadu_ps(m0, bias);
        if (V > 1)
            bc1 = _mm512_maskz_loadu_ps(m1, bias + co1);
    }
#pragma GCC unroll 16
    for (int i = 0; i < R; i++) {
        float *ci = c + i * ldc;
        for (int v = 0; v < V; v++) {
            const __mmask16 mv = v ? m1 : m0;
            __m512 r = _mm512_mul_ps(alpha, acc[i][v]);
            if (!(flags & FNN_GEMM_E_BETA0))
                r = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mv, ci + (v ? co1 : 0)), r);
            if (bias_row)
                r = _mm512_add_ps(r, _mm512_set1_ps(bias[i]));
            else if (bias)
                r = _mm512_add_ps(r, v ? bc1 : bc0);
            if (flags & FNN_GEMM_E_RELU)
                r = _mm512_max_ps(zero, r); /* max(0, NaN) = NaN */
            _mm512_mask_storeu_ps(ci + (v ? co1 : 0), mv, r);
        }
    }
}

/* ---- double: 12 x 16 tiles (the same structure, 8 lanes per zmm) ------------------------ */
#define MR_F64 12
#define NR_F64 16

FNN_INLINE void kern_f64(const int R, const int V, const int direct, int64_t k, const double *restrict a,
                         const int64_t a_rs, const int64_t a_cs, const double *restrict b, const int64_t b_rs,
                         const int64_t *restrict boff,
                         double *restrict c, int64_t ldc, int nr, const int nr1, const int64_t b2,
                         const int64_t c2, const fnn_gemm_epi_f64 *epi, const double *restrict bias)
{
    /* Gathered rows (direct == 2): vector 0 has nr lanes, vector 1 nr1 lanes b2 past it in B
     * and c2 past it in C (two output rows of a convolution); else nr lanes in all, contiguous. */
    const __mmask8 m0 = mask8(nr), m1 = direct == 2 ? mask8(nr1) : mask8(nr - 8);
    const int64_t bo1 = direct == 2 ? b2 : 8, co1 = direct == 2 ? c2 : 8;
    __m512d acc[MR_F64][2];
#pragma GCC unroll 16
    for (int i = 0; i < R; i++) {
        acc[i][0] = _mm512_setzero_pd();
        acc[i][1] = _mm512_setzero_pd();
    }
#pragma GCC unroll 16
    for (int i = 0; i < R; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + (direct == 2 && V > 1 ? co1 + nr1 : nr) - 1), _MM_HINT_T0);
    }
    for (int64_t p = 0; p < k; p++) {
        __m512d b0, b1 = _mm512_setzero_pd();
        if (direct == 2) {
            /* B rows gathered by offset (an implicit im2col): short rows already in L1. */
            b0 = _mm512_maskz_loadu_pd(m0, b + boff[p]);
            if (V > 1)
                b1 = _mm512_maskz_loadu_pd(m1, b + boff[p] + bo1);
        } else if (direct) {
            _mm_prefetch((const char *)(b + FNN_PF_B * b_rs), _MM_HINT_T0);
            if (V > 1)
                _mm_prefetch((const char *)(b + FNN_PF_B * b_rs + nr - 1), _MM_HINT_T0);
            b0 = _mm512_maskz_loadu_pd(m0, b);
            if (V > 1)
                b1 = _mm512_maskz_loadu_pd(m1, b + 8);
        } else {
            _mm_prefetch((const char *)(b + FNN_PF_B * NR_F64), _MM_HINT_T0);
            if (V > 1)
                _mm_prefetch((const char *)(b + FNN_PF_B * NR_F64 + 8), _MM_HINT_T0);
            b0 = _mm512_load_pd(b);
            if (V > 1)
                b1 = _mm512_load_pd(b + 8);
        }
#pragma GCC unroll 16
        for (int i = 0; i < R; i++) {
            const __m512d ai = _mm512_set1_pd(a[i * a_rs]);
            acc[i][0] = _mm512_fmadd_pd(ai, b0, acc[i][0]);
            if (V > 1)
                acc[i][1] = _mm512_fmadd_pd(ai, b1, acc[i][1]);
        }
        a += a_cs;
        b += direct == 2 ? 0 : direct ? b_rs : NR_F64;
    }

    const __m512d alpha = _mm512_set1_pd(epi->alpha), beta = _mm512_set1_pd(epi->beta);
    const __m512d zero = _mm512_setzero_pd();
    const int flags = epi->flags;
    const int bias_row = bias && (flags & FNN_GEMM_E_BIASROW);
    __m512d bc0 = zero, bc1 = zero;
    if (bias && !bias_row) {
        bc0 = _mm512_maskz_loadu_pd(m0, bias);
        if (V > 1)
            bc1 = _mm512_maskz_loadu_pd(m1, bias + co1);
    }
#pragma GCC unroll 16
    for (int i = 0; i < R; i++) {
        double *ci = c + i * ldc;
        for (int v = 0; v < V; v++) {
            const __mmask8 mv = v ? m1 : m0;
            __m512d r = _mm512_mul_pd(alpha, acc[i][v]);
            if (!(flags & FNN_GEMM_E_BETA0))
                r = _mm512_fmadd_pd(beta, _mm512_maskz_loadu_pd(mv, ci + (v ? co1 : 0)), r);
            if (bias_row)
                r = _mm512_add_pd(r, _mm512_set1_pd(bias[i]));
            else if (bias)
                r = _mm512_add_pd(r, v ? bc1 : bc0);
            if (flags & FNN_GEMM_E_RELU)
                r = _mm512_max_pd(zero, r);
            _mm512_mask_storeu_pd(ci + (v ? co1 : 0), mv, r);
        }
    }
}

/* ---- instances: one function per (rows, vectors); tables indexed [V-1][R-1] ------------- */
#define FNN_KP(T, SUF, MR, R, V)                                                                   \
    static void kp_##SUF##_##R##_##V(int64_t k, const T *a, const T *b, T *c, int64_t ldc, int mr, \
                                     int nr, const fnn_gemm_epi_##SUF *e, const T *bias)           \
    {                                                                                              \
        (void)mr;                                                                                  \
        kern_##SUF(R, V, 0, k, a, 1, MR, b, 0, NULL, c, ldc, nr, 0, 0, 0, e, bias);                   \
    }
#define FNN_KD(T, SUF, R, V)                                                                       \
    static void kd_##SUF##_##R##_##V(int64_t k, const T *a, int64_t a_rs, int64_t a_cs, const T *b, \
                                     int64_t ldb, T *c, int64_t ldc, int mr, int nr,               \
                                     const fnn_gemm_epi_##SUF *e, const T *bias)                   \
    {                                                                                              \
        (void)mr;                                                                                  \
        kern_##SUF(R, V, 1, k, a, a_rs, a_cs, b, ldb, NULL, c, ldc, nr, 0, 0, 0, e, bias);         \
    }
#define FNN_KG(T, SUF, R, V)                                                                       \
    static void kg_##SUF##_##R##_##V(int64_t k, const T *a, int64_t a_rs, int64_t a_cs, const T *b, \
                                     const int64_t *boff, int64_t b2, T *c, int64_t ldc, int64_t c2, \
                                     int mr, int nr0, int nr1, const fnn_gemm_epi_##SUF *e,         \
                                     const T *bias)                                                 \
    {                                                                                              \
        (void)mr;                                                                                  \
        kern_##SUF(R, V, 2, k, a, a_rs, a_cs, b, 0, boff, c, ldc, nr0, nr1, b2, c2, e, bias);      \
    }
#define FNN_ROWS(X, ...)                                                                           \
    X(__VA_ARGS__, 1) X(__VA_ARGS__, 2) X(__VA_ARGS__, 3) X(__VA_ARGS__, 4) X(__VA_ARGS__, 5)     \
    X(__VA_ARGS__, 6) X(__VA_ARGS__, 7) X(__VA_ARGS__, 8) X(__VA_ARGS__, 9) X(__VA_ARGS__, 10)    \
    X(__VA_ARGS__, 11) X(__VA_ARGS__, 12)
#define FNN_KP1(T, SUF, MR, R) FNN_KP(T, SUF, MR, R, 1) FNN_KP(T, SUF, MR, R, 2)
FNN_ROWS(FNN_KP1, float, f32, MR_F32)
FNN_ROWS(FNN_KP1, double, f64, MR_F64)
#define FNN_KD1(T, SUF, R) FNN_KD(T, SUF, R, 1) FNN_KD(T, SUF, R, 2)
FNN_ROWS(FNN_KD1, float, f32)
FNN_ROWS(FNN_KD1, double, f64)
#define FNN_KG1(T, SUF, R) FNN_KG(T, SUF, R, 1) FNN_KG(T, SUF, R, 2)
FNN_ROWS(FNN_KG1, float, f32)
FNN_ROWS(FNN_KG1, double, f64)

#define FNN_NAMES(pre, post)                                                                       \
    { pre##1##post, pre##2##post, pre##3##post, pre##4##post, pre##5##post, pre##6##post,          \
      pre##7##post, pre##8##post, pre##9##post, pre##10##post, pre##11##post, pre##12##post }

static const fnn_gemm_ukr_f32 kp_f32[2][MR_F32] = {FNN_NAMES(kp_f32_, _1), FNN_NAMES(kp_f32_, _2)};
static const fnn_gemm_ukr_f64 kp_f64[2][MR_F64] = {FNN_NAMES(kp_f64_, _1), FNN_NAMES(kp_f64_, _2)};
static const fnn_gemm_ukd_f32 kd_f32[2][MR_F32] = {FNN_NAMES(kd_f32_, _1), FNN_NAMES(kd_f32_, _2)};
static const fnn_gemm_ukd_f64 kd_f64[2][MR_F64] = {FNN_NAMES(kd_f64_, _1), FNN_NAMES(kd_f64_, _2)};
static const fnn_gemm_ukg_f32 kg_f32[2][MR_F32] = {FNN_NAMES(kg_f32_, _1), FNN_NAMES(kg_f32_, _2)};
static const fnn_gemm_ukg_f64 kg_f64[2][MR_F64] = {FNN_NAMES(kg_f64_, _1), FNN_NAMES(kg_f64_, _2)};

/* Gathered B rows (the convolution's implicit im2col): every tile shape, like the direct kernel. */
static void ukg_f32(int64_t k, const float *a, int64_t a_rs, int64_t a_cs, const float *b, const int64_t *boff,
                    int64_t b2, float *c, int64_t ldc, int64_t c2, int mr, int nr0, int nr1,
                    const fnn_gemm_epi_f32 *epi, const float *bias)
{
    kg_f32[nr1 > 0][mr - 1](k, a, a_rs, a_cs, b, boff, b2, c, ldc, c2, mr, nr0, nr1, epi, bias);
}

static void ukg_f64(int64_t k, const double *a, int64_t a_rs, int64_t a_cs, const double *b, const int64_t *boff,
                    int64_t b2, double *c, int64_t ldc, int64_t c2, int mr, int nr0, int nr1,
                    const fnn_gemm_epi_f64 *epi, const double *bias)
{
    kg_f64[nr1 > 0][mr - 1](k, a, a_rs, a_cs, b, boff, b2, c, ldc, c2, mr, nr0, nr1, epi, bias);
}

static void ukr_f32(int64_t k, const float *a, const float *b, float *c, int64_t ldc, int mr, int nr,
                    const fnn_gemm_epi_f32 *epi, const float *bias)
{
    if (mr == MR_F32 && nr > 16)
        kern_f32(MR_F32, 2, 0, k, a, 1, MR_F32, b, 0, NULL, c, ldc, nr, 0, 0, 0, epi, bias);
    else
        kp_f32[nr > 16][mr - 1](k, a, b, c, ldc, mr, nr, epi, bias);
}

/* One or two rows (inference, batch 1): a GEMV limited by reading B from L2 or memory, so
 * strips are wide: NRW_F32 = 128 columns for two rows, NRW1_F32 = 256 for one (NV = 16
 * accumulators), so that each B row is read as 8 or 16 consecutive cache lines, which the
 * prefetchers follow, instead of 2 lines then a jump of ldb (measured on 1 x 784 x 256: 8.1 us
 * in one 256-column strip, 9.6 in two of 128). Same per-element arithmetic as kern_f32. */
#define NRW_F32 128
#define NRW1_F32 256
FNN_INLINE void kern_row_f32(const int R, const int NV, const int FULL, int64_t k, const float *restrict a, const int64_t a_rs,
                             const int64_t a_cs, const float *restrict b, const int64_t ldb,
                             float *restrict c, int64_t ldc, int nr, const fnn_gemm_epi_f32 *epi,
                             const float *restrict bias)
{
    __mmask16 mk[16];
    __m512 acc[2][16];
#pragma GCC unroll 16
    for (int v = 0; v < NV; v++) {
        mk[v] = mask16(nr - 16 * v);
        acc[0][v] = acc[1][v] = _mm512_setzero_ps();
    }
    for (int64_t p = 0; p < k; p++) {
        /* every other line of the strip (the adjacent-line prefetcher takes its pair), and
         * none past it: a narrower strip must not pull in the rest of the row */
#pragma GCC unroll 8
        for (int v = 0; v < NV / 2; v++)
            if (32 * v < nr)
                _mm_prefetch((const char *)(b + FNN_PF_ROW * ldb + 32 * v), _MM_HINT_T0);
        const __m512 a0 = _mm512_set1_ps(a[0]);
        const __m512 a1 = R > 1 ? _mm512_set1_ps(a[a_rs]) : a0;
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++) {
            /* a whole strip without masks: about 6% faster */
            const __m512 bv = FULL ? _mm512_loadu_ps(b + 16 * v) : _mm512_maskz_loadu_ps(mk[v], b + 16 * v);
            acc[0][v] = _mm512_fmadd_ps(a0, bv, acc[0][v]);
            if (R > 1)
                acc[1][v] = _mm512_fmadd_ps(a1, bv, acc[1][v]);
        }
        a += a_cs;
        b += ldb;
    }
    const __m512 alpha = _mm512_set1_ps(epi->alpha), beta = _mm512_set1_ps(epi->beta);
    const __m512 zero = _mm512_setzero_ps();
    const int flags = epi->flags;
    const int bias_row = bias && (flags & FNN_GEMM_E_BIASROW);
#pragma GCC unroll 2
    for (int i = 0; i < R; i++) {
        float *ci = c + i * ldc;
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++) {
            if (16 * v >= nr)
                continue;
            __m512 r = _mm512_mul_ps(alpha, acc[i][v]);
            if (!(flags & FNN_GEMM_E_BETA0))
                r = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mk[v], ci + 16 * v), r);
            if (bias_row)
                r = _mm512_add_ps(r, _mm512_set1_ps(bias[i]));
            else if (bias)
                r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mk[v], bias + 16 * v));
            if (flags & FNN_GEMM_E_RELU)
                r = _mm512_max_ps(zero, r);
            _mm512_mask_storeu_ps(ci + 16 * v, mk[v], r);
        }
    }
}

/* The direct kernel's entry: the GEMV kernels for one or two rows, the tile kernels else. */
#define FNN_UKD(T, SUF, NRW, NRW1, VW)                                                                  \
    static void ukd_##SUF(int64_t k, const T *a, int64_t a_rs, int64_t a_cs, const T *b, int64_t ldb, T *c, \
                          int64_t ldc, int mr, int nr, const fnn_gemm_epi_##SUF *epi, const T *bias)      \
    {                                                                                                   \
        if (mr == 1 && nr == NRW1)                                                                      \
            kern_row_##SUF(1, 16, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, nr, epi, bias);                   \
        else if (mr == 1 && nr > NRW)                                                                   \
            kern_row_##SUF(1, 16, 0, k, a, a_rs, a_cs, b, ldb, c, ldc, nr, epi, bias);                   \
        else if (mr == 1 && nr == NRW)                                                                  \
            kern_row_##SUF(1, 8, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, nr, epi, bias);                    \
        else if (mr == 1)                                                                               \
            kern_row_##SUF(1, 8, 0, k, a, a_rs, a_cs, b, ldb, c, ldc, nr, epi, bias);                    \
        else if (mr == 2 && nr == NRW)                                                                  \
            kern_row_##SUF(2, 8, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, nr, epi, bias);                    \
        else if (mr == 2)                                                                               \
            kern_row_##SUF(2, 8, 0, k, a, a_rs, a_cs, b, ldb, c, ldc, nr, epi, bias);                    \
        else                                                                                            \
            kd_##SUF[nr > VW][mr - 1](k, a, a_rs, a_cs, b, ldb, c, ldc, mr, nr, epi, bias);             \
    }
FNN_UKD(float, f32, NRW_F32, NRW1_F32, 16)

static void ukr_f64(int64_t k, const double *a, const double *b, double *c, int64_t ldc, int mr, int nr,
                    const fnn_gemm_epi_f64 *epi, const double *bias)
{
    if (mr == MR_F64 && nr > 8)
        kern_f64(MR_F64, 2, 0, k, a, 1, MR_F64, b, 0, NULL, c, ldc, nr, 0, 0, 0, epi, bias);
    else
        kp_f64[nr > 8][mr - 1](k, a, b, c, ldc, mr, nr, epi, bias);
}

#define NRW_F64 64
#define NRW1_F64 128
FNN_INLINE void kern_row_f64(const int R, const int NV, const int FULL, int64_t k, const double *restrict a, const int64_t a_rs,
                             const int64_t a_cs, const double *restrict b, const int64_t ldb,
                             double *restrict c, int64_t ldc, int nr, const fnn_gemm_epi_f64 *epi,
                             const double *restrict bias)
{
    __mmask8 mk[16];
    __m512d acc[2][16];
#pragma GCC unroll 16
    for (int v = 0; v < NV; v++) {
        mk[v] = mask8(nr - 8 * v);
        acc[0][v] = acc[1][v] = _mm512_setzero_pd();
    }
    for (int64_t p = 0; p < k; p++) {
#pragma GCC unroll 8
        for (int v = 0; v < NV / 2; v++)
            if (16 * v < nr)
                _mm_prefetch((const char *)(b + FNN_PF_ROW * ldb + 16 * v), _MM_HINT_T0);
        const __m512d a0 = _mm512_set1_pd(a[0]);
        const __m512d a1 = R > 1 ? _mm512_set1_pd(a[a_rs]) : a0;
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++) {
            /* a whole strip without masks: about 6% faster */
            const __m512d bv = FULL ? _mm512_loadu_pd(b + 8 * v) : _mm512_maskz_loadu_pd(mk[v], b + 8 * v);
            acc[0][v] = _mm512_fmadd_pd(a0, bv, acc[0][v]);
            if (R > 1)
                acc[1][v] = _mm512_fmadd_pd(a1, bv, acc[1][v]);
        }
        a += a_cs;
        b += ldb;
    }
    const __m512d alpha = _mm512_set1_pd(epi->alpha), beta = _mm512_set1_pd(epi->beta);
    const __m512d zero = _mm512_setzero_pd();
    const int flags = epi->flags;
    const int bias_row = bias && (flags & FNN_GEMM_E_BIASROW);
#pragma GCC unroll 2
    for (int i = 0; i < R; i++) {
        double *ci = c + i * ldc;
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++) {
            if (8 * v >= nr)
                continue;
            __m512d r = _mm512_mul_pd(alpha, acc[i][v]);
            if (!(flags & FNN_GEMM_E_BETA0))
                r = _mm512_fmadd_pd(beta, _mm512_maskz_loadu_pd(mk[v], ci + 8 * v), r);
            if (bias_row)
                r = _mm512_add_pd(r, _mm512_set1_pd(bias[i]));
            else if (bias)
                r = _mm512_add_pd(r, _mm512_maskz_loadu_pd(mk[v], bias + 8 * v));
            if (flags & FNN_GEMM_E_RELU)
                r = _mm512_max_pd(zero, r);
            _mm512_mask_storeu_pd(ci + 8 * v, mk[v], r);
        }
    }
}

FNN_UKD(double, f64, NRW_F64, NRW1_F64, 8)

/* ---- packing ----------------------------------------------------------------------------
 * The portable packers move one element at a time; packing is a sizeable part of the work
 * for the small products of neural nets (packing A costs as much as ~16 multiply-adds per
 * element), so these move whole vectors. Transposing packs go through 16 x 16 (float) or
 * 8 x 8 (double) register transposes. Missing rows and columns (w < W, the kc tail) are
 * loaded as zeros through masks and never touched in memory. */

/* element (i, p) at src[p*ld + i] */
FNN_INLINE void pack_copy_f32(const int W, int64_t w, int64_t kc, const float *restrict src, int64_t ld,
                              float *restrict dst)
{
    const __mmask16 v0 = mask16(w), v1 = mask16(w - 16);
    const __mmask16 s0 = mask16(W), s1 = mask16(W - 16);
    for (int64_t p = 0; p < kc; p++) {
        const float *sp = src + p * ld;
        float *dp = dst + p * W;
        /* Rows are ld apart: the hardware prefetchers do not follow this walk well. */
        _mm_prefetch((const char *)(sp + FNN_PF_B * ld), _MM_HINT_T0);
        if (W > 16)
            _mm_prefetch((const char *)(sp + FNN_PF_B * ld + W - 1), _MM_HINT_T0);
        const __m512 x = _mm512_maskz_loadu_ps(v0, sp);
        if (W == 12) {
            /* 48-byte rows: a 32- plus a 16-byte store beat one masked 64-byte store that
             * straddles cache lines (8.7 -> 7.5 us for 128 x 128 x 10 with A transposed). */
            _mm256_storeu_ps(dp, _mm512_castps512_ps256(x));
            _mm_storeu_ps(dp + 8, _mm512_extractf32x4_ps(x, 2));
        } else {
            _mm512_mask_storeu_ps(dp, s0, x);
        }
        if (W > 16)
            _mm512_mask_storeu_ps(dp + 16, s1, _mm512_maskz_loadu_ps(v1, sp + 16));
    }
}

static inline void transpose16_f32(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xee);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
}

/* element (i, p) at src[i*ld + p] */
FNN_INLINE void pack_trans_f32(const int W, int64_t w, int64_t kc, const float *restrict src, int64_t ld,
                               float *restrict dst)
{
    for (int g = 0; g < W; g += 16) {
        const int rows = W - g < 16 ? W - g : 16;
        const __mmask16 smask = mask16(rows);
        for (int64_t p0 = 0; p0 < kc; p0 += 16) {
            const __mmask16 lmask = mask16(kc - p0);
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = (i < rows && g + i < w) ? _mm512_maskz_loadu_ps(lmask, src + (g + i) * ld + p0)
                                               : _mm512_setzero_ps();
            transpose16_f32(r);
            const int64_t np = kc - p0 < 16 ? kc - p0 : 16;
            if (np == 16) {
                for (int j = 0; j < 16; j++)
                    _mm512_mask_storeu_ps(dst + (p0 + j) * W + g, smask, r[j]);
            } else {
                for (int j = 0; j < np; j++)
                    _mm512_mask_storeu_ps(dst + (p0 + j) * W + g, smask, r[j]);
            }
        }
    }
}

FNN_INLINE void pack_copy_f64(const int W, int64_t w, int64_t kc, const double *restrict src, int64_t ld,
                              double *restrict dst)
{
    const __mmask8 v0 = mask8(w), v1 = mask8(w - 8);
    const __mmask8 s0 = mask8(W), s1 = mask8(W - 8);
    for (int64_t p = 0; p < kc; p++) {
        const double *sp = src + p * ld;
        double *dp = dst + p * W;
        _mm_prefetch((const char *)(sp + FNN_PF_B * ld), _MM_HINT_T0);
        if (W > 8)
            _mm_prefetch((const char *)(sp + FNN_PF_B * ld + W - 1), _MM_HINT_T0);
        _mm512_mask_storeu_pd(dp, s0, _mm512_maskz_loadu_pd(v0, sp));
        if (W > 8)
            _mm512_mask_storeu_pd(dp + 8, s1, _mm512_maskz_loadu_pd(v1, sp + 8));
    }
}

static inline void transpose8_f64(__m512d r[8])
{
    const __m512i lo = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
    const __m512i hi = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
    __m512d t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
    }
    for (int h = 0; h < 8; h += 4) {
        u[h + 0] = _mm512_permutex2var_pd(t[h], lo, t[h + 2]);
        u[h + 1] = _mm512_permutex2var_pd(t[h + 1], lo, t[h + 3]);
        u[h + 2] = _mm512_permutex2var_pd(t[h], hi, t[h + 2]);
        u[h + 3] = _mm512_permutex2var_pd(t[h + 1], hi, t[h + 3]);
    }
    for (int j = 0; j < 4; j++) {
        r[j] = _mm512_shuffle_f64x2(u[j], u[j + 4], 0x44);
        r[j + 4] = _mm512_shuffle_f64x2(u[j], u[j + 4], 0xee);
    }
}

FNN_INLINE void pack_trans_f64(const int W, int64_t w, int64_t kc, const double *restrict src, int64_t ld,
                               double *restrict dst)
{
    for (int g = 0; g < W; g += 8) {
        const int rows = W - g < 8 ? W - g : 8;
        const __mmask8 smask = mask8(rows);
        for (int64_t p0 = 0; p0 < kc; p0 += 8) {
            const __mmask8 lmask = mask8(kc - p0);
            __m512d r[8];
            for (int i = 0; i < 8; i++)
                r[i] = (i < rows && g + i < w) ? _mm512_maskz_loadu_pd(lmask, src + (g + i) * ld + p0)
                                               : _mm512_setzero_pd();
            transpose8_f64(r);
            const int64_t np = kc - p0 < 8 ? kc - p0 : 8;
            for (int j = 0; j < np; j++)
                _mm512_mask_storeu_pd(dst + (p0 + j) * W + g, smask, r[j]);
        }
    }
}

static void pack_a_copy_f32(int64_t w, int64_t kc, const float *src, int64_t ld, float *dst)
{
    pack_copy_f32(MR_F32, w, kc, src, ld, dst);
}
static void pack_a_trans_f32(int64_t w, int64_t kc, const float *src, int64_t ld, float *dst)
{
    pack_trans_f32(MR_F32, w, kc, src, ld, dst);
}
static void pack_b_copy_f32(int64_t w, int64_t kc, const float *src, int64_t ld, float *dst)
{
    pack_copy_f32(NR_F32, w, kc, src, ld, dst);
}
static void pack_b_trans_f32(int64_t w, int64_t kc, const float *src, int64_t ld, float *dst)
{
    pack_trans_f32(NR_F32, w, kc, src, ld, dst);
}
static void pack_a_copy_f64(int64_t w, int64_t kc, const double *src, int64_t ld, double *dst)
{
    pack_copy_f64(MR_F64, w, kc, src, ld, dst);
}
static void pack_a_trans_f64(int64_t w, int64_t kc, const double *src, int64_t ld, double *dst)
{
    pack_trans_f64(MR_F64, w, kc, src, ld, dst);
}
static void pack_b_copy_f64(int64_t w, int64_t kc, const double *src, int64_t ld, double *dst)
{
    pack_copy_f64(NR_F64, w, kc, src, ld, dst);
}
static void pack_b_trans_f64(int64_t w, int64_t kc, const double *src, int64_t ld, double *dst)
{
    pack_trans_f64(NR_F64, w, kc, src, ld, dst);
}

/* ---- dot-product kernels: C = A B^T with both operands read in place, rows of k values ----
 * For weight gradients (dW = dY X^T over a long k of pixels or samples) the packed path
 * transposes both operands into panels and wastes most of a 12 x 32 tile on m x n of
 * 9 x 16 or 32 x 144. Here each of the 4 x 4 elements of a tile keeps one vector of partial
 * sums over k (lane l sums k = l mod VL), loaded straight from the rows; the vectors are then
 * reduced by the same fixed tree for every element (lanes l + l+VL/2 first, then halving),
 * so an element's result does not depend on the tile or thread it falls in. Tiles are 4 x 4:
 * 8 loads per 16 FMAs. Edge tiles read row 0 again in place of missing rows and drop those
 * results. */
#define DT 4

/* One level of the reduction trees below: dst[p] = SHUF(src[2p], src[2p+1], LO) +
 * SHUF(src[2p], src[2p+1], HI) for p < N (the shuffles take immediates, hence a macro). */
#define FNN_DOT_FOLD(dst, src, N, ADD, SHUF, LO, HI)                                               \
    for (int p_ = 0; p_ < (N); p_++)                                                               \
    (dst)[p_] = ADD(SHUF((src)[2 * p_], (src)[2 * p_ + 1], LO), SHUF((src)[2 * p_], (src)[2 * p_ + 1], HI))

/* Sixteen vectors -> one vector of their sums; lane 4q + r gets vector 4r + q. */
static inline __m512 dot_reduce16_f32(const __m512 v[16])
{
    __m512 u[8], w[4], x[2];
    FNN_DOT_FOLD(u, v, 8, _mm512_add_ps, _mm512_shuffle_f32x4, 0x44, 0xee);
    FNN_DOT_FOLD(w, u, 4, _mm512_add_ps, _mm512_shuffle_f32x4, 0x88, 0xdd);
    FNN_DOT_FOLD(x, w, 2, _mm512_add_ps, _mm512_shuffle_ps, 0x44, 0xee);
    return _mm512_add_ps(_mm512_shuffle_ps(x[0], x[1], 0x88), _mm512_shuffle_ps(x[0], x[1], 0xdd));
}

/* Eight vectors -> one vector of their sums; lane 2q + r gets vector 4r + q. */
static inline __m512d dot_reduce8_f64(const __m512d v[8])
{
    __m512d u[4], w[2];
    FNN_DOT_FOLD(u, v, 4, _mm512_add_pd, _mm512_shuffle_f64x2, 0x44, 0xee);
    FNN_DOT_FOLD(w, u, 2, _mm512_add_pd, _mm512_shuffle_f64x2, 0x88, 0xdd);
    return _mm512_add_pd(_mm512_unpacklo_pd(w[0], w[1]), _mm512_unpackhi_pd(w[0], w[1]));
}

static void ukt_f32(int64_t k, const float *a, int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc,
                    int mr, int nr, const fnn_gemm_epi_f32 *epi, const float *bias)
{
    const float *ar[DT], *br[DT];
#pragma GCC unroll 4
    for (int i = 0; i < DT; i++) {
        ar[i] = a + (i < mr ? i : 0) * lda;
        br[i] = b + (i < nr ? i : 0) * ldb;
    }
    __m512 acc[16]; /* acc[4j + i]: C[i][j] */
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++)
        acc[t] = _mm512_setzero_ps();
    for (int64_t p = 0; p < k; p += 16) {
        const __mmask16 mk = mask16(k - p);
        __m512 av[DT], bv[DT];
#pragma GCC unroll 4
        for (int i = 0; i < DT; i++) {
            av[i] = _mm512_maskz_loadu_ps(mk, ar[i] + p);
            bv[i] = _mm512_maskz_loadu_ps(mk, br[i] + p);
        }
#pragma GCC unroll 4
        for (int j = 0; j < DT; j++)
#pragma GCC unroll 4
            for (int i = 0; i < DT; i++)
                acc[4 * j + i] = _mm512_fmadd_ps(av[i], bv[j], acc[4 * j + i]);
    }
    /* lane 4q + r holds acc[4r + q] = C[q][r]: row i of the tile is lanes 4i .. 4i+3 */
    __m512 r = _mm512_mul_ps(_mm512_set1_ps(epi->alpha), dot_reduce16_f32(acc));
    const __mmask16 cols = (__mmask16)(0x1111 * ((1u << nr) - 1)), rows = (__mmask16)((1u << (4 * mr)) - 1);
    const __mmask16 live = cols & rows;
    __m512 cv = _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int i = 0; i < DT; i++)
        if (i < mr)
            cv = _mm512_mask_expandloadu_ps(cv, live & (__mmask16)(0xf << (4 * i)), c + i * ldc);
    if (!(epi->flags & FNN_GEMM_E_BETA0))
        r = _mm512_fmadd_ps(_mm512_set1_ps(epi->beta), cv, r);
    if (bias) {
        __m512 bv;
        if (epi->flags & FNN_GEMM_E_BIASROW) {
            const __m512i row = _mm512_srli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 2);
            bv = _mm512_mask_permutexvar_ps(_mm512_setzero_ps(), live, row, _mm512_maskz_loadu_ps(mask16(mr), bias));
        } else {
            const __m512i col = _mm512_and_si512(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                 _mm512_set1_epi32(3));
            bv = _mm512_mask_permutexvar_ps(_mm512_setzero_ps(), live, col, _mm512_maskz_loadu_ps(mask16(nr), bias));
        }
        r = _mm512_add_ps(r, bv);
    }
    if (epi->flags & FNN_GEMM_E_RELU)
        r = _mm512_max_ps(_mm512_setzero_ps(), r); /* max(0, NaN) = NaN */
#pragma GCC unroll 4
    for (int i = 0; i < DT; i++)
        if (i < mr)
            _mm512_mask_compressstoreu_ps(c + i * ldc, live & (__mmask16)(0xf << (4 * i)), r);
}

static void ukt_f64(int64_t k, const double *a, int64_t lda, const double *b, int64_t ldb, double *c,
                    int64_t ldc, int mr, int nr, const fnn_gemm_epi_f64 *epi, const double *bias)
{
    const double *ar[DT], *br[DT];
    for (int i = 0; i < DT; i++)
        ar[i] = a + (i < mr ? i : 0) * lda;
    for (int j = 0; j < DT; j++)
        br[j] = b + (j < nr ? j : 0) * ldb;
    __m512d acc[16]; /* acc[DT*j + i]: C[i][j] */
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++)
        acc[t] = _mm512_setzero_pd();
    for (int64_t p = 0; p < k; p += 8) {
        const __mmask8 mk = mask8(k - p);
        __m512d av[DT];
#pragma GCC unroll 16
        for (int i = 0; i < DT; i++)
            av[i] = _mm512_maskz_loadu_pd(mk, ar[i] + p);
#pragma GCC unroll 16
        for (int j = 0; j < DT; j++) {
            const __m512d bv = _mm512_maskz_loadu_pd(mk, br[j] + p);
#pragma GCC unroll 16
            for (int i = 0; i < DT; i++)
                acc[DT * j + i] = _mm512_fmadd_pd(av[i], bv, acc[DT * j + i]);
        }
    }
    double z[16], s[DT][DT];
    _mm512_storeu_pd(z, dot_reduce8_f64(acc));
    _mm512_storeu_pd(z + 8, dot_reduce8_f64(acc + 8));
    for (int t = 0; t < 16; t++) /* in each half, lane 2q + r holds acc[4r + q] */
        s[t % DT][t / DT] = z[8 * (t / 8) + 2 * (t % 4) + (t % 8) / 4];
    /* A scalar epilogue: the 16 results span two vectors here. */
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            double r = epi->alpha * s[i][j];
            double *cij = c + i * ldc + j;
            if (!(epi->flags & FNN_GEMM_E_BETA0))
                r = fma(epi->beta, *cij, r);
            if (bias)
                r += (epi->flags & FNN_GEMM_E_BIASROW) ? bias[i] : bias[j];
            if ((epi->flags & FNN_GEMM_E_RELU) && r < 0)
                r = 0; /* NaN stays NaN */
            *cij = r;
        }
}

/* Blocking (L1d 48 KiB / L2 2 MiB on Sapphire Rapids; 32 KiB / 1 MiB on Zen 4):
 * kc: the 12 x kc A micro-panel (12 KiB float, 24 KiB double at kc = 256) stays in L1 with
 * room for the B micro-panels streaming through; nc: the kc x nc B block (512 KiB float and
 * double) stays in L2 on both. On Sapphire Rapids kc 192..512 x nc 256..1024 measured within
 * noise of each other at 1024^3, so the sizes that also fit Zen 4 are kept. mc only bounds
 * the A rows packed ahead of use. */
const fnn_gemm_desc_f32 fnn_gemm_desc_avx512_f32 = {
    MR_F32, NR_F32, 96, 256, 512, ukr_f32, pack_a_copy_f32, pack_a_trans_f32, pack_b_copy_f32, pack_b_trans_f32,
    ukd_f32, NRW_F32, ukt_f32, DT, DT, ukg_f32, NRW1_F32, 0, 0, 0, /* ukg and ukt wherever the rules allow */
};
const fnn_gemm_desc_f64 fnn_gemm_desc_avx512_f64 = {
    MR_F64, NR_F64, 96, 256, 256, ukr_f64, pack_a_copy_f64, pack_a_trans_f64, pack_b_copy_f64, pack_b_trans_f64,
    ukd_f64, NRW_F64, ukt_f64, DT, DT, ukg_f64, NRW1_F64, 0, 0, 0,
};
#endif
