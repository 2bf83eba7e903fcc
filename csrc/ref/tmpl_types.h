/* Type parameters for the float/double templates: a kernel file defines FNN_DOUBLE (or not)
 * before including its *_tmpl.h, which then sees FNN_T, FNN_(name) for private names and the
 * matching libm functions. Public wrappers stay written out literally in the .c file. */
#undef FNN_T
#undef FNN_
#undef FNN_EXP
#undef FNN_LOG
#undef FNN_LOG1P
#undef FNN_TANH
#undef FNN_SQRT
#undef FNN_POW
#undef FNN_FABS
#ifdef FNN_DOUBLE
#define FNN_T double
#define FNN_(name) name##_f64
#define FNN_EXP exp
#define FNN_LOG log
#define FNN_LOG1P log1p
#define FNN_TANH tanh
#define FNN_SQRT sqrt
#define FNN_POW pow
#define FNN_FABS fabs
#else
#define FNN_T float
#define FNN_(name) name##_f32
#define FNN_EXP fnn_expf /* vectorisable, ~1 ulp: see core/internal.h */
#define FNN_LOG logf
#define FNN_LOG1P log1pf
#define FNN_TANH tanhf
#define FNN_SQRT sqrtf
#define FNN_POW powf
#define FNN_FABS fabsf
#endif
