/*
 * pgs_kernels.h — pgsieve's shared SIMD kernel library.
 *
 * Plain C99 with no PostgreSQL headers: the same source is compiled into the
 * extension (ext/Makefile) and into the Python client's cffi module
 * (pyclient/pgsieve/_kernels_build.py), so quantized codes and scores are
 * byte-identical on both sides.
 *
 * Every entry point dispatches at run time to the best implementation the CPU
 * supports (scalar baseline, POPCNT, AVX2+FMA+F16C, AVX-512 VPOPCNTDQ).  The
 * scalar level is always correct and is what the others are tested against.
 *
 * Bit order everywhere is numpy.packbits / pgvector binary_quantize order:
 * dimension i lives in byte i/8, bit 7 - (i % 8) (MSB first); trailing pad
 * bits are zero.
 */
#ifndef PGS_KERNELS_H
#define PGS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Dispatch levels, in increasing order of capability. */
#define PGS_LEVEL_SCALAR	0
#define PGS_LEVEL_POPCNT	1
#define PGS_LEVEL_AVX2		2
#define PGS_LEVEL_AVX512	3

/* Detect the CPU once and pick implementations (idempotent, thread-safe enough:
 * every writer stores the same values). */
void		pgs_kernels_init(void);

/* Highest level the CPU supports, and the level now in use. */
int			pgs_kernels_max_level(void);
int			pgs_kernels_level(void);

/* Force a level no higher than the CPU supports (tests compare levels);
 * returns the level actually set. */
int			pgs_kernels_set_level(int level);

/* Name of a level ("scalar", "popcnt", "avx2", "avx512"). */
const char *pgs_kernels_level_name(int level);

/* 1 when the level in use is avx512 and the CPU also has AVX512-VNNI
 * (integer dot-product instructions; the MaxSim screening kernel uses them). */
int			pgs_kernels_vnni(void);

/* 1 when, on top of that, the CPU has AMX-TILE + AMX-INT8 and this process was
 * granted the tile state (Linux asks the kernel once, on the first call). */
int			pgs_kernels_amx(void);

/* Tests: turn AMX off (0) or back on; returns pgs_kernels_amx(). */
int			pgs_kernels_set_amx(int on);

/* ---- bits ---------------------------------------------------------------- */

/* popcount of nbytes bytes */
uint64_t	pgs_popcount(const uint8_t *a, size_t nbytes);

/* Hamming distance popcount(a ^ b) over nbytes bytes */
uint64_t	pgs_hamming(const uint8_t *a, const uint8_t *b, size_t nbytes);

/* popcount(a & b) and popcount(a | b): the two Jaccard counts */
void		pgs_and_or_count(const uint8_t *a, const uint8_t *b, size_t nbytes,
							 uint64_t *and_count, uint64_t *or_count);

/*
 * Hamming distance of query q against n codes of nbytes bytes each, the i-th
 * code starting at codes + i * stride.  out[i] receives the distance.
 */
void		pgs_hamming_batch(const uint8_t *q, const uint8_t *codes, size_t nbytes,
							  size_t stride, size_t n, uint32_t *out);

/*
 * Fused scan step: Hamming distance of q against n codes (as in
 * pgs_hamming_batch), keeping only those with distance <= bound.  Writes the
 * kept codes' indices and distances, in index order, and returns how many.
 * idx_out and dist_out must have room for n entries.
 */
size_t		pgs_hamming_filter(const uint8_t *q, const uint8_t *codes, size_t nbytes,
							   size_t stride, size_t n, uint32_t bound,
							   uint32_t *idx_out, uint32_t *dist_out);

/* ---- quantizers ------------------------------------------------------------ */

/*
 * Binary quantization of dim floats: bit i = x[i] > t[i] (t == NULL means
 * threshold 0, i.e. sign quantization).  Writes (dim + 7) / 8 bytes, pad bits
 * zero.  NaN compares false and so quantizes to 0; callers reject NaN first.
 */
void		pgs_quantize_f32(const float *x, const float *t, size_t dim, uint8_t *out);

/* The same for IEEE binary16 input (raw uint16 bit patterns). */
void		pgs_quantize_f16(const uint16_t *x, const float *t, size_t dim, uint8_t *out);

/*
 * Asymmetric score of a float query against a binary code in the +-1 form:
 * sum_i q[i] * (2 * bit_i - 1).  Accumulated in double.
 */
double		pgs_dot_bits(const float *q, const uint8_t *bits, size_t dim);

/*
 * Asymmetric (float query x binary code) scoring through a lookup table: for
 * weights w[0..dim), score(code) = sum of w[i] over the set bits i.  The
 * table has (dim + 7) / 8 rows of 256 floats; row j, column b holds the sum
 * of w[8j + k] over the bits k of b (MSB first).  Scoring a code is then one
 * lookup per byte.
 */
void		pgs_bits_lut_build(const float *w, size_t dim, float *lut);
float		pgs_bits_lut_score(const float *lut, const uint8_t *code, size_t nbytes);

/* ---- floats -------------------------------------------------------------- */

/* IEEE binary16 <-> binary32 (round to nearest even on the way down). */
float		pgs_f16_to_f32(uint16_t h);
uint16_t	pgs_f32_to_f16(float f);

/* dot product, squared L2 distance, and both norms at once (for cosine) */
float		pgs_dot_f32(const float *a, const float *b, size_t n);
float		pgs_l2sq_f32(const float *a, const float *b, size_t n);
void		pgs_cosine_parts_f32(const float *a, const float *b, size_t n,
								 float *dot, float *norm_a, float *norm_b);

float		pgs_dot_f16(const uint16_t *a, const uint16_t *b, size_t n);
float		pgs_l2sq_f16(const uint16_t *a, const uint16_t *b, size_t n);
void		pgs_cosine_parts_f16(const uint16_t *a, const uint16_t *b, size_t n,
								 float *dot, float *norm_a, float *norm_b);

/* dot product of two int8 vectors (exact, in int32) */
int32_t		pgs_dot_i8(const int8_t *a, const int8_t *b, size_t n);

/*
 * Sparse x dense: sum_i val[i] * q[idx[i]] in no fixed summation order (the
 * level's fastest), and sum_i |val[i] * q[idx[i]]|.  Any two summation
 * orders of the same n rounded products differ by at most about
 * 2 n u abssum (u = 2^-24), so a caller can bound the exact-order sum from
 * this estimate.  idx[i] must index q.
 */
void		pgs_sparse_dense_est(const int32_t *idx, const float *val, size_t n, const float *q,
								 float *sum, float *abssum);

/*
 * pgs_sparse_dense_est over a compact sparse vector: components are uint16
 * (wide = 0) or uint32 (wide != 0), values IEEE float16.
 */
void		pgs_sparse_dense_est_h(const void *idx, int wide, const uint16_t *val, size_t n,
								   const float *q, float *sum, float *abssum);

#ifdef __cplusplus
}
#endif

#endif							/* PGS_KERNELS_H */
