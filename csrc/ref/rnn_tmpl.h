/* Recurrent layers; included by rnn.c, which defines fnn_rnn_layout (the workspace layout,
 * the same for both types) and the cell codes, once per part and type:
 *   FNN_RNN_PART 1  gate nonlinearities and the step records passed to the gate kernels;
 *   FNN_RNN_PART 2  the fused gate kernels of one step, once per instruction-set variant
 *                   (FNN_RNN_SUFFIX names it, FNN_RNN_TARGET is its function attribute);
 *   FNN_RNN_PART 3  the time loops and the public entry points.
 * The variants of part 2 are the same C code compiled for wider vectors: the same operations
 * in the same order (GCC does not contract them into FMAs under -std=c11), so they agree bit
 * for bit; layer results across FASTNN_ARCH still differ through the GEMM microkernels. */
#include "tmpl_types.h"

#undef FNN_GEMM
#undef FNN_V
#ifdef FNN_DOUBLE
#define FNN_GEMM fnn_gemm_f64
#else
#define FNN_GEMM fnn_gemm_f32
#endif
#define FNN_V(name) FNN_RNN_CAT(FNN_(name), FNN_RNN_SUFFIX)

#if FNN_RNN_PART == 1

/* ---- gate nonlinearities (inlined into the loops below, which the compiler vectorises) --- */

#ifndef FNN_DOUBLE
/* Divisions are the slowest vector instructions here, so the kernels take reciprocals in
 * pairs: 1/a = b r and 1/b = a r with r = 1/(a b). Clamping keeps a b finite.
 *
 * sigmoid(x) = 1 / d with d = 1 + e^-x; fnn_expf saturates instead of overflowing, and x is
 * clamped at -40 (d <= 2.4e17; sigmoid(-40) = 4.2e-18 stands for anything smaller). */
static inline float rnn_sig_den_f32(float x) {
    return 1.0f + fnn_expf(-(x < -40.0f ? -40.0f : x));
}

/* tanh as Cephes' tanhf: an odd polynomial below |x| = 0.625, where sign(x) (1 - 2 / d) with
 * d = e^2|x| + 1 would lose relative accuracy to cancellation, and that formula above (the
 * result is then >= 0.55, so its absolute error of a few 1e-8 is a relative one too). Both
 * branches are computed and one selected, which vectorises. |x| is clamped at 9, where tanh
 * rounds to 1 in float (d <= 6.6e7). Max relative error about 2e-7 (tested). */
static inline float rnn_tanh_den_f32(float x) {
    float ax = fabsf(x);
    return fnn_expf(2.0f * (ax > 9.0f ? 9.0f : ax)) + 1.0f;
}

static inline float rnn_tanh_fin_f32(float x, float inv_den) {
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    p = p * z * x + x;
    float q = 1.0f - 2.0f * inv_den;
    q = x < 0.0f ? -q : q;
    return fabsf(x) < 0.625f ? p : q;
}

static inline float rnn_sigmoid_f32(float x) {
    return 1.0f / rnn_sig_den_f32(x);
}

static inline float rnn_tanh_f32(float x) {
    return rnn_tanh_fin_f32(x, 1.0f / rnn_tanh_den_f32(x));
}

/* two sigmoids with one division */
static inline void rnn_sigmoid2_f32(float x1, float x2, float *s1, float *s2) {
    float d1 = rnn_sig_den_f32(x1), d2 = rnn_sig_den_f32(x2);
    float r = 1.0f / (d1 * d2);
    *s1 = d2 * r;
    *s2 = d1 * r;
}

/* a sigmoid and a tanh with one division */
static inline void rnn_sigmoid_tanh_f32(float xs, float xt, float *s, float *t) {
    float ds = rnn_sig_den_f32(xs), dt = rnn_tanh_den_f32(xt);
    float r = 1.0f / (ds * dt);
    *s = dt * r;
    *t = rnn_tanh_fin_f32(xt, ds * r);
}
#else
static inline double rnn_sigmoid_f64(double x) {
    return 1.0 / (1.0 + exp(-x)); /* exp(-x) = inf gives 0, as it should */
}

static inline double rnn_tanh_f64(double x) {
    return tanh(x);
}

static inline void rnn_sigmoid2_f64(double x1, double x2, double *s1, double *s2) {
    *s1 = rnn_sigmoid_f64(x1);
    *s2 = rnn_sigmoid_f64(x2);
}

static inline void rnn_sigmoid_tanh_f64(double xs, double xt, double *s, double *t) {
    *s = rnn_sigmoid_f64(xs);
    *t = rnn_tanh_f64(xt);
}
#endif

/* One step of a chunk of m batch rows, for the forward gate kernels. A missing previous
 * state (the first step) is a row of zeros read with stride 0. */
typedef struct {
    int cell;
    int64_t m, h;
    FNN_T *g;             /* gate rows (pre-activations in, activations out), stride ldg */
    int64_t ldg;
    const FNN_T *hp;      /* GRU: h_{t-1}, stride ldhp */
    int64_t ldhp;
    const FNN_T *cp;      /* LSTM: c_{t-1}, stride ldcp */
    int64_t ldcp;
    FNN_T *hs;            /* out: h_t, stride ldhs */
    int64_t ldhs;
    FNN_T *cs, *tc;       /* LSTM out: c_t and tanh(c_t), stride ldh */
    int64_t ldh;
    const FNN_T *s;       /* GRU: h_{t-1} W_h + b_h, stride lds */
    int64_t lds;
} FNN_(rnn_fstep);

/* One step of a chunk for the backward gate kernels. */
typedef struct {
    int cell;
    int64_t m, h;
    const FNN_T *g;       /* saved gate activations (SimpleRNN: h_t), stride ldg */
    FNN_T *dg;            /* out: gate pre-activation gradients, stride ldg */
    int64_t ldg;
    const FNN_T *dy;      /* this step's output gradient (a zero row, stride 0, when none) */
    int64_t ldy;
    FNN_T *dh;            /* dL/dh_t from the later steps (GRU out: z dL/dh_t), stride ldh */
    FNN_T *dc;            /* LSTM: dL/dc_t in, dL/dc_{t-1} out, stride ldh */
    const FNN_T *hp;      /* GRU: h_{t-1}; LSTM: c_{t-1}; stride ldhp */
    int64_t ldhp;
    const FNN_T *tc;      /* LSTM: tanh(c_t), stride ldh */
    int64_t ldh;
    FNN_T *pb;            /* the chunk's bias partial sums (kg values) */
} FNN_(rnn_bstep);

/* The input projections as rows of a table (an Embedding in front): x_t W_x + b_x of sample b
 * and step s is row idx[b t + s] of p (v x kx, stride ldp). */
typedef struct {
    const int64_t *idx;
    const FNN_T *p;
    int64_t v, ldp;
} FNN_(rnn_table);

typedef void (*FNN_(rnn_fwd_rows_fn))(const FNN_(rnn_fstep) *p);
typedef void (*FNN_(rnn_bwd_rows_fn))(const FNN_(rnn_bstep) *p);

#elif FNN_RNN_PART == 2

/* ---- fused gate kernels, one batch row of one step ------------------------------------ *
 * Each gate block and state is its own restrict pointer, so the compiler knows the blocks of
 * one row do not overlap and vectorises the j loop. */

/* h = tanh(a): in place (the SimpleRNN gate row keeps h_t for backward) and into hs. */
FNN_RNN_TARGET static inline void FNN_V(rnn_fwd_row)(int64_t H, FNN_T *restrict a, FNN_T *restrict hs) {
    for (int64_t j = 0; j < H; j++) {
        FNN_T v = FNN_(rnn_tanh)(a[j]);
        a[j] = v;
        hs[j] = v;
    }
}

FNN_RNN_TARGET static inline void FNN_V(lstm_fwd_row)(int64_t H, FNN_T *restrict gi, FNN_T *restrict gf,
                                                      FNN_T *restrict gg, FNN_T *restrict go,
                                                      const FNN_T *restrict cp, FNN_T *restrict c,
                                                      FNN_T *restrict tc, FNN_T *restrict hs) {
    for (int64_t j = 0; j < H; j++) {
        FNN_T i, f, g, o;
        FNN_(rnn_sigmoid2)(gi[j], gf[j], &i, &f);
        FNN_(rnn_sigmoid_tanh)(go[j], gg[j], &o, &g);
        FNN_T cv = f * cp[j] + i * g;
        FNN_T t = FNN_(rnn_tanh)(cv);
        gi[j] = i;
        gf[j] = f;
        gg[j] = g;
        go[j] = o;
        c[j] = cv;
        tc[j] = t;
        hs[j] = o * t;
    }
}

/* a* = x W_x + b_x blocks in, activations out; b* = h W_h + b_h blocks; bn_keep keeps
 * h W_hn + b_hn for backward. */
FNN_RNN_TARGET static inline void FNN_V(gru_fwd_row)(int64_t H, FNN_T *restrict ar, FNN_T *restrict az,
                                                     FNN_T *restrict an, FNN_T *restrict bn_keep,
                                                     const FNN_T *restrict br, const FNN_T *restrict bz,
                                                     const FNN_T *restrict bn, const FNN_T *restrict hp,
                                                     FNN_T *restrict hs) {
    for (int64_t j = 0; j < H; j++) {
        FNN_T r, z;
        FNN_(rnn_sigmoid2)(ar[j] + br[j], az[j] + bz[j], &r, &z);
        FNN_T b = bn[j];
        FNN_T n = FNN_(rnn_tanh)(an[j] + r * b);
        ar[j] = r;
        az[j] = z;
        an[j] = n;
        bn_keep[j] = b;
        hs[j] = ((FNN_T)1 - z) * n + z * hp[j];
    }
}

/* Backward kernels: dh (in) is dL/dh_t from the later steps and dy this step's output
 * gradient; they write the pre-activation gradients and add them to the chunk's bias
 * partial sums pb. */
FNN_RNN_TARGET static inline void FNN_V(rnn_bwd_row)(int64_t H, const FNN_T *restrict hv,
                                                     const FNN_T *restrict dh, const FNN_T *restrict dy,
                                                     FNN_T *restrict da, FNN_T *restrict pb) {
    for (int64_t j = 0; j < H; j++) {
        FNN_T d = (dh[j] + dy[j]) * ((FNN_T)1 - hv[j] * hv[j]);
        da[j] = d;
        pb[j] += d;
    }
}

/* dc is dL/dc_t in and dL/dc_{t-1} out; cp is c_{t-1}, tc is tanh(c_t). */
FNN_RNN_TARGET static inline void FNN_V(lstm_bwd_row)(
    int64_t H, const FNN_T *restrict gi, const FNN_T *restrict gf, const FNN_T *restrict gg,
    const FNN_T *restrict go, const FNN_T *restrict cp, const FNN_T *restrict tc, const FNN_T *restrict dh,
    const FNN_T *restrict dy, FNN_T *restrict dc, FNN_T *restrict di, FNN_T *restrict df, FNN_T *restrict dg,
    FNN_T *restrict dout, FNN_T *restrict pi, FNN_T *restrict pf, FNN_T *restrict pg, FNN_T *restrict po) {
    for (int64_t j = 0; j < H; j++) {
        FNN_T d = dh[j] + dy[j];
        FNN_T i = gi[j], f = gf[j], g = gg[j], o = go[j], t = tc[j];
        FNN_T c = dc[j] + d * o * ((FNN_T)1 - t * t);
        FNN_T vi = c * g * i * ((FNN_T)1 - i);
        FNN_T vf = c * cp[j] * f * ((FNN_T)1 - f);
        FNN_T vg = c * i * ((FNN_T)1 - g * g);
        FNN_T vo = d * t * o * ((FNN_T)1 - o);
        di[j] = vi;
        df[j] = vf;
        dg[j] = vg;
        dout[j] = vo;
        pi[j] += vi;
        pf[j] += vf;
        pg[j] += vg;
        po[j] += vo;
        dc[j] = c * f;
    }
}

/* dh is dL/dh_t in and its direct part z dL/dh_t out (the GEMM then adds dG_h W_h^T).
 * Gradient blocks: dr, dz, dn_h (of h W_hn + b_hn) and dn_x (of x W_xn + b_xn). */
FNN_RNN_TARGET static inline void FNN_V(gru_bwd_row)(
    int64_t H, const FNN_T *restrict gr, const FNN_T *restrict gz, const FNN_T *restrict gn,
    const FNN_T *restrict gb, const FNN_T *restrict hp, const FNN_T *restrict dy, FNN_T *restrict dh,
    FNN_T *restrict dr, FNN_T *restrict dz, FNN_T *restrict dnh, FNN_T *restrict dnx, FNN_T *restrict pr,
    FNN_T *restrict pz, FNN_T *restrict pnh, FNN_T *restrict pnx) {
    for (int64_t j = 0; j < H; j++) {
        FNN_T d = dh[j] + dy[j];
        FNN_T r = gr[j], z = gz[j], n = gn[j];
        FNN_T vn = d * ((FNN_T)1 - z) * ((FNN_T)1 - n * n);
        FNN_T vz = d * (hp[j] - n) * z * ((FNN_T)1 - z);
        FNN_T vr = vn * gb[j] * r * ((FNN_T)1 - r);
        FNN_T vnh = vn * r;
        dr[j] = vr;
        dz[j] = vz;
        dnh[j] = vnh;
        dnx[j] = vn;
        pr[j] += vr;
        pz[j] += vz;
        pnh[j] += vnh;
        pnx[j] += vn;
        dh[j] = d * z;
    }
}

/* All rows of one step: the cell's gate kernel, row after row (the bias partial sums of a
 * chunk are thus added in a fixed order). */
FNN_RNN_TARGET static void FNN_V(rnn_fwd_rows)(const FNN_(rnn_fstep) *p) {
    const int64_t H = p->h;
    for (int64_t r = 0; r < p->m; r++) {
        FNN_T *g = p->g + r * p->ldg, *hs = p->hs + r * p->ldhs;
        if (p->cell == FNN_CELL_RNN) {
            FNN_V(rnn_fwd_row)(H, g, hs);
        } else if (p->cell == FNN_CELL_LSTM) {
            FNN_V(lstm_fwd_row)(H, g, g + H, g + 2 * H, g + 3 * H, p->cp + r * p->ldcp, p->cs + r * p->ldh,
                                p->tc + r * p->ldh, hs);
        } else {
            const FNN_T *s = p->s + r * p->lds;
            FNN_V(gru_fwd_row)(H, g, g + H, g + 2 * H, g + 3 * H, s, s + H, s + 2 * H, p->hp + r * p->ldhp, hs);
        }
    }
}

FNN_RNN_TARGET static void FNN_V(rnn_bwd_rows)(const FNN_(rnn_bstep) *p) {
    const int64_t H = p->h, ldg = p->ldg, ldh = p->ldh;
    FNN_T *pb = p->pb;
    for (int64_t r = 0; r < p->m; r++) {
        const FNN_T *g = p->g + r * ldg, *dy = p->dy + r * p->ldy;
        FNN_T *dg = p->dg + r * ldg, *dh = p->dh + r * ldh;
        if (p->cell == FNN_CELL_RNN) {
            FNN_V(rnn_bwd_row)(H, g, dh, dy, dg, pb);
        } else if (p->cell == FNN_CELL_LSTM) {
            FNN_V(lstm_bwd_row)(H, g, g + H, g + 2 * H, g + 3 * H, p->hp + r * p->ldhp, p->tc + r * ldh, dh, dy,
                                p->dc + r * ldh, dg, dg + H, dg + 2 * H, dg + 3 * H, pb, pb + H, pb + 2 * H,
                                pb + 3 * H);
        } else {
            FNN_V(gru_bwd_row)(H, g, g + H, g + 2 * H, g + 3 * H, p->hp + r * p->ldhp, dy, dh, dg, dg + H,
                               dg + 2 * H, dg + 3 * H, pb, pb + H, pb + 2 * H, pb + 3 * H);
        }
    }
}

#elif FNN_RNN_PART == 3

/* The gate-kernel variant for the kernel variant in use (FASTNN_ARCH or CPU detection). */
static FNN_(rnn_fwd_rows_fn) FNN_(rnn_fwd_rows_pick)(void) {
#if FNN_RNN_X86
    switch (fnn_arch_get()) {
    case FNN_ARCH_AVX512: return FNN_RNN_CAT(FNN_(rnn_fwd_rows), _avx512);
    case FNN_ARCH_AVX2: return FNN_RNN_CAT(FNN_(rnn_fwd_rows), _avx2);
    default: break;
    }
#endif
    return FNN_RNN_CAT(FNN_(rnn_fwd_rows), _generic);
}

static FNN_(rnn_bwd_rows_fn) FNN_(rnn_bwd_rows_pick)(void) {
#if FNN_RNN_X86
    switch (fnn_arch_get()) {
    case FNN_ARCH_AVX512: return FNN_RNN_CAT(FNN_(rnn_bwd_rows), _avx512);
    case FNN_ARCH_AVX2: return FNN_RNN_CAT(FNN_(rnn_bwd_rows), _avx2);
    default: break;
    }
#endif
    return FNN_RNN_CAT(FNN_(rnn_bwd_rows), _generic);
}

/* ---- FNN_RNN_BF16 ("mixed_bfloat16", float only: the entries reject it for double) -------- */

/* Rows [0, m) of dst (stride ldd) = the first w values of src's rows (stride lds) rounded to
 * bf16 (to nearest even, kept as float); dst may be src. Branch-free, so the loop vectorises. */
static void FNN_(rnn_round_rows)(int64_t m, int64_t w, const FNN_T *src, int64_t lds, FNN_T *dst, int64_t ldd) {
    for (int64_t i = 0; i < m; i++) {
        const FNN_T *s = src + i * lds;
        FNN_T *d = dst + i * ldd;
        for (int64_t j = 0; j < w; j++) d[j] = (FNN_T)fnn_bf16_to_float(fnn_bf16_from_f32((float)s[j]));
    }
}

/* The products over all steps (input projection, dx, weight gradients): fnn_gemm_bf16 under
 * FNN_RNN_BF16, which rounds the float operands while packing them (its AVX512-BF16 kernel is
 * the fast one for these large products); the same sums as the float GEMM on rounded copies. */
static int FNN_(rnn_gemm_all)(int bf16, int flags, int64_t m, int64_t n, int64_t k, FNN_T beta, const FNN_T *a,
                              int64_t lda, const FNN_T *b, int64_t ldb, const FNN_T *bias, FNN_T *c, int64_t ldc,
                              int nt) {
#ifndef FNN_DOUBLE
    if (bf16) return fnn_gemm_bf16(flags, m, n, k, 1.0f, beta, a, lda, b, ldb, bias, c, ldc, nt);
#endif
    (void)bf16;
    return FNN_GEMM(flags, m, n, k, 1, beta, a, lda, b, ldb, bias, c, ldc, nt);
}

/* ---- one chunk of batch rows [r0, r1): its rows are the block [r0*t, r1*t) of every
 * buffer, step s at rows r0*t + s*m + i (see rnn.c) --------------------------------------- */

static int FNN_(rnn_fwd_chunk)(const fnn_rnn_layout *L, FNN_(rnn_fwd_rows_fn) gates, int64_t r0, int64_t r1,
                               int seq, int bf16, const FNN_T *x, const FNN_T *wx, const FNN_T *wh, const FNN_T *bx,
                               const FNN_T *bh, const FNN_(rnn_table) *tab, FNN_T *y, FNN_T *ws, int nt) {
    const int64_t T = L->t, F = L->f, H = L->h, m = r1 - r0, base = r0 * T;
    const int64_t ldg = L->ldg, ldh = L->ldh, ldxh = L->ldxh;
    FNN_T *XH = ws + L->o_xh + base * ldxh, *G = ws + L->o_g + base * ldg;
    const FNN_T *Z = ws + L->o_zero;

    /* [x_t | h_{t-1}] rows, time-major within the chunk; h_{-1} = 0 */
    for (int64_t i = 0; i < m; i++) {
        for (int64_t s = 0; s < T; s++)
            if (F > 0) memcpy(XH + (s * m + i) * ldxh, x + ((r0 + i) * T + s) * F, (size_t)F * sizeof(FNN_T));
        memset(XH + i * ldxh + F, 0, (size_t)H * sizeof(FNN_T));
    }
    /* the input projections of all steps: G = X W_x + b_x, one GEMM, or rows of the table */
    int st = FNN_OK;
    if (tab) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t s = 0; s < T; s++)
                memcpy(G + (s * m + i) * ldg, tab->p + tab->idx[(r0 + i) * T + s] * tab->ldp,
                       (size_t)L->kx * sizeof(FNN_T));
    } else {
        st = FNN_(rnn_gemm_all)(bf16, 0, m * T, L->kx, F, 0, XH, ldxh, wx, L->kx, bx, G, ldg, nt);
        if (st != FNN_OK) return st;
    }

    FNN_(rnn_fstep) p;
    memset(&p, 0, sizeof(p));
    p.cell = L->cell;
    p.m = m;
    p.h = H;
    p.ldg = ldg;
    p.ldh = ldh;
    p.lds = L->lds;
    for (int64_t s = 0; s < T; s++) {
        const int64_t row = s * m;
        const FNN_T *hp = XH + row * ldxh + F; /* h_{t-1} */
        p.g = G + row * ldg;
        p.hp = hp;
        p.ldhp = ldxh;
        /* the first step has no h_{t-1} W_h (k = 0: the GEMM adds only b_h) */
        const int64_t k = s > 0 ? H : 0;
        /* the product's h_{t-1}: under FNN_RNN_BF16 its rounded copy (W_h was rounded once per
         * call); the gate kernels keep reading the unrounded h_{t-1}. m rows of a small product:
         * the float GEMM on rounded operands, the same sums as fnn_gemm_bf16's. */
        const FNN_T *hm = hp;
        int64_t ldhm = ldxh;
        if (bf16 && k > 0) {
            FNN_T *hr = ws + L->o_hr + r0 * ldh;
            FNN_(rnn_round_rows)(m, H, hp, ldxh, hr, ldh);
            hm = hr;
            ldhm = ldh;
        }
        if (L->cell == FNN_CELL_GRU) {
            /* h W_h + b_h apart from x W_x + b_x: the n block needs it on its own */
            FNN_T *sb = ws + L->o_s + r0 * L->lds;
            p.s = sb;
            st = FNN_GEMM(0, m, 3 * H, k, 1, 0, hm, ldhm, wh, L->ldw, bh, sb, L->lds, nt);
        } else {
            /* accumulated onto the input projection */
            st = FNN_GEMM(0, m, L->kx, k, 1, 1, hm, ldhm, wh, L->ldw, bh, p.g, ldg, nt);
        }
        if (st != FNN_OK) return st;
        if (L->cell == FNN_CELL_LSTM) {
            FNN_T *CS = ws + L->o_cs + base * ldh;
            p.cp = s > 0 ? CS + (row - m) * ldh : Z;
            p.ldcp = s > 0 ? ldh : 0;
            p.cs = CS + row * ldh;
            p.tc = ws + L->o_tc + (base + row) * ldh;
        }
        /* h_t goes to the next step's [x | h] rows; the last one straight to the output */
        FNN_T *yt = seq ? y + (r0 * T + s) * H : y + r0 * H;
        const int64_t ldy = seq ? T * H : H;
        if (s + 1 < T) {
            p.hs = XH + (row + m) * ldxh + F;
            p.ldhs = ldxh;
        } else {
            p.hs = yt;
            p.ldhs = ldy;
        }
        gates(&p);
        if (seq && s + 1 < T)
            for (int64_t i = 0; i < m; i++) memcpy(yt + i * ldy, p.hs + i * ldxh, (size_t)H * sizeof(FNN_T));
    }
    return FNN_OK;
}

static int FNN_(rnn_bwd_chunk)(const fnn_rnn_layout *L, FNN_(rnn_bwd_rows_fn) gates, int64_t c, int64_t r0,
                               int64_t r1, int seq, int bf16, const FNN_T *wx, const FNN_T *dy, FNN_T *dx, const FNN_T *ws,
                               FNN_T *bws, int nt) {
    const int64_t T = L->t, F = L->f, H = L->h, m = r1 - r0, base = r0 * T;
    const int64_t ldg = L->ldg, ldh = L->ldh, ldxh = L->ldxh;
    const FNN_T *G = ws + L->o_g + base * ldg, *XH = ws + L->o_xh + base * ldxh;
    const FNN_T *Z = bws + L->o_bzero, *WT = bws + L->o_wht;
    FNN_T *dG = bws + L->o_dg + base * ldg;
    FNN_(rnn_bstep) p;
    memset(&p, 0, sizeof(p));
    p.cell = L->cell;
    p.m = m;
    p.h = H;
    p.ldg = ldg;
    p.ldh = ldh;
    p.dh = bws + L->o_dh + r0 * ldh;
    p.pb = bws + L->o_pb + c * ldg;
    memset(p.dh, 0, (size_t)(m * ldh) * sizeof(FNN_T));
    memset(p.pb, 0, (size_t)ldg * sizeof(FNN_T));
    if (L->cell == FNN_CELL_LSTM) {
        p.dc = bws + L->o_dc + r0 * ldh;
        memset(p.dc, 0, (size_t)(m * ldh) * sizeof(FNN_T));
    }
    for (int64_t s = T - 1; s >= 0; s--) {
        const int64_t row = s * m;
        p.g = G + row * ldg;
        p.dg = dG + row * ldg;
        p.dy = Z;
        p.ldy = 0;
        if (seq) {
            p.dy = dy + (r0 * T + s) * H;
            p.ldy = T * H;
        } else if (s == T - 1) {
            p.dy = dy + r0 * H;
            p.ldy = H;
        }
        if (L->cell == FNN_CELL_LSTM) {
            const FNN_T *CS = ws + L->o_cs + base * ldh;
            p.hp = s > 0 ? CS + (row - m) * ldh : Z; /* c_{t-1} */
            p.ldhp = s > 0 ? ldh : 0;
            p.tc = ws + L->o_tc + (base + row) * ldh;
        } else {
            p.hp = XH + row * ldxh + F; /* h_{t-1} */
            p.ldhp = ldxh;
        }
        gates(&p);
        /* FNN_RNN_BF16: dG_t rounded in place for every product that reads it (the gate kernel
         * has already added the unrounded values to the bias sums); W_h^T is rounded */
        if (bf16) FNN_(rnn_round_rows)(m, L->kg, p.dg, ldg, p.dg, ldg);
        /* dL/dh_{t-1} = dG_t W_h^T (+ the direct part z dL/dh_t of a GRU); the h-side gate
         * gradients are the first kx columns of dG (for a GRU [dr, dz, dn_h]) */
        if (s > 0) {
            int st = FNN_GEMM(0, m, H, L->kx, 1, L->cell == FNN_CELL_GRU ? 1 : 0, p.dg, ldg, WT, H, NULL, p.dh,
                              ldh, nt);
            if (st != FNN_OK) return st;
        }
    }
    /* dx of these rows: dG_x W_x^T (for a GRU the x side is [dr, dz] and dn_x), while the
     * chunk's dG is still in cache */
    if (dx && F > 0) {
        FNN_T *dX = bws + L->o_dx + base * F;
        const int gru = L->cell == FNN_CELL_GRU;
        int st = FNN_(rnn_gemm_all)(bf16, FNN_TRANS_B, m * T, F, gru ? 2 * H : L->kx, 0, dG, ldg, wx, L->kx, NULL,
                                    dX, F, nt);
        if (st == FNN_OK && gru)
            st = FNN_(rnn_gemm_all)(bf16, FNN_TRANS_B, m * T, F, H, 1, dG + 3 * H, ldg, wx + 2 * H, L->kx, NULL, dX,
                                    F, nt);
        if (st != FNN_OK) return st;
        for (int64_t i = 0; i < m; i++)
            for (int64_t s = 0; s < T; s++)
                memcpy(dx + ((r0 + i) * T + s) * F, dX + (s * m + i) * F, (size_t)F * sizeof(FNN_T));
    }
    return FNN_OK;
}

/* Rows [c0, c1) of dst (cols x rows) = src (rows x cols)^T, in 8 x 8 tiles: the source rows
 * of an LSTM's W_h of 256 units are 4 KiB apart, so all rows of a tile share one L1 set; 8 of
 * them fit its 8 ways, 16 evicted each other and the copy ran 2.5x slower (256 x 1024,
 * measured). */
static void FNN_(rnn_transpose)(int64_t rows, int64_t cols, int64_t c0, int64_t c1, const FNN_T *restrict src,
                                FNN_T *restrict dst) {
    for (int64_t i0 = 0; i0 < rows; i0 += 8)
        for (int64_t j0 = c0; j0 < c1; j0 += 8) {
            const int64_t i1 = i0 + 8 < rows ? i0 + 8 : rows, j1 = j0 + 8 < c1 ? j0 + 8 : c1;
            for (int64_t j = j0; j < j1; j++)
                for (int64_t i = i0; i < i1; i++) dst[j * rows + i] = src[i * cols + j];
        }
}

/* Threads for a pass over a layer's kx columns in blocks of 16 (whole 64-byte lines of float,
 * so threads never write the same line), about `work` operations in all; *nblk gets the
 * block count. Thread p of tn then owns the columns [rnn_cols_at(p), rnn_cols_at(p + 1)). */
static int FNN_(rnn_col_threads)(int64_t kx, int64_t work, int nt, int64_t *nblk) {
    *nblk = (kx + 15) / 16;
    int tn = fnn_threads_for(work, (int64_t)1 << 17, nt);
    return tn > *nblk ? (int)*nblk : tn;
}

static int64_t FNN_(rnn_cols_at)(int64_t kx, int64_t nblk, int64_t p, int tn) {
    const int64_t j = nblk * p / tn * 16;
    return j < kx ? j : kx;
}

/* ---- the layer calls ------------------------------------------------------------------- */

/* The flags: FNN_RNN_SEQ, and FNN_RNN_BF16 for float only ("mixed_bfloat16" is a float32
 * policy) and not with a table (its products, E W_x and the table's gradient, are the caller's,
 * and a table gradient summed before its product would round other values). */
static int FNN_(rnn_flags_check)(int flags, int table) {
    if (flags & ~(FNN_RNN_SEQ | FNN_RNN_BF16)) return FNN_ERR_ARG;
#ifdef FNN_DOUBLE
    if (flags & FNN_RNN_BF16) return FNN_ERR_ARG;
#endif
    if (table && (flags & FNN_RNN_BF16)) return FNN_ERR_ARG;
    return FNN_OK;
}

/* The table's sizes and indices are checked before anything is read or written. */
static int FNN_(rnn_table_check)(const fnn_rnn_layout *L, const FNN_(rnn_table) *tab) {
    if (L->f != 0 || tab->v < 1 || tab->ldp < L->kx || (L->n > 0 && !tab->idx)) return FNN_ERR_ARG;
    int64_t bad = 0;
    for (int64_t i = 0; i < L->n * L->t; i++) bad |= (int64_t)((uint64_t)tab->idx[i] >= (uint64_t)tab->v);
    return bad ? FNN_ERR_INDEX : FNN_OK;
}

/* tab: the input projections as table rows (f = 0; x, wx and bx unused), or NULL. */
static int FNN_(recurrent_fwd)(int cell, int flags, int64_t n, int64_t t, int64_t f, int64_t h, const FNN_T *x,
                               const FNN_T *wx, const FNN_T *wh, const FNN_T *bx, const FNN_T *bh,
                               const FNN_(rnn_table) *tab, FNN_T *y, FNN_T *ws, int nt) {
    fnn_rnn_layout L;
    int status;
    if ((status = FNN_(rnn_flags_check)(flags, tab != NULL)) != FNN_OK) return status;
    if ((status = rnn_layout(cell, n, t, f, h, &L)) != FNN_OK) return status;
    if (tab && (status = FNN_(rnn_table_check)(&L, tab)) != FNN_OK) return status;
    if (n == 0) return FNN_OK;
    if ((f > 0 && (!x || !wx)) || !wh || (!bx && !tab) || (tab && !tab->p) || !bh || !y || !ws) return FNN_ERR_ARG;
    if (nt < 1) nt = 1;
    const int64_t at = rnn_align_from(ws, sizeof(FNN_T), 1);
    ws[0] = (FNN_T)at;
    ws += at;
    const int seq = (flags & FNN_RNN_SEQ) != 0, bf16 = (flags & FNN_RNN_BF16) != 0;
    memset(ws + L.o_zero, 0, (size_t)L.ldh * sizeof(FNN_T));
    if (bf16) {
        /* rounded once per call: every step of every chunk reads it */
        FNN_(rnn_round_rows)(h, L.kx, wh, L.kx, ws + L.o_wh, L.ldw);
        wh = ws + L.o_wh;
    } else if (L.wh_pad) {
        FNN_T *whp = ws + L.o_wh;
        for (int64_t r = 0; r < h; r++) memcpy(whp + r * L.ldw, wh + r * L.kx, (size_t)L.kx * sizeof(FNN_T));
        wh = whp;
    }
    const FNN_(rnn_fwd_rows_fn) gates = FNN_(rnn_fwd_rows_pick)();
    const int64_t C = L.nchunks;
    if (C == 1) return FNN_(rnn_fwd_chunk)(&L, gates, 0, n, seq, bf16, x, wx, wh, bx, bh, tab, y, ws, nt);
    const int tn = rnn_chunk_threads(&L, nt);
#pragma omp parallel for num_threads(tn) schedule(static) if (tn > 1)
    for (int64_t c = 0; c < C; c++) {
        int st = FNN_(rnn_fwd_chunk)(&L, gates, n * c / C, n * (c + 1) / C, seq, bf16, x, wx, wh, bx, bh, tab, y, ws,
                                     1);
        if (st != FNN_OK) {
#pragma omp atomic write
            status = st;
        }
    }
    return status;
}

/* dp[:, j0:j1] = the x-side gate gradients of the table rows (dG columns [0, kx), for a GRU
 * [dr, dz] and dn_x), each row the sum of its indices' rows in index order: the same order for
 * any split of the columns. */
static void FNN_(rnn_table_grad_cols)(const fnn_rnn_layout *L, const FNN_(rnn_table) *tab, int64_t j0, int64_t j1,
                                      const FNN_T *restrict dG, FNN_T *restrict dp) {
    const int64_t T = L->t, C = L->nchunks, n = L->n, ldg = L->ldg, ldp = tab->ldp, H = L->h;
    for (int64_t r = 0; r < tab->v; r++) memset(dp + r * ldp + j0, 0, (size_t)(j1 - j0) * sizeof(FNN_T));
    /* the GRU's n block of the table takes dG's 4th block */
    const int64_t split = L->cell == FNN_CELL_GRU ? 2 * H : L->kx;
    /* two plain loops (the columns before and after the split), which vectorise; one loop
     * choosing the column per element did not and took 6% of emb64's training step */
    const int64_t a1 = j1 < split ? j1 : split, b0 = j0 > split ? j0 : split;
    for (int64_t c = 0; c < C; c++) {
        const int64_t r0 = n * c / C, m = n * (c + 1) / C - r0;
        for (int64_t i = 0; i < m; i++)
            for (int64_t s = 0; s < T; s++) {
                const FNN_T *restrict g = dG + (r0 * T + s * m + i) * ldg;
                FNN_T *restrict d = dp + tab->idx[(r0 + i) * T + s] * ldp;
                for (int64_t j = j0; j < a1; j++) d[j] += g[j];
                for (int64_t j = b0; j < j1; j++) d[j] += g[j + H];
            }
    }
}

/* tab: the forward's table (f = 0); its gradient goes to dp (v x kx, stride tab->ldp). */
static int FNN_(recurrent_bwd)(int cell, int flags, int64_t n, int64_t t, int64_t f, int64_t h, const FNN_T *x,
                               const FNN_T *wx, const FNN_T *wh, const FNN_T *ws, const FNN_T *dy, FNN_T *dwx,
                               FNN_T *dwh, FNN_T *dbx, FNN_T *dbh, FNN_T *dx, const FNN_(rnn_table) *tab, FNN_T *dp,
                               FNN_T *bws, int nt) {
    fnn_rnn_layout L;
    int status;
    if ((status = FNN_(rnn_flags_check)(flags, tab != NULL)) != FNN_OK) return status;
    if ((status = rnn_layout(cell, n, t, f, h, &L)) != FNN_OK) return status;
    if (tab && (status = FNN_(rnn_table_check)(&L, tab)) != FNN_OK) return status;
    if (tab && !dp) return FNN_ERR_ARG;
    if ((f > 0 && (!wx || !dwx)) || !wh || !dwh || !dbx || !dbh) return FNN_ERR_ARG;
    const int64_t kx = L.kx, ldg = L.ldg, H = h;
    if (n == 0) {
        if (f > 0) memset(dwx, 0, (size_t)(f * kx) * sizeof(FNN_T));
        memset(dwh, 0, (size_t)(h * kx) * sizeof(FNN_T));
        memset(dbx, 0, (size_t)kx * sizeof(FNN_T));
        memset(dbh, 0, (size_t)kx * sizeof(FNN_T));
        if (tab)
            for (int64_t r = 0; r < tab->v; r++) memset(dp + r * tab->ldp, 0, (size_t)kx * sizeof(FNN_T));
        return FNN_OK;
    }
    /* x itself is not read: the forward kept a copy in ws */
    if ((f > 0 && !x) || !ws || !dy || !bws) return FNN_ERR_ARG;
    if (nt < 1) nt = 1;
    /* the forward's record of where its layout starts (not one: ws was not filled by it) */
    if (!(ws[0] >= 1 && ws[0] <= FNN_RNN_WS_SLACK)) return FNN_ERR_ARG;
    ws += (int64_t)ws[0];
    bws += rnn_align_from(bws, sizeof(FNN_T), 0);
    const int seq = (flags & FNN_RNN_SEQ) != 0, bf16 = (flags & FNN_RNN_BF16) != 0;
    memset(bws + L.o_bzero, 0, (size_t)L.ldh * sizeof(FNN_T));
    int64_t nblk;
    int tn = FNN_(rnn_col_threads)(kx, h * kx, nt, &nblk);
    FNN_PARALLEL_FOR(tn, p, tn, {
        FNN_(rnn_transpose)(h, kx, FNN_(rnn_cols_at)(kx, nblk, p, tn), FNN_(rnn_cols_at)(kx, nblk, p + 1, tn), wh,
                            bws + L.o_wht);
    });
    /* the per-step dG_t W_h^T reads W_h^T rounded (elementwise: the same bits for any split) */
    if (bf16) FNN_(rnn_round_rows)(1, kx * h, bws + L.o_wht, 0, bws + L.o_wht, 0);

    /* backpropagation through time, chunk by chunk */
    const FNN_(rnn_bwd_rows_fn) gates = FNN_(rnn_bwd_rows_pick)();
    const int64_t C = L.nchunks;
    if (C == 1) {
        status = FNN_(rnn_bwd_chunk)(&L, gates, 0, 0, n, seq, bf16, wx, dy, tab ? NULL : dx, ws, bws, nt);
    } else {
        const int ct = rnn_chunk_threads(&L, nt);
#pragma omp parallel for num_threads(ct) schedule(static) if (ct > 1)
        for (int64_t c = 0; c < C; c++) {
            int st = FNN_(rnn_bwd_chunk)(&L, gates, c, n * c / C, n * (c + 1) / C, seq, bf16, wx, dy,
                                         tab ? NULL : dx, ws, bws, 1);
            if (st != FNN_OK) {
#pragma omp atomic write
                status = st;
            }
        }
    }
    if (status != FNN_OK) return status;

    /* [dW_x; dW_h] = [X | H_prev]^T dG: one GEMM over all n*t rows (in place when the two
     * gradients are adjacent, as in a model's flat gradient buffer). A GRU's n block has
     * different x-side and h-side gradients: two more GEMMs. */
    const FNN_T *XH = ws + L.o_xh, *dG = bws + L.o_dg;
    const int64_t rows = n * t, ldxh = L.ldxh;
    const int gru = cell == FNN_CELL_GRU;
    FNN_T *dw = (f > 0 && dwh == dwx + f * kx) ? dwx : bws + L.o_dw;
    /* (under FNN_RNN_BF16 X and H_prev are rounded while packed; dG is already rounded) */
    status = FNN_(rnn_gemm_all)(bf16, FNN_TRANS_A, f + H, gru ? 2 * H : kx, rows, 0, XH, ldxh, dG, ldg, NULL, dw,
                                kx, nt);
    if (status == FNN_OK && gru && f > 0)
        status = FNN_(rnn_gemm_all)(bf16, FNN_TRANS_A, f, H, rows, 0, XH, ldxh, dG + 3 * H, ldg, NULL, dw + 2 * H,
                                    kx, nt);
    if (status == FNN_OK && gru)
        status = FNN_(rnn_gemm_all)(bf16, FNN_TRANS_A, H, H, rows, 0, XH + f, ldxh, dG + 2 * H, ldg, NULL,
                                    dw + f * kx + 2 * H, kx, nt);
    if (status != FNN_OK) return status;
    if (dw != dwx) {
        if (f > 0) memcpy(dwx, dw, (size_t)(f * kx) * sizeof(FNN_T));
        memcpy(dwh, dw + f * kx, (size_t)(H * kx) * sizeof(FNN_T));
    }

    /* bias gradients: the chunk partial sums, added in chunk order */
    const FNN_T *PB = bws + L.o_pb;
    for (int64_t j = 0; j < L.kg; j++) {
        FNN_T sum = 0;
        for (int64_t c = 0; c < C; c++) sum += PB[c * ldg + j];
        if (!gru || j < 2 * H) {
            dbx[j] = sum;
            dbh[j] = sum;
        } else if (j < 3 * H) {
            dbh[j] = sum;
        } else {
            dbx[j - H] = sum;
        }
    }

    /* the table's gradient, threads owning blocks of columns */
    if (tab) {
        tn = FNN_(rnn_col_threads)(kx, rows * kx, nt, &nblk);
        FNN_PARALLEL_FOR(tn, p, tn, {
            FNN_(rnn_table_grad_cols)(&L, tab, FNN_(rnn_cols_at)(kx, nblk, p, tn),
                                      FNN_(rnn_cols_at)(kx, nblk, p + 1, tn), dG, dp);
        });
    }
    return FNN_OK;
}

#endif /* FNN_RNN_PART */
