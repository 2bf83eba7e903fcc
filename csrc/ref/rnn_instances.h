/* One type's instantiation of rnn_tmpl.h (included by rnn.c once per type): part 1 the
 * shared helpers, part 2 the gate kernels once per instruction set (target attributes, chosen
 * at run time through fnn_arch_get), part 3 the layer drivers. */
#define FNN_RNN_PART 1
#include "rnn_tmpl.h"
#undef FNN_RNN_PART
#define FNN_RNN_PART 2
#define FNN_RNN_SUFFIX _generic
#define FNN_RNN_TARGET
#include "rnn_tmpl.h"
#undef FNN_RNN_SUFFIX
#undef FNN_RNN_TARGET
#if FNN_RNN_X86
#define FNN_RNN_SUFFIX _avx2
#define FNN_RNN_TARGET __attribute__((target("avx2")))
#include "rnn_tmpl.h"
#undef FNN_RNN_SUFFIX
#undef FNN_RNN_TARGET
#define FNN_RNN_SUFFIX _avx512
#define FNN_RNN_TARGET __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,prefer-vector-width=512")))
#include "rnn_tmpl.h"
#undef FNN_RNN_SUFFIX
#undef FNN_RNN_TARGET
#endif
#undef FNN_RNN_PART
#define FNN_RNN_PART 3
#include "rnn_tmpl.h"
#undef FNN_RNN_PART

