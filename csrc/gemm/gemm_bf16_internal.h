/*
 * gemm_bf16_internal.h - private interface between the bf16 GEMM driver (csrc/gemm/gemm_bf16.c)
 * and its kernels (csrc/x86/avx512bf16, csrc/x86/amx). Included by files compiled with different
 * instruction-set flags: declarations and `static inline` helpers only (see gemm_internal.h).
 */
#ifndef FASTNN_GEMM_BF16_INTERNAL_H
#define FASTNN_GEMM_BF16_INTERNAL_H

#include <stdint.h>
#include <string.h>
#include "gemm_internal.h"

/* Round to nearest even; NaN stays a (quiet) NaN, overflow goes to infinity. */
static inline uint16_t fnn_bf16_from_f32(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    /* branch-free, so that conversion loops vectorise */
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t quiet = (u >> 16) | 0x40u;
    return (uint16_t)(((u & 0x7fffffffu) > 0x7f800000u) ? quiet : rounded);
}

static inline float fnn_bf16_to_float(uint16_t h)
{
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

/* Packed operands are k-pairs (the VNNI layout of VDPBF16PS and TDPBF16PS): a panel of W rows
 * (A) or columns (B) over kc values of k is ceil(kc/2) rows of W uint32_t, dst[q*W + i] holding
 * element (i, 2q) in its low half and (i, 2q+1) in its high half; rows i >= w and the odd
 * k's missing partner are zero.
 *   copy:  element (i, p) at src[p*ld + i]   (the panel's rows are contiguous in memory)
 *   trans: element (i, p) at src[i*ld + p]
 * src_bf16: the source holds bf16 (uint16_t) instead of float. */
typedef void (*fnn_bf16_pack_fn)(int W, int64_t w, int64_t kc, int src_bf16, const void *src, int64_t ld,
                                 uint32_t *dst);

/* The microkernel: C tile (mr x nr valid of MR x NR, leading dimension ldc) =
 * act(alpha * a b + beta * C + bias) over kq k-pairs, with the epilogue flags of gemm_internal.h
 * (fnn_gemm_epi_f32). As for the float32 kernels, the arithmetic of one element must not depend on
 * mr, nr or the tile position. */
typedef void (*fnn_bf16_ukr_fn)(int64_t kq, const uint32_t *a, const uint32_t *b, float *c, int64_t ldc, int mr,
                                int nr, const fnn_gemm_epi_f32 *epi, const float *bias);

/* Optional gathered-rows kernel (the convolution's implicit im2col, fnn_gemm_rows_bf16): the
 * microkernel's computation over kq pairs with A rows read in place (pair q of row i at
 * a[i*a_rs + q]) and B pairs at b[boff[q] + j] (j < nr0) and b[boff[q] + b2 + j] (j < nr1, stored
 * at c + c2); nr0, nr1 <= NR / 2. */
typedef void (*fnn_bf16_ukg_fn)(int64_t kq, const uint32_t *a, int64_t a_rs, const uint32_t *b,
                                const int64_t *boff, int64_t b2, float *c, int64_t ldc, int64_t c2, int mr, int nr0,
                                int nr1, const fnn_gemm_epi_f32 *epi, const float *bias);

typedef struct {
    int mr, nr;
    int64_t mc, kc, nc; /* kc: k values (even) of one packed block */
    fnn_bf16_ukr_fn ukr;
    fnn_bf16_pack_fn pack_copy, pack_trans;
    /* Called once per thread before its first tile (AMX: the tile configuration); may be NULL. */
    void (*thread_init)(void);
    /* Called once per thread after its last tile of a product (AMX: release the tiles, so that a
     * context switch does not save 8 KiB of tile data); may be NULL. */
    void (*thread_fini)(void);
    /* A kernel whose A operand wants another layout than its B panels (AMX: row-major pairs per
     * tile): the A packers, W = mr. NULL: pack_copy / pack_trans, as for B. */
    fnn_bf16_pack_fn pack_a_copy, pack_a_trans;
    /* k values per step of the kernel (0 means 2, one pair; AMX: 32, one 64-byte tile row): the
     * KC blocks are multiples of it, and a panel over kc values holds ceil(kc / k_align) *
     * k_align / 2 pairs, the packers zeroing those past the data. */
    int k_align;
    /* Vectorised conversions of n values (may be NULL): convert y[i] = fnn_bf16_from_f32(x[i])
     * (y uint16_t), round y[i] = fnn_bf16_to_float(fnn_bf16_from_f32(x[i])) (y float). */
    void (*convert)(int64_t n, const float *x, void *y);
    void (*round)(int64_t n, const float *x, void *y);
    fnn_bf16_ukg_fn ukg; /* NULL: no gathered-rows path */
} fnn_gemm_desc_bf16;

/* The portable packers (csrc/gemm/gemm_bf16.c), the fallback for layouts a kernel file does not
 * pack itself. */
void fnn_bf16_pack_copy_ref(int W, int64_t w, int64_t kc, int src_bf16, const void *src, int64_t ld,
                            uint32_t *dst);
void fnn_bf16_pack_trans_ref(int W, int64_t w, int64_t kc, int src_bf16, const void *src, int64_t ld,
                             uint32_t *dst);

/* k values per kernel step and the pairs a panel over kc values holds (see k_align). */
static inline int64_t fnn_bf16_k_align(const fnn_gemm_desc_bf16 *d)
{
    return d->k_align > 2 ? d->k_align : 2;
}

static inline int64_t fnn_bf16_panel_pairs(int64_t kc, int64_t k_align)
{
    return (kc + k_align - 1) / k_align * k_align / 2;
}

/* The float64 reference of one element of fnn_gemm_bf16 on operands already rounded (a16, b16 as
 * bf16 bits; flags as fnn_gemm_bf16's, c0 the C element before, bias NULL for none) and the bound
 * of a float32 accumulation of it: 1 when got is within (k + 4) 2^-24 of the sum of magnitudes, else
 * 0 with the reference in *want. For the self-check below and the C harness. */
static inline int fnn_bf16_elem_ok(float got, int flags, int64_t i, int64_t j, int64_t k, double alpha, double beta,
                                   const uint16_t *a16, int64_t lda, const uint16_t *b16, int64_t ldb, float c0,
                                   const float *bias, double *want)
{
    const int ta = (flags & FNN_TRANS_A) != 0, tb = (flags & FNN_TRANS_B) != 0;
    double sum = 0, mag = 0;
    for (int64_t p = 0; p < k; p++) {
        const double x = fnn_bf16_to_float(a16[ta ? p * lda + i : i * lda + p]);
        const double y = fnn_bf16_to_float(b16[tb ? j * ldb + p : p * ldb + j]);
        sum += x * y;
        mag += (x * y < 0) ? -(x * y) : x * y;
    }
    double r = alpha * sum, scale = (alpha < 0 ? -alpha : alpha) * mag;
    if (beta != 0) {
        const double bc = beta * (double)c0;
        r += bc;
        scale += bc < 0 ? -bc : bc;
    }
    if (bias != NULL) {
        const double bv = (flags & FNN_BIAS_ROW) ? bias[i] : bias[j];
        r += bv;
        scale += bv < 0 ? -bv : bv;
    }
    if ((flags & FNN_EPI_RELU) && r < 0)
        r = 0;
    *want = r;
    const double err = (double)got - r;
    return (err < 0 ? -err : err) <= (double)(k + 4) * 0x1p-24 * scale + 1e-300;
}

/* Checks kernel d on a few edge shapes against a float64 product of the rounded operands
 * (csrc/gemm/gemm_bf16.c): 0 when all agree to the float32 bound, else nonzero with the first
 * mismatch described in why. For a kernel that could not be run before it shipped (AMX). */
int fnn_bf16_selfcheck(const fnn_gemm_desc_bf16 *d, char *why, size_t why_len);

#if FNN_X86
extern const fnn_gemm_desc_bf16 fnn_gemm_desc_avx512bf16;
/* The AMX kernel (csrc/x86/amx, built by setup.py with -mamx-tile -mamx-bf16 where the compiler
 * has them, which defines FNN_HAVE_AMX). */
extern const fnn_gemm_desc_bf16 fnn_gemm_desc_amx;
/* 1 when this process may use AMX tiles (asks the kernel once per process, thread-safe), else 0. */
int fnn_amx_request(void);
/* errno of the refused request (0 when granted). */
int fnn_amx_request_errno(void);
#endif

#endif /* FASTNN_GEMM_BF16_INTERNAL_H */
