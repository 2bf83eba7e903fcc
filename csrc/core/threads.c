/*
 * threads.c - the life cycle of the OpenMP thread pool across fork().
 *
 * libgomp keeps one pool of worker threads per thread that opened a parallel region. fork()
 * copies the pool's bookkeeping into the child but not its threads, so the child's first
 * parallel region waits forever for workers that do not exist (GCC bug 52303, unfixed). Like
 * OpenBLAS (which shuts its own pool down in a pthread_atfork prepare handler), we release the
 * forking thread's pool just before fork with omp_pause_resource_all (OpenMP 5.0): parent and
 * child then start from no pool, and each builds a fresh one at its next parallel region
 * (some tens of microseconds, once per fork). Only the forking thread survives in the child,
 * so its pool is the only one the child can reach; pools of other parent threads stay valid in
 * the parent.
 *
 * An OpenMP runtime without omp_pause_resource_all (older than GCC 9) is detected through a
 * weak reference; there the child handler marks the pool unusable and fnn_max_threads()
 * reports 1, so the bindings run the child's kernels on one thread instead of hanging.
 */
#include "../include/fastnn.h"

#if defined(_OPENMP) && !defined(_WIN32)
#include <pthread.h>

/* Declared here rather than through omp.h: the weak reference is what lets a runtime that
 * lacks it load at all. omp_pause_soft is 1 in every omp.h that has the function. */
extern int omp_pause_resource_all(int kind) __attribute__((weak));
#define FNN_OMP_PAUSE_SOFT 1

static pthread_once_t fnn_fork_once = PTHREAD_ONCE_INIT;
static int fnn_fork_broken = 0;     /* set in a child whose inherited pool could not be released */
static int fnn_fork_paused = 0;     /* set in prepare when this fork's pool was released */

static void fnn_before_fork(void)
{
    fnn_fork_paused = omp_pause_resource_all != NULL && omp_pause_resource_all(FNN_OMP_PAUSE_SOFT) == 0;
}

static void fnn_in_child(void)
{
    if (!fnn_fork_paused)
        fnn_fork_broken = 1;
}

static void fnn_register_atfork(void)
{
    pthread_atfork(fnn_before_fork, NULL, fnn_in_child);
}

int fnn_threads_init(void)
{
    return pthread_once(&fnn_fork_once, fnn_register_atfork) == 0 ? FNN_OK : FNN_ERR_ARG;
}

int fnn_threads_usable(void)
{
    return !fnn_fork_broken;
}
#else
int fnn_threads_init(void)
{
    return FNN_OK;
}

int fnn_threads_usable(void)
{
    return 1;
}
#endif
