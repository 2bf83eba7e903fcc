/*
 * gemm_avx2_rows.h - the AVX2 gathered-rows kernel (ukg; see kern_rows_f32's comment in gemm_avx2.c),
 * included by gemm_avx2.c once per element type with FNN_RT (the element), FNN_RV (its vector),
 * FNN_RL (lanes per vector), FNN_RMR (the tile's rows), FNN_RS(x) (x with the type's suffix, for
 * the helpers load_part, load_span, store_part and the names defined here) and the vector
 * operations FNN_RZERO, FNN_RLOADU, FNN_RSTOREU, FNN_RBCAST, FNN_RSET1, FNN_RFMA, FNN_RMUL,
 * FNN_RADD, FNN_RMAX defined; it undefines them at its end, ready for the next type.
 */
FNN_INLINE void FNN_RS(kern_rows)(const int R, const int V, int64_t k, const FNN_RT *restrict a, const int64_t a_rs,
                              const int64_t a_cs, const FNN_RT *restrict b, const int64_t *restrict boff,
                              const int64_t b2, FNN_RT *restrict c, int64_t ldc, const int64_t c2, const int nr0,
                              const int nr1, const FNN_RS(fnn_gemm_epi) *epi, const FNN_RT *restrict bias)
{
    FNN_RV acc[FNN_RMR][2];
#pragma GCC unroll 8
    for (int i = 0; i < FNN_RMR; i++) {
        acc[i][0] = FNN_RZERO();
        acc[i][1] = FNN_RZERO();
    }
    /* the span the call reads */
    int64_t omin = boff[0], omax = boff[0];
    for (int64_t p = 1; p < k; p++) {
        omin = boff[p] < omin ? boff[p] : omin;
        omax = boff[p] > omax ? boff[p] : omax;
    }
    const FNN_RT *lo = b + omin + (V > 1 && b2 < 0 ? b2 : 0);
    const FNN_RT *hi = b + omax + (V > 1 && b2 + nr1 > nr0 ? b2 + nr1 : nr0);
    for (int64_t p = 0; p < k; p++) {
        const FNN_RT *bp = b + boff[p];
        const FNN_RV b0 = nr0 == FNN_RL ? FNN_RLOADU(bp) : FNN_RS(load_span)(bp, nr0, lo, hi);
        FNN_RV b1 = FNN_RZERO();
        if (V > 1)
            b1 = nr1 == FNN_RL ? FNN_RLOADU(bp + b2) : FNN_RS(load_span)(bp + b2, nr1, lo, hi);
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            const FNN_RV ai = FNN_RBCAST(a + i * a_rs);
            acc[i][0] = FNN_RFMA(ai, b0, acc[i][0]);
            if (V > 1)
                acc[i][1] = FNN_RFMA(ai, b1, acc[i][1]);
        }
        a += a_cs;
    }

    const FNN_RV alpha = FNN_RSET1(epi->alpha), beta = FNN_RSET1(epi->beta);
    const FNN_RV zero = FNN_RZERO();
    const int flags = epi->flags;
    const int bias_row = bias && (flags & FNN_GEMM_E_BIASROW);
    FNN_RV bc[2] = {zero, zero};
    if (bias && !bias_row) {
        bc[0] = nr0 == FNN_RL ? FNN_RLOADU(bias) : FNN_RS(load_part)(bias, nr0);
        if (V > 1)
            bc[1] = nr1 == FNN_RL ? FNN_RLOADU(bias + c2) : FNN_RS(load_part)(bias + c2, nr1);
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; i++)
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) {
            const int n = v ? nr1 : nr0;
            FNN_RT *ci = c + i * ldc + (v ? c2 : 0);
            FNN_RV r = FNN_RMUL(alpha, acc[i][v]);
            if (!(flags & FNN_GEMM_E_BETA0))
                r = FNN_RFMA(beta, n == FNN_RL ? FNN_RLOADU(ci) : FNN_RS(load_part)(ci, n), r);
            if (bias_row)
                r = FNN_RADD(r, FNN_RSET1(bias[i]));
            else if (bias)
                r = FNN_RADD(r, bc[v]);
            if (flags & FNN_GEMM_E_RELU)
                r = FNN_RMAX(zero, r); /* max(0, NaN) = NaN */
            if (n == FNN_RL)
                FNN_RSTOREU(ci, r);
            else
                FNN_RS(store_part)(ci, r, n);
        }
}

static void FNN_RS(ukg)(int64_t k, const FNN_RT *a, int64_t a_rs, int64_t a_cs, const FNN_RT *b, const int64_t *boff,
                    int64_t b2, FNN_RT *c, int64_t ldc, int64_t c2, int mr, int nr0, int nr1,
                    const FNN_RS(fnn_gemm_epi) *epi, const FNN_RT *bias)
{
#define FNN_KG(V)                                                                              \
    switch (mr) {                                                                                  \
    case 1: FNN_RS(kern_rows)(1, V, k, a, a_rs, a_cs, b, boff, b2, c, ldc, c2, nr0, nr1, epi, bias); break; \
    case 2: FNN_RS(kern_rows)(2, V, k, a, a_rs, a_cs, b, boff, b2, c, ldc, c2, nr0, nr1, epi, bias); break; \
    case 3: FNN_RS(kern_rows)(3, V, k, a, a_rs, a_cs, b, boff, b2, c, ldc, c2, nr0, nr1, epi, bias); break; \
    case 4: FNN_RS(kern_rows)(4, V, k, a, a_rs, a_cs, b, boff, b2, c, ldc, c2, nr0, nr1, epi, bias); break; \
    case 5: FNN_RS(kern_rows)(5, V, k, a, a_rs, a_cs, b, boff, b2, c, ldc, c2, nr0, nr1, epi, bias); break; \
    default: FNN_RS(kern_rows)(6, V, k, a, a_rs, a_cs, b, boff, b2, c, ldc, c2, nr0, nr1, epi, bias); break; \
    }
    if (nr1 > 0) {
        FNN_KG(2)
    } else {
        FNN_KG(1)
    }
#undef FNN_KG
}

#undef FNN_RT
#undef FNN_RV
#undef FNN_RL
#undef FNN_RMR
#undef FNN_RS
#undef FNN_RZERO
#undef FNN_RLOADU
#undef FNN_RSTOREU
#undef FNN_RBCAST
#undef FNN_RSET1
#undef FNN_RFMA
#undef FNN_RMUL
#undef FNN_RADD
#undef FNN_RMAX
