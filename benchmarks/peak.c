/* FP32 FMA peak of one core: 12 independent accumulator chains (enough to cover FMA latency x
 * throughput on current x86 cores) of vfmadd on the widest vectors the compiler was told to use.
 * Build: cc -O2 -mavx512f -mfma peak.c -o peak   (or -mavx2 -mfma). Prints GFLOP/s. */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#if defined(__AVX512F__)
typedef __m512 vec;
#define LANES 16
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
static float first(vec v) { return _mm512_cvtss_f32(v); }
#else
typedef __m256 vec;
#define LANES 8
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
static float first(vec v) { return _mm256_cvtss_f32(v); }
#endif

int main(void) {
    const long iters = 200000000L / LANES;
    vec a = SET1(0.999999f), b = SET1(1e-7f);
    vec c[12];
    for (int i = 0; i < 12; i++) c[i] = SET1((float)i);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) c[i] = FMA(c[i], a, b);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    vec sum = c[0];
    for (int i = 1; i < 12; i++) sum = ADD(sum, c[i]);
    printf("%.1f GFLOP/s (checksum %g)\n", 2.0 * LANES * 12 * iters / s / 1e9, first(sum));
    return 0;
}
