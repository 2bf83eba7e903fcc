/* Recurrent layers (SimpleRNN, LSTM, GRU): float and double from rnn_tmpl.h.
 *
 * One C call per layer forward and one per backward:
 *   forward   G = X W_x + b_x, one GEMM for the input projections of all steps;
 *             then per step one GEMM G_t += h_{t-1} W_h + b_h and one fused gate kernel
 *   backward  per step, last to first: one fused gate-gradient kernel writes dG_t and
 *             dL/dh_{t-1} = dG_t W_h^T is one GEMM; then dx = dG W_x^T and
 *             [dW_x; dW_h] = [X | H_prev]^T dG are GEMMs over all steps at once, and the bias
 *             gradients sum the gate kernels' per-chunk partial sums.
 *
 * Threads: the batch rows are cut into chunks that depend on n only (about 16 rows each).
 * Rows never interact in the recurrence, so each OpenMP thread runs the whole time loop of
 * its chunks with single-threaded GEMMs: no barrier per step, and every chunk makes exactly
 * the same calls whatever the thread count, so results are bit-identical for any n_threads.
 * With a single chunk (n < 32) the GEMMs take the threads instead (the GEMM itself gives the
 * same bits for any thread count), and so do the GEMMs over all steps.
 *
 * Layout: every per-row buffer is chunk-major, time-major within a chunk: chunk c (rows
 * [r0, r1), m = r1 - r0) owns rows [r0*t, r1*t) and step s of its row r0 + i is row
 * r0*t + s*m + i. A chunk's input projection is then one GEMM over its rows, done just
 * before its time loop, so its gate rows (~1 MB for 16 rows, 28 steps, 4 x 128 gates) can
 * still be in L2 when the steps read them; the rows of one step are contiguous; and the
 * [x_t | h_{t-1}] rows (XH) feed the input projection, the recurrent GEMM (h_{t-1} in place)
 * and the single weight-gradient GEMM. h_{-1} = 0 rows make the first step uniform.
 *
 * Both workspaces start at a 64-byte line inside the caller's buffer (see rnn_align_from).
 * Forward workspace (kept for backward): XH (n*t x ldxh), G (n*t x ldg; gate activations;
 * SimpleRNN h_t; a GRU adds h W_hn + b_hn as a 4th block), LSTM c_t and tanh(c_t) (n*t x ldh
 * each), GRU scratch for h W_h + b_h of one step (n x lds), W_h with padded rows where its
 * width is a multiple of 256 (see rnn_layout) or rounded to bf16, one step's h_{t-1} rounded to bf16
 * (FNN_RNN_BF16), a zero row.
 * Backward workspace: dG (n*t x ldg; a GRU's blocks are dr, dz, dn_h, dn_x; rounded to bf16
 * in place after each step's gate kernel under FNN_RNN_BF16), dL/dh and
 * LSTM dL/dc of the current step (n x ldh), W_h^T (rounded under FNN_RNN_BF16), dx rows, per-chunk bias sums, the
 * [dW_x; dW_h] result when the two are not adjacent, a zero row.
 */
#include <math.h>
#include <string.h>
#include "../core/internal.h"
#include "../gemm/gemm_bf16_internal.h"

/* Rows of about this many batch samples form one chunk of the time loop. */
#define FNN_RNN_CHUNK_ROWS 16

typedef struct {
    int cell;
    int64_t n, t, f, h;
    int64_t kx;   /* columns of W_x: H, 4H, 3H */
    int64_t kg;   /* values kept per row and step in G / dG: H, 4H, 4H (GRU adds h W_hn + b_hn) */
    int64_t ldg;  /* row stride of G and dG */
    int64_t ldh;  /* row stride of the H-wide state rows */
    int64_t ldxh; /* row stride of the [x_t | h_{t-1}] rows */
    int64_t lds;  /* row stride of the GRU recurrent scratch */
    int64_t ldw;  /* row stride of W_h as the per-step GEMMs read it (kx when W_h is read in place) */
    int64_t nchunks;
    int wh_pad;   /* W_h is copied to rows ldw apart (ldw != kx); else read in place unless bf16 */
    /* forward workspace, offsets in elements */
    int64_t o_xh, o_g, o_cs, o_tc, o_s, o_wh, o_hr, o_zero, fwd_size;
    /* backward workspace */
    int64_t o_dg, o_dh, o_dc, o_wht, o_dx, o_pb, o_dw, o_bzero, bwd_size;
} fnn_rnn_layout;

/* Row strides: whole 64-byte lines, and never a multiple of 256 elements (1 KiB of float,
 * 2 KiB of double): rows that far apart map to the same L1 sets, and the GEMM then packs its
 * operands, which made the per-step products up to 60% slower (16 x 512 x 128, measured). */
static int64_t rnn_ld(int64_t w) {
    int64_t ld = (w + 15) / 16 * 16;
    if (ld % 256 == 0) ld += 16;
    return ld;
}

/* Workspace alignment. Callers' buffers are often 16 bytes past a 64-byte line (numpy's large
 * arrays are), and then every row of the layout straddles two lines: the layer calls of
 * lstm256 ran 5-15% slower. So the layouts start at the first 64-byte boundary after ws[0],
 * and the forward records that offset (in elements) in ws[0]: the backward then finds the
 * forward's data in a copy of ws at another address too (merely unaligned there). */
#define FNN_RNN_WS_SLACK 16 /* elements: the record and up to 15 more to reach a line */

static int64_t rnn_align_from(const void *p, size_t elem, int64_t first) {
    const uintptr_t a = (uintptr_t)p + (uintptr_t)first * elem;
    return first + (int64_t)((64 - a % 64) % 64 / elem);
}

static int64_t rnn_take(int64_t *top, int64_t size) {
    int64_t at = *top;
    *top += (size + 15) / 16 * 16;
    return at;
}

/* Chunks of the batch: about FNN_RNN_CHUNK_ROWS rows each, their count a multiple of 4 (or
 * 2) when there are enough rows, so 2 and 4 threads share them evenly. */
static int64_t rnn_chunks(int64_t n) {
    int64_t c = n / FNN_RNN_CHUNK_ROWS;
    if (c >= 4) return c - c % 4;
    if (c >= 2) return 2;
    return 1;
}

/* Threads for the chunk loop: at most one per chunk, and small layers stay serial (about the
 * GEMM's break-even work per thread; a thread woken for less costs more than it saves). The
 * chunks make the same calls either way. */
static int rnn_chunk_threads(const fnn_rnn_layout *L, int nt) {
    const int64_t macs = L->n * L->t * L->kx * (L->f + L->h);
    nt = fnn_threads_for(macs, (int64_t)1 << 18, nt);
    return L->nchunks < nt ? (int)L->nchunks : nt;
}

static int rnn_layout(int cell, int64_t n, int64_t t, int64_t f, int64_t h, fnn_rnn_layout *L) {
    if (n < 0 || t < 1 || f < 0 || h < 1) return FNN_ERR_ARG;
    /* Every buffer must stay addressable with int64_t element offsets (and by size_t bytes):
     * a generous bound checked in double so the check itself cannot overflow. */
    double rows = (double)n * (double)t, width = (double)f + 16.0 * (double)h + 64.0;
    double weights = ((double)f + (double)h + 16.0) * 4.0 * (double)h;
    if (rows * width * 6.0 > 1e17 || weights * 6.0 > 1e17) return FNN_ERR_ARG;
    memset(L, 0, sizeof(*L));
    L->cell = cell;
    L->n = n;
    L->t = t;
    L->f = f;
    L->h = h;
    L->kx = cell == FNN_CELL_LSTM ? 4 * h : cell == FNN_CELL_GRU ? 3 * h : h;
    L->kg = cell == FNN_CELL_RNN ? h : 4 * h;
    L->ldg = rnn_ld(L->kg);
    L->ldh = rnn_ld(h);
    L->lds = rnn_ld(3 * h);
    L->ldxh = rnn_ld(f + h);
    L->nchunks = rnn_chunks(n);
    const int64_t nt = n * t;
    int64_t top = 0;
    L->o_xh = rnn_take(&top, nt * L->ldxh);
    L->o_g = rnn_take(&top, nt * L->ldg);
    L->o_cs = cell == FNN_CELL_LSTM ? rnn_take(&top, nt * L->ldh) : -1;
    L->o_tc = cell == FNN_CELL_LSTM ? rnn_take(&top, nt * L->ldh) : -1;
    L->o_s = cell == FNN_CELL_GRU ? rnn_take(&top, n * L->lds) : -1;
    /* W_h is read by every step's product: rows kx apart alias in L1 like the state rows above
     * when kx is a multiple of 256 (an LSTM of 64, 128, 256 ... units). Copied once per call to
     * rows rnn_ld(kx) apart (where that differs from kx), the per-step product ran 1.4x faster
     * (16 x 1024 x 256, measured). */
    L->ldw = rnn_ld(L->kx);
    L->wh_pad = L->ldw != L->kx;
    /* The workspace functions take no flags, so the layout is the worst case of both paths:
     * FNN_RNN_BF16 always copies W_h (rounded) and rounds each step's h_{t-1} rows into o_hr
     * (n x ldh); the float path leaves these h (kx + ldh) + n ldh elements unused when W_h is
     * read in place, at most a few percent of the workspace. */
    L->o_wh = rnn_take(&top, h * L->ldw);
    L->o_hr = rnn_take(&top, n * L->ldh);
    L->o_zero = rnn_take(&top, L->ldh);
    L->fwd_size = top + FNN_RNN_WS_SLACK;
    top = 0;
    L->o_dg = rnn_take(&top, nt * L->ldg);
    L->o_dh = rnn_take(&top, n * L->ldh);
    L->o_dc = cell == FNN_CELL_LSTM ? rnn_take(&top, n * L->ldh) : -1;
    L->o_wht = rnn_take(&top, L->kx * h);
    L->o_dx = rnn_take(&top, nt * f);
    L->o_pb = rnn_take(&top, L->nchunks * L->ldg);
    L->o_dw = rnn_take(&top, (f + h) * L->kx);
    L->o_bzero = rnn_take(&top, L->ldh);
    L->bwd_size = top + FNN_RNN_WS_SLACK;
    return FNN_OK;
}

static int64_t rnn_ws(int cell, int64_t n, int64_t t, int64_t f, int64_t h, int bwd) {
    fnn_rnn_layout L;
    int st = rnn_layout(cell, n, t, f, h, &L);
    if (st != FNN_OK) return st;
    return bwd ? L.bwd_size : L.fwd_size;
}

int64_t fnn_rnn_fwd_workspace(int64_t n, int64_t t, int64_t f, int64_t h) {
    return rnn_ws(FNN_CELL_RNN, n, t, f, h, 0);
}
int64_t fnn_rnn_bwd_workspace(int64_t n, int64_t t, int64_t f, int64_t h) {
    return rnn_ws(FNN_CELL_RNN, n, t, f, h, 1);
}
int64_t fnn_lstm_fwd_workspace(int64_t n, int64_t t, int64_t f, int64_t h) {
    return rnn_ws(FNN_CELL_LSTM, n, t, f, h, 0);
}
int64_t fnn_lstm_bwd_workspace(int64_t n, int64_t t, int64_t f, int64_t h) {
    return rnn_ws(FNN_CELL_LSTM, n, t, f, h, 1);
}
int64_t fnn_gru_fwd_workspace(int64_t n, int64_t t, int64_t f, int64_t h) {
    return rnn_ws(FNN_CELL_GRU, n, t, f, h, 0);
}
int64_t fnn_gru_bwd_workspace(int64_t n, int64_t t, int64_t f, int64_t h) {
    return rnn_ws(FNN_CELL_GRU, n, t, f, h, 1);
}

/* The gate kernels are also compiled for AVX2 and AVX-512 (function attributes, so the rest
 * of this file stays portable) and picked by fnn_arch_get(), like the GEMM microkernels. The
 * double forward kernels call libm's exp and tanh, which stay scalar in every variant. */
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define FNN_RNN_X86 1
#else
#define FNN_RNN_X86 0
#endif
#define FNN_RNN_CAT_(a, b) a##b
#define FNN_RNN_CAT(a, b) FNN_RNN_CAT_(a, b)

#include "rnn_instances.h"
#define FNN_DOUBLE
#include "rnn_instances.h"
#undef FNN_DOUBLE

int fnn_rnn_fwd_f32(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const float *x, const float *wx,
                    const float *wh, const float *bx, const float *bh, float *y, float *ws, int n_threads) {
    return recurrent_fwd_f32(FNN_CELL_RNN, flags, n, t, f, h, x, wx, wh, bx, bh, NULL, y, ws, n_threads);
}
int fnn_rnn_fwd_f64(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const double *x, const double *wx,
                    const double *wh, const double *bx, const double *bh, double *y, double *ws, int n_threads) {
    return recurrent_fwd_f64(FNN_CELL_RNN, flags, n, t, f, h, x, wx, wh, bx, bh, NULL, y, ws, n_threads);
}
int fnn_rnn_bwd_f32(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const float *x, const float *wx,
                    const float *wh, const float *ws, const float *dy, float *dwx, float *dwh, float *dbx,
                    float *dbh, float *dx, float *bws, int n_threads) {
    return recurrent_bwd_f32(FNN_CELL_RNN, flags, n, t, f, h, x, wx, wh, ws, dy, dwx, dwh, dbx, dbh, dx, NULL, NULL, bws,
                             n_threads);
}
int fnn_rnn_bwd_f64(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const double *x, const double *wx,
                    const double *wh, const double *ws, const double *dy, double *dwx, double *dwh, double *dbx,
                    double *dbh, double *dx, double *bws, int n_threads) {
    return recurrent_bwd_f64(FNN_CELL_RNN, flags, n, t, f, h, x, wx, wh, ws, dy, dwx, dwh, dbx, dbh, dx, NULL, NULL, bws,
                             n_threads);
}
int fnn_lstm_fwd_f32(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const float *x, const float *wx,
                     const float *wh, const float *bx, const float *bh, float *y, float *ws, int n_threads) {
    return recurrent_fwd_f32(FNN_CELL_LSTM, flags, n, t, f, h, x, wx, wh, bx, bh, NULL, y, ws, n_threads);
}
int fnn_lstm_fwd_f64(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const double *x, const double *wx,
                     const double *wh, const double *bx, const double *bh, double *y, double *ws, int n_threads) {
    return recurrent_fwd_f64(FNN_CELL_LSTM, flags, n, t, f, h, x, wx, wh, bx, bh, NULL, y, ws, n_threads);
}
int fnn_lstm_bwd_f32(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const float *x, const float *wx,
                     const float *wh, const float *ws, const float *dy, float *dwx, float *dwh, float *dbx,
                     float *dbh, float *dx, float *bws, int n_threads) {
    return recurrent_bwd_f32(FNN_CELL_LSTM, flags, n, t, f, h, x, wx, wh, ws, dy, dwx, dwh, dbx, dbh, dx, NULL, NULL, bws,
                             n_threads);
}
int fnn_lstm_bwd_f64(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const double *x, const double *wx,
                     const double *wh, const double *ws, const double *dy, double *dwx, double *dwh,
                     double *dbx, double *dbh, double *dx, double *bws, int n_threads) {
    return recurrent_bwd_f64(FNN_CELL_LSTM, flags, n, t, f, h, x, wx, wh, ws, dy, dwx, dwh, dbx, dbh, dx, NULL, NULL, bws,
                             n_threads);
}
int fnn_gru_fwd_f32(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const float *x, const float *wx,
                    const float *wh, const float *bx, const float *bh, float *y, float *ws, int n_threads) {
    return recurrent_fwd_f32(FNN_CELL_GRU, flags, n, t, f, h, x, wx, wh, bx, bh, NULL, y, ws, n_threads);
}
int fnn_gru_fwd_f64(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const double *x, const double *wx,
                    const double *wh, const double *bx, const double *bh, double *y, double *ws, int n_threads) {
    return recurrent_fwd_f64(FNN_CELL_GRU, flags, n, t, f, h, x, wx, wh, bx, bh, NULL, y, ws, n_threads);
}
int fnn_gru_bwd_f32(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const float *x, const float *wx,
                    const float *wh, const float *ws, const float *dy, float *dwx, float *dwh, float *dbx,
                    float *dbh, float *dx, float *bws, int n_threads) {
    return recurrent_bwd_f32(FNN_CELL_GRU, flags, n, t, f, h, x, wx, wh, ws, dy, dwx, dwh, dbx, dbh, dx, NULL, NULL, bws,
                             n_threads);
}
int fnn_gru_bwd_f64(int flags, int64_t n, int64_t t, int64_t f, int64_t h, const double *x, const double *wx,
                    const double *wh, const double *ws, const double *dy, double *dwx, double *dwh, double *dbx,
                    double *dbh, double *dx, double *bws, int n_threads) {
    return recurrent_bwd_f64(FNN_CELL_GRU, flags, n, t, f, h, x, wx, wh, ws, dy, dwx, dwh, dbx, dbh, dx, NULL, NULL, bws,
                             n_threads);
}

/* Fed by an Embedding: the input projections are rows of the table p = E W_x + b_x. */
#define FNN_RNN_TABLE_ENTRIES(T, SUF)                                                                    \
    int fnn_recurrent_table_fwd_##SUF(int cell, int flags, int64_t n, int64_t t, int64_t h, int64_t v,       \
                                      const int64_t *idx, const T *p, int64_t ldp, const T *wh, const T *bh, \
                                      T *y, T *ws, int n_threads) {                                        \
        if (cell < FNN_CELL_RNN || cell > FNN_CELL_GRU) return FNN_ERR_ARG;                                \
        const rnn_table_##SUF tab = {idx, p, v, ldp};                                                      \
        return recurrent_fwd_##SUF(cell, flags, n, t, 0, h, NULL, NULL, wh, NULL, bh, &tab, y, ws, n_threads); \
    }                                                                                                      \
    int fnn_recurrent_table_bwd_##SUF(int cell, int flags, int64_t n, int64_t t, int64_t h, int64_t v,       \
                                      const int64_t *idx, const T *wh, const T *ws, const T *dy, T *dwh,     \
                                      T *dbx, T *dbh, T *dp, int64_t ldp, T *bws, int n_threads) {         \
        if (cell < FNN_CELL_RNN || cell > FNN_CELL_GRU) return FNN_ERR_ARG;                                \
        const rnn_table_##SUF tab = {idx, NULL, v, ldp};                                                   \
        return recurrent_bwd_##SUF(cell, flags, n, t, 0, h, NULL, NULL, wh, ws, dy, NULL, dwh, dbx, dbh, NULL, \
                                   &tab, dp, bws, n_threads);                                              \
    }
FNN_RNN_TABLE_ENTRIES(float, f32)
FNN_RNN_TABLE_ENTRIES(double, f64)
