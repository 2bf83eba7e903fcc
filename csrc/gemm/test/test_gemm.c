/*
 * test_gemm.c - standalone correctness test of fnn_gemm_f32/f64 (not part of the package).
 * Every kernel variant the CPU supports is checked against a naive double-precision
 * reference, and results must be bit-identical for 1, 2, 3 and 4 threads. The same for the
 * gathered-rows product (fnn_gemm_rows_*) where the variant has it, which must also give the
 * bits of fnn_gemm on the gathered matrix when that takes the direct path (m <= 12).
 * Build and run: make -C csrc/gemm/test test
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../include/fastnn.h"
#include "../../core/internal.h"

#define FAIL_TAG() fnn_arch_name(fnn_arch_get())
#include "test_common.h"

/* Reference and comparison, written once per type by a macro-free pair of functions. */
#define DEFINE_CHECK(T, SUF, GEMM, EPS)                                                            \
    static int check_##SUF(int flags, int64_t m, int64_t n, int64_t k, double alpha, double beta, \
                           int64_t pad_a, int64_t pad_b, int64_t pad_c, int use_bias, int nan_c) \
    {                                                                                              \
        const int ta = flags & FNN_TRANS_A, tb = flags & FNN_TRANS_B;                              \
        const int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;          \
        const int64_t lda = ac + pad_a, ldb = bc + pad_b, ldc = n + pad_c;                         \
        const int64_t blen = (flags & FNN_BIAS_ROW) ? m : n;                                       \
        T *a = malloc(sizeof(T) * (size_t)(ar * lda + 1));                                         \
        T *b = malloc(sizeof(T) * (size_t)(br * ldb + 1));                                         \
        T *c0 = malloc(sizeof(T) * (size_t)(m * ldc + 1));                                         \
        T *c = malloc(sizeof(T) * (size_t)(m * ldc + 1));                                          \
        T *c2 = malloc(sizeof(T) * (size_t)(m * ldc + 1));                                         \
        T *bias = malloc(sizeof(T) * (size_t)(blen + 1));                                          \
        for (int64_t i = 0; i < ar * lda; i++) a[i] = (T)urand();                                  \
        for (int64_t i = 0; i < br * ldb; i++) b[i] = (T)urand();                                  \
        for (int64_t i = 0; i < m * ldc; i++) c0[i] = nan_c ? (T)NAN : (T)urand();                 \
        for (int64_t i = 0; i < blen; i++) bias[i] = (T)urand();                                   \
        int bad = 0;                                                                               \
        for (int nt = 1; nt <= 4 && !bad; nt++) {                                                  \
            memcpy(c, c0, sizeof(T) * (size_t)(m * ldc));                                          \
            int st = GEMM(flags, m, n, k, (T)alpha, (T)beta, a, lda, b, ldb,                       \
                          use_bias ? bias : NULL, c, ldc, nt);                                     \
            n_checks++;                                                                            \
            if (st != FNN_OK) {                                                                    \
                FAIL(#SUF " status %d flags=%d m=%lld n=%lld k=%lld", st, flags, (long long)m,     \
                     (long long)n, (long long)k);                                                  \
                bad = 1;                                                                           \
                break;                                                                             \
            }                                                                                      \
            if (nt == 1) {                                                                         \
                for (int64_t i = 0; i < m && !bad; i++)                                            \
                    for (int64_t j = 0; j < ldc && !bad; j++) {                                    \
                        T got = c[i * ldc + j];                                                    \
                        if (j >= n) { /* padding must be untouched */                              \
                            T want = c0[i * ldc + j];                                              \
                            if (memcmp(&got, &want, sizeof(T)) != 0) {                             \
                                FAIL(#SUF " wrote padding i=%lld j=%lld", (long long)i,            \
                                     (long long)j);                                                \
                                bad = 1;                                                           \
                            }                                                                      \
                            continue;                                                              \
                        }                                                                          \
                        double s = 0, sa = 0;                                                      \
                        for (int64_t p = 0; p < k; p++) {                                          \
                            double x = ta ? a[p * lda + i] : a[i * lda + p];                       \
                            double y = tb ? b[j * ldb + p] : b[p * ldb + j];                       \
                            s += x * y;                                                            \
                            sa += fabs(x * y);                                                     \
                        }                                                                          \
                        double r = alpha * s, scale = fabs(alpha) * sa;                            \
                        if (beta != 0) {                                                           \
                            r += beta * c0[i * ldc + j];                                           \
                            scale += fabs(beta * c0[i * ldc + j]);                                 \
                        }                                                                          \
                        if (use_bias) {                                                            \
                            double bv = (flags & FNN_BIAS_ROW) ? bias[i] : bias[j];                \
                            r += bv;                                                               \
                            scale += fabs(bv);                                                     \
                        }                                                                          \
                        if ((flags & FNN_EPI_RELU) && r < 0) r = 0;                                \
                        double tol = (double)(k + 4) * EPS * scale + 1e-300;                       \
                        if (!(fabs(got - r) <= tol)) {                                             \
                            FAIL(#SUF " flags=%d m=%lld n=%lld k=%lld alpha=%g beta=%g bias=%d "   \
                                 "pads=%lld,%lld,%lld C[%lld,%lld]=%.9g want %.9g",                \
                                 flags, (long long)m, (long long)n, (long long)k, alpha, beta,     \
                                 use_bias, (long long)pad_a, (long long)pad_b, (long long)pad_c,   \
                                 (long long)i, (long long)j, (double)got, r);                      \
                            bad = 1;                                                               \
                        }                                                                          \
                    }                                                                              \
                memcpy(c2, c, sizeof(T) * (size_t)(m * ldc));                                      \
            } else if (memcmp(c, c2, sizeof(T) * (size_t)(m * ldc)) != 0) {                        \
                FAIL(#SUF " n_threads=%d differs from 1 thread: flags=%d m=%lld n=%lld k=%lld",    \
                     nt, flags, (long long)m, (long long)n, (long long)k);                         \
                bad = 1;                                                                           \
            }                                                                                      \
        }                                                                                          \
        free(a); free(b); free(c0); free(c); free(c2); free(bias);                                 \
        return bad;                                                                                \
    }

DEFINE_CHECK(float, f32, fnn_gemm_f32, 1.2e-7)
DEFINE_CHECK(double, f64, fnn_gemm_f64, 2.3e-16)

/* fnn_gemm_rows: n0 values of row p of B at base + boff[p] and n1 more at base + boff[p] + b2,
 * to C columns [0, n0) and [c2, c2 + n1); offsets random (rows overlap) in a base buffer. */
#define DEFINE_ROWS_CHECK(T, SUF, EPS)                                                             \
    static void rows_check_##SUF(int flags, int64_t m, int64_t k, int n0, int n1, int64_t b2, int64_t c2) \
    {                                                                                              \
        const int64_t span = (n1 > 0 && b2 + n1 > n0) ? b2 + n1 : n0, len = span + 3 * k + 7;     \
        const int64_t lda = k + 3, ldc = c2 + n1 + 2, n = n0 + n1;                                 \
        T *a = malloc(sizeof(T) * (size_t)(m * lda)), *base = malloc(sizeof(T) * (size_t)len);     \
        T *bm = malloc(sizeof(T) * (size_t)(k * n)), *bias = malloc(sizeof(T) * (size_t)(m + ldc)); \
        T *c = malloc(sizeof(T) * (size_t)(m * ldc)), *cg = malloc(sizeof(T) * (size_t)(m * n));   \
        int64_t *boff = malloc(sizeof(int64_t) * (size_t)k);                                       \
        for (int64_t i = 0; i < m * lda; i++) a[i] = (T)urand();                                   \
        for (int64_t i = 0; i < len; i++) base[i] = (T)urand();                                    \
        for (int64_t i = 0; i < m + ldc; i++) bias[i] = (T)urand();                                \
        for (int64_t i = 0; i < m * ldc; i++) c[i] = (T)NAN;                                       \
        for (int64_t p = 0; p < k; p++) {                                                          \
            boff[p] = (int64_t)((urand() + 1) * 0.5 * (double)(len - span + 1)) % (len - span + 1); \
            for (int64_t j = 0; j < n; j++)                                                        \
                bm[p * n + j] = base[boff[p] + (j < n0 ? j : b2 + j - n0)];                        \
        }                                                                                          \
        n_checks++;                                                                                \
        int st = fnn_gemm_rows_##SUF(flags, m, k, a, lda, base, boff, b2, n0, n1, bias, c, ldc, c2); \
        if (!fnn_gemm_rows_width_##SUF()) {                                                        \
            if (st != FNN_ERR_ARG) FAIL("rows " #SUF ": accepted without a kernel");               \
            goto done;                                                                             \
        }                                                                                          \
        if (st != FNN_OK) {                                                                        \
            FAIL("rows " #SUF " status %d m=%lld k=%lld n0=%d n1=%d", st, (long long)m, (long long)k, n0, n1); \
            goto done;                                                                             \
        }                                                                                          \
        for (int64_t i = 0; i < m; i++)                                                            \
            for (int64_t jj = 0; jj < ldc; jj++) {                                                 \
                const int64_t j = jj < n0 ? jj : (jj >= c2 && jj < c2 + n1) ? n0 + jj - c2 : -1;   \
                T got = c[i * ldc + jj];                                                           \
                if (j < 0) { /* between and past the two vectors: untouched */                    \
                    if (got == got) FAIL("rows " #SUF " wrote C[%lld,%lld] outside its columns",   \
                                         (long long)i, (long long)jj);                              \
                    continue;                                                                      \
                }                                                                                  \
                double s = 0, sa = 0;                                                              \
                for (int64_t p = 0; p < k; p++) {                                                  \
                    s += (double)a[i * lda + p] * bm[p * n + j];                                   \
                    sa += fabs((double)a[i * lda + p] * bm[p * n + j]);                            \
                }                                                                                  \
                double bv = (flags & FNN_BIAS_ROW) ? bias[i] : bias[jj];                           \
                s += bv;                                                                           \
                if ((flags & FNN_EPI_RELU) && s < 0) s = 0;                                        \
                if (!(fabs(got - s) <= (double)(k + 4) * EPS * (sa + fabs(bv)) + 1e-300))          \
                    FAIL("rows " #SUF " m=%lld k=%lld n0=%d n1=%d C[%lld,%lld]=%.9g want %.9g",   \
                         (long long)m, (long long)k, n0, n1, (long long)i, (long long)jj, (double)got, s); \
            }                                                                                      \
        /* contiguous vectors: the same bits as the direct GEMM of the gathered matrix */         \
        if (m <= 12 && b2 == n0 && c2 == n0) {                                                  \
            n_checks++;                                                                            \
            fnn_gemm_##SUF(flags, m, n, k, 1, 0, a, lda, bm, n, bias, cg, n, 1);                    \
            for (int64_t i = 0; i < m; i++)                                                        \
                if (memcmp(c + i * ldc, cg + i * n, sizeof(T) * (size_t)n) != 0)                   \
                    FAIL("rows " #SUF " differs from the direct GEMM m=%lld k=%lld n0=%d n1=%d",   \
                         (long long)m, (long long)k, n0, n1);                                      \
        }                                                                                          \
    done:                                                                                          \
        free(a); free(base); free(bm); free(bias); free(c); free(cg); free(boff);                   \
    }
DEFINE_ROWS_CHECK(float, f32, 1.2e-7)
DEFINE_ROWS_CHECK(double, f64, 2.3e-16)

static void test_rows(void)
{
    static const int64_t ms[] = {1, 5, 12, 13, 32, 40}, ks[] = {1, 9, 144};
    /* each type at the variant's vector width (AVX-512 16 / 8, AVX2 8 / 4); without a kernel, the
     * AVX-512 widths (the calls must be refused) */
    const int w32 = fnn_gemm_rows_width_f32() ? fnn_gemm_rows_width_f32() : 16;
    const int w64 = fnn_gemm_rows_width_f64() ? fnn_gemm_rows_width_f64() : 8;
    for (int t = 0; t < 2; t++) {
        const int vw = t ? w32 : w64;
        const int n0s[] = {1, vw - 2, vw}, n1s[] = {0, 3, vw};
        for (size_t a = 0; a < sizeof ms / sizeof ms[0]; a++)
            for (size_t c = 0; c < sizeof ks / sizeof ks[0]; c++)
                for (int x = 0; x < 3; x++)
                    for (int y = 0; y < 3; y++) {
                        const int flags = (int)((a + c + (size_t)x + (size_t)y) % 4) * 4; /* bias row/col, relu */
                        const int n0 = n0s[x], n1 = n1s[y];
                        /* contiguous; and a row pitch apart in B with a gap in C (two output rows) */
                        if (t) {
                            rows_check_f32(flags, ms[a], ks[c], n0, n1, n0, n0);
                            rows_check_f32(flags, ms[a], ks[c], n0, n1, n0 + 5, n0 + 2);
                        } else {
                            rows_check_f64(flags, ms[a], ks[c], n0, n1, n0, n0);
                            rows_check_f64(flags, ms[a], ks[c], n0, n1, n0 + 5, n0 + 2);
                        }
                    }
    }
}

/* The implicit convolution's rule (fnn_gemm_rows_take_*): never without a kernel; on AVX2 only from
 * 144 taps and where a row of outputs takes fewer lanes than the wide columns (ow + 2 for 3 x 3). */
static void test_rows_take(void)
{
    const int arch = fnn_arch_get();
    for (int t = 0; t < 2; t++) {
        int (*take)(int64_t, int64_t, int64_t) = t ? fnn_gemm_rows_take_f32 : fnn_gemm_rows_take_f64;
        const int vw = t ? fnn_gemm_rows_width_f32() : fnn_gemm_rows_width_f64();
        static const int64_t ows[] = {4, 7, 8, 14, 16, 28, 32};
        for (size_t i = 0; i < sizeof ows / sizeof ows[0]; i++)
            for (int64_t k = 9; k <= 288; k += 9) {
                const int64_t ow = ows[i], lanes = vw <= 0 ? 0 : ow <= vw ? vw : (ow + vw - 1) / vw * vw;
                int want = vw > 0;
                if (arch == FNN_ARCH_AVX2)
                    want = k >= 144 && lanes < ow + 2;
                n_checks++;
                if (take(ow, ow + 2, k) != want)
                    FAIL("rows_take(%d) ow=%lld k=%lld: %d, want %d", t, (long long)ow, (long long)k, !want, want);
            }
    }
}

static void check_both(int flags, int64_t m, int64_t n, int64_t k, double alpha, double beta,
                       int64_t pa, int64_t pb, int64_t pc, int use_bias, int nan_c)
{
    check_f32(flags, m, n, k, alpha, beta, pa, pb, pc, use_bias, nan_c);
    check_f64(flags, m, n, k, alpha, beta, pa, pb, pc, use_bias, nan_c);
}

static void test_args(void)
{
    float a[16] = {0}, b[16] = {0}, c[16] = {0};
    double ad[16] = {0}, bd[16] = {0}, cd[16] = {0};
#define EXPECT(expr, want)                                                                         \
    do {                                                                                           \
        int st_ = (expr);                                                                          \
        n_checks++;                                                                                \
        if (st_ != (want)) FAIL("%s returned %d, want %d", #expr, st_, want);                      \
    } while (0)
    EXPECT(fnn_gemm_f32(0, -1, 2, 2, 1, 0, a, 2, b, 2, NULL, c, 2, 1), FNN_ERR_ARG);
    EXPECT(fnn_gemm_f32(0, 2, -1, 2, 1, 0, a, 2, b, 2, NULL, c, 2, 1), FNN_ERR_ARG);
    EXPECT(fnn_gemm_f32(0, 2, 2, -1, 1, 0, a, 2, b, 2, NULL, c, 2, 1), FNN_ERR_ARG);
    EXPECT(fnn_gemm_f32(16, 2, 2, 2, 1, 0, a, 2, b, 2, NULL, c, 2, 1), FNN_ERR_ARG);
    EXPECT(fnn_gemm_f32(0, 2, 3, 4, 1, 0, a, 3, b, 3, NULL, c, 3, 1), FNN_ERR_ARG);  /* lda < k */
    EXPECT(fnn_gemm_f32(FNN_TRANS_A, 2, 3, 4, 1, 0, a, 1, b, 3, NULL, c, 3, 1), FNN_ERR_ARG);
    EXPECT(fnn_gemm_f32(FNN_TRANS_A, 2, 3, 4, 1, 0, a, 2, b, 3, NULL, c, 3, 1), FNN_OK);
    EXPECT(fnn_gemm_f32(0, 2, 3, 4, 1, 0, a, 4, b, 2, NULL, c, 3, 1), FNN_ERR_ARG);  /* ldb < n */
    EXPECT(fnn_gemm_f32(FNN_TRANS_B, 2, 3, 4, 1, 0, a, 4, b, 3, NULL, c, 3, 1), FNN_ERR_ARG);
    EXPECT(fnn_gemm_f32(FNN_TRANS_B, 2, 3, 4, 1, 0, a, 4, b, 4, NULL, c, 3, 1), FNN_OK);
    EXPECT(fnn_gemm_f32(0, 2, 3, 4, 1, 0, a, 4, b, 3, NULL, c, 2, 1), FNN_ERR_ARG);  /* ldc < n */
    EXPECT(fnn_gemm_f32(0, 2, 3, 4, 1, 0, NULL, 4, b, 3, NULL, c, 3, 1), FNN_ERR_ARG);
    EXPECT(fnn_gemm_f32(0, 2, 3, 4, 1, 0, a, 4, NULL, 3, NULL, c, 3, 1), FNN_ERR_ARG);
    EXPECT(fnn_gemm_f32(0, 2, 3, 4, 1, 0, a, 4, b, 3, NULL, NULL, 3, 1), FNN_ERR_ARG);
    /* empty outputs are no-ops whatever the pointers; k == 0 reads neither A nor B */
    EXPECT(fnn_gemm_f32(0, 0, 3, 4, 1, 0, NULL, 0, NULL, 0, NULL, NULL, 0, 1), FNN_OK);
    EXPECT(fnn_gemm_f32(0, 3, 0, 4, 1, 0, NULL, 0, NULL, 0, NULL, NULL, 0, 1), FNN_OK);
    EXPECT(fnn_gemm_f32(0, 2, 3, 0, 1, 0, NULL, 0, NULL, 0, NULL, c, 3, 1), FNN_OK);
    EXPECT(fnn_gemm_f64(0, -1, 2, 2, 1, 0, ad, 2, bd, 2, NULL, cd, 2, 1), FNN_ERR_ARG);
    EXPECT(fnn_gemm_f64(32, 2, 2, 2, 1, 0, ad, 2, bd, 2, NULL, cd, 2, 1), FNN_ERR_ARG);
    EXPECT(fnn_gemm_f64(0, 2, 3, 4, 1, 0, ad, 4, bd, 3, NULL, cd, 3, 0), FNN_OK);
    EXPECT(fnn_gemm_f64(0, 2, 3, 4, 1, 0, ad, 4, bd, 3, NULL, cd, 3, -5), FNN_OK);
    EXPECT(fnn_arch_set(7), FNN_ERR_ARG);
    EXPECT(fnn_arch_set(-1), FNN_ERR_ARG);
    /* k == 0: C = beta*C + bias, relu; beta == 0 ignores NaN in C */
    {
        float cc[6] = {NAN, NAN, NAN, NAN, NAN, NAN}, bias[3] = {1, -2, 3};
        EXPECT(fnn_gemm_f32(FNN_EPI_RELU, 2, 3, 0, 1, 0, NULL, 0, NULL, 0, bias, cc, 3, 2), FNN_OK);
        n_checks++;
        if (cc[0] != 1 || cc[1] != 0 || cc[2] != 3 || cc[3] != 1 || cc[4] != 0 || cc[5] != 3)
            FAIL("k == 0 with bias and relu: %g %g %g %g %g %g", cc[0], cc[1], cc[2], cc[3], cc[4],
                 cc[5]);
        float c2[4] = {1, 2, 3, 4}, br[2] = {10, 20};
        EXPECT(fnn_gemm_f32(FNN_BIAS_ROW, 2, 2, 0, 1, 2, NULL, 0, NULL, 0, br, c2, 2, 1), FNN_OK);
        n_checks++;
        if (c2[0] != 12 || c2[1] != 14 || c2[2] != 26 || c2[3] != 28)
            FAIL("k == 0 with beta 2 and row bias: %g %g %g %g", c2[0], c2[1], c2[2], c2[3]);
    }
#undef EXPECT
}

static void test_variant(int quick)
{
    static const int64_t sizes[] = {1, 2, 7, 15, 17, 31, 33, 63, 65, 129};
    const int ns = (int)(sizeof(sizes) / sizeof(sizes[0]));
    for (int flags = 0; flags < 16; flags++) {
        /* all transposes x bias row/col x relu, a few sizes each */
        for (int si = 0; si < ns; si++) {
            int64_t m = sizes[si], n = sizes[(si * 3 + 1) % ns], k = sizes[(si * 7 + 2) % ns];
            check_both(flags, m, n, k, 1.0, 0.0, 0, 0, 0, flags & 4 ? 1 : (si & 1), si & 1);
            if (!quick)
                check_both(flags, n, k, m, -0.5, 1.5, 3, 1, 5, 1, 0);
        }
    }
    /* every size in every dimension, all four transposes, alpha/beta, padded leading dims */
    for (int t = 0; t < 4; t++)
        for (int si = 0; si < ns; si++)
            for (int sj = 0; sj < ns; sj += quick ? 3 : 1) {
                check_both(t, sizes[si], sizes[sj], 33, 0.75, 0.0, 1, 2, 3, 0, 1);
                check_both(t, sizes[si], 17, sizes[sj], 1.0, 1.0, 0, 5, 0, 1, 0);
                check_both(t | FNN_EPI_RELU, 31, sizes[si], sizes[sj], 2.0, -1.0, 7, 0, 1, 1, 0);
            }
    /* degenerate shapes and large ones: m, n or k = 1, and 1023 (several KC blocks) */
    for (int t = 0; t < 4; t++) {
        check_both(t, 1, 1, 1, 1.0, 0.0, 0, 0, 0, 1, 1);
        check_both(t, 1, 300, 200, 1.0, 0.5, 0, 0, 0, 1, 0);
        /* the GEMV strips: whole (256/128 float, 128/64 double) and partial, one and two rows */
        check_both(t | FNN_EPI_RELU, 1, 256, 77, 1.0, 0.0, 0, 3, 0, 1, 1);
        check_both(t, 2, 128, 77, 1.0, 0.0, 0, 0, 0, 1, 0);
        check_both(t, 1, 128, 300, 1.0, 0.0, 1, 0, 0, 1, 0);
        check_both(t, 300, 1, 200, 1.0, 0.0, 0, 0, 0, 1, 1);
        check_both(t, 300, 200, 1, 1.0, 0.0, 0, 0, 0, 1, 1);
        check_both(t | FNN_BIAS_ROW | FNN_EPI_RELU, 130, 77, 1023, 1.0, 0.0, 1, 1, 1, 1, 1);
        check_both(t, 1023, 65, 129, 1.0, 2.0, 0, 0, 0, 0, 0);
        /* either side of AVX2's dot-path threshold (k = 512; A B^T, small C), with a k tail */
        check_both(t | FNN_BIAS_ROW, 16, 9, 511, 1.0, 0.0, 0, 1, 0, 1, 1);
        check_both(t | FNN_EPI_RELU, 18, 7, 512, 1.0, 0.5, 1, 0, 2, 1, 0);
        check_both(t, 13, 11, 787, 0.5, 0.0, 0, 0, 0, 0, 1);
        if (!quick) {
            check_both(t, 129, 1023, 17, 1.0, 0.0, 0, 0, 0, 1, 1);
            check_both(t, 257, 260, 1023, 0.5, 0.25, 2, 2, 2, 1, 0);
        }
    }
    /* alpha == 0: C = beta*C + bias */
    check_both(0, 17, 33, 65, 0.0, 0.5, 0, 0, 0, 1, 0);
}

/* Several application threads calling fnn_gemm at once (each with its own OpenMP team and
 * workspaces), as an app running predict from many threads does: every result must equal
 * the one computed alone. Threads are started and joined twice, so workspaces of exited
 * threads are freed and new ones allocated. */
#define CONC_THREADS 8
typedef struct {
    int id, bad;
    const float *a, *b, *want;
    int64_t m, n, k;
} conc_job;

static void *conc_run(void *arg)
{
    conc_job *j = (conc_job *)arg;
    float *c = malloc(sizeof(float) * (size_t)(j->m * j->n));
    for (int rep = 0; rep < 20 && !j->bad; rep++) {
        const int flags = (j->id + rep) % 2 ? FNN_EPI_RELU : 0;
        if (fnn_gemm_f32(flags, j->m, j->n, j->k, 1.0f, 0.0f, j->a, j->k, j->b, j->n, NULL, c, j->n,
                         1 + rep % 3) != FNN_OK)
            j->bad = 1;
        for (int64_t i = 0; i < j->m * j->n && !j->bad; i++) {
            float w = j->want[i];
            if (flags && w < 0)
                w = 0;
            if (memcmp(&c[i], &w, sizeof(float)) != 0)
                j->bad = 1;
        }
    }
    free(c);
    return NULL;
}

static void test_concurrent(void)
{
    static const int64_t shapes[CONC_THREADS][3] = {{64, 128, 96},  {1, 300, 200},  {130, 70, 257},
                                                    {33, 65, 129},  {200, 200, 200}, {7, 1000, 17},
                                                    {256, 64, 256}, {12, 500, 64}};
    conc_job jobs[CONC_THREADS];
    float *bufs[CONC_THREADS][3];
    for (int t = 0; t < CONC_THREADS; t++) {
        const int64_t m = shapes[t][0], k = shapes[t][1], n = shapes[t][2];
        bufs[t][0] = malloc(sizeof(float) * (size_t)(m * k));
        bufs[t][1] = malloc(sizeof(float) * (size_t)(k * n));
        bufs[t][2] = malloc(sizeof(float) * (size_t)(m * n));
        for (int64_t i = 0; i < m * k; i++) bufs[t][0][i] = (float)urand();
        for (int64_t i = 0; i < k * n; i++) bufs[t][1][i] = (float)urand();
        fnn_gemm_f32(0, m, n, k, 1.0f, 0.0f, bufs[t][0], k, bufs[t][1], n, NULL, bufs[t][2], n, 1);
        jobs[t].id = t;
        jobs[t].a = bufs[t][0];
        jobs[t].b = bufs[t][1];
        jobs[t].want = bufs[t][2];
        jobs[t].m = m;
        jobs[t].n = n;
        jobs[t].k = k;
    }
    for (int round = 0; round < 2; round++) {
        pthread_t th[CONC_THREADS];
        for (int t = 0; t < CONC_THREADS; t++) {
            jobs[t].bad = 0;
            pthread_create(&th[t], NULL, conc_run, &jobs[t]);
        }
        for (int t = 0; t < CONC_THREADS; t++) {
            pthread_join(th[t], NULL);
            n_checks++;
            if (jobs[t].bad)
                FAIL("concurrent calls: thread %d got a different result", t);
        }
    }
    for (int t = 0; t < CONC_THREADS; t++)
        for (int i = 0; i < 3; i++)
            free(bufs[t][i]);
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    printf("openmp %d, max threads %d, best arch %s, current %s\n", fnn_openmp_enabled(),
           fnn_max_threads(), fnn_arch_name(fnn_arch_best()), fnn_arch_name(fnn_arch_get()));
    test_args();
    for (int arch = FNN_ARCH_GENERIC; arch <= FNN_ARCH_AVX512; arch++) {
        int st = fnn_arch_set(arch);
        if (arch > fnn_arch_best()) {
            n_checks++;
            if (st != FNN_ERR_ARCH)
                FAIL("fnn_arch_set(%d) = %d on a CPU without it", arch, st);
            continue;
        }
        if (st != FNN_OK) {
            FAIL("fnn_arch_set(%d) = %d", arch, st);
            continue;
        }
        int before = n_fail;
        test_variant(quick);
        test_rows();
        test_rows_take();
        test_concurrent();
        printf("%-8s %s\n", fnn_arch_name(arch), n_fail == before ? "ok" : "FAILED");
    }
    printf("%d checks, %d failures\n", n_checks, n_fail);
    return n_fail != 0;
}
