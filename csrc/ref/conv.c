/* 2-D convolution (NCHW) by im2col + GEMM: float and double from conv_tmpl.h.
 *
 * Forward with stride 1 where the CPU variant has the gathered-rows GEMM kernel (AVX-512, AVX2): no
 * column matrix at all. The image is padded once and the GEMM reads each tap's row of the
 * columns in place through its offset in the padded image (an implicit im2col), storing each
 * output row straight into y (conv_fwd_implicit). Otherwise, and for every backward pass:
 *
 * The work is cut into units (a block of whole images, or a band of output rows of one image)
 * whose column matrix cols[c*kh*kw, unit columns] is built in the caller's workspace (sized to
 * stay in L2), multiplied by the weights with the bias and ReLU fused into the GEMM epilogue,
 * and reused in place for the input gradient (W^T dy, then col2im). The backward pass takes
 * the ReLU mask on the fly while it stages dy (no separate activation pass over dy).
 *
 * Threads: units (forward) or fixed groups of images (backward) run in parallel, each thread
 * with its own slice of the workspace and serial GEMMs; only when there is a single unit does a
 * (large) GEMM take the threads. Units and groups depend on the shape and batch size, never on
 * the thread count, and the weight and bias gradients are summed per group and then over the
 * groups in group order, so every result is bit-identical for any n_threads (the GEMM itself
 * computes each element the same way for any thread count). */
#include <string.h>

#include "../core/internal.h"
#include "../gemm/gemm_bf16_internal.h"

/* Column tile budget in elements (256 KiB of float): a tile and the GEMM's packed blocks fit
 * the L2 of one core together. Whole images when they fit, else bands of output rows. */
#define FNN_CONV_TILE_ELEMS ((int64_t)1 << 16)
/* Backward: the batch is cut into at most this many groups of images, each with its own
 * partial weight gradient (group 0 writes into dw itself) ... */
#define FNN_CONV_GROUPS 16
/* ... as long as the partials stay under this many elements in all (else fewer groups, and the
 * GEMMs, which are then large, take the threads). */
#define FNN_CONV_PART_ELEMS ((int64_t)1 << 21)
/* A thread gets at least this many multiply-adds of convolution work (about 2-4 us). */
#define FNN_CONV_MIN_MACS ((int64_t)1 << 18)
/* When the images are too few to share out, the GEMM of one unit may use the threads, but only
 * from this many multiply-adds (about 60 us): its operands were just written by this thread
 * (columns) or are read back by it (outputs), and moving them between cores' caches costs more
 * than the split saves below that (measured: a 1 x 16 x 14 x 14 -> 32 channel 3x3 convolution
 * took 20 us on one thread, 23 us with the GEMM on two). */
#define FNN_CONV_GEMM_MT_MACS ((int64_t)1 << 23)
/* Forward passes over fewer images than this split images into bands of rows for the threads, */
#define FNN_CONV_SPLIT 2
/* ... but take a second thread only from this many multiply-adds per thread (about 15-20 us):
 * at batch 1 the other core must first fetch the input from this core's cache, and the next
 * layer fetch its half of the output back. Measured in a whole CNN at batch 1 (16 -> 32
 * channels, 3x3, 14 x 14, 0.9M multiply-adds): 17.4 us on one thread, 19.3 with two bands,
 * and the max-pool after it 2.3 -> 5.0 us. */
#define FNN_CONV_BAND_MIN_MACS ((int64_t)1 << 20)
/* WIDE: at most this many images side by side in one GEMM. */
#define FNN_CONV_MAX_NB 16
/* Largest accepted size, stride, padding or kernel extent (keeps every product in int64). */
#define FNN_CONV_DIM_MAX ((int64_t)INT32_MAX)

/* How a convolution is computed (chosen from the shape alone):
 *   DIRECT  1x1 kernel, stride 1, no padding: the image (c, h*w) is the column matrix itself.
 *   WIDE    stride 1: output rows are computed at the padded input's width wp, so row (ci, u, v)
 *           of the columns is ONE contiguous run of the (zero-padded) input plane ci starting at
 *           (u, v): im2col and col2im become long copies/adds instead of a short segment per
 *           output row. The wp - ow extra columns of each row are dropped when the GEMM result
 *           is copied into y (and are zeros of dy in the backward pass, so they add nothing).
 *   COLS    classic im2col of output-row tiles, GEMM straight into y: any stride, and stride 1
 *           when c*kh*kw <= f (then WIDE's copy of the GEMM result into y, f short rows per output
 *           row, would cost more than im2col's c*kh*kw short rows: the first layer of a CNN).
 * A unit of work is a block of nb whole images (WIDE, when an image fits the tile budget: one
 * GEMM with nb images side by side) or a band of output rows of one image. */
#define FNN_CONV_DIRECT 0
#define FNN_CONV_WIDE 1
#define FNN_CONV_COLS 2

typedef struct {
    int mode, padded;          /* padded: WIDE copies each image into a zero-padded plane first */
    int64_t oh, ow, hw, ckk;
    int64_t hp, wp, pitch;     /* padded input size; columns per output row in a unit */
    int64_t rows, tiles, nb;   /* output rows per tile, tiles per image, images per unit */
    int64_t ucols;             /* most columns of one unit */
    int dwt;                   /* backward: weight gradient accumulated transposed */
    int dw_rows;               /* backward, stride 1 (WIDE, COLS): patches from padded pixel rows */
    int implicit_ok;           /* forward, stride 1: workspace for the implicit path (xpad, offsets) */
    int dx_implicit_ok;        /* backward, WIDE: workspace for the implicit input gradient */
    int64_t dyp_len;           /* backward: the padded output gradient of one image and its offsets */
    int64_t xpad_len, cols_len, ybuf_len, dxpad_len, dwt_len, thr_len; /* one thread's scratch */
    int64_t groups;            /* backward: image groups with their own partial gradients */
    int64_t part_len, wt_len;  /* backward: one partial (dw then db), transposed weights */
    int64_t fixed_len;         /* workspace not per thread */
    int outer;                 /* threads over units/groups (1: the GEMM gets the threads) */
} fnn_conv_plan;

static inline int64_t fnn_round16(int64_t v) { return (v + 15) / 16 * 16; }

/* Forward units: blocks of nb whole images, or (image, band of rows) pairs when images are split. */
static inline int64_t fnn_conv_fwd_units(const fnn_conv2d_shape *s, const fnn_conv_plan *p) {
    return p->tiles == 1 ? (s->n + p->nb - 1) / p->nb : s->n * p->tiles;
}

static int fnn_conv_plan_make(int backward, const fnn_conv2d_shape *s, int n_threads, fnn_conv_plan *p) {
    if (!s || !p) return FNN_ERR_ARG;
    const int64_t dims[] = {s->c, s->h, s->w, s->f, s->kh, s->kw, s->sh, s->sw};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i] < 1 || dims[i] > FNN_CONV_DIM_MAX) return FNN_ERR_ARG;
    const int64_t pads[] = {s->pad_t, s->pad_b, s->pad_l, s->pad_r};
    for (size_t i = 0; i < 4; i++)
        if (pads[i] < 0 || pads[i] > FNN_CONV_DIM_MAX) return FNN_ERR_ARG;
    if (s->n < 0 || s->h + s->pad_t + s->pad_b < s->kh || s->w + s->pad_l + s->pad_r < s->kw) return FNN_ERR_ARG;
    p->hp = s->h + s->pad_t + s->pad_b;
    p->wp = s->w + s->pad_l + s->pad_r;
    /* The sizes below multiply up to four of these (each up to 3 * 2^31), so a product can pass
     * 2^63 before the limits checked further down are tested: bound them first, in floating point,
     * by quantities every size below stays under (ucols <= FNN_CONV_MAX_NB * hp * wp, ckk <= c * hp * wp,
     * the padded output gradient <= f * 2hp * 2wp), which also keeps one thread's workspace (a sum of
     * such sizes) under 2^63. Far above any real array, so nothing real is refused. */
    {
        const double plane = (double)p->hp * (double)p->wp, ckk = (double)s->c * (double)s->kh * (double)s->kw;
        const double unit = (double)FNN_CONV_MAX_NB * plane;
        if ((double)s->c * plane > 0x1p60 || ckk * unit > 0x1p60 || (double)s->f * unit > 0x1p60 ||
            (double)s->f * ckk > 0x1p56 || (double)s->n * plane > 0x1p60)
            return FNN_ERR_ARG;
    }
    p->oh = (p->hp - s->kh) / s->sh + 1;
    p->ow = (p->wp - s->kw) / s->sw + 1;
    p->hw = p->oh * p->ow;
    p->ckk = s->c * s->kh * s->kw;
    p->padded = s->pad_t || s->pad_b || s->pad_l || s->pad_r;
    if (s->sh == 1 && s->sw == 1 && s->kh == 1 && s->kw == 1 && !p->padded)
        p->mode = FNN_CONV_DIRECT;
    else if (s->sh == 1 && s->sw == 1 && p->ckk > s->f)
        p->mode = FNN_CONV_WIDE;
    else
        p->mode = FNN_CONV_COLS;
    if (p->mode != FNN_CONV_WIDE) p->padded = 0;
    p->pitch = p->mode == FNN_CONV_WIDE ? p->wp : p->ow;

    p->nb = 1;
    if (p->mode == FNN_CONV_DIRECT) {
        /* No columns; the backward pass stages (masked) dy in bands of rows. */
        int64_t rows = backward ? FNN_CONV_TILE_ELEMS / (s->f * p->ow) : p->oh;
        p->rows = rows < 1 ? 1 : rows > p->oh ? p->oh : rows;
        if (!backward && s->n < FNN_CONV_SPLIT && p->oh > 1) {
            const int64_t want = (FNN_CONV_SPLIT + s->n - 1) / (s->n > 0 ? s->n : 1);
            p->rows = (p->oh + want - 1) / want;
        }
    } else {
        const int64_t per_row = p->ckk * p->pitch;
        int64_t rows = FNN_CONV_TILE_ELEMS / per_row;
        p->rows = rows < 1 ? 1 : rows > p->oh ? p->oh : rows;
        /* A forward pass over fewer images than FNN_CONV_SPLIT splits each image into bands of
         * rows, so that threads have units to share (inference on one sample). */
        if (!backward && s->n < FNN_CONV_SPLIT && p->oh > 1) {
            const int64_t want = (FNN_CONV_SPLIT + s->n - 1) / (s->n > 0 ? s->n : 1);
            const int64_t r = (p->oh + want - 1) / want;
            if (r < p->rows) p->rows = r;
        }
        if (p->mode == FNN_CONV_WIDE && p->rows == p->oh) {
            int64_t nb = FNN_CONV_TILE_ELEMS / (per_row * p->oh);
            p->nb = nb < 1 ? 1 : nb > FNN_CONV_MAX_NB ? FNN_CONV_MAX_NB : nb;
            if (p->nb > s->n) p->nb = s->n > 0 ? s->n : 1;
        }
    }
    p->tiles = (p->oh + p->rows - 1) / p->rows;
    p->ucols = p->nb * p->rows * p->pitch;
    /* DIRECT: weight gradient accumulated as (c*kh*kw, f) when that is the taller side: the GEMM
     * then packs the long k dimension of the narrower operand into the wide panels. (COLS and WIDE
     * take the columns transposed, see conv_dw_gemm.) */
    p->dwt = backward && p->mode == FNN_CONV_DIRECT && p->ckk < s->f;
    p->xpad_len = p->padded ? fnn_round16(s->c * p->hp * p->wp) : 0;
    p->cols_len = p->mode == FNN_CONV_DIRECT ? 0 : fnn_round16(p->ckk * p->ucols);
    /* Backward with stride 1 (WIDE, and COLS: a first layer): the weight gradient reads each patch
     * as kh runs of kw*c values of the image stored as padded pixel rows (image_to_rows, in xpad,
     * kw more pixels), copied whole instead of im2row's value-by-value gather, accumulated in (u, v, ci)
     * order. Measured on a first layer (3 -> 32 channels, 3x3, 32x32, batch 64, one Zen 4 core):
     * weight gradient 2.8-3.0 ms instead of 3.7 (float32) and 2.9 instead of 3.5 (bf16). */
    p->dw_rows = backward && (p->mode == FNN_CONV_WIDE || (p->mode == FNN_CONV_COLS && s->sh == 1 && s->sw == 1));
    if (p->dw_rows) p->xpad_len = fnn_round16(s->c * (p->hp * p->wp + s->kw));
    /* Forward with stride 1 (not DIRECT): room for the implicit path whether or not this CPU
     * variant takes it (the size must not depend on it): the padded image, and the column
     * offsets (ckk int64 values) where the columns would be. */
    p->implicit_ok = !backward && p->mode != FNN_CONV_DIRECT && s->sh == 1 && s->sw == 1;
    if (p->implicit_ok) {
        if (p->xpad_len < fnn_round16(s->c * p->hp * p->wp)) p->xpad_len = fnn_round16(s->c * p->hp * p->wp);
        if (p->cols_len < fnn_round16(2 * p->ckk)) p->cols_len = fnn_round16(2 * p->ckk);
    }
    /* Backward, WIDE, padding under the kernel size: room for the implicit input gradient (the
     * output gradient padded by k - 1 - pad, and its tap offsets), whatever the CPU variant. */
    p->dx_implicit_ok = backward && p->mode == FNN_CONV_WIDE && s->pad_t < s->kh && s->pad_b < s->kh &&
                        s->pad_l < s->kw && s->pad_r < s->kw;
    p->dyp_len = p->dx_implicit_ok ? fnn_round16(s->f * (s->h + s->kh - 1) * (s->w + s->kw - 1)) +
                                         fnn_round16(2 * s->f * s->kh * s->kw)
                                   : 0;
    p->ybuf_len = (p->mode == FNN_CONV_WIDE || backward) ? fnn_round16(s->f * p->ucols) : 0;
    p->dxpad_len = backward && p->padded ? p->xpad_len : 0;
    p->dwt_len = p->dwt || p->dw_rows ? fnn_round16(s->f * p->ckk) : 0;
    p->thr_len = p->xpad_len + p->cols_len + p->ybuf_len + p->dxpad_len + p->dwt_len + p->dyp_len;
    /* Shapes no array could have (the sizes above would overflow): refuse them. */
    if ((double)s->c * (double)p->hp * (double)p->wp > 0x1p60 || (double)p->ckk * (double)p->ucols > 0x1p60 ||
        (double)s->f * (double)p->ucols > 0x1p60 || (double)s->f * (double)p->ckk > 0x1p56 ||
        (double)s->n * (double)p->hw > 0x1p60)
        return FNN_ERR_ARG;

    int nt = n_threads < 1 ? 1 : n_threads;
#ifndef _OPENMP
    nt = 1;
#endif
    const double macs = (double)s->n * (double)s->f * (double)p->ckk * (double)p->hw;
    int outer = nt;
    const double min_macs = (double)(!backward && s->n < FNN_CONV_SPLIT ? FNN_CONV_BAND_MIN_MACS : FNN_CONV_MIN_MACS);
    if (macs / min_macs < (double)outer) outer = (int)(macs / min_macs);
    const int64_t units = backward ? s->n : fnn_conv_fwd_units(s, p);
    if (outer > units) outer = (int)units;
    if (outer < 1) outer = 1;

    p->groups = 1;
    p->part_len = p->wt_len = p->fixed_len = 0;
    if (backward) {
        p->part_len = fnn_round16(s->f * p->ckk) + fnn_round16(s->f);
        p->wt_len = fnn_round16(s->f * p->ckk);
        int64_t g = FNN_CONV_PART_ELEMS / p->part_len;
        if (g > FNN_CONV_GROUPS) g = FNN_CONV_GROUPS;
        if (g > s->n) g = s->n;
        p->groups = g < 1 ? 1 : g;
        if (outer > p->groups) outer = (int)p->groups;
        p->fixed_len = p->wt_len + (p->groups - 1) * p->part_len;
    } else if (p->implicit_ok) {
        /* the bf16 implicit forward's weights as k-pairs (at most f*ckk of them), whatever the dtype */
        p->fixed_len = fnn_round16(s->f * p->ckk);
    }
    p->outer = outer;
    return FNN_OK;
}

/* Threads for the GEMMs of the serial path (outer == 1). */
static int fnn_conv_gemm_threads(const fnn_conv2d_shape *s, const fnn_conv_plan *p, int nt) {
    const double unit = (double)s->f * (double)p->ckk * (double)(p->mode == FNN_CONV_DIRECT ? p->hw : p->ucols);
    return unit >= (double)FNN_CONV_GEMM_MT_MACS ? nt : 1;
}

/* Fit the number of outer threads to the workspace the caller passed (at least one thread's). */
static int fnn_conv_plan_fit(fnn_conv_plan *p, int64_t ws_len, int have_ws) {
    if (ws_len < p->fixed_len + p->thr_len || (!have_ws && p->fixed_len + p->thr_len > 0)) return FNN_ERR_ARG;
    if (p->thr_len > 0) {
        int64_t fit = (ws_len - p->fixed_len) / p->thr_len;
        if (fit < p->outer) p->outer = (int)fit;
    }
    return FNN_OK;
}

int64_t fnn_conv2d_workspace(int backward, const fnn_conv2d_shape *s, int n_threads) {
    fnn_conv_plan p;
    int st = fnn_conv_plan_make(backward, s, n_threads, &p);
    if (st != FNN_OK) return st;
    /* outer copies of a per-thread workspace that may be near 2^62 for absurd (refused) shapes. */
    if (p.thr_len > 0 && p.thr_len > (INT64_MAX - p.fixed_len) / p.outer) return FNN_ERR_ARG;
    return p.fixed_len + (int64_t)p.outer * p.thr_len;
}

/* The range [*j0, *j1) of output columns q whose input column q*sw - pad_l + v lies inside
 * [0, w); empty (j0 == j1) when none does. */
static inline void fnn_conv_valid_cols(const fnn_conv2d_shape *s, int64_t ow, int64_t v, int64_t *j0,
                                       int64_t *j1) {
    int64_t lo = s->pad_l - v;                            /* need q*sw >= lo */
    int64_t a = lo <= 0 ? 0 : (lo + s->sw - 1) / s->sw;
    int64_t hi = s->w - 1 + s->pad_l - v;                 /* need q*sw <= hi */
    int64_t b = hi < 0 ? 0 : hi / s->sw + 1;
    if (a > ow) a = ow;
    if (b > ow) b = ow;
    if (b < a) b = a;
    *j0 = a;
    *j1 = b;
}

/* SSE2 is part of the x86-64 baseline (no extra flags): the short-row copies below use it for
 * whole 16-byte groups with an overlapping last group instead of a scalar tail. Other targets
 * (and FNN_CONV_NO_SSE2) use plain loops with the same results. */
#if defined(__SSE2__) && !defined(FNN_CONV_NO_SSE2)
#include <emmintrin.h>
#define FNN_CONV_SSE2 1
#else
#define FNN_CONV_SSE2 0
#endif

/* Rows here are short (14 to 28 values): GCC would turn their copy loops into memcpy calls,
 * which cost more than the copy. Functions marked so keep the (vectorised) loops. */
#if defined(__GNUC__) && !defined(__clang__)
#define FNN_SHORT_COPIES __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define FNN_SHORT_COPIES
#endif

/* col2im_wide is also compiled for AVX-512 (a function attribute, so the file stays portable)
 * and picked by fnn_arch_get(), like the GEMM microkernels: its adds of long rows are the
 * largest part of the input gradient after the GEMMs. */
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define FNN_CONV_X86 1
#else
#define FNN_CONV_X86 0
#endif
#if FNN_CONV_X86
#include <immintrin.h>
#endif
#define FNN_CAT_(a, b) a##b
#define FNN_CAT(a, b) FNN_CAT_(a, b)

/* The image xi (c, h, w) as padded pixel rows: xr[(r*wp + q)*c + ci] = CVT(xpad[ci, r, q]), and
 * kw zero pixels past the plane; one body for the float, double and bf16 (uint16_t) rows. */
#define FNN_IMAGE_TO_ROWS(NAME, TS, TD, CVT)                                                                 \
    static void NAME(const fnn_conv2d_shape *s, const fnn_conv_plan *p, const TS *restrict xi, TD *restrict xr) { \
        const int64_t c = s->c, wp = p->wp;                                                                  \
        memset(xr, 0, (size_t)((p->hp * wp + s->kw) * c) * sizeof(TD));                                      \
        for (int64_t ci = 0; ci < c; ci++)                                                                   \
            for (int64_t r = 0; r < s->h; r++) {                                                             \
                const TS *src = xi + (ci * s->h + r) * s->w;                                                 \
                TD *dst = xr + ((r + s->pad_t) * wp + s->pad_l) * c + ci;                                    \
                for (int64_t q = 0; q < s->w; q++) dst[q * c] = CVT(src[q]);                                 \
            }                                                                                                \
    }
#define FNN_SAME_VALUE(v) (v)

#include "conv_tmpl.h"
#define FNN_DOUBLE
#include "conv_tmpl.h"
#undef FNN_DOUBLE

/* ---- the bf16 instance's implicit path: pairs kept in the float workspace ---------------- */

/* a[o*kq + cp*kk + t] (kq = ceil(C/2)*kk) = the bf16 pair of e(o, 2cp, t) (low half) and
 * e(o, 2cp+1, t) (high half, 0 past channel C-1), e(o, ch, t) = w[o*so + ch*sc + (flip ? kk-1-t : t)]:
 * the A rows of fnn_gemm_rows_bf16 in the tap order of pad_pairs' planes. */
static void fnn_conv_pack_pairs(int64_t M, int64_t C, int64_t kk, const float *w, int64_t so, int64_t sc, int flip,
                                uint32_t *a) {
    const int64_t cp = (C + 1) / 2, kq = cp * kk;
    for (int64_t o = 0; o < M; o++)
        for (int64_t q = 0; q < cp; q++)
            for (int64_t t = 0; t < kk; t++) {
                const float *e = w + o * so + 2 * q * sc + (flip ? kk - 1 - t : t);
                const uint32_t hi = 2 * q + 1 < C ? fnn_bf16_from_f32(e[sc]) : 0;
                a[o * kq + q * kk + t] = fnn_bf16_from_f32(e[0]) | hi << 16;
            }
}

/* The image as padded pixel rows of bf16 values (image_to_rows' layout, half the bytes). */
FNN_IMAGE_TO_ROWS(fnn_conv_image_to_rows16, float, uint16_t, fnn_bf16_from_f32)

/* fnn_gemm_rows_bf16 on pairs stored in float buffers (the template's pointers). */
static inline int fnn_conv_rows_bf16(int flags, int64_t m, int64_t kq, const float *a, int64_t lda, const float *b,
                                     const int64_t *boff, int64_t b2, int nr0, int nr1, const float *bias, float *c,
                                     int64_t ldc, int64_t c2) {
    return fnn_gemm_rows_bf16(flags, m, kq, (const uint32_t *)(const void *)a, lda, (const uint32_t *)(const void *)b,
                              boff, b2, nr0, nr1, bias, c, ldc, c2);
}

#define FNN_CONV_BF16
#include "conv_tmpl.h"
#undef FNN_CONV_BF16

int fnn_conv2d_fwd_f32(int flags, const fnn_conv2d_shape *s, const float *x, const float *w, const float *b,
                       float *y, float *ws, int64_t ws_len, int n_threads) {
    return conv2d_fwd_f32(flags, s, x, w, b, y, ws, ws_len, n_threads);
}
int fnn_conv2d_fwd_f64(int flags, const fnn_conv2d_shape *s, const double *x, const double *w, const double *b,
                       double *y, double *ws, int64_t ws_len, int n_threads) {
    return conv2d_fwd_f64(flags, s, x, w, b, y, ws, ws_len, n_threads);
}
int fnn_conv2d_bwd_f32(int flags, const fnn_conv2d_shape *s, const float *x, const float *w, const float *y,
                       const float *dy, float *dw, float *db, float *dx, float *ws, int64_t ws_len, int n_threads) {
    return conv2d_bwd_f32(flags, s, x, w, y, dy, dw, db, dx, ws, ws_len, n_threads);
}
int fnn_conv2d_bwd_f64(int flags, const fnn_conv2d_shape *s, const double *x, const double *w, const double *y,
                       const double *dy, double *dw, double *db, double *dx, double *ws, int64_t ws_len,
                       int n_threads) {
    return conv2d_bwd_f64(flags, s, x, w, y, dy, dw, db, dx, ws, ws_len, n_threads);
}
int fnn_conv2d_fwd_bf16(int flags, const fnn_conv2d_shape *s, const float *x, const float *w, const float *b,
                        float *y, float *ws, int64_t ws_len, int n_threads) {
    return conv2d_fwd_bf16(flags, s, x, w, b, y, ws, ws_len, n_threads);
}
int fnn_conv2d_bwd_bf16(int flags, const fnn_conv2d_shape *s, const float *x, const float *w, const float *y,
                        const float *dy, float *dw, float *db, float *dx, float *ws, int64_t ws_len, int n_threads) {
    return conv2d_bwd_bf16(flags, s, x, w, y, dy, dw, db, dx, ws, ws_len, n_threads);
}
