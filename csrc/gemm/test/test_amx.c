/*
 * test_amx.c - the AMX kernel of fnn_gemm_bf16 (csrc/x86/amx/gemm_amx.c) built with
 * -DFNN_AMX_EMULATE: its tile operations run as plain C with TDPBF16PS's documented arithmetic,
 * so this checks, on any CPU, its packing (A's tile layout, the B panels, zero-padded edges in
 * m, n and k), tile indexing, blocking (two KC blocks, MC and NC edges), epilogue and driver
 * hooks (tile configuration on every thread that runs tiles, release after) through the real
 * driver (gemm_bf16.c, built with FNN_BF16_TEST so that it dispatches to the emulated kernel).
 * Reference: float64 products of the bf16-rounded operands; threads 1, 2 and 3 bit-identical.
 * Build and run: make -C csrc/gemm/test test (part of it).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../include/fastnn.h"
#include "../gemm_bf16_internal.h"

extern int fnn_bf16_test_mode;
extern int fnn_amx_emu_faults;
int fnn_amx_emu_configured(void);

#define FAIL_TAG() "amx emulated"
#include "test_common.h"

/* One product: flags (transposes, bias row, ReLU, bf16-stored operands), pads on the leading
 * dimensions, C filled with NaN when beta == 0 (it must not be read), threads 1..max_nt. */
static void check(int flags, int64_t m, int64_t n, int64_t k, float alpha, float beta, int64_t pad, int use_bias,
                  int max_nt)
{
    const int ta = (flags & FNN_TRANS_A) != 0, tb = (flags & FNN_TRANS_B) != 0;
    const int a16 = (flags & FNN_A_BF16) != 0, b16 = (flags & FNN_B_BF16) != 0;
    const int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    const int64_t lda = ac + pad, ldb = bc + 2 * pad, ldc = n + pad + 1;
    const int64_t blen = (flags & FNN_BIAS_ROW) ? m : n;
    float *a = malloc(sizeof(float) * (size_t)(ar * lda)), *b = malloc(sizeof(float) * (size_t)(br * ldb));
    uint16_t *ah = malloc(sizeof(uint16_t) * (size_t)(ar * lda)), *bh = malloc(sizeof(uint16_t) * (size_t)(br * ldb));
    float *c0 = malloc(sizeof(float) * (size_t)(m * ldc)), *c = malloc(sizeof(float) * (size_t)(m * ldc));
    float *c1 = malloc(sizeof(float) * (size_t)(m * ldc)), *bias = malloc(sizeof(float) * (size_t)blen);
    for (int64_t i = 0; i < ar * lda; i++) {
        a[i] = (float)urand();
        ah[i] = fnn_bf16_from_f32(a[i]);
    }
    for (int64_t i = 0; i < br * ldb; i++) {
        b[i] = (float)urand();
        bh[i] = fnn_bf16_from_f32(b[i]);
    }
    for (int64_t i = 0; i < m * ldc; i++)
        c0[i] = beta == 0 ? NAN : (float)urand();
    for (int64_t i = 0; i < blen; i++)
        bias[i] = (float)urand();
    const void *av = a16 ? (const void *)ah : (const void *)a, *bv = b16 ? (const void *)bh : (const void *)b;
    int bad = 0;
    for (int nt = 1; nt <= max_nt && !bad; nt++) {
        memcpy(c, c0, sizeof(float) * (size_t)(m * ldc));
        const int st = fnn_gemm_bf16(flags, m, n, k, alpha, beta, av, lda, bv, ldb, use_bias ? bias : NULL, c, ldc, nt);
        n_checks++;
        if (st != FNN_OK) {
            FAIL("status %d flags=%d %lldx%lldx%lld", st, flags, (long long)m, (long long)n, (long long)k);
            break;
        }
        if (nt > 1) {
            if (memcmp(c, c1, sizeof(float) * (size_t)(m * ldc)) != 0) {
                FAIL("%d threads differ from 1: flags=%d %lldx%lldx%lld", nt, flags, (long long)m, (long long)n,
                     (long long)k);
                bad = 1;
            }
            continue;
        }
        memcpy(c1, c, sizeof(float) * (size_t)(m * ldc));
        for (int64_t i = 0; i < m && !bad; i++)
            for (int64_t j = 0; j < ldc && !bad; j++) {
                const float got = c[i * ldc + j];
                if (j >= n) {
                    if (memcmp(&got, &c0[i * ldc + j], sizeof(got)) != 0) {
                        FAIL("wrote padding C[%lld,%lld] %lldx%lldx%lld", (long long)i, (long long)j, (long long)m,
                             (long long)n, (long long)k);
                        bad = 1;
                    }
                    continue;
                }
                double r;
                if (!fnn_bf16_elem_ok(got, flags, i, j, k, alpha, beta, ah, lda, bh, ldb, c0[i * ldc + j],
                                      use_bias ? bias : NULL, &r)) {
                    FAIL("flags=%d %lldx%lldx%lld alpha=%g beta=%g bias=%d pad=%lld C[%lld,%lld]=%.9g want %.9g", flags,
                         (long long)m, (long long)n, (long long)k, alpha, beta, use_bias, (long long)pad, (long long)i,
                         (long long)j, (double)got, r);
                    bad = 1;
                }
            }
    }
    free(a), free(b), free(ah), free(bh), free(c0), free(c), free(c1), free(bias);
}

/* A kernel that is wrong by one unit in one element of each tile: the self-check must notice. */
static void broken_ukr(int64_t kq, const uint32_t *a, const uint32_t *b, float *c, int64_t ldc, int mr, int nr,
                       const fnn_gemm_epi_f32 *epi, const float *bias)
{
    fnn_gemm_desc_amx.ukr(kq, a, b, c, ldc, mr, nr, epi, bias);
    c[(mr - 1) * ldc + nr - 1] += 1e-3f;
}

int main(int argc, char **argv)
{
    const int quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    /* dispatch as on an AMX CPU: the gate asks for the tile state and runs the self-check */
    fnn_bf16_test_mode = 1;
    const char *note = fnn_bf16_note();
    n_checks++;
    if (note[0] != '\0')
        FAIL("the AMX gate fell back: %s", note);
    char why[200] = "";
    fnn_gemm_desc_bf16 broken = fnn_gemm_desc_amx;
    broken.ukr = broken_ukr;
    n_checks++;
    if (fnn_bf16_selfcheck(&broken, why, sizeof(why)) == 0)
        FAIL("the self-check passed a broken kernel");
    else if (strstr(why, "self-check case") == NULL)
        FAIL("self-check reason: '%s'", why);

    /* every shape through the packed kernel, the small ones the dispatcher would send to ref too */
    fnn_bf16_test_mode = 2;
    static const int64_t dims[] = {1, 2, 15, 16, 17, 31, 32, 33, 47};
    static const int64_t ks[] = {1, 2, 15, 31, 32, 33, 65};
    const int nd = (int)(sizeof(dims) / sizeof(dims[0])), nk = (int)(sizeof(ks) / sizeof(ks[0]));
    int idx = 0;
    for (int im = 0; im < nd; im++)
        for (int in = 0; in < nd; in++)
            for (int ik = 0; ik < nk; ik++, idx++) {
                if (quick && (idx % 3) != 0)
                    continue;
                /* cycle through transposes, stored types, epilogues and pads */
                const int t = idx % 4;
                int flags = (t & 1 ? FNN_TRANS_A : 0) | (t & 2 ? FNN_TRANS_B : 0);
                flags |= (idx / 4) % 3 == 1 ? FNN_A_BF16 : (idx / 4) % 3 == 2 ? FNN_B_BF16 : 0;
                flags |= idx % 5 == 0 ? FNN_EPI_RELU : 0;
                flags |= idx % 7 == 0 ? FNN_BIAS_ROW : 0;
                const float alpha = idx % 6 == 1 ? 0.5f : 1.0f, beta = idx % 4 == 3 ? -0.75f : 0.0f;
                check(flags, dims[im], dims[in], ks[ik], alpha, beta, idx % 3, idx % 2 == 0, 1);
            }
    /* larger than the blocks: two KC blocks (k > 512), MC (256) and NC (512) edges, odd sizes;
     * threads 1..3 bit-identical */
    for (int t = 0; t < 4; t++) {
        const int flags = (t & 1 ? FNN_TRANS_A : 0) | (t & 2 ? FNN_TRANS_B : 0);
        check(flags | FNN_EPI_RELU, 261, 97, 1031, 1.0f, 0.0f, 1, 1, 3);
        if (!quick || t == 0)
            check(flags | FNN_BIAS_ROW | FNN_A_BF16, 67, 530, 577, 0.5f, 0.25f, 2, 1, 3);
    }
    if (!quick)
        check(FNN_B_BF16, 300, 545, 1100, 1.0f, 1.0f, 0, 1, 2);
    /* the dispatcher's own routing (small shapes to ref) stays correct */
    fnn_bf16_test_mode = 1;
    check(0, 2, 100, 50, 1.0f, 0.0f, 0, 1, 2);
    check(FNN_TRANS_B, 40, 16, 50, 1.0f, 0.5f, 1, 1, 2);

    n_checks++;
    if (fnn_amx_emu_faults != 0)
        FAIL("%d tile operations without a tile configuration or with wrong shapes", fnn_amx_emu_faults);
    n_checks++;
    if (fnn_amx_emu_configured())
        FAIL("the calling thread still holds its tile configuration after the product");
    printf("amx (emulated) %s: %d checks, %d failures\n", n_fail ? "FAILED" : "ok", n_checks, n_fail);
    return n_fail != 0;
}
