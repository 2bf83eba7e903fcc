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

#if FNN_X86
extern const fnn_gemm_desc_bf16 fnn_gemm_desc_avx512bf16;
/* The AMX kernel's interface (a csrc/x86/amx folder, which setup.py would build with -mamx-tile
 * -mamx-bf16 and which defines FNN_HAVE_AMX): not written yet, so nothing uses these. */
extern const fnn_gemm_desc_bf16 fnn_gemm_desc_amx;
/* 1 when this thread may use AMX tiles (asks the kernel once per process), else 0. */
int fnn_amx_request(void);
#endif

#endif /* FASTNN_GEMM_BF16_INTERNAL_H */
