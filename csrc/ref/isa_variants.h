/* Compiles the template FNN_VARIANTS_TMPL once per instruction set, for loops that the compiler
 * vectorises and that gain from wider vectors (square roots and divisions): FNN_VARIANT(name)
 * gives each copy its suffix and FNN_VARIANT_TARGET its function attributes, so the including
 * file stays portable (no -m flags). FNN_VARIANT_PICK(name) then calls the copy for the kernel
 * variant in use (FASTNN_ARCH or CPU detection), like the GEMM microkernels. Every copy
 * computes the same bits: the loops are element-wise, and -std=c11 keeps FMA contraction off. */
#ifndef FNN_ISA_VARIANTS_ONCE
#define FNN_ISA_VARIANTS_ONCE
#define FNN_VCAT_(a, b) a##b
#define FNN_VCAT(a, b) FNN_VCAT_(a, b)
#define FNN_VARIANT(name) FNN_VCAT(name, FNN_VARIANT_SUFFIX)
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define FNN_ISA_X86 1
#define FNN_VARIANT_PICK(name)                                                                      \
    (fnn_arch_get() == FNN_ARCH_AVX512 ? FNN_VCAT(name, _avx512)                                    \
     : fnn_arch_get() == FNN_ARCH_AVX2 ? FNN_VCAT(name, _avx2)                                      \
                                       : FNN_VCAT(name, _generic))
#else
#define FNN_ISA_X86 0
#define FNN_VARIANT_PICK(name) FNN_VCAT(name, _generic)
#endif
#endif

#define FNN_VARIANT_SUFFIX _generic
#define FNN_VARIANT_TARGET
#include FNN_VARIANTS_TMPL
#undef FNN_VARIANT_SUFFIX
#undef FNN_VARIANT_TARGET
#if FNN_ISA_X86
#define FNN_VARIANT_SUFFIX _avx2
#define FNN_VARIANT_TARGET __attribute__((target("avx2")))
#include FNN_VARIANTS_TMPL
#undef FNN_VARIANT_SUFFIX
#undef FNN_VARIANT_TARGET
#define FNN_VARIANT_SUFFIX _avx512
#define FNN_VARIANT_TARGET __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,prefer-vector-width=512")))
#include FNN_VARIANTS_TMPL
#undef FNN_VARIANT_SUFFIX
#undef FNN_VARIANT_TARGET
#endif
