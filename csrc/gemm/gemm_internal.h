/*
 * gemm_internal.h - private interface between the GEMM driver (csrc/gemm) and the
 * per-architecture microkernels (csrc/gemm/gemm_ref.c, csrc/x86/avx2, csrc/x86/avx512).
 *
 * This header is included by files compiled with different instruction-set flags.
 * It must therefore only declare things, or define `static inline` helpers: a
 * non-static inline function would be emitted once per file and the linker could keep
 * the AVX-512 copy for the generic code.
 */
#ifndef FASTNN_GEMM_INTERNAL_H
#define FASTNN_GEMM_INTERNAL_H

#include <stdint.h>
#include "../include/fastnn.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#define FNN_X86 1
#else
#define FNN_X86 0
#endif

/* Epilogue flags, set by the driver for each KC block of a tile. */
#define FNN_GEMM_E_BETA0 1   /* first KC block with beta == 0: write C without reading it */
#define FNN_GEMM_E_RELU 2    /* last KC block: max(0, .) after the bias */
#define FNN_GEMM_E_BIASROW 4 /* bias[i] per row of the tile (else bias[j] per column) */

/* The gathered-rows products (fnn_gemm_rows_*: the convolution's implicit im2col), float and
 * bf16 alike: whether the arguments are invalid (half_nr = the kernel's NR / 2, the most columns
 * of one vector), and the epilogue flags of their single pass (no beta, bias and ReLU). */
static inline int fnn_gemm_rows_bad(int flags, int64_t m, int64_t k, int half_nr, int nr0, int nr1, int64_t c2,
                                    const void *a, int64_t lda, const void *b, const int64_t *boff, const void *c)
{
    return (flags & ~(FNN_BIAS_ROW | FNN_EPI_RELU)) || m < 0 || k < 1 || nr0 < 1 || nr0 > half_nr || nr1 < 0 ||
           nr1 > half_nr || (nr1 > 0 && c2 < nr0) || !a || !b || !boff || !c || lda < k;
}

static inline int fnn_gemm_rows_epi_flags(int flags)
{
    return FNN_GEMM_E_BETA0 | ((flags & FNN_EPI_RELU) ? FNN_GEMM_E_RELU : 0) |
           ((flags & FNN_BIAS_ROW) ? FNN_GEMM_E_BIASROW : 0);
}

/* The microkernel contract.
 *   a: packed A micro-panel, k rows of MR values (op(A)[i, p] at a[p*MR + i]), zero padded;
 *   b: packed B micro-panel, k rows of NR values (op(B)[p, j] at b[p*NR + j]), zero padded;
 *   c: the C tile, row-major with leading dimension ldc; only mr x nr of it is valid
 *      (1 <= mr <= MR, 1 <= nr <= NR) and only that part may be read or written.
 *   C = act(alpha * a b + beta * C + bias), where beta is read only without E_BETA0,
 *   bias (NULL for none) is already offset to the tile, and act is ReLU with E_RELU.
 * The arithmetic applied to one element must not depend on mr, nr or the tile position,
 * so the result does not depend on how threads partition C. */
typedef struct {
    float alpha, beta;
    int flags;
} fnn_gemm_epi_f32;

typedef struct {
    double alpha, beta;
    int flags;
} fnn_gemm_epi_f64;

typedef void (*fnn_gemm_ukr_f32)(int64_t k, const float *a, const float *b, float *c, int64_t ldc,
                                 int mr, int nr, const fnn_gemm_epi_f32 *epi, const float *bias);
typedef void (*fnn_gemm_ukr_f64)(int64_t k, const double *a, const double *b, double *c,
                                 int64_t ldc, int mr, int nr, const fnn_gemm_epi_f64 *epi,
                                 const double *bias);

/* Optional direct kernel for small m with B not transposed: the same computation with a and
 * b read in place, op(A)[i, p] at a[i*a_rs + p*a_cs] and op(B)[p, j] at b[p*ldb + j], whole
 * k in one pass, mr <= MR rows; nothing is packed (B is used only once when m <= MR). */
typedef void (*fnn_gemm_ukd_f32)(int64_t k, const float *a, int64_t a_rs, int64_t a_cs, const float *b,
                                 int64_t ldb, float *c, int64_t ldc, int mr, int nr,
                                 const fnn_gemm_epi_f32 *epi, const float *bias);
typedef void (*fnn_gemm_ukd_f64)(int64_t k, const double *a, int64_t a_rs, int64_t a_cs, const double *b,
                                 int64_t ldb, double *c, int64_t ldc, int mr, int nr,
                                 const fnn_gemm_epi_f64 *epi, const double *bias);

/* Optional dot-product kernel for C = A B^T with neither operand packed: op(A)[i, p] at
 * a[i*lda + p], op(B)[p, j] at b[j*ldb + p] (rows of both are k contiguous values), a tile of
 * mr x nr <= dt_m x dt_n elements, whole k in one pass. For small m x n over a long k. */
typedef void (*fnn_gemm_ukt_f32)(int64_t k, const float *a, int64_t lda, const float *b, int64_t ldb, float *c,
                                 int64_t ldc, int mr, int nr, const fnn_gemm_epi_f32 *epi, const float *bias);
typedef void (*fnn_gemm_ukt_f64)(int64_t k, const double *a, int64_t lda, const double *b, int64_t ldb,
                                 double *c, int64_t ldc, int mr, int nr, const fnn_gemm_epi_f64 *epi,
                                 const double *bias);

/* Optional gathered-rows kernel: the direct kernel's computation for up to two vectors of
 * columns, with op(B)[p, j] at b[boff[p] + j] (j < nr0, to c[i*ldc + j]) and
 * b[boff[p] + b2 + j] (j < nr1, to c[i*ldc + c2 + j]); nr0, nr1 <= NR / 2. A convolution's
 * B operand read straight from the padded image (an implicit im2col), one or two output rows
 * of it per call. All of b between the smallest and the largest value the call reads may be read
 * (the offsets index one array; AVX2 reads partial vectors with whole loads inside that span). */
typedef void (*fnn_gemm_ukg_f32)(int64_t k, const float *a, int64_t a_rs, int64_t a_cs, const float *b,
                                 const int64_t *boff, int64_t b2, float *c, int64_t ldc, int64_t c2, int mr,
                                 int nr0, int nr1, const fnn_gemm_epi_f32 *epi, const float *bias);
typedef void (*fnn_gemm_ukg_f64)(int64_t k, const double *a, int64_t a_rs, int64_t a_cs, const double *b,
                                 const int64_t *boff, int64_t b2, double *c, int64_t ldc, int64_t c2, int mr,
                                 int nr0, int nr1, const fnn_gemm_epi_f64 *epi, const double *bias);

/* Packing routines (optional per variant; NULL selects the portable ones).
 * Pack a w x kc block (w <= W) of a matrix into one zero-padded panel dst[p*W + i]:
 *   copy:  element (i, p) at src[p*ld + i]   (rows of the panel are contiguous in memory)
 *   trans: element (i, p) at src[i*ld + p]   (the panel is a transpose of the source)
 * W is MR for A panels and NR for B panels. */
typedef void (*fnn_gemm_pack_f32)(int64_t w, int64_t kc, const float *src, int64_t ld, float *dst);
typedef void (*fnn_gemm_pack_f64)(int64_t w, int64_t kc, const double *src, int64_t ld, double *dst);

/* One kernel variant: register tile MR x NR and the cache blocking around it.
 * kc: depth of one packed block (A micro-panel MR x kc lives in L1);
 * nc: columns of the packed B block (kc x nc lives in L2);
 * mc: rows of A packed at a time (packed just before use, so it is still in L1/L2). */
typedef struct {
    int mr, nr;
    int64_t mc, kc, nc;
    fnn_gemm_ukr_f32 ukr;
    fnn_gemm_pack_f32 pack_a_copy, pack_a_trans; /* W = mr */
    fnn_gemm_pack_f32 pack_b_copy, pack_b_trans; /* W = nr */
    fnn_gemm_ukd_f32 ukd;                        /* NULL: always pack */
    int nr_wide;                                 /* ukd accepts nr <= nr_wide when mr <= 2 */
    fnn_gemm_ukt_f32 ukt;                        /* NULL: no dot-product path */
    int dt_m, dt_n;                              /* ukt tile: dt_m x dt_n */
    fnn_gemm_ukg_f32 ukg;                        /* NULL: no gathered-rows path */
    int nr_wide1;                                /* ukd accepts nr <= nr_wide1 when mr == 1 */
    /* When the implicit forward convolution takes ukg (fnn_gemm_rows_take_*): k of at least
     * rows_min_k taps, and with rows_vs_wide only where a row of ow outputs takes fewer kernel
     * lanes than the wide columns' ow + kw - 1 (0, 0: wherever there is a ukg). */
    int rows_min_k, rows_vs_wide;
    int64_t dot_min_k; /* ukt only from this k (and the driver's FNN_GEMM_DOT_MIN_K) */
} fnn_gemm_desc_f32;

typedef struct {
    int mr, nr;
    int64_t mc, kc, nc;
    fnn_gemm_ukr_f64 ukr;
    fnn_gemm_pack_f64 pack_a_copy, pack_a_trans;
    fnn_gemm_pack_f64 pack_b_copy, pack_b_trans;
    fnn_gemm_ukd_f64 ukd;
    int nr_wide;
    fnn_gemm_ukt_f64 ukt;
    int dt_m, dt_n;
    fnn_gemm_ukg_f64 ukg;
    int nr_wide1;
    int rows_min_k, rows_vs_wide;
    int64_t dot_min_k;
} fnn_gemm_desc_f64;

extern const fnn_gemm_desc_f32 fnn_gemm_desc_ref_f32;
extern const fnn_gemm_desc_f64 fnn_gemm_desc_ref_f64;
#if FNN_X86
extern const fnn_gemm_desc_f32 fnn_gemm_desc_avx2_f32;
extern const fnn_gemm_desc_f64 fnn_gemm_desc_avx2_f64;
extern const fnn_gemm_desc_f32 fnn_gemm_desc_avx512_f32;
extern const fnn_gemm_desc_f64 fnn_gemm_desc_avx512_f64;
#endif

#endif /* FASTNN_GEMM_INTERNAL_H */
