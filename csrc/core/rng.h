/* Counter-based random bits shared by the kernels that draw randomness (dropout, augmentation).
 *
 * A call gets a 64-bit seed and a 64-bit counter offset; element (or sample) i of the call uses
 * counter c = offset + i. Its 32 random bits are
 *     key = fnn_mix64(seed), k0 = low 32 bits of key, k1 = high 32 bits,
 *     bits = fnn_mix32(fnn_mix32(lo32(c) ^ k0) ^ hi32(c) ^ k1),
 * a pure function of (seed, c): the same for any thread partition, and reproduced by
 * fastnn/backend/numpy_ref.py and the CUDA kernels. */
#ifndef FNN_RNG_H
#define FNN_RNG_H
#include <stdint.h>

/* Helpers called from loops compiled for another instruction set (target attributes) are forced
 * inline so that they are compiled for the caller's. */
#if defined(__GNUC__) || defined(__clang__)
#define FNN_RNG_INLINE static inline __attribute__((always_inline))
#else
#define FNN_RNG_INLINE static inline
#endif

/* splitmix64's finaliser: a bijective 64-bit mix, used once per call to derive two 32-bit keys
 * from the seed. */
static inline uint64_t fnn_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* The two 32-bit keys of a seed. */
static inline void fnn_rng_keys(uint64_t seed, uint32_t *k0, uint32_t *k1) {
    const uint64_t key = fnn_mix64(seed);
    *k0 = (uint32_t)key;
    *k1 = (uint32_t)(key >> 32);
}

/* A 32-bit bijective mixer (Wellons' "lowbias32"); two rounds over the 64-bit counter give the
 * per-element bits. 32-bit multiplies vectorise on every x86 level (64-bit ones do not below
 * AVX-512), and a CUDA kernel reproduces them exactly. */
FNN_RNG_INLINE uint32_t fnn_mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    return x ^ (x >> 16);
}

/* The 32 bits of counter (hi:lo) under keys (k0, k1). */
FNN_RNG_INLINE uint32_t fnn_rng_bits2(uint32_t k0, uint32_t k1, uint32_t lo, uint32_t hi) {
    return fnn_mix32(fnn_mix32(lo ^ k0) ^ hi ^ k1);
}

/* The same for a 64-bit counter. */
FNN_RNG_INLINE uint32_t fnn_rng_bits(uint32_t k0, uint32_t k1, uint64_t c) {
    return fnn_rng_bits2(k0, k1, (uint32_t)c, (uint32_t)(c >> 32));
}

#endif /* FNN_RNG_H */
