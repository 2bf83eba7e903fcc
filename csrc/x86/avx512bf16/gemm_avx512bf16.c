/*
 * gemm_avx512bf16.c - the AVX512-BF16 kernel of fnn_gemm_bf16 (csrc/gemm/gemm_bf16.c):
 * VDPBF16PS on k-pairs, 14 x 32 register tile (28 float32 accumulators, two B vectors, the A pair
 * broadcast from memory), and packers that convert float32 to bf16 (round to nearest even, with
 * integer arithmetic so the bits equal fnn_f32_to_bf16's) while they rearrange.
 * Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512bf16 only (setup.py); dispatched only
 * where CPUID reports AVX512_BF16 (csrc/core/cpu.c).
 */
#include <immintrin.h>

#include "../../gemm/gemm_bf16_internal.h"

#define MR 14
#define NR 32

/* 16 floats to their bf16 bits (in the low half of each 32-bit lane). */
static inline __m512i cvt16(__m512 x)
{
    const __m512i u = _mm512_castps_si512(x);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    return _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
}

/* Elements off .. off+15 of a float or bf16 source (lanes outside m read as zero), as bf16 bits
 * in the low half of each lane. */
static inline __m512i load16(int s16, const void *src, int64_t off, __mmask16 m)
{
    if (s16)
        return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)src + off));
    return cvt16(_mm512_maskz_loadu_ps(m, (const float *)src + off));
}

static inline __mmask16 lanes(int64_t n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* element (i, p) at src[p*ld + i]: two source rows give one row of pairs, no shuffles. */
static void pack_copy(int W, int64_t w, int64_t kc, int s16, const void *src, int64_t ld, uint32_t *dst)
{
    if (W > 32) {
        fnn_bf16_pack_copy_ref(W, w, kc, s16, src, ld, dst);
        return;
    }
    const __mmask16 m0 = lanes(w), m1 = lanes(w - 16), s0 = lanes(W), s1 = lanes(W - 16);
    const int64_t kq = (kc + 1) / 2;
    for (int64_t q = 0; q < kq; q++) {
        const int64_t p = 2 * q;
        const int odd = p + 1 < kc;
        __m512i lo = load16(s16, src, p * ld, m0);
        __m512i hi = odd ? load16(s16, src, (p + 1) * ld, m0) : _mm512_setzero_si512();
        _mm512_mask_storeu_epi32(dst + q * W, s0, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        if (W > 16) {
            lo = load16(s16, src, p * ld + 16, m1);
            hi = odd ? load16(s16, src, (p + 1) * ld + 16, m1) : _mm512_setzero_si512();
            _mm512_mask_storeu_epi32(dst + q * W + 16, s1, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
    }
}

/* 16 pairs (32 consecutive k values from p) of row i of a trans-layout source, as 16 uint32. */
static inline __m512i row_pairs(int s16, const void *src, int64_t off, int64_t left)
{
    if (s16) {
        const __mmask32 m = left >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << left) - 1);
        return _mm512_maskz_loadu_epi16(m, (const uint16_t *)src + off);
    }
    const __m512i v0 = cvt16(_mm512_maskz_loadu_ps(lanes(left), (const float *)src + off));
    const __m512i v1 = cvt16(_mm512_maskz_loadu_ps(lanes(left - 16), (const float *)src + off + 16));
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(v0)), _mm512_cvtepi32_epi16(v1), 1);
}

/* r[j] = column j of the 16 x 16 matrix of uint32 whose rows are r[0..15]. */
static inline void transpose16(__m512i r[16])
{
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
    }
}

/* element (i, p) at src[i*ld + p]: a row's 32 consecutive values are 16 pairs in order; 16 rows
 * of them, transposed in registers, are 16 panel rows of 16 values (rows i >= w are zero). */
static void pack_trans(int W, int64_t w, int64_t kc, int s16, const void *src, int64_t ld, uint32_t *dst)
{
    const int64_t kq = (kc + 1) / 2;
    for (int64_t i0 = 0; i0 < W; i0 += 16) {
        const int64_t rows = (w - i0 < 16) ? (w - i0 > 0 ? w - i0 : 0) : 16;
        const __mmask16 keep = lanes(W - i0);
        for (int64_t p = 0; p < kc; p += 32) {
            __m512i r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                r[i] = i < rows ? row_pairs(s16, src, (i0 + i) * ld + p, kc - p) : _mm512_setzero_si512();
            transpose16(r);
            const int64_t q0 = p / 2, nq = (kq - q0 < 16) ? kq - q0 : 16;
            for (int64_t t = 0; t < nq; t++)
                _mm512_mask_storeu_epi32(dst + (q0 + t) * W + i0, keep, r[t]);
        }
    }
}

#if defined(__GNUC__)
#define FNN_INLINE static inline __attribute__((always_inline))
#else
#define FNN_INLINE static inline
#endif

/* The epilogue of a tile: rows 0..mr-1 (mr <= R) of acc (V vectors each; vector 1 at co1 past
 * vector 0 in C, lanes m0 and m1) = act(alpha acc + beta C + bias) stored into C. The loops run to
 * the constant R, fully unrolled, so that acc is indexed by constants and stays in registers. */
FNN_INLINE void store_tile(const int R, const int V, __m512 acc[][2], int mr, float *c, int64_t ldc, int64_t co1,
                           __mmask16 m0, __mmask16 m1, const fnn_gemm_epi_f32 *epi, const float *bias)
{
    /* epi's fields in locals: the stores into C could alias it, which would reload them per row */
    const int flags = epi->flags, scale = epi->alpha != 1.0f;
    const __m512 alpha = _mm512_set1_ps(epi->alpha), beta = _mm512_set1_ps(epi->beta), zero = _mm512_setzero_ps();
    __m512 bias0 = zero, bias1 = zero;
    if (bias && !(flags & FNN_GEMM_E_BIASROW)) {
        bias0 = _mm512_maskz_loadu_ps(m0, bias);
        if (V > 1)
            bias1 = _mm512_maskz_loadu_ps(m1, bias + co1);
    }
#pragma GCC unroll 14
    for (int i = 0; i < R; i++) {
        if (i >= mr)
            break;
        float *ci = c + i * ldc;
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) {
            const __mmask16 mv = v ? m1 : m0;
            __m512 r = acc[i][v];
            if (scale)
                r = _mm512_mul_ps(alpha, r);
            if (!(flags & FNN_GEMM_E_BETA0))
                r = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mv, ci + (v ? co1 : 0)), r);
            if (bias) {
                if (flags & FNN_GEMM_E_BIASROW)
                    r = _mm512_add_ps(r, _mm512_set1_ps(bias[i]));
                else
                    r = _mm512_add_ps(r, v ? bias1 : bias0);
            }
            if (flags & FNN_GEMM_E_RELU)
                r = _mm512_max_ps(r, zero);
            _mm512_mask_storeu_ps(ci + (v ? co1 : 0), mv, r);
        }
    }
}

static void ukr(int64_t kq, const uint32_t *a, const uint32_t *b, float *c, int64_t ldc, int mr, int nr,
                const fnn_gemm_epi_f32 *epi, const float *bias)
{
    __m512 acc[MR][2];
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++)
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    /* C comes from L3 or memory (a 3072 x 512 weight gradient is 6 MiB): fetch it while computing */
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
        if (i < mr) {
            _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + i * ldc + nr - 1), _MM_HINT_T0);
        }
    }
    for (int64_t q = 0; q < kq; q++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + q * NR);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + q * NR + 16);
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[q * MR + i]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], av, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], av, b1);
        }
    }
    store_tile(MR, 2, acc, mr, c, ldc, 16, lanes(nr), lanes(nr - 16), epi, bias);
}

/* Gathered rows (the convolution's implicit im2col, csrc/ref/conv_tmpl.h): B read in place as
 * k-pair rows, pair q of column j at b[boff[q] + j] (j < nr0) and b[boff[q] + b2 + j] (j < nr1,
 * to c + c2), A rows of pairs at a[i*a_rs + q]. The pairs of the image need no shuffle: the
 * convolution stores channels 2p and 2p+1 of a pixel as one pair. R rows and V vectors are
 * compile-time constants of each instance; every element takes the same instructions in all. */
FNN_INLINE void kern_rows(const int R, const int V, int64_t kq, const uint32_t *restrict a, int64_t a_rs,
                          const uint32_t *restrict b, const int64_t *restrict boff, int64_t b2, float *restrict c,
                          int64_t ldc, int64_t c2, int nr0, int nr1, const fnn_gemm_epi_f32 *epi,
                          const float *restrict bias)
{
    const __mmask16 m0 = lanes(nr0), m1 = lanes(nr1);
    __m512 acc[MR][2];
#pragma GCC unroll 14
    for (int i = 0; i < R; i++)
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    /* The outputs are rows of y not written yet (not in cache): start fetching them now, so that
     * the epilogue's stores do not wait for them one by one (a first layer has a short k). */
#pragma GCC unroll 14
    for (int i = 0; i < R; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + (V > 1 ? c2 + nr1 : nr0) - 1), _MM_HINT_T0);
    }
    for (int64_t q = 0; q < kq; q++) {
        const __m512bh b0 = (__m512bh)_mm512_maskz_loadu_epi32(m0, b + boff[q]);
        const __m512bh b1 = V > 1 ? (__m512bh)_mm512_maskz_loadu_epi32(m1, b + boff[q] + b2) : b0;
#pragma GCC unroll 14
        for (int i = 0; i < R; i++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[i * a_rs + q]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], av, b0);
            if (V > 1)
                acc[i][1] = _mm512_dpbf16_ps(acc[i][1], av, b1);
        }
    }
    store_tile(R, V, acc, R, c, ldc, c2, m0, m1, epi, bias);
}

#define FNN_KG(R, V)                                                                                       \
    static void kg_##R##_##V(int64_t kq, const uint32_t *a, int64_t a_rs, const uint32_t *b, const int64_t *boff, \
                             int64_t b2, float *c, int64_t ldc, int64_t c2, int nr0, int nr1,                \
                             const fnn_gemm_epi_f32 *e, const float *bias)                                   \
    {                                                                                                        \
        kern_rows(R, V, kq, a, a_rs, b, boff, b2, c, ldc, c2, nr0, nr1, e, bias);                             \
    }
#define FNN_KG2(R) FNN_KG(R, 1) FNN_KG(R, 2)
FNN_KG2(1) FNN_KG2(2) FNN_KG2(3) FNN_KG2(4) FNN_KG2(5) FNN_KG2(6) FNN_KG2(7)
FNN_KG2(8) FNN_KG2(9) FNN_KG2(10) FNN_KG2(11) FNN_KG2(12) FNN_KG2(13) FNN_KG2(14)

typedef void (*kg_fn)(int64_t, const uint32_t *, int64_t, const uint32_t *, const int64_t *, int64_t, float *,
                      int64_t, int64_t, int, int, const fnn_gemm_epi_f32 *, const float *);
#define FNN_KGN(V)                                                                                         \
    { kg_1_##V, kg_2_##V, kg_3_##V, kg_4_##V, kg_5_##V, kg_6_##V, kg_7_##V, kg_8_##V, kg_9_##V, kg_10_##V, \
      kg_11_##V, kg_12_##V, kg_13_##V, kg_14_##V }
static const kg_fn kg[2][MR] = {FNN_KGN(1), FNN_KGN(2)};

static void ukg(int64_t kq, const uint32_t *a, int64_t a_rs, const uint32_t *b, const int64_t *boff, int64_t b2,
                float *c, int64_t ldc, int64_t c2, int mr, int nr0, int nr1, const fnn_gemm_epi_f32 *epi,
                const float *bias)
{
    kg[nr1 > 0][mr - 1](kq, a, a_rs, b, boff, b2, c, ldc, c2, nr0, nr1, epi, bias);
}

static void convert(int64_t n, const float *x, void *yv)
{
    uint16_t *y = (uint16_t *)yv;
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = lanes(n - i);
        _mm256_mask_storeu_epi16(y + i, m, _mm512_cvtepi32_epi16(cvt16(_mm512_maskz_loadu_ps(m, x + i))));
    }
}

static void round_f32(int64_t n, const float *x, void *yv)
{
    float *y = (float *)yv;
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = lanes(n - i);
        const __m512i h = cvt16(_mm512_maskz_loadu_ps(m, x + i));
        _mm512_mask_storeu_ps(y + i, m, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
    }
}

/* kc 512 values: a 14 x 512 A panel (14 KiB of pairs) stays in L1; nc 512: the 512 x 512 B block
 * (512 KiB) in Zen 4's 1 MiB L2. */
const fnn_gemm_desc_bf16 fnn_gemm_desc_avx512bf16 = {
    .mr = MR, .nr = NR, .mc = 14 * 12, .kc = 512, .nc = 512,
    .ukr = ukr, .pack_copy = pack_copy, .pack_trans = pack_trans, .thread_init = NULL, .convert = convert,
    .round = round_f32, .ukg = ukg,
};
