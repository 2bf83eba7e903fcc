/*
 * cpu.c - CPU feature detection, kernel-variant dispatch and thread queries.
 *
 * The variant is chosen once, lazily, on first use: FASTNN_ARCH (generic | avx2 | avx512)
 * when set and supported, else the best this CPU and OS support. Detection is a pure
 * function, so racing first calls store the same value; relaxed atomics keep that race
 * well-defined.
 */
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../include/fastnn.h"

#if defined(__x86_64__) || defined(__i386__)
#if defined(__GNUC__) || defined(__clang__)
#include <cpuid.h>
#define FNN_CPUID 1
#endif
#endif

#if defined(__GNUC__) || defined(__clang__)
#define FNN_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define FNN_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#else
#define FNN_LOAD(p) (*(volatile int *)(p))
#define FNN_STORE(p, v) (*(volatile int *)(p) = (v))
#endif

#ifdef FNN_CPUID
/* XCR0: which register state the OS saves on context switch. Raw opcode-free asm so this
 * file needs no -mxsave. */
static unsigned long long fnn_xgetbv0(void)
{
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static int fnn_detect(void)
{
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
        return FNN_ARCH_GENERIC;
    const int osxsave = (ecx >> 27) & 1, avx = (ecx >> 28) & 1, fma = (ecx >> 12) & 1;
    if (!osxsave || !avx || !fma)
        return FNN_ARCH_GENERIC;
    const unsigned long long xcr0 = fnn_xgetbv0();
    if ((xcr0 & 0x6) != 0x6) /* SSE and AVX (YMM) state */
        return FNN_ARCH_GENERIC;
    if (__get_cpuid_max(0, NULL) < 7)
        return FNN_ARCH_GENERIC;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    const int avx2 = (ebx >> 5) & 1;
    const int avx512f = (ebx >> 16) & 1, avx512dq = (ebx >> 17) & 1;
    const int avx512bw = (ebx >> 30) & 1, avx512vl = (ebx >> 31) & 1;
    if (!avx2)
        return FNN_ARCH_GENERIC;
    /* opmask, upper halves of ZMM0-15 and ZMM16-31 state */
    if (avx512f && avx512dq && avx512bw && avx512vl && (xcr0 & 0xe0) == 0xe0)
        return FNN_ARCH_AVX512;
    return FNN_ARCH_AVX2;
}
#else
static int fnn_detect(void)
{
    return FNN_ARCH_GENERIC;
}
#endif

static int fnn_best = -1;
static int fnn_current = -1;

int fnn_arch_best(void)
{
    int b = FNN_LOAD(&fnn_best);
    if (b < 0) {
        b = fnn_detect();
        FNN_STORE(&fnn_best, b);
    }
    return b;
}

static int fnn_arch_from_env(void)
{
    const int best = fnn_arch_best();
    const char *s = getenv("FASTNN_ARCH");
    if (s == NULL || *s == '\0')
        return best;
    int want = -1;
    if (strcmp(s, "generic") == 0)
        want = FNN_ARCH_GENERIC;
    else if (strcmp(s, "avx2") == 0)
        want = FNN_ARCH_AVX2;
    else if (strcmp(s, "avx512") == 0)
        want = FNN_ARCH_AVX512;
    /* Unknown names and variants this CPU lacks fall back to the best one. */
    return (want >= 0 && want <= best) ? want : best;
}

int fnn_arch_get(void)
{
    int a = FNN_LOAD(&fnn_current);
    if (a < 0) {
        a = fnn_arch_from_env();
        FNN_STORE(&fnn_current, a);
    }
    return a;
}

int fnn_arch_set(int arch)
{
    if (arch < FNN_ARCH_GENERIC || arch > FNN_ARCH_AVX512)
        return FNN_ERR_ARG;
    if (arch > fnn_arch_best())
        return FNN_ERR_ARCH;
    FNN_STORE(&fnn_current, arch);
    return FNN_OK;
}

const char *fnn_arch_name(int arch)
{
    switch (arch) {
    case FNN_ARCH_GENERIC: return "generic";
    case FNN_ARCH_AVX2: return "avx2";
    case FNN_ARCH_AVX512: return "avx512";
    default: return "unknown";
    }
}

/* ---- bfloat16 variants ---------------------------------------------------------------------
 * A separate axis: the bf16 kernels need AVX-512 state plus their own CPUID bits (AVX512_BF16:
 * leaf 7 sub-leaf 1 EAX bit 5; AMX: leaf 7 EDX bits 22 amx-bf16 and 24 amx-tile, with the tile
 * state XCR0 bits 17-18). Unless FASTNN_BF16 or fnn_bf16_set picked one, the variant follows the
 * float32 one: FASTNN_ARCH=generic or avx2 selects the reference bf16 path too. AMX also needs the
 * kernel's permission (arch_prctl), asked by its GEMM on first use; see csrc/x86/amx. */
static int fnn_bf16_detect(void)
{
#ifdef FNN_CPUID
    if (fnn_arch_best() < FNN_ARCH_AVX512)
        return FNN_BF16_REF;
    unsigned int eax, ebx, ecx, edx;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    const int max_sub = (int)eax;
    const int amx = ((edx >> 22) & 1) && ((edx >> 24) & 1) && ((fnn_xgetbv0() >> 17) & 3) == 3;
#ifdef FNN_HAVE_AMX
    if (amx)
        return FNN_BF16_AMX;
#else
    (void)amx;
#endif
#ifdef FNN_HAVE_AVX512BF16
    if (max_sub >= 1) {
        __cpuid_count(7, 1, eax, ebx, ecx, edx);
        if ((eax >> 5) & 1)
            return FNN_BF16_AVX512;
    }
#else
    (void)max_sub;
#endif
#endif
    return FNN_BF16_REF;
}

static int fnn_bf16_best_v = -1;
static int fnn_bf16_pick = -2; /* -2: not resolved yet, -1: none (follow the float32 variant) */

int fnn_bf16_best(void)
{
    int b = FNN_LOAD(&fnn_bf16_best_v);
    if (b < 0) {
        b = fnn_bf16_detect();
        FNN_STORE(&fnn_bf16_best_v, b);
    }
    return b;
}

int fnn_bf16_get(void)
{
    int f = FNN_LOAD(&fnn_bf16_pick);
    if (f == -2) {
        const char *s = getenv("FASTNN_BF16");
        f = -1;
        if (s != NULL) {
            int want = -1;
            if (strcmp(s, "ref") == 0)
                want = FNN_BF16_REF;
            else if (strcmp(s, "avx512bf16") == 0)
                want = FNN_BF16_AVX512;
            else if (strcmp(s, "amx") == 0)
                want = FNN_BF16_AMX;
            if (want >= 0 && want <= fnn_bf16_best())
                f = want;
        }
        FNN_STORE(&fnn_bf16_pick, f);
    }
    if (f >= 0)
        return f;
    return fnn_arch_get() < FNN_ARCH_AVX512 ? FNN_BF16_REF : fnn_bf16_best();
}

int fnn_bf16_forced(void)
{
    (void)fnn_bf16_get(); /* resolves FASTNN_BF16 */
    return FNN_LOAD(&fnn_bf16_pick);
}

int fnn_bf16_set(int variant)
{
    if (variant == -1) { /* back to following the float32 variant */
        FNN_STORE(&fnn_bf16_pick, -1);
        return FNN_OK;
    }
    if (variant < FNN_BF16_REF || variant > FNN_BF16_AMX)
        return FNN_ERR_ARG;
    /* AMX detection implies AVX512-BF16 on every CPU that has it (Sapphire Rapids and later). */
    if (variant > fnn_bf16_best())
        return FNN_ERR_ARCH;
    FNN_STORE(&fnn_bf16_pick, variant);
    return FNN_OK;
}

const char *fnn_bf16_name(int variant)
{
    switch (variant) {
    case FNN_BF16_REF: return "ref";
    case FNN_BF16_AVX512: return "avx512bf16";
    case FNN_BF16_AMX: return "amx";
    default: return "unknown";
    }
}

int fnn_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fnn_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
