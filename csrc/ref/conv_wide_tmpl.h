/* col2im_wide of conv_tmpl.h, included once per instruction set (FNN_CW_SUFFIX, FNN_CW_TARGET)
 * for each type: plain loops the compiler vectorises for the target. The adds are the same in
 * every variant (the same order per element), so the results are too. */
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

