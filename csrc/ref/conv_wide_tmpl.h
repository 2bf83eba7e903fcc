/* The wide-mode copies and col2im of conv_tmpl.h, included once per instruction set (FNN_CW_SUFFIX,
 * FNN_CW_TARGET) for each type: loops the compiler vectorises for the target. Short rows go
 * through FNN_CW_COPY/FNN_CW_MASK: SSE2 with an overlapping last group in the generic variant,
 * masked zmm loads and stores in the AVX-512 one. Every variant computes
 * the same values (the adds of col2im in the same order per element). */
#undef FNN_CW_COPY
#undef FNN_CW_MASK
#if FNN_CW_PLAIN
#undef FNN_CW_V
#undef FNN_CW_M
#undef FNN_CW_LOAD
#undef FNN_CW_STORE
#undef FNN_CW_GT0
#undef FNN_CW_ZMOV
#ifdef FNN_DOUBLE
#define FNN_CW_V 8
#define FNN_CW_M(r) ((__mmask8)((r) >= 8 ? 0xff : (1u << (r)) - 1))
#define FNN_CW_LOAD _mm512_maskz_loadu_pd
#define FNN_CW_STORE _mm512_mask_storeu_pd
#define FNN_CW_GT0(k, v) _mm512_mask_cmp_pd_mask(k, v, _mm512_setzero_pd(), _CMP_GT_OQ)
#define FNN_CW_ZMOV _mm512_maskz_mov_pd
#else
#define FNN_CW_V 16
#define FNN_CW_M(r) ((__mmask16)((r) >= 16 ? 0xffff : (1u << (r)) - 1))
#define FNN_CW_LOAD _mm512_maskz_loadu_ps
#define FNN_CW_STORE _mm512_mask_storeu_ps
#define FNN_CW_GT0(k, v) _mm512_mask_cmp_ps_mask(k, v, _mm512_setzero_ps(), _CMP_GT_OQ)
#define FNN_CW_ZMOV _mm512_maskz_mov_ps
#endif
/* Rows of 7 to 48 values are mostly a vector's tail: masked loads and stores do them whole. */
#define FNN_CW_COPY(d, src, n)                                                                   \
    for (int64_t j_ = 0; j_ < (n); j_ += FNN_CW_V)                                             \
        FNN_CW_STORE((d) + j_, FNN_CW_M((n) - j_), FNN_CW_LOAD(FNN_CW_M((n) - j_), (src) + j_))
#define FNN_CW_MASK(d, g, m, n)                                                                  \
    for (int64_t j_ = 0; j_ < (n); j_ += FNN_CW_V)                                             \
        FNN_CW_STORE((d) + j_, FNN_CW_M((n) - j_),                                             \
                     FNN_CW_ZMOV(FNN_CW_GT0(FNN_CW_M((n) - j_), FNN_CW_LOAD(FNN_CW_M((n) - j_), (m) + j_)), \
                                 FNN_CW_LOAD(FNN_CW_M((n) - j_), (g) + j_)))
#else
#define FNN_CW_COPY(d, src, n) FNN_(copy_row)(d, src, n)
#define FNN_CW_MASK(d, g, m, n) FNN_(mask_row)(d, g, m, n)
#endif

/* The adjoint: dxs (padded planes) += the wide columns, in a fixed order (tap by tap for each
 * element). Columns past a row's real outputs hold exact zeros (dy was widened with zeros), so
 * they change nothing. The taps of a channel overlap almost entirely: where all of them cover
 * an element, it is loaded once, gets every tap added in tap order in a small block, and is
 * stored once (the same sums as tap-by-tap passes, with a ninth of the read-modify-writes). */
FNN_CW_TARGET static void FNN_CAT(FNN_(col2im_wide), FNN_CW_SUFFIX)(const fnn_conv2d_shape *s,
                                                                    const fnn_conv_plan *p,
                                                                    const FNN_T *restrict cols, int64_t ld,
                                                                    int64_t i0, int64_t i1, FNN_T *restrict dxs) {
    enum { B = 128 };
    const int64_t wp = p->wp, plane = p->hp * wp, len = (i1 - i0) * wp - wp + p->ow;
    const int64_t taps = s->kh * s->kw, omax = (s->kh - 1) * wp + s->kw - 1;
    for (int64_t ci = 0; ci < s->c; ci++) {
        const FNN_T *src = cols + ci * taps * ld;
        FNN_T *dst = dxs + ci * plane + i0 * wp;
        const int64_t mid1 = omax < len ? len : omax;     /* [omax, len): every tap covers */
        for (int64_t u = 0; u < s->kh; u++)                /* head [0, omax) and tail [len, ...) */
            for (int64_t v = 0; v < s->kw; v++) {
                const int64_t o = u * wp + v;
                const FNN_T *sr = src + (u * s->kw + v) * ld;
                for (int64_t d = o; d < omax && d < o + len; d++) dst[d] += sr[d - o];
            }
        for (int64_t d0 = omax; d0 < mid1; d0 += B) {
            const int64_t nb = mid1 - d0 < B ? mid1 - d0 : B;
            FNN_T acc[B];
            for (int64_t l = 0; l < nb; l++) acc[l] = dst[d0 + l];
            for (int64_t u = 0; u < s->kh; u++)
                for (int64_t v = 0; v < s->kw; v++) {
                    const FNN_T *sr = src + (u * s->kw + v) * ld + d0 - (u * wp + v);
                    for (int64_t l = 0; l < nb; l++) acc[l] += sr[l];
                }
            for (int64_t l = 0; l < nb; l++) dst[d0 + l] = acc[l];
        }
        for (int64_t u = 0; u < s->kh; u++)
            for (int64_t v = 0; v < s->kw; v++) {
                const int64_t o = u * wp + v;
                const FNN_T *sr = src + (u * s->kw + v) * ld;
                for (int64_t d = mid1 > o ? mid1 : o; d < o + len; d++) dst[d] += sr[d - o];
            }
    }
}


/* The transpose of the wide columns of output rows [i0, i1), with the taps ordered (u, v, ci):
 * row q of rows (leading dimension ld) is [xr pixel (i0*wp + q + u*wp + v), channels 0..c)
 * for u, v in order, i.e. kh runs of kw*c contiguous values. */
FNN_CW_TARGET FNN_SHORT_COPIES static void FNN_CAT(FNN_(rows_wide), FNN_CW_SUFFIX)(const fnn_conv2d_shape *s, const fnn_conv_plan *p,
                                             const FNN_T *restrict xr, int64_t i0, int64_t i1,
                                             FNN_T *restrict rows, int64_t ld) {
    const int64_t wp = p->wp, run = s->kw * s->c, n = (i1 - i0) * wp;
    for (int64_t q = 0; q < n; q++)
        for (int64_t u = 0; u < s->kh; u++)
            FNN_CW_COPY(rows + q * ld + u * run, xr + (i0 * wp + q + u * wp) * s->c, run);
}

/* rows_wide for the real output columns only: row (i - i0)*ow + j of rows is output (i, j)'s
 * patch, the rows_wide row of its wide column i*wp + j. */
FNN_CW_TARGET FNN_SHORT_COPIES static void FNN_CAT(FNN_(rows_real), FNN_CW_SUFFIX)(const fnn_conv2d_shape *s, const fnn_conv_plan *p,
                                             const FNN_T *restrict xr, int64_t i0, int64_t i1,
                                             FNN_T *restrict rows, int64_t ld) {
    const int64_t wp = p->wp, ow = p->ow, run = s->kw * s->c;
    for (int64_t i = i0; i < i1; i++)
        for (int64_t j = 0; j < ow; j++) {
            FNN_T *d = rows + ((i - i0) * ow + j) * ld;
            for (int64_t u = 0; u < s->kh; u++) FNN_CW_COPY(d + u * run, xr + ((i + u) * wp + j) * s->c, run);
        }
}

/* y rows [i0, i1) of one image (f, oh, ow) from the wide GEMM result (f rows, leading dim ld). */
FNN_CW_TARGET FNN_SHORT_COPIES static void FNN_CAT(FNN_(wide_to_y), FNN_CW_SUFFIX)(const fnn_conv2d_shape *s, const fnn_conv_plan *p,
                                             const FNN_T *restrict yw, int64_t ld, int64_t i0, int64_t i1,
                                             FNN_T *restrict yi) {
    const int64_t ow = p->ow;
    for (int64_t o = 0; o < s->f; o++)
        for (int64_t i = i0; i < i1; i++) FNN_CW_COPY(yi + o * p->hw + i * ow, yw + o * ld + (i - i0) * p->wp, ow);
}

/* The wide form of dy rows [i0, i1) of one image: each row padded with zeros to wp; with yi
 * (the forward's ReLU output) the gradient is masked by yi > 0 on the way. */
FNN_CW_TARGET FNN_SHORT_COPIES static void FNN_CAT(FNN_(dy_to_wide), FNN_CW_SUFFIX)(const fnn_conv2d_shape *s, const fnn_conv_plan *p,
                                              const FNN_T *restrict dyi, const FNN_T *restrict yi, int64_t i0,
                                              int64_t i1, FNN_T *restrict yw, int64_t ld) {
    const int64_t ow = p->ow;
    for (int64_t o = 0; o < s->f; o++)
        for (int64_t i = i0; i < i1; i++) {
            FNN_T *d = yw + o * ld + (i - i0) * p->wp;
            const FNN_T *g = dyi + o * p->hw + i * ow;
            if (yi)
                FNN_CW_MASK(d, g, yi + o * p->hw + i * ow, ow);
            else
                FNN_CW_COPY(d, g, ow);
            for (int64_t j = ow; j < p->wp; j++) d[j] = 0;
        }
}


/* dy rows [i0, i1) of one image as an (f, n) matrix (leading dimension ld), masked by yi > 0
 * where yi is given (COLS, DIRECT and WIDE's real columns). */
FNN_CW_TARGET FNN_SHORT_COPIES static void FNN_CAT(FNN_(dy_rows), FNN_CW_SUFFIX)(const fnn_conv2d_shape *s, const fnn_conv_plan *p,
                                           const FNN_T *restrict dyi, const FNN_T *restrict yi, int64_t i0,
                                           int64_t i1, FNN_T *restrict out, int64_t ld) {
    const int64_t n = (i1 - i0) * p->ow;
    for (int64_t o = 0; o < s->f; o++) {
        const int64_t at = o * p->hw + i0 * p->ow;
        if (yi)
            FNN_CW_MASK(out + o * ld, dyi + at, yi + at, n);
        else
            FNN_CW_COPY(out + o * ld, dyi + at, n);
    }
}

#ifdef FNN_CONV_BF16
/* xp (ceil(c/2) planes of hp x wp) = the image xi (c, h, w) zero-padded as bf16 channel pairs:
 * element (cp, r, q) holds channel 2cp in its low half and 2cp+1 (0 past the last channel) in its
 * high half, the k-pairs fnn_gemm_rows_bf16 loads without shuffles. With mi, xi where mi > 0, else
 * 0 (the ReLU backward mask of an output gradient). The conversion is fused into the padding copy. */
FNN_CW_TARGET static void FNN_CAT(FNN_(pad_pairs), FNN_CW_SUFFIX)(const fnn_conv2d_shape *s, const fnn_conv_plan *p,
                                                                  const float *restrict xi, const float *restrict mi,
                                                                  uint32_t *restrict xp) {
    const int64_t wp = p->wp, h = s->h, w = s->w, hw = h * w, plane = p->hp * wp;
    for (int64_t cp = 0; cp < (s->c + 1) / 2; cp++) {
        uint32_t *d = xp + cp * plane;
        const int two = 2 * cp + 1 < s->c;
        const float *x0 = xi + 2 * cp * hw, *x1 = x0 + (two ? hw : 0);
        const float *m0 = mi ? mi + 2 * cp * hw : NULL, *m1 = m0 && two ? m0 + hw : m0;
        memset(d, 0, (size_t)(s->pad_t * wp) * sizeof(*d));
        d += s->pad_t * wp;
        for (int64_t r = 0; r < h; r++, d += wp) {
            uint32_t *dr = d + s->pad_l;
            const float *a = x0 + r * w, *b = x1 + r * w;
            for (int64_t j = 0; j < s->pad_l; j++) d[j] = 0;
            /* branch-free loops per case, so that they vectorise */
            if (m0) {
                const float *ma = m0 + r * w, *mb = m1 + r * w;
                for (int64_t j = 0; j < w; j++)
                    dr[j] = fnn_bf16_from_f32(ma[j] > 0 ? a[j] : 0.0f) |
                            (uint32_t)fnn_bf16_from_f32(two && mb[j] > 0 ? b[j] : 0.0f) << 16;
            } else if (two) {
                for (int64_t j = 0; j < w; j++)
                    dr[j] = fnn_bf16_from_f32(a[j]) | (uint32_t)fnn_bf16_from_f32(b[j]) << 16;
            } else {
                for (int64_t j = 0; j < w; j++) dr[j] = fnn_bf16_from_f32(a[j]);
            }
            for (int64_t j = s->pad_l + w; j < wp; j++) d[j] = 0;
        }
        memset(d, 0, (size_t)(s->pad_b * wp) * sizeof(*d));
    }
}
#endif
