/*
 * gemm_ref.c - the portable GEMM microkernels (no instruction-set flags beyond the
 * compiler's baseline). Used for FASTNN_ARCH=generic and on CPUs without AVX2.
 */
#include "gemm_internal.h"

/* float: 6 x 8 tile = 12 SSE2 accumulators. */
#define FNN_T float
#define FNN_EPI fnn_gemm_epi_f32
#define FNN_MR 6
#define FNN_NR 8
#define FNN_NAME(x) x##_f32
#include "gemm_ref_tmpl.h"
#undef FNN_T
#undef FNN_EPI
#undef FNN_MR
#undef FNN_NR
#undef FNN_NAME

/* double: 6 x 4 tile = 12 SSE2 accumulators. */
#define FNN_T double
#define FNN_EPI fnn_gemm_epi_f64
#define FNN_MR 6
#define FNN_NR 4
#define FNN_NAME(x) x##_f64
#include "gemm_ref_tmpl.h"
#undef FNN_T
#undef FNN_EPI
#undef FNN_MR
#undef FNN_NR
#undef FNN_NAME

/* kc: the 6 x kc A micro-panel (6 KiB at kc = 256 floats) stays in a 32 KiB L1 next to the
 * streamed B micro-panels; nc: the kc x nc B block (512 KiB) stays in a 1 MiB L2. */
const fnn_gemm_desc_f32 fnn_gemm_desc_ref_f32 = {
    6, 8, 120, 256, 512, ukr_ref_f32, 0, 0, 0, 0, 0, 0,
};
const fnn_gemm_desc_f64 fnn_gemm_desc_ref_f64 = {
    6, 4, 120, 256, 256, ukr_ref_f64, 0, 0, 0, 0, 0, 0,
};
