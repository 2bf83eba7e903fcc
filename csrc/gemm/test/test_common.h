/*
 * test_common.h - what the standalone GEMM harnesses (test_gemm.c, test_amx.c) share: failure
 * counting and a reproducible uniform generator. The includer defines FAIL_TAG() (a string naming
 * what is under test) before including it.
 */
#ifndef FNN_TEST_COMMON_H
#define FNN_TEST_COMMON_H

#include <stdint.h>
#include <stdio.h>

static int n_fail, n_checks;
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* uniform in [-1, 1), xorshift64 */
static double urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* a failure: counted, printed (the first 30) */
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        if (n_fail < 30) {                                                                         \
            printf("FAIL [%s] ", FAIL_TAG());                                                      \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
        n_fail++;                                                                                  \
    } while (0)

#endif
