/*
 * gemm_amx.c - the AMX kernel of fnn_gemm_bf16 (csrc/gemm/gemm_bf16.c): TDPBF16PS on a 32 x 32
 * block of C held in four 16 x 16 float32 tiles (tmm0-3: rows 0-15 / 16-31 x columns 0-15 /
 * 16-31), two A tiles (tmm4-5: 16 rows x 16 k-pairs) and two B tiles (tmm6-7: 16 pair-rows x 16
 * columns); each step of 16 k-pairs is 4 tile loads for 4 dot products of 16 x 16 x 32.
 *
 * Layouts (kc values of k padded with zeros to a multiple of 32: whole tile steps):
 *   A: its own packer: step s of a 32-row panel is 32 rows of 16 pairs (64 bytes each), so each A
 *      tile is 1 KiB contiguous (stride 64 B); pairs of a row are consecutive k values of it.
 *   B: the k-pair panels of the other kernels (NR = 32 uint32 per pair-row), a B tile at
 *      b + 16 s NR (+ 16), stride 128 B; the pair-rows past the data zeroed.
 * The epilogue (alpha, beta, bias, ReLU) runs in plain C on the tiles stored to the stack.
 *
 * Two builds of this one file:
 *   setup.py: -mamx-tile -mamx-bf16 plus the AVX-512 flags of csrc/x86/avx512bf16 (whose
 *     vectorised B packers and conversions it borrows), only when the compiler accepts them; it
 *     then defines FNN_HAVE_AMX. Dispatched only where CPUID/XCR0 report AMX (csrc/core/cpu.c),
 *     after the OS granted the tile state and a first-use self-check passed (gemm_bf16.c).
 *   -DFNN_AMX_EMULATE (the C harness, csrc/gemm/test): no AMX or AVX-512 flags; the tile
 *     operations below run as plain C on thread-local tiles with TDPBF16PS's documented
 *     arithmetic, so the packing, blocking, tile arithmetic and epilogue are tested on any CPU.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* syscall() */
#endif
#include <errno.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#if defined(__linux__) && !defined(FNN_AMX_EMULATE)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#ifndef FNN_AMX_EMULATE
#include <immintrin.h>
#endif

#include "../../gemm/gemm_bf16_internal.h"

#define MR 32
#define NR 32
#define KP 16 /* k-pairs per tile step: one 64-byte tile row */

/* LDTILECFG's 64-byte operand (palette 1): bytes per row and rows of each tile. */
typedef struct {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

_Static_assert(sizeof(amx_cfg) == 64, "LDTILECFG reads 64 bytes");

/* All eight tiles 16 rows of 64 bytes: C (16 x 16 float), A (16 rows x 16 pairs), B (16
 * pair-rows x 16 columns). */
static const amx_cfg cfg = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

/* ---- the tile operations ---------------------------------------------------------------------- */

#ifdef FNN_AMX_EMULATE
/* Thread-local tiles with the hardware's rules: tile instructions before LDTILECFG (or after
 * TILERELEASE) and shapes that do not match raise #UD on a real CPU; here they count a fault
 * (fnn_amx_emu_faults, read by the harness) and do nothing. */
typedef struct {
    int configured;
    uint8_t rows[8];
    uint16_t colsb[8];
    uint32_t t[8][16][16];
} emu_tiles;

static _Thread_local emu_tiles emu;
int fnn_amx_emu_faults;

static void emu_fault(void)
{
    __atomic_add_fetch(&fnn_amx_emu_faults, 1, __ATOMIC_RELAXED);
}

/* whether the calling thread holds a tile configuration (the harness checks the release) */
int fnn_amx_emu_configured(void)
{
    return emu.configured;
}

static void emu_loadcfg(const amx_cfg *c)
{
    if (c->palette != 1) {
        emu_fault();
        return;
    }
    for (int t = 0; t < 8; t++) {
        if (c->rows[t] > 16 || c->colsb[t] > 64) {
            emu_fault();
            return;
        }
        emu.rows[t] = c->rows[t];
        emu.colsb[t] = c->colsb[t];
    }
    memset(emu.t, 0, sizeof(emu.t)); /* LDTILECFG zeroes the tiles */
    emu.configured = 1;
}

static void emu_release(void)
{
    memset(&emu, 0, sizeof(emu));
}

static void emu_zero(int t)
{
    if (!emu.configured) {
        emu_fault();
        return;
    }
    memset(emu.t[t], 0, sizeof(emu.t[t]));
}

static void emu_load(int t, const void *base, int64_t stride)
{
    if (!emu.configured) {
        emu_fault();
        return;
    }
    memset(emu.t[t], 0, sizeof(emu.t[t]));
    for (int r = 0; r < emu.rows[t]; r++)
        memcpy(emu.t[t][r], (const char *)base + r * stride, emu.colsb[t]);
}

static void emu_store(int t, void *base, int64_t stride)
{
    if (!emu.configured) {
        emu_fault();
        return;
    }
    for (int r = 0; r < emu.rows[t]; r++)
        memcpy((char *)base + r * stride, emu.t[t][r], emu.colsb[t]);
}

/* DAZ on an input, FTZ on a result: a float32 subnormal becomes a zero of its sign. */
static inline float emu_flush(float x)
{
    return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x;
}

static inline float emu_bf16(uint32_t pair, int hi)
{
    return emu_flush(fnn_bf16_to_float((uint16_t)(hi ? pair >> 16 : pair & 0xffffu)));
}

/* TDPBF16PS c, a, b as the Intel SDM (rev. 084 and later) writes its operation: for each row m,
 * two float32 partial sums per output column, temp[2n] over the even and temp[2n+1] over the odd
 * bf16 of the pairs, each step an FMA with DAZ, FTZ and round to nearest even, k in order; then
 * c[m][n] += (temp[2n] + temp[2n+1]), both adds DAZ/FTZ/RNE. (The older text of the intrinsics
 * guide accumulates straight into c, even then odd; both are exact products summed in float32.) */
static void emu_dp(int c, int a, int b)
{
    if (!emu.configured) {
        emu_fault();
        return;
    }
    const int M = emu.rows[c], K = emu.colsb[a] / 4, N = emu.colsb[c] / 4;
    if (emu.rows[a] != M || emu.rows[b] != K || emu.colsb[b] != emu.colsb[c] || c == a || c == b || a == b) {
        emu_fault();
        return;
    }
    for (int m = 0; m < M; m++) {
        float even[16], odd[16];
        for (int n = 0; n < N; n++)
            even[n] = odd[n] = 0.0f;
        for (int k = 0; k < K; k++) {
            const uint32_t ap = emu.t[a][m][k];
            const float a0 = emu_bf16(ap, 0), a1 = emu_bf16(ap, 1);
            for (int n = 0; n < N; n++) {
                const uint32_t bp = emu.t[b][k][n];
                even[n] = emu_flush(fmaf(a0, emu_bf16(bp, 0), emu_flush(even[n])));
                odd[n] = emu_flush(fmaf(a1, emu_bf16(bp, 1), emu_flush(odd[n])));
            }
        }
        for (int n = 0; n < N; n++) {
            float acc;
            memcpy(&acc, &emu.t[c][m][n], sizeof(acc));
            acc = emu_flush(emu_flush(acc) + emu_flush(emu_flush(even[n]) + emu_flush(odd[n])));
            memcpy(&emu.t[c][m][n], &acc, sizeof(acc));
        }
    }
}

#define TILE_LOADCFG(c) emu_loadcfg(c)
#define TILE_RELEASE() emu_release()
#define TILE_ZERO(t) emu_zero(t)
#define TILE_LOAD(t, p, stride) emu_load(t, p, stride)
#define TILE_STORE(t, p, stride) emu_store(t, p, stride)
#define TILE_DP(c, a, b) emu_dp(c, a, b)
#else
/* the intrinsics take tile numbers as immediates: the macros keep them literal */
#define TILE_LOADCFG(c) _tile_loadconfig(c)
#define TILE_RELEASE() _tile_release()
#define TILE_ZERO(t) _tile_zero(t)
#define TILE_LOAD(t, p, stride) _tile_loadd(t, p, stride)
#define TILE_STORE(t, p, stride) _tile_stored(t, p, stride)
#define TILE_DP(c, a, b) _tile_dpbf16ps(c, a, b)
#endif

/* ---- permission from the OS --------------------------------------------------------------------
 * Linux (5.16+) enables the 8 KiB tile data state per process on request; without it the first
 * tile instruction faults. Asked once: the grant holds for every thread of the process. */
static pthread_once_t request_once = PTHREAD_ONCE_INIT;
static int request_granted, request_errno;

static void request_tiles(void)
{
#if defined(FNN_AMX_EMULATE)
    request_granted = 1; /* emulated tiles need no kernel state */
#elif defined(__linux__) && defined(SYS_arch_prctl)
    const long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
    /* refused with EINVAL before Linux 5.16, and with ENOSPC while a thread's alternate signal
     * stack (sigaltstack, e.g. Python's faulthandler) is too small for the tile state */
    request_granted = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    request_errno = request_granted ? 0 : errno;
#else
    request_granted = 0; /* no known way to ask this OS: the AVX512-BF16 kernel runs */
    request_errno = ENOSYS;
#endif
}

int fnn_amx_request_errno(void)
{
    (void)fnn_amx_request();
    return request_errno;
}

int fnn_amx_request(void)
{
    if (pthread_once(&request_once, request_tiles) != 0)
        return 0;
    return request_granted;
}

static void thread_init(void)
{
    TILE_LOADCFG(&cfg);
}

static void thread_fini(void)
{
    TILE_RELEASE();
}

/* ---- packing ------------------------------------------------------------------------------- */

static inline uint32_t val(int s16, const void *src, int64_t off)
{
    return s16 ? ((const uint16_t *)src)[off] : fnn_bf16_from_f32(((const float *)src)[off]);
}

/* A panel of W rows over kc values: pair q of row i at dst[(q / KP) W KP + i KP + q % KP], rows
 * i >= w and pairs past kc zero. trans: element (i, p) at src[i*ld + p] (a row's pairs are
 * consecutive values of the source row). */
static void pack_a_trans(int W, int64_t w, int64_t kc, int s16, const void *src, int64_t ld, uint32_t *dst)
{
    const int64_t kq = (kc + 1) / 2, kqp = fnn_bf16_panel_pairs(kc, 2 * KP);
    for (int64_t s = 0; s < kqp; s += KP) {
        uint32_t *blk = dst + s * W;
        for (int64_t i = 0; i < W; i++) {
            uint32_t *row = blk + i * KP;
            const int64_t full = (i < w) ? (kc / 2 - s < KP ? (kc / 2 - s > 0 ? kc / 2 - s : 0) : KP) : 0;
            const int64_t off = i * ld + 2 * s;
            /* whole pairs: separate loops per source type, which the compiler vectorises */
            if (s16) {
                const uint16_t *x = (const uint16_t *)src + off;
                for (int64_t q = 0; q < full; q++)
                    row[q] = (uint32_t)x[2 * q] | ((uint32_t)x[2 * q + 1] << 16);
            } else {
                const float *x = (const float *)src + off;
                for (int64_t q = 0; q < full; q++)
                    row[q] = (uint32_t)fnn_bf16_from_f32(x[2 * q]) | ((uint32_t)fnn_bf16_from_f32(x[2 * q + 1]) << 16);
            }
            for (int64_t q = full; q < KP; q++) {
                /* the odd last value of k (paired with zero), then zeros to the tile step */
                const int64_t p = 2 * (s + q);
                row[q] = (i < w && s + q < kq) ? val(s16, src, i * ld + p) : 0;
            }
        }
    }
}

/* copy: element (i, p) at src[p*ld + i] (a column of the panel's rows is contiguous). */
static void pack_a_copy(int W, int64_t w, int64_t kc, int s16, const void *src, int64_t ld, uint32_t *dst)
{
    const int64_t kq = (kc + 1) / 2, kqp = fnn_bf16_panel_pairs(kc, 2 * KP);
    for (int64_t q = 0; q < kqp; q++) {
        uint32_t *col = dst + (q / KP) * W * KP + q % KP;
        const int64_t p = 2 * q;
        const int64_t rows = q < kq ? w : 0;
        for (int64_t i = 0; i < rows; i++) {
            const uint32_t lo = val(s16, src, p * ld + i);
            const uint32_t hi = p + 1 < kc ? val(s16, src, (p + 1) * ld + i) : 0;
            col[i * KP] = lo | (hi << 16);
        }
        for (int64_t i = rows; i < W; i++)
            col[i * KP] = 0;
    }
}

/* B: the shared k-pair panels (AVX-512 packers in the real build, the portable ones emulated),
 * then zero pair-rows up to the tile step. */
#ifdef FNN_AMX_EMULATE
#define B_PACKER(how) fnn_bf16_pack_##how##_ref
#else
#define B_PACKER(how) fnn_gemm_desc_avx512bf16.pack_##how
#endif

static void pack_b(fnn_bf16_pack_fn pack, int W, int64_t w, int64_t kc, int s16, const void *src, int64_t ld,
                   uint32_t *dst)
{
    pack(W, w, kc, s16, src, ld, dst);
    const int64_t kq = (kc + 1) / 2, kqp = fnn_bf16_panel_pairs(kc, 2 * KP);
    memset(dst + kq * W, 0, sizeof(uint32_t) * (size_t)((kqp - kq) * W));
}

static void pack_b_copy(int W, int64_t w, int64_t kc, int s16, const void *src, int64_t ld, uint32_t *dst)
{
    pack_b(B_PACKER(copy), W, w, kc, s16, src, ld, dst);
}

static void pack_b_trans(int W, int64_t w, int64_t kc, int s16, const void *src, int64_t ld, uint32_t *dst)
{
    pack_b(B_PACKER(trans), W, w, kc, s16, src, ld, dst);
}

#ifndef FNN_AMX_EMULATE
static void convert(int64_t n, const float *x, void *y)
{
    fnn_gemm_desc_avx512bf16.convert(n, x, y);
}

static void round_f32(int64_t n, const float *x, void *y)
{
    fnn_gemm_desc_avx512bf16.round(n, x, y);
}
#endif

/* ---- the microkernel ----------------------------------------------------------------------- */

/* kq: pairs of the panels, a multiple of KP (k_align below). Every element of C gets the same
 * tile instructions and epilogue whatever mr, nr and the tile position. */
static void ukr(int64_t kq, const uint32_t *a, const uint32_t *b, float *c, int64_t ldc, int mr, int nr,
                const fnn_gemm_epi_f32 *epi, const float *bias)
{
    _Alignas(64) float acc[MR][NR];
    TILE_ZERO(0);
    TILE_ZERO(1);
    TILE_ZERO(2);
    TILE_ZERO(3);
    for (int64_t q = 0; q < kq; q += KP) {
        const uint32_t *as = a + q * MR, *bs = b + q * NR;
        TILE_LOAD(4, as, KP * 4);
        TILE_LOAD(5, as + 16 * KP, KP * 4);
        TILE_LOAD(6, bs, NR * 4);
        TILE_LOAD(7, bs + 16, NR * 4);
        TILE_DP(0, 4, 6);
        TILE_DP(1, 4, 7);
        TILE_DP(2, 5, 6);
        TILE_DP(3, 5, 7);
    }
    TILE_STORE(0, &acc[0][0], NR * 4);
    TILE_STORE(1, &acc[0][16], NR * 4);
    TILE_STORE(2, &acc[16][0], NR * 4);
    TILE_STORE(3, &acc[16][16], NR * 4);
    /* epi's fields in locals: the stores into C could alias it */
    const int flags = epi->flags, scale = epi->alpha != 1.0f;
    const float alpha = epi->alpha, beta = epi->beta;
    for (int i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        const float brow = (bias && (flags & FNN_GEMM_E_BIASROW)) ? bias[i] : 0.0f;
        for (int j = 0; j < nr; j++) {
            float r = acc[i][j];
            if (scale)
                r = alpha * r;
            if (!(flags & FNN_GEMM_E_BETA0))
                r = fmaf(beta, ci[j], r); /* one rounding, as the other kernels' FMA */
            if (bias)
                r += (flags & FNN_GEMM_E_BIASROW) ? brow : bias[j];
            if (flags & FNN_GEMM_E_RELU)
                r = r > 0.0f ? r : 0.0f; /* NaN to 0, as max(r, 0) of the other kernels */
            ci[j] = r;
        }
    }
}

/* kc 512 values: A and B micro-panels 32 KiB each (256 pairs x 32), the A panel reused from L1
 * across a row of B panels; mc 256 x kc 512 of A (256 KiB) plus nc 512 x kc of B (512 KiB) in a
 * Sapphire Rapids core's 2 MiB L2. Chosen from the sizes, not measured (no AMX CPU to run on). */
const fnn_gemm_desc_bf16 fnn_gemm_desc_amx = {
    .mr = MR, .nr = NR, .mc = 256, .kc = 512, .nc = 512,
    .ukr = ukr, .pack_copy = pack_b_copy, .pack_trans = pack_b_trans,
    .thread_init = thread_init, .thread_fini = thread_fini,
#ifndef FNN_AMX_EMULATE
    .convert = convert, .round = round_f32,
#endif
    .ukg = NULL, .pack_a_copy = pack_a_copy, .pack_a_trans = pack_a_trans, .k_align = 2 * KP,
};
