/* 2-D convolution (im2col + GEMM); included once per type by conv.c, which defines the plan, and
 * once more as float with FNN_CONV_BF16: the "mixed_bfloat16" convolution, whose products go
 * through fnn_gemm_bf16 (operands rounded to bf16 while packed, float32 sums), names suffixed _bf16. */
#include "tmpl_types.h"
#ifdef FNN_CONV_BF16
#undef FNN_
#define FNN_(name) name##_bf16
#endif

#undef FNN_CONV_GEMM
#undef FNN_CW_PICK
#undef FNN_col2im_wide
#undef FNN_rows_wide
#undef FNN_wide_to_y
#undef FNN_dy_to_wide
#undef FNN_dy_rows
#undef FNN_rows_real
#undef FNN_pad_pairs
#undef FNN_CONV_U
#undef FNN_CONV_ROWS
#undef FNN_CONV_ROWS_WIDTH
#undef FNN_CONV_ROWS_TAKE
#ifdef FNN_DOUBLE
#define FNN_CONV_GEMM fnn_gemm_f64
#define FNN_CONV_ROWS fnn_gemm_rows_f64
#define FNN_CONV_ROWS_WIDTH fnn_gemm_rows_width_f64
#define FNN_CONV_ROWS_TAKE fnn_gemm_rows_take_f64
#define FNN_CONV_U uint64_t
#elif defined(FNN_CONV_BF16)
#define FNN_CONV_GEMM fnn_gemm_bf16
/* the implicit paths read bf16 pairs (fnn_conv_pack_pairs, pad_pairs) kept in the float buffers */
#define FNN_CONV_ROWS fnn_conv_rows_bf16
#define FNN_CONV_ROWS_WIDTH fnn_gemm_rows_width_bf16
#define FNN_CONV_ROWS_TAKE(ow, wp, k) (fnn_gemm_rows_width_bf16() > 0)
#define FNN_CONV_U uint32_t
#else
#define FNN_CONV_GEMM fnn_gemm_f32
#define FNN_CONV_ROWS fnn_gemm_rows_f32
#define FNN_CONV_ROWS_WIDTH fnn_gemm_rows_width_f32
#define FNN_CONV_ROWS_TAKE fnn_gemm_rows_take_f32
#define FNN_CONV_U uint32_t
#endif

/* g where m > 0, else 0, through a bit mask: on real data the test is a coin flip, and rows are
 * short (14 values), so a branch in the loop's scalar tail would be mispredicted half the time. */
static inline FNN_T FNN_(relu_mask)(FNN_T m, FNN_T g) {
    FNN_CONV_U bits, mask = (FNN_CONV_U)0 - (FNN_CONV_U)(m > 0);
    memcpy(&bits, &g, sizeof bits);
    bits &= mask;
    memcpy(&g, &bits, sizeof g);
    return g;
}

/* d[0, n) = src[0, n) for a short row (src and d do not overlap). */
static inline void FNN_(copy_row)(FNN_T *restrict d, const FNN_T *restrict src, int64_t n) {
#if FNN_CONV_SSE2
    const int64_t V = 16 / (int64_t)sizeof(FNN_T);
    if (n >= V) {
        int64_t j = 0;
        for (; j + V <= n; j += V) _mm_storeu_si128((__m128i *)(d + j), _mm_loadu_si128((const __m128i *)(src + j)));
        if (j < n) _mm_storeu_si128((__m128i *)(d + n - V), _mm_loadu_si128((const __m128i *)(src + n - V)));
        return;
    }
#endif
    for (int64_t j = 0; j < n; j++) d[j] = src[j];
}

/* d[0, n) = g where m > 0, else 0 (the ReLU backward mask), for a short row. */
static inline void FNN_(mask_row)(FNN_T *restrict d, const FNN_T *restrict g, const FNN_T *restrict m, int64_t n) {
#if FNN_CONV_SSE2
#ifdef FNN_DOUBLE
    if (n >= 2) {
        int64_t j = 0;
        for (; j + 2 <= n; j += 2)
            _mm_storeu_pd(d + j, _mm_and_pd(_mm_cmpgt_pd(_mm_loadu_pd(m + j), _mm_setzero_pd()), _mm_loadu_pd(g + j)));
        if (j < n)
            _mm_storeu_pd(d + n - 2,
                          _mm_and_pd(_mm_cmpgt_pd(_mm_loadu_pd(m + n - 2), _mm_setzero_pd()), _mm_loadu_pd(g + n - 2)));
        return;
    }
#else
    if (n >= 4) {
        int64_t j = 0;
        for (; j + 4 <= n; j += 4)
            _mm_storeu_ps(d + j, _mm_and_ps(_mm_cmpgt_ps(_mm_loadu_ps(m + j), _mm_setzero_ps()), _mm_loadu_ps(g + j)));
        if (j < n)
            _mm_storeu_ps(d + n - 4,
                          _mm_and_ps(_mm_cmpgt_ps(_mm_loadu_ps(m + n - 4), _mm_setzero_ps()), _mm_loadu_ps(g + n - 4)));
        return;
    }
#endif
#endif
    for (int64_t j = 0; j < n; j++) d[j] = FNN_(relu_mask)(m[j], g[j]);
}

/* Columns of output rows [i0, i1) of one image xi (c, h, w): row (ci, u, v) of cols holds
 * x[ci, i*sh + u - pad_t, j*sw + v - pad_l] for the tile's outputs (i, j) in row-major order,
 * zero where that falls in the padding. Row segments are copied whole (strided for sw > 1). */
FNN_SHORT_COPIES static void FNN_(im2col)(const fnn_conv2d_shape *s, const fnn_conv_plan *p,
                                          const FNN_T *restrict xi, int64_t i0, int64_t i1, FNN_T *restrict cols) {
    const int64_t ow = p->ow, t = (i1 - i0) * ow, h = s->h, w = s->w, sw = s->sw;
    for (int64_t ci = 0; ci < s->c; ci++)
        for (int64_t u = 0; u < s->kh; u++)
            for (int64_t v = 0; v < s->kw; v++) {
                FNN_T *dst = cols + ((ci * s->kh + u) * s->kw + v) * t;
                int64_t j0, j1;
                fnn_conv_valid_cols(s, ow, v, &j0, &j1);
                for (int64_t i = i0; i < i1; i++, dst += ow) {
                    const int64_t ih = i * s->sh - s->pad_t + u;
                    if (ih < 0 || ih >= h || j0 == j1) {
                        for (int64_t j = 0; j < ow; j++) dst[j] = 0;
                        continue;
                    }
                    const FNN_T *src = xi + (ci * h + ih) * w + (j0 * sw - s->pad_l + v);
                    for (int64_t j = 0; j < j0; j++) dst[j] = 0;
                    if (sw == 1)
                        FNN_(copy_row)(dst + j0, src, j1 - j0);
                    else
                        for (int64_t j = j0; j < j1; j++) dst[j] = src[(j - j0) * sw];
                    for (int64_t j = j1; j < ow; j++) dst[j] = 0;
                }
            }
}

/* The columns of output rows [i0, i1) of one image transposed, for the weight gradient: row
 * (i - i0) * ow + j of rows (ckk values) is the patch of output (i, j), x[ci, i*sh + u - pad_t,
 * j*sw + v - pad_l] at (ci*kh + u)*kw + v, zero in the padding. The weight gradient g rows^T is
 * then a product with B untransposed (the direct GEMM kernel reads it in place) instead of a
 * product with im2col's columns transposed: for a first layer (ckk = 27, f = 32, 1024 pixels)
 * 22 instead of 50 us on one core, with the patch copies costing less than the difference. */
FNN_SHORT_COPIES static void FNN_(im2row)(const fnn_conv2d_shape *s, const fnn_conv_plan *p,
                                          const FNN_T *restrict xi, int64_t i0, int64_t i1, FNN_T *restrict rows) {
    const int64_t ow = p->ow, ckk = p->ckk, h = s->h, w = s->w, sw = s->sw, kw = s->kw;
    for (int64_t i = i0; i < i1; i++) {
        FNN_T *dst_i = rows + (i - i0) * ow * ckk;
        for (int64_t ci = 0; ci < s->c; ci++)
            for (int64_t u = 0; u < s->kh; u++) {
                const int64_t ih = i * s->sh - s->pad_t + u;
                FNN_T *d = dst_i + (ci * s->kh + u) * kw;
                if (ih < 0 || ih >= h) {
                    for (int64_t j = 0; j < ow; j++)
                        for (int64_t v = 0; v < kw; v++) d[j * ckk + v] = 0;
                    continue;
                }
                const FNN_T *src = xi + (ci * h + ih) * w;
                for (int64_t v = 0; v < kw; v++) {
                    int64_t j0, j1;
                    fnn_conv_valid_cols(s, ow, v, &j0, &j1);
                    const int64_t off = v - s->pad_l;
                    for (int64_t j = 0; j < j0; j++) d[j * ckk + v] = 0;
                    for (int64_t j = j0; j < j1; j++) d[j * ckk + v] = src[j * sw + off];
                    for (int64_t j = j1; j < ow; j++) d[j * ckk + v] = 0;
                }
            }
    }
}

/* The adjoint of im2col: xi[ci, i*sh + u - pad_t, j*sw + v - pad_l] += cols[(ci, u, v), (i, j)]
 * over the tile, in a fixed order (the padding part is dropped). */
static void FNN_(col2im)(const fnn_conv2d_shape *s, const fnn_conv_plan *p, const FNN_T *restrict cols, int64_t i0,
                         int64_t i1, FNN_T *restrict xi) {
    const int64_t ow = p->ow, t = (i1 - i0) * ow, h = s->h, w = s->w, sw = s->sw;
    for (int64_t ci = 0; ci < s->c; ci++)
        for (int64_t u = 0; u < s->kh; u++)
            for (int64_t v = 0; v < s->kw; v++) {
                const FNN_T *src = cols + ((ci * s->kh + u) * s->kw + v) * t;
                int64_t j0, j1;
                fnn_conv_valid_cols(s, ow, v, &j0, &j1);
                if (j0 == j1) continue;
                for (int64_t i = i0; i < i1; i++, src += ow) {
                    const int64_t ih = i * s->sh - s->pad_t + u;
                    if (ih < 0 || ih >= h) continue;
                    FNN_T *dst = xi + (ci * h + ih) * w + (j0 * sw - s->pad_l + v);
                    if (sw == 1)
                        for (int64_t j = j0; j < j1; j++) dst[j - j0] += src[j];
                    else
                        for (int64_t j = j0; j < j1; j++) dst[(j - j0) * sw] += src[j];
                }
            }
}

/* Sum of n values in a fixed order that still vectorises: 16 interleaved partial sums, then a
 * fixed pairwise combination. */
static FNN_T FNN_(conv_sum)(const FNN_T *restrict v, int64_t n) {
    FNN_T acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) acc[l] += v[i + l];
    for (int l = 0; i + l < n; l++) acc[l] += v[i + l];
    for (int width = 8; width > 0; width /= 2)
        for (int l = 0; l < width; l++) acc[l] += acc[l + width];
    return acc[0];
}

/* ---- WIDE mode (stride 1): rows of the columns are contiguous runs of the padded planes ---- */

/* xp (c, hp, wp) = xi (c, h, w) surrounded by zeros; with mi, xi where mi > 0, else 0 (the
 * ReLU backward mask, when the image is an output gradient). */
FNN_SHORT_COPIES static void FNN_(pad_image_masked)(const fnn_conv2d_shape *s, const fnn_conv_plan *p,
                                                    const FNN_T *restrict xi, const FNN_T *restrict mi,
                                                    FNN_T *restrict xp) {
    const int64_t wp = p->wp, h = s->h, w = s->w;
    for (int64_t ci = 0; ci < s->c; ci++) {
        FNN_T *d = xp + ci * p->hp * wp;
        const FNN_T *src = xi + ci * h * w;
        memset(d, 0, (size_t)(s->pad_t * wp) * sizeof(FNN_T));
        d += s->pad_t * wp;
        for (int64_t r = 0; r < h; r++, d += wp) {
            for (int64_t j = 0; j < s->pad_l; j++) d[j] = 0;
            if (mi)
                FNN_(mask_row)(d + s->pad_l, src + r * w, mi + ci * h * w + r * w, w);
            else
                FNN_(copy_row)(d + s->pad_l, src + r * w, w);
            for (int64_t j = s->pad_l + w; j < wp; j++) d[j] = 0;
        }
        memset(d, 0, (size_t)(s->pad_b * wp) * sizeof(FNN_T));
    }
}

static void FNN_(pad_image)(const fnn_conv2d_shape *s, const fnn_conv_plan *p, const FNN_T *restrict xi,
                            FNN_T *restrict xp) {
    FNN_(pad_image_masked)(s, p, xi, NULL, xp);
}

/* dxi (c, h, w) = the interior of dxp (c, hp, wp). */
FNN_SHORT_COPIES static void FNN_(crop_image)(const fnn_conv2d_shape *s, const fnn_conv_plan *p,
                                              const FNN_T *restrict dxp, FNN_T *restrict dxi) {
    for (int64_t ci = 0; ci < s->c; ci++)
        for (int64_t r = 0; r < s->h; r++) {
            FNN_(copy_row)(dxi + (ci * s->h + r) * s->w, dxp + (ci * p->hp + r + s->pad_t) * p->wp + s->pad_l, s->w);
        }
}

/* Wide columns of output rows [i0, i1) from the padded image xs: row (ci, u, v) of cols (leading
 * dimension ld) is the run of (i1 - i0) * wp values of plane ci from (i0 + u, v). The run is cut
 * where the last output row's real columns end (it would leave the plane), the rest zeroed. */
static void FNN_(im2col_wide)(const fnn_conv2d_shape *s, const fnn_conv_plan *p, const FNN_T *restrict xs,
                              int64_t i0, int64_t i1, FNN_T *restrict cols, int64_t ld) {
    const int64_t wp = p->wp, plane = p->hp * wp, n = (i1 - i0) * wp, len = n - wp + p->ow;
    for (int64_t ci = 0; ci < s->c; ci++)
        for (int64_t u = 0; u < s->kh; u++)
            for (int64_t v = 0; v < s->kw; v++) {
                const FNN_T *src = xs + ci * plane + (i0 + u) * wp + v;
                FNN_T *dst = cols + ((ci * s->kh + u) * s->kw + v) * ld;
                memcpy(dst, src, (size_t)len * sizeof(FNN_T));
                for (int64_t q = len; q < n; q++) dst[q] = 0;
            }
}

/* The image xi (c, h, w) as padded pixel rows: xr[(r*wp + q)*c + ci] = xpad[ci, r, q], with
 * kw zero pixels past the plane (the last wide columns' taps reach hp*wp + kw - 2). */
FNN_IMAGE_TO_ROWS(FNN_(image_to_rows), FNN_T, FNN_T, FNN_SAME_VALUE)

/* The wide-mode copies and col2im, compiled per instruction set (conv_wide_tmpl.h) and picked
 * at each call through fnn_arch_get (FNN_CW_PICK). */
#define FNN_CW_SUFFIX _generic
#define FNN_CW_TARGET
#define FNN_CW_PLAIN 0
#include "conv_wide_tmpl.h"
#undef FNN_CW_SUFFIX
#undef FNN_CW_TARGET
#undef FNN_CW_PLAIN
#if FNN_CONV_X86
#define FNN_CW_SUFFIX _avx512
#define FNN_CW_TARGET __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,prefer-vector-width=512")))
#define FNN_CW_PLAIN 1
#include "conv_wide_tmpl.h"
#undef FNN_CW_SUFFIX
#undef FNN_CW_TARGET
#undef FNN_CW_PLAIN
#endif

#if FNN_CONV_X86
#define FNN_CW_PICK(name) (fnn_arch_get() == FNN_ARCH_AVX512 ? FNN_CAT(FNN_(name), _avx512) : FNN_CAT(FNN_(name), _generic))
#else
#define FNN_CW_PICK(name) FNN_CAT(FNN_(name), _generic)
#endif
#define FNN_col2im_wide FNN_CW_PICK(col2im_wide)
#define FNN_rows_wide FNN_CW_PICK(rows_wide)
#define FNN_wide_to_y FNN_CW_PICK(wide_to_y)
#define FNN_dy_to_wide FNN_CW_PICK(dy_to_wide)
#define FNN_dy_rows FNN_CW_PICK(dy_rows)
#define FNN_rows_real FNN_CW_PICK(rows_real)
#undef FNN_pad_pairs
#define FNN_pad_pairs FNN_CW_PICK(pad_pairs)

/* ---- forward ---------------------------------------------------------------------------- */

typedef struct {
    FNN_T *xpad, *cols, *ybuf, *dxpad, *dwt, *dyp;
    int64_t padded_img; /* the image xpad holds (-1: none yet) */
} FNN_(conv_scratch);

static FNN_(conv_scratch) FNN_(scratch_at)(const fnn_conv_plan *p, FNN_T *base) {
    FNN_(conv_scratch) sc = {NULL, NULL, NULL, NULL, NULL, NULL, -1};
    if (!base) return sc;
    sc.xpad = base;
    sc.cols = sc.xpad + p->xpad_len;
    sc.ybuf = sc.cols + p->cols_len;
    sc.dxpad = sc.ybuf + p->ybuf_len;
    sc.dwt = sc.dxpad + p->dxpad_len;
    sc.dyp = sc.dwt + p->dwt_len;
    return sc;
}

/* Planes of the padded image the implicit kernel reads, and its k per filter: the channels, or for
 * bf16 the channel pairs (pad_pairs: channels 2p and 2p+1 of a pixel are one k-pair, so the
 * kernel loads pairs without shuffles; an odd channel count pairs the last one with zero). */
static inline int64_t FNN_(implicit_planes)(const fnn_conv2d_shape *s) {
#ifdef FNN_CONV_BF16
    return (s->c + 1) / 2;
#else
    return s->c;
#endif
}

static inline int64_t FNN_(implicit_k)(const fnn_conv2d_shape *s) {
    return FNN_(implicit_planes)(s) * s->kh * s->kw;
}

/* The padded image of the implicit path: xi (or, with mi, xi masked by mi > 0) in plain or pair planes. */
static void FNN_(pad_implicit)(const fnn_conv2d_shape *s, const fnn_conv_plan *p, const FNN_T *xi, const FNN_T *mi,
                               FNN_T *xp) {
#ifdef FNN_CONV_BF16
    FNN_pad_pairs(s, p, xi, mi, (uint32_t *)(void *)xp);
#else
    FNN_(pad_image_masked)(s, p, xi, mi, xp);
#endif
}

/* Whether the forward takes the implicit path: stride 1 where the CPU variant has the gathered-rows
 * kernel and takes it for this shape (FNN_CONV_ROWS_TAKE: on AVX2 only where it is faster), and the
 * workspace is aligned for its int64 offsets (every part of it starts a multiple of 16 elements
 * from ws, so ws's alignment decides). */
static inline int FNN_(fwd_implicit)(const fnn_conv2d_shape *s, const fnn_conv_plan *p, const FNN_T *ws) {
    return p->implicit_ok && FNN_CONV_ROWS_TAKE(p->ow, p->ow + s->kw - 1, FNN_(implicit_k)(s)) &&
           (uintptr_t)(const void *)ws % sizeof(int64_t) == 0;
}

/* One group of output columns of the implicit forward (see conv_fwd_implicit): nonzero on error. */
static int FNN_(conv_rows_group)(const fnn_conv2d_shape *s, const fnn_conv_plan *p, int gflags, const FNN_T *w,
                                 const FNN_T *b, const int64_t *boff, const FNN_T *xp, FNN_T *yi, int64_t i1,
                                 int64_t vw, int pairs, int64_t pieces, int64_t i0, int64_t g) {
    const int64_t wp = p->wp, ow = p->ow;
    const int64_t r = i0 + (g / pieces) * (pairs ? 2 : 1), j0 = (g % pieces) * 2 * vw;
    int64_t nr0, nr1, b2, c2;
    if (pairs) {
        nr0 = ow;
        nr1 = r + 1 < i1 ? ow : 0;
        b2 = wp;
        c2 = ow;
    } else {
        nr0 = ow - j0 < vw ? ow - j0 : vw;
        nr1 = ow - j0 - vw < 0 ? 0 : ow - j0 - vw < vw ? ow - j0 - vw : vw;
        b2 = c2 = vw;
    }
    const int64_t k = FNN_(implicit_k)(s);
    return FNN_CONV_ROWS(gflags, s->f, k, w, k, xp + r * wp + j0, boff, b2, (int)nr0, (int)nr1, b,
                         yi + r * ow + j0, p->hw, c2) != FNN_OK;
}

/* The implicit convolution (stride 1, where the CPU variant has the gathered-rows GEMM kernel,
 * whatever the thread count, so results do not depend on it): each image is padded once, and
 * tap (ci, u, v) of output row r is read in place at offset ci*plane + u*wp + v from padded row
 * r. Each kernel call computes every filter for one group of columns and stores it straight
 * into the output: two whole output rows when a row fits one vector (14 x 14 images: 14 of 16
 * lanes), else one row in pieces of up to two vectors. No column matrix, no wide columns
 * computed and dropped. The forward pass, and the input gradient as the convolution of the
 * padded output gradient with the flipped, transposed weights (conv_dx_shape).
 *
 * Output rows [i0, i1) of one image by the implicit GEMM from its padded planes xp (the
 * offsets boff of every tap computed by conv_tap_offsets): nonzero on error. */
static int FNN_(conv_implicit_rows)(const fnn_conv2d_shape *s, const fnn_conv_plan *p, int gflags, const FNN_T *w,
                                    const FNN_T *b, const int64_t *boff, const FNN_T *xp, FNN_T *yi, int64_t i0,
                                    int64_t i1, int nt) {
    const int64_t ow = p->ow, vw = FNN_CONV_ROWS_WIDTH();
    const int pairs = ow <= vw;                                 /* two output rows per call */
    const int64_t pieces = pairs ? 1 : (ow + 2 * vw - 1) / (2 * vw);
    const int64_t groups = (pairs ? (i1 - i0 + 1) / 2 : i1 - i0) * pieces;
    int bad = 0;
    FNN_PARALLEL_FOR_OR(nt, bad, g, groups,
                        bad |= FNN_(conv_rows_group)(s, p, gflags, w, b, boff, xp, yi, i1, vw, pairs, pieces, i0,
                                                     g););
    return bad;
}

/* boff[(ci, u, v)] = the offset of tap (ci, u, v) in the padded planes. */
static void FNN_(conv_tap_offsets)(const fnn_conv2d_shape *s, const fnn_conv_plan *p, int64_t *boff) {
    const int64_t wp = p->wp, plane = p->hp * wp;
    for (int64_t ci = 0; ci < FNN_(implicit_planes)(s); ci++)
        for (int64_t r = 0; r < s->kh; r++)
            for (int64_t v = 0; v < s->kw; v++) boff[(ci * s->kh + r) * s->kw + v] = ci * plane + r * wp + v;
}

static int FNN_(conv_fwd_implicit)(const fnn_conv2d_shape *s, const fnn_conv_plan *p, int gflags, const FNN_T *x,
                                   const FNN_T *w, const FNN_T *b, FNN_T *y, int64_t u, FNN_(conv_scratch) *sc,
                                   int nt) {
    const int64_t in_img = s->c * s->h * s->w, out_img = s->f * p->hw;
    int64_t *boff = (int64_t *)(void *)sc->cols;
    FNN_(conv_tap_offsets)(s, p, boff);
    int64_t a, e, i0 = 0, i1 = p->oh;
    if (p->tiles == 1) {
        a = u * p->nb;
        e = a + p->nb < s->n ? a + p->nb : s->n;
    } else {
        a = u / p->tiles;
        e = a + 1;
        i0 = (u % p->tiles) * p->rows;
        i1 = i0 + p->rows < p->oh ? i0 + p->rows : p->oh;
    }
    for (int64_t img = a; img < e; img++) {
        if (sc->padded_img != img) {
            FNN_(pad_implicit)(s, p, x + img * in_img, NULL, sc->xpad);
            sc->padded_img = img;
        }
        if (FNN_(conv_implicit_rows)(s, p, gflags, w, b, boff, sc->xpad, y + img * out_img, i0, i1, nt))
            return FNN_ERR_ARG;
    }
    return FNN_OK;
}

/* The input gradient of a stride-1 convolution as a forward one: of the output gradient (f
 * channels, oh x ow) padded by k - 1 - pad on each side, with the weights flipped and
 * transposed (c filters over f channels), giving (c, h, w). */
static int FNN_(conv_dx_shape)(const fnn_conv2d_shape *s, const fnn_conv_plan *p, fnn_conv2d_shape *s2,
                               fnn_conv_plan *p2) {
    const fnn_conv2d_shape t = {1, s->f, p->oh, p->ow, s->c, s->kh, s->kw, 1, 1, s->kh - 1 - s->pad_t,
                                s->kh - 1 - s->pad_b, s->kw - 1 - s->pad_l, s->kw - 1 - s->pad_r};
    *s2 = t;
    return fnn_conv_plan_make(0, s2, 1, p2);
}

/* dxi = the input gradient of one image by the implicit convolution (see conv_dx_shape): dyi
 * masked by yi > 0 (the ReLU, yi may be NULL) and padded into dyp, then the flipped weights wf. */
static int FNN_(conv_dx_implicit)(const fnn_conv2d_shape *s2, const fnn_conv_plan *p2, const FNN_T *wf,
                                  const int64_t *boff2, const FNN_T *dyi, const FNN_T *yi, FNN_T *dyp, FNN_T *dxi,
                                  int nt) {
    FNN_(pad_implicit)(s2, p2, dyi, yi, dyp);
    return FNN_(conv_implicit_rows)(s2, p2, 0, wf, NULL, boff2, dyp, dxi, 0, p2->oh, nt) ? FNN_ERR_ARG : FNN_OK;
}

/* Forward of unit u: the images [u*nb, u*nb + nb) whole when an image is one tile, else tile
 * u % tiles of image u / tiles. Units are fixed by the shape and batch size, never by the
 * thread count, so every GEMM has the same shape whatever the threads. */
static int FNN_(conv_fwd_unit)(const fnn_conv2d_shape *s, const fnn_conv_plan *p, int gflags, const FNN_T *x,
                               const FNN_T *w, const FNN_T *b, FNN_T *y, int64_t u, FNN_(conv_scratch) *sc, int nt) {
    const int64_t in_img = s->c * s->h * s->w, out_img = s->f * p->hw, ckk = p->ckk;
    /* (the column offsets are int64 values in the workspace: only where it is aligned for them) */
    if (FNN_(fwd_implicit)(s, p, sc->cols))
        return FNN_(conv_fwd_implicit)(s, p, gflags, x, w, b, y, u, sc, nt);
    if (p->tiles == 1 && p->nb > 1) {       /* WIDE: nb whole images side by side in one GEMM */
        const int64_t a = u * p->nb, e = a + p->nb < s->n ? a + p->nb : s->n;
        const int64_t seg = p->oh * p->wp, ld = (e - a) * seg;
        for (int64_t j = 0; j < e - a; j++) {
            const FNN_T *xs = x + (a + j) * in_img;
            if (p->padded) {
                FNN_(pad_image)(s, p, xs, sc->xpad);
                xs = sc->xpad;
            }
            FNN_(im2col_wide)(s, p, xs, 0, p->oh, sc->cols + j * seg, ld);
        }
        sc->padded_img = -1;
        int st = FNN_CONV_GEMM(gflags, s->f, ld, ckk, 1, 0, w, ckk, sc->cols, ld, b, sc->ybuf, ld, nt);
        if (st == FNN_OK)
            for (int64_t j = 0; j < e - a; j++)
                FNN_wide_to_y(s, p, sc->ybuf + j * seg, ld, 0, p->oh, y + (a + j) * out_img);
        return st;
    }
    const int64_t img = u / p->tiles, t = u % p->tiles;
    const int64_t i0 = t * p->rows, i1 = i0 + p->rows < p->oh ? i0 + p->rows : p->oh;
    const int64_t n = (i1 - i0) * p->pitch;
    const FNN_T *xi = x + img * in_img;
    FNN_T *yi = y + img * out_img;
    if (p->mode == FNN_CONV_DIRECT)
        return FNN_CONV_GEMM(gflags, s->f, n, ckk, 1, 0, w, ckk, xi + i0 * p->ow, p->hw, b, yi + i0 * p->ow, p->hw,
                             nt);
    if (p->mode == FNN_CONV_COLS) {
        FNN_(im2col)(s, p, xi, i0, i1, sc->cols);
        return FNN_CONV_GEMM(gflags, s->f, n, ckk, 1, 0, w, ckk, sc->cols, n, b, yi + i0 * p->ow, p->hw, nt);
    }
    const FNN_T *xs = xi;
    if (p->padded) {                         /* once per image for the tiles a thread takes */
        if (sc->padded_img != img) FNN_(pad_image)(s, p, xi, sc->xpad);
        sc->padded_img = img;
        xs = sc->xpad;
    }
    FNN_(im2col_wide)(s, p, xs, i0, i1, sc->cols, n);
    int st = FNN_CONV_GEMM(gflags, s->f, n, ckk, 1, 0, w, ckk, sc->cols, n, b, sc->ybuf, n, nt);
    if (st == FNN_OK) FNN_wide_to_y(s, p, sc->ybuf, n, i0, i1, yi);
    return st;
}

static int FNN_(conv2d_fwd)(int flags, const fnn_conv2d_shape *s, const FNN_T *x, const FNN_T *w, const FNN_T *b,
                            FNN_T *y, FNN_T *ws, int64_t ws_len, int nt) {
    fnn_conv_plan p;
    if (flags & ~FNN_EPI_RELU) return FNN_ERR_ARG;
    int status = fnn_conv_plan_make(0, s, nt, &p);
    if (status != FNN_OK) return status;
    if (s->n == 0) return FNN_OK;
    if (!x || !w || !y) return FNN_ERR_ARG;
    status = fnn_conv_plan_fit(&p, ws_len, ws != NULL);
    if (status != FNN_OK) return status;
    const int gflags = FNN_BIAS_ROW | (flags & FNN_EPI_RELU);
    const int64_t units = fnn_conv_fwd_units(s, &p);
    FNN_T *thr0 = ws ? ws + p.fixed_len : NULL;
#ifdef FNN_CONV_BF16
    if (FNN_(fwd_implicit)(s, &p, ws)) {     /* the weights as pairs, once per call (the plan's fixed part) */
        const int64_t kk = s->kh * s->kw;
        fnn_conv_pack_pairs(s->f, s->c, kk, w, s->c * kk, kk, 0, (uint32_t *)(void *)ws);
        w = ws;
    }
#endif
    if (p.outer <= 1) {
        FNN_(conv_scratch) sc = FNN_(scratch_at)(&p, p.thr_len ? thr0 : NULL);
        const int gnt = fnn_conv_gemm_threads(s, &p, nt);
        for (int64_t u = 0; u < units && status == FNN_OK; u++)
            status = FNN_(conv_fwd_unit)(s, &p, gflags, x, w, b, y, u, &sc, gnt);
        return status;
    }
#pragma omp parallel num_threads(p.outer)
    {
        int tid = 0, nth = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nth = omp_get_num_threads();
#endif
        FNN_(conv_scratch) sc = FNN_(scratch_at)(&p, p.thr_len ? thr0 + tid * p.thr_len : NULL);
        int mine = FNN_OK;
        for (int64_t u = units * tid / nth; u < units * (tid + 1) / nth && mine == FNN_OK; u++)
            mine = FNN_(conv_fwd_unit)(s, &p, gflags, x, w, b, y, u, &sc, 1);
        if (mine != FNN_OK) {
#pragma omp critical(fnn_conv_status)
            status = mine;
        }
    }
    return status;
}

/* ---- backward --------------------------------------------------------------------------- */

/* Input gradient of a whole image from its wide dcols (leading dim ld): through the padded
 * scratch plane when padded, else straight into dxi. */
static void FNN_(wide_dx_image)(const fnn_conv2d_shape *s, const fnn_conv_plan *p, const FNN_T *dcols, int64_t ld,
                                FNN_T *dxi, FNN_T *dxpad) {
    FNN_T *dxs = p->padded ? dxpad : dxi;
    memset(dxs, 0, (size_t)(p->padded ? s->c * p->hp * p->wp : s->c * s->h * s->w) * sizeof(FNN_T));
    FNN_col2im_wide(s, p, dcols, ld, 0, p->oh, dxs);
    if (p->padded) FNN_(crop_image)(s, p, dxpad, dxi);
}

/* Whether the weight gradient may read bf16 patches (see conv_bwd_group's q16). */
static inline int FNN_(dw_bf16)(const fnn_conv2d_shape *s, const fnn_conv_plan *p) {
#ifdef FNN_CONV_BF16
    return p->dw_rows && s->c % 2 == 0;
#else
    (void)s;
    (void)p;
    return 0;
#endif
}

/* The image as padded pixel rows (image_to_rows), in bf16 when q16. */
static void FNN_(pixel_rows)(const fnn_conv2d_shape *s, const fnn_conv_plan *p, int q16, const FNN_T *xi, FNN_T *xr) {
#ifdef FNN_CONV_BF16
    if (q16) {
        fnn_conv_image_to_rows16(s, p, xi, (uint16_t *)(void *)xr);
        return;
    }
#endif
    (void)q16;
    FNN_(image_to_rows)(s, p, xi, xr);
}

/* The patch rows of output rows [i0, i1) (rows_real, leading dimension ld values); with q16 of bf16
 * pixel rows: an even channel count makes every run whole 32-bit pairs, copied by rows_real as the
 * values of an image of c/2 channels (bit copies). */
static void FNN_(patches)(const fnn_conv2d_shape *s, const fnn_conv_plan *p, int q16, const FNN_T *xr, int64_t i0,
                          int64_t i1, FNN_T *rows, int64_t ld) {
    if (q16) {
        fnn_conv2d_shape h = *s;
        h.c = s->c / 2;
        FNN_rows_real(&h, p, xr, i0, i1, rows, ld / 2);
        return;
    }
    FNN_rows_real(s, p, xr, i0, i1, rows, ld);
}

/* acc (+)= g bm^T over n columns: the weight gradient of one unit, as (f, ckk) or, with p->dwt,
 * as (ckk, f); WIDE and COLS: acc (+)= g bm with bm the transposed columns (rows_wide, im2row), a
 * product whose long k is the rows of bm, read in place (no transposing pack). beta = 0 for the
 * group's first unit. */
static int FNN_(conv_dw_gemm)(const fnn_conv2d_shape *s, const fnn_conv_plan *p, int64_t n, const FNN_T *g,
                              int64_t ldg, const FNN_T *bm, int64_t ldb, FNN_T *acc, FNN_T beta, int bflags,
                              int nt) {
    if (p->mode != FNN_CONV_DIRECT) /* bm: the transposed columns (n, ckk); dw_rows: acc in (u, v, ci) order */
        return FNN_CONV_GEMM(bflags, s->f, p->ckk, n, 1, beta, g, ldg, bm, p->ckk, NULL, acc, p->ckk, nt);
    if (p->dwt)
        return FNN_CONV_GEMM(FNN_TRANS_B, p->ckk, s->f, n, 1, beta, bm, ldb, g, ldg, NULL, acc, s->f, nt);
    return FNN_CONV_GEMM(FNN_TRANS_B, s->f, p->ckk, n, 1, beta, g, ldg, bm, ldb, NULL, acc, p->ckk, nt);
}

/* Backward of the images [a, e) of one group: dwg (= dw or a partial) = sum of g_i cols_i^T,
 * dbg (may be NULL) = the sums of g over images and positions, dx (may be NULL) of each image
 * from W^T g through col2im (the columns' buffer is reused for W^T g once the weight gradient
 * has read it). g is dy, masked by y > 0 when y is given (the fused ReLU), staged per unit. */
static int FNN_(conv_bwd_group)(const fnn_conv2d_shape *s, const fnn_conv_plan *p, int64_t a, int64_t e,
                                const FNN_T *x, const FNN_T *y, const FNN_T *wt, const FNN_T *dy, FNN_T *dwg,
                                FNN_T *dbg, FNN_T *dx, const FNN_(conv_scratch) *sc, int dx_impl, int nt) {
    const int64_t in_img = s->c * s->h * s->w, out_img = s->f * p->hw, ckk = p->ckk, f = s->f;
    FNN_T *acc = p->dwt || p->dw_rows ? sc->dwt : dwg;
    FNN_T beta = 0;
    int st = FNN_OK;
    /* dx_impl: wt holds the flipped weights of conv_dx_shape, dx comes from conv_dx_implicit */
    fnn_conv2d_shape s2;
    fnn_conv_plan p2;
    int64_t *boff2 = NULL;
    if (dx && dx_impl) {
        st = FNN_(conv_dx_shape)(s, p, &s2, &p2);
        if (st != FNN_OK) return st;
        boff2 = (int64_t *)(void *)(sc->dyp + fnn_round16(s->f * p2.hp * p2.wp));
        FNN_(conv_tap_offsets)(&s2, &p2, boff2);
    }
    if (dbg) memset(dbg, 0, (size_t)f * sizeof(FNN_T));
    /* WIDE with no input gradient from the wide columns (none, or the implicit one): the weight
     * gradient over the real output columns only, not the wp - ow padding columns of each row
     * (zeros of dy in the wide form; 11% of the product at 16 x 16 with 3 x 3 taps). */
    const int real = p->mode == FNN_CONV_WIDE && (!dx || dx_impl);
    /* bf16 with an even channel count: the patches (rows_real's) as bf16, converted once while the
     * image is laid out as pixel rows, copied at half the bytes and packed without conversion */
    const int q16 = FNN_(dw_bf16)(s, p) && (real || p->mode == FNN_CONV_COLS);
    if (p->mode == FNN_CONV_WIDE && p->tiles == 1) {
        const int64_t seg = p->oh * p->wp;
        for (int64_t b0 = a; b0 < e && st == FNN_OK; b0 += p->nb) {
            const int64_t nbk = b0 + p->nb < e ? p->nb : e - b0, ld = nbk * seg;
            /* without the wide input gradient: the real output columns only (seg_r of seg per image) */
            const int64_t seg_r = real ? p->hw : seg, ld_r = nbk * seg_r;
            for (int64_t j = 0; j < nbk; j++) {
                FNN_(pixel_rows)(s, p, q16, x + (b0 + j) * in_img, sc->xpad);
                const FNN_T *dyj = dy + (b0 + j) * out_img, *yj = y ? y + (b0 + j) * out_img : NULL;
                if (real) {
                    FNN_(patches)(s, p, q16, sc->xpad, 0, p->oh, sc->cols + j * seg_r * ckk / (q16 ? 2 : 1), ckk);
                    FNN_dy_rows(s, p, dyj, yj, 0, p->oh, sc->ybuf + j * seg_r, ld_r);
                } else {
                    FNN_rows_wide(s, p, sc->xpad, 0, p->oh, sc->cols + j * seg * ckk, ckk);
                    FNN_dy_to_wide(s, p, dyj, yj, 0, p->oh, sc->ybuf + j * seg, ld);
                }
                if (dbg)
                    for (int64_t o = 0; o < f; o++) dbg[o] += FNN_(conv_sum)(sc->ybuf + o * ld_r + j * seg_r, seg_r);
            }
            st = FNN_(conv_dw_gemm)(s, p, ld_r, sc->ybuf, ld_r, sc->cols, ckk, acc, beta, q16 ? FNN_B_BF16 : 0, nt);
            beta = 1;
            if (st != FNN_OK || !dx) continue;
            if (dx_impl) {
                for (int64_t j = 0; j < nbk && st == FNN_OK; j++)
                    st = FNN_(conv_dx_implicit)(&s2, &p2, wt, boff2, dy + (b0 + j) * out_img,
                                                y ? y + (b0 + j) * out_img : NULL, sc->dyp, dx + (b0 + j) * in_img,
                                                nt);
                continue;
            }
            st = FNN_CONV_GEMM(0, ckk, ld, f, 1, 0, wt, f, sc->ybuf, ld, NULL, sc->cols, ld, nt);
            if (st == FNN_OK)
                for (int64_t j = 0; j < nbk; j++)
                    FNN_(wide_dx_image)(s, p, sc->cols + j * seg, ld, dx + (b0 + j) * in_img, sc->dxpad);
        }
    } else {
        for (int64_t img = a; img < e && st == FNN_OK; img++) {
            const FNN_T *xi = x + img * in_img, *dyi = dy + img * out_img, *yi = y ? y + img * out_img : NULL;
            FNN_T *dxi = dx ? dx + img * in_img : NULL;
            FNN_T *dxs = dx_impl ? NULL : dxi;     /* where the tiles add their input gradient */
            if (p->dw_rows) {
                FNN_(pixel_rows)(s, p, q16, xi, sc->xpad);
                if (p->padded && dxs) dxs = sc->dxpad;
            }
            if (dxs && p->mode != FNN_CONV_DIRECT)
                memset(dxs, 0, (size_t)(p->padded ? s->c * p->hp * p->wp : in_img) * sizeof(FNN_T));
            for (int64_t t = 0; t < p->tiles && st == FNN_OK; t++) {
                const int64_t i0 = t * p->rows, i1 = i0 + p->rows < p->oh ? i0 + p->rows : p->oh;
                const int64_t n = (i1 - i0) * p->pitch;
                const FNN_T *bm = xi + i0 * p->ow;      /* DIRECT: the image is the column matrix */
                int64_t ldb = p->hw;
                if (p->mode == FNN_CONV_COLS && !p->dw_rows) {
                    FNN_(im2row)(s, p, xi, i0, i1, sc->cols);
                    bm = sc->cols;
                    ldb = ckk;
                } else if (real || p->mode == FNN_CONV_COLS) {
                    FNN_(patches)(s, p, q16, sc->xpad, i0, i1, sc->cols, ckk);
                    bm = sc->cols;
                    ldb = ckk;
                } else if (p->mode == FNN_CONV_WIDE) {
                    FNN_rows_wide(s, p, sc->xpad, i0, i1, sc->cols, ckk);
                    bm = sc->cols;
                    ldb = ckk;
                }
                /* the real columns: COLS, DIRECT, and WIDE without the wide input gradient */
                const int64_t nr = p->mode == FNN_CONV_WIDE && !real ? n : (i1 - i0) * p->ow;
                const FNN_T *g = dyi + i0 * p->ow;      /* unmasked: dy in place */
                int64_t ldg = p->hw;
                if (p->mode == FNN_CONV_WIDE && !real) {
                    FNN_dy_to_wide(s, p, dyi, yi, i0, i1, sc->ybuf, n);
                    g = sc->ybuf;
                    ldg = n;
                } else if (yi) {
                    FNN_dy_rows(s, p, dyi, yi, i0, i1, sc->ybuf, nr);
                    g = sc->ybuf;
                    ldg = nr;
                }
                if (dbg)
                    for (int64_t o = 0; o < f; o++) dbg[o] += FNN_(conv_sum)(g + o * ldg, nr);
                st = FNN_(conv_dw_gemm)(s, p, nr, g, ldg, bm, ldb, acc, beta, q16 ? FNN_B_BF16 : 0, nt);
                beta = 1;
                if (st != FNN_OK || !dxs) continue;
                if (p->mode == FNN_CONV_DIRECT) {
                    st = FNN_CONV_GEMM(0, ckk, n, f, 1, 0, wt, f, g, ldg, NULL, dxi + i0 * p->ow, p->hw, nt);
                    continue;
                }
                st = FNN_CONV_GEMM(0, ckk, n, f, 1, 0, wt, f, g, ldg, NULL, sc->cols, n, nt);
                if (st != FNN_OK) continue;
                if (p->mode == FNN_CONV_COLS)
                    FNN_(col2im)(s, p, sc->cols, i0, i1, dxi);
                else
                    FNN_col2im_wide(s, p, sc->cols, n, i0, i1, dxs);
            }
            if (st == FNN_OK && dxi && dx_impl)
                st = FNN_(conv_dx_implicit)(&s2, &p2, wt, boff2, dyi, yi, sc->dyp, dxi, nt);
            else if (st == FNN_OK && dxi && p->padded)
                FNN_(crop_image)(s, p, sc->dxpad, dxi);
        }
    }
    if (st == FNN_OK && p->dw_rows) {
        const int64_t kk = s->kh * s->kw;
        for (int64_t o = 0; o < f; o++)
            for (int64_t ci = 0; ci < s->c; ci++)
                for (int64_t t = 0; t < kk; t++) dwg[(o * s->c + ci) * kk + t] = sc->dwt[o * ckk + t * s->c + ci];
    } else if (st == FNN_OK && p->dwt) {
        for (int64_t o = 0; o < f; o++)
            for (int64_t k = 0; k < ckk; k++) dwg[o * ckk + k] = sc->dwt[k * f + o];
    }
    return st;
}

static int FNN_(conv2d_bwd)(int flags, const fnn_conv2d_shape *s, const FNN_T *x, const FNN_T *w, const FNN_T *y,
                            const FNN_T *dy, FNN_T *dw, FNN_T *db, FNN_T *dx, FNN_T *ws, int64_t ws_len, int nt) {
    fnn_conv_plan p;
    if (flags & ~FNN_EPI_RELU) return FNN_ERR_ARG;
    int status = fnn_conv_plan_make(1, s, nt, &p);
    if (status != FNN_OK) return status;
    if (!dw) return FNN_ERR_ARG;
    const int64_t wlen = s->f * p.ckk;
    if (s->n == 0) {       /* the gradient of an empty batch */
        memset(dw, 0, (size_t)wlen * sizeof(FNN_T));
        if (db) memset(db, 0, (size_t)s->f * sizeof(FNN_T));
        return FNN_OK;
    }
    if (!x || !w || !dy || !ws || ((flags & FNN_EPI_RELU) && !y)) return FNN_ERR_ARG;
    if (!(flags & FNN_EPI_RELU)) y = NULL;
    status = fnn_conv_plan_fit(&p, ws_len, 1);
    if (status != FNN_OK) return status;

    /* The input-gradient GEMMs read W^T (c*kh*kw, f) untransposed: the unpacked GEMM path. The
     * implicit input gradient (stride 1, where the CPU variant has the gathered-rows kernel and
     * the workspace is aligned for its int64 offsets) reads the weights flipped and transposed:
     * wt[ci, o, kh-1-u, kw-1-v] = w[o, ci, u, v]. */
    FNN_T *wt = ws, *parts = ws + p.wt_len, *thr0 = ws + p.fixed_len;
    const int dx_impl = dx && p.dx_implicit_ok && FNN_CONV_ROWS_WIDTH() > 0 &&
                        (uintptr_t)(void *)ws % sizeof(int64_t) == 0;
    const int64_t kk = s->kh * s->kw;
#ifdef FNN_CONV_BF16
    if (dx_impl)    /* flipped and transposed as pairs of filters (the channels of the dx convolution) */
        fnn_conv_pack_pairs(s->c, s->f, kk, w, kk, s->c * kk, 1, (uint32_t *)(void *)wt);
    else
#endif
    if (dx_impl)
        for (int64_t o = 0; o < s->f; o++)
            for (int64_t ci = 0; ci < s->c; ci++)
                for (int64_t t = 0; t < kk; t++) wt[(ci * s->f + o) * kk + kk - 1 - t] = w[(o * s->c + ci) * kk + t];
    else if (dx)
        for (int64_t o = 0; o < s->f; o++)
            for (int64_t k = 0; k < p.ckk; k++) wt[k * s->f + o] = w[o * p.ckk + k];
    const int64_t G = p.groups, db_off = fnn_round16(wlen);

    if (p.outer <= 1) {
        FNN_(conv_scratch) sc = FNN_(scratch_at)(&p, p.thr_len ? thr0 : NULL);
        for (int64_t g = 0; g < G && status == FNN_OK; g++) {
            FNN_T *dwg = g == 0 ? dw : parts + (g - 1) * p.part_len;
            FNN_T *dbg = !db ? NULL : g == 0 ? db : parts + (g - 1) * p.part_len + db_off;
            status = FNN_(conv_bwd_group)(s, &p, s->n * g / G, s->n * (g + 1) / G, x, y, wt, dy, dwg, dbg, dx, &sc,
                                          dx_impl, fnn_conv_gemm_threads(s, &p, nt));
        }
    } else {
#pragma omp parallel num_threads(p.outer)
        {
            int tid = 0, nth = 1;
#ifdef _OPENMP
            tid = omp_get_thread_num();
            nth = omp_get_num_threads();
#endif
            FNN_(conv_scratch) sc = FNN_(scratch_at)(&p, p.thr_len ? thr0 + tid * p.thr_len : NULL);
            int mine = FNN_OK;
            for (int64_t g = G * tid / nth; g < G * (tid + 1) / nth && mine == FNN_OK; g++) {
                FNN_T *dwg = g == 0 ? dw : parts + (g - 1) * p.part_len;
                FNN_T *dbg = !db ? NULL : g == 0 ? db : parts + (g - 1) * p.part_len + db_off;
                mine = FNN_(conv_bwd_group)(s, &p, s->n * g / G, s->n * (g + 1) / G, x, y, wt, dy, dwg, dbg, dx,
                                            &sc, dx_impl, 1);
            }
            if (mine != FNN_OK) {
#pragma omp critical(fnn_conv_status)
                status = mine;
            }
        }
    }
    if (status != FNN_OK || G == 1) return status;

    /* dw = ((dw_0 + dw_1) + dw_2) + ...: group order, whatever the threads. */
    int rnt = fnn_threads_for(wlen * (G - 1), FNN_PAR_MIN_ELEMS, nt);
    (void)rnt; /* unused without OpenMP */
#pragma omp parallel num_threads(rnt) if (rnt > 1)
    {
        int64_t i0, i1;
        fnn_omp_range(wlen, &i0, &i1);
        for (int64_t g = 1; g < G; g++) {
            const FNN_T *part = parts + (g - 1) * p.part_len;
            for (int64_t i = i0; i < i1; i++) dw[i] += part[i];
        }
    }
    if (db)
        for (int64_t g = 1; g < G; g++) {
            const FNN_T *part = parts + (g - 1) * p.part_len + db_off;
            for (int64_t o = 0; o < s->f; o++) db[o] += part[o];
        }
    return FNN_OK;
}
