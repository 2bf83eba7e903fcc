/* Private helpers shared by the kernel files (not part of the public API). */
#ifndef FASTNN_INTERNAL_H
#define FASTNN_INTERNAL_H

#include "fastnn.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Below this many elements an elementwise kernel stays serial: waking a second thread costs
 * a few microseconds, about what one core needs for 32k simple float operations. */
#define FNN_PAR_MIN_ELEMS 32768

/* Deterministic reductions split their range into this many fixed chunks, whatever the thread
 * count, and add the chunk results in order: the sum is then bit-identical for any n_threads. */
#define FNN_REDUCE_CHUNKS 64

/* The share [*i0, *i1) of n elements that the calling OpenMP thread owns: contiguous blocks in
 * multiples of 16 elements (64-byte lines for float) so threads never write the same line. */
static inline void fnn_omp_range(int64_t n, int64_t *i0, int64_t *i1) {
    int t = 0, T = 1;
#ifdef _OPENMP
    t = omp_get_thread_num();
    T = omp_get_num_threads();
#endif
    int64_t blocks = (n + 15) / 16;
    *i0 = blocks * t / T * 16;
    *i1 = blocks * (t + 1) / T * 16;
    if (*i0 > n) *i0 = n;
    if (*i1 > n) *i1 = n;
}

static inline int fnn_threads_for(int64_t work, int64_t min_per_thread, int n_threads) {
    if (n_threads < 1) n_threads = 1;
    int64_t useful = work / (min_per_thread > 0 ? min_per_thread : 1);
    if (useful < 1) useful = 1;
    return useful < n_threads ? (int)useful : n_threads;
}

#endif
