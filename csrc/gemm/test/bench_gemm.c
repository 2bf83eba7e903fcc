/*
 * bench_gemm.c - time one fnn_gemm shape from C (for perf and quick tuning; not part of the
 * package). Usage: bench_gemm m k n [flags] [threads] [seconds] [f64]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../include/fastnn.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s m k n [flags] [threads] [seconds] [f64]\n", argv[0]);
        return 2;
    }
    const int64_t m = atoll(argv[1]), k = atoll(argv[2]), n = atoll(argv[3]);
    const int flags = argc > 4 ? atoi(argv[4]) : 0, nt = argc > 5 ? atoi(argv[5]) : 1;
    const double secs = argc > 6 ? atof(argv[6]) : 1.0;
    const int f64 = argc > 7 && strcmp(argv[7], "f64") == 0;
    const size_t es = f64 ? sizeof(double) : sizeof(float);
    const size_t off = getenv("FNN_MISALIGN") ? (size_t)atoi(getenv("FNN_MISALIGN")) : 0;
    char *a0 = aligned_alloc(64, es * (size_t)(m * k) + 64), *b0 = aligned_alloc(64, es * (size_t)(k * n) + 64);
    char *c0 = aligned_alloc(64, es * (size_t)(m * n) + 64);
    void *a = a0 + off, *b = b0 + off, *c = c0 + off;
    for (int64_t i = 0; i < m * k; i++) {
        if (f64) ((double *)a)[i] = (double)(i % 7) - 3; else ((float *)a)[i] = (float)(i % 7) - 3;
    }
    for (int64_t i = 0; i < k * n; i++) {
        if (f64) ((double *)b)[i] = (double)(i % 5) - 2; else ((float *)b)[i] = (float)(i % 5) - 2;
    }
    const int64_t lda = (flags & FNN_TRANS_A) ? m : k, ldb = (flags & FNN_TRANS_B) ? k : n;
    long reps = 0;
    double t0 = now(), t;
    do {
        int st = f64 ? fnn_gemm_f64(flags, m, n, k, 1.0, 0.0, a, lda, b, ldb, NULL, c, n, nt)
                     : fnn_gemm_f32(flags, m, n, k, 1.0f, 0.0f, a, lda, b, ldb, NULL, c, n, nt);
        if (st != FNN_OK) {
            fprintf(stderr, "status %d\n", st);
            return 1;
        }
        reps++;
        t = now() - t0;
    } while (t < secs);
    printf("%s %s m=%lld k=%lld n=%lld flags=%d threads=%d: %.1f GFLOP/s (%.1f us/call)\n",
           fnn_arch_name(fnn_arch_get()), f64 ? "f64" : "f32", (long long)m, (long long)k,
           (long long)n, flags, nt, 2.0 * (double)(m * n * k) * (double)reps / t / 1e9, t / (double)reps * 1e6);
    free(a0);
    free(b0);
    free(c0);
    return 0;
}
