/*
 * pgs_kernels.c — implementations and run-time dispatch for pgs_kernels.h.
 *
 * Layout of this file: portable scalar code first (the reference every other
 * level is tested against), then x86-64 variants compiled with per-function
 * target attributes, then the dispatch table.  Nothing here may depend on
 * compiler flags such as -march: the binary must run on any x86-64 (or any
 * other architecture, where only the scalar level exists).
 */
#include "pgs_kernels.h"

#include <math.h>
#include <string.h>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define PGS_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif
#if defined(PGS_X86) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static inline uint64_t
load_u64(const uint8_t *p)
{
	uint64_t	v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* load the last nbytes % 8 bytes, zero extended */
static inline uint64_t
load_tail(const uint8_t *p, size_t len)
{
	uint64_t	v = 0;

	memcpy(&v, p, len);
	return v;
}

/* ===================== scalar baseline ===================== */

static inline uint64_t
popcount64_swar(uint64_t x)
{
	x = x - ((x >> 1) & 0x5555555555555555ULL);
	x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
	x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
	return (x * 0x0101010101010101ULL) >> 56;
}

/*
 * The word loops are written once as macros and instantiated per level, so the
 * POPCNT level differs from the scalar one only in the popcount primitive and
 * the target attribute the compiler generates code for.
 */
#define DEFINE_WORD_KERNELS(SUFFIX, ATTR, POPC) \
ATTR static uint64_t \
popcount_##SUFFIX(const uint8_t *a, size_t nbytes) \
{ \
	uint64_t	c = 0; \
	size_t		i = 0; \
	for (; i + 8 <= nbytes; i += 8) \
		c += POPC(load_u64(a + i)); \
	if (i < nbytes) \
		c += POPC(load_tail(a + i, nbytes - i)); \
	return c; \
} \
ATTR static uint64_t \
hamming_##SUFFIX(const uint8_t *a, const uint8_t *b, size_t nbytes) \
{ \
	uint64_t	c = 0; \
	size_t		i = 0; \
	for (; i + 8 <= nbytes; i += 8) \
		c += POPC(load_u64(a + i) ^ load_u64(b + i)); \
	if (i < nbytes) \
		c += POPC(load_tail(a + i, nbytes - i) ^ load_tail(b + i, nbytes - i)); \
	return c; \
} \
ATTR static void \
and_or_##SUFFIX(const uint8_t *a, const uint8_t *b, size_t nbytes, \
				uint64_t *and_count, uint64_t *or_count) \
{ \
	uint64_t	ca = 0, co = 0; \
	size_t		i = 0; \
	for (; i + 8 <= nbytes; i += 8) \
	{ \
		uint64_t	x = load_u64(a + i), y = load_u64(b + i); \
		ca += POPC(x & y); \
		co += POPC(x | y); \
	} \
	if (i < nbytes) \
	{ \
		uint64_t	x = load_tail(a + i, nbytes - i), y = load_tail(b + i, nbytes - i); \
		ca += POPC(x & y); \
		co += POPC(x | y); \
	} \
	*and_count = ca; \
	*or_count = co; \
} \
/* fixed-width batch: W words, the query held in registers */ \
ATTR static inline __attribute__((always_inline)) void \
hamming_batch_w_##SUFFIX(const uint8_t *q, const uint8_t *codes, size_t W, \
						 size_t stride, size_t n, uint32_t *out) \
{ \
	uint64_t	qw[16]; \
	size_t		i = 0; \
	for (size_t w = 0; w < W; w++) \
		qw[w] = load_u64(q + 8 * w); \
	/* two codes per iteration and two accumulators each: independent chains */ \
	for (; i + 2 <= n; i += 2) \
	{ \
		const uint8_t *c0 = codes + i * stride; \
		const uint8_t *c1 = c0 + stride; \
		uint64_t	a0 = 0, a1 = 0, b0 = 0, b1 = 0; \
		_Pragma("GCC unroll 16") \
		for (size_t w = 0; w + 2 <= W; w += 2) \
		{ \
			a0 += POPC(qw[w] ^ load_u64(c0 + 8 * w)); \
			a1 += POPC(qw[w + 1] ^ load_u64(c0 + 8 * w + 8)); \
			b0 += POPC(qw[w] ^ load_u64(c1 + 8 * w)); \
			b1 += POPC(qw[w + 1] ^ load_u64(c1 + 8 * w + 8)); \
		} \
		if (W & 1) \
		{ \
			a0 += POPC(qw[W - 1] ^ load_u64(c0 + 8 * (W - 1))); \
			b0 += POPC(qw[W - 1] ^ load_u64(c1 + 8 * (W - 1))); \
		} \
		out[i] = (uint32_t) (a0 + a1); \
		out[i + 1] = (uint32_t) (b0 + b1); \
	} \
	for (; i < n; i++) \
	{ \
		const uint8_t *c = codes + i * stride; \
		uint64_t	d = 0; \
		_Pragma("GCC unroll 16") \
		for (size_t w = 0; w < W; w++) \
			d += POPC(qw[w] ^ load_u64(c + 8 * w)); \
		out[i] = (uint32_t) d; \
	} \
} \
ATTR static void \
hamming_batch_##SUFFIX(const uint8_t *q, const uint8_t *codes, size_t nbytes, \
					   size_t stride, size_t n, uint32_t *out) \
{ \
	/* specialize the common code sizes so the word loop unrolls fully */ \
	if ((nbytes & 7) == 0) \
	{ \
		switch (nbytes >> 3) \
		{ \
			case 1: hamming_batch_w_##SUFFIX(q, codes, 1, stride, n, out); return; \
			case 2: hamming_batch_w_##SUFFIX(q, codes, 2, stride, n, out); return; \
			case 3: hamming_batch_w_##SUFFIX(q, codes, 3, stride, n, out); return; \
			case 4: hamming_batch_w_##SUFFIX(q, codes, 4, stride, n, out); return; \
			case 6: hamming_batch_w_##SUFFIX(q, codes, 6, stride, n, out); return; \
			case 8: hamming_batch_w_##SUFFIX(q, codes, 8, stride, n, out); return; \
			case 12: hamming_batch_w_##SUFFIX(q, codes, 12, stride, n, out); return; \
			case 16: hamming_batch_w_##SUFFIX(q, codes, 16, stride, n, out); return; \
			default: break; \
		} \
	} \
	for (size_t i = 0; i < n; i++) \
		out[i] = (uint32_t) hamming_##SUFFIX(q, codes + i * stride, nbytes); \
}

#define NOATTR
DEFINE_WORD_KERNELS(scalar, NOATTR, popcount64_swar)

static inline float
f16_to_f32_scalar(uint16_t h)
{
	uint32_t	sign = (uint32_t) (h & 0x8000) << 16;
	uint32_t	exp = (h >> 10) & 0x1F;
	uint32_t	mant = h & 0x3FF;
	uint32_t	bits;
	float		f;

	if (exp == 0)
	{
		if (mant == 0)
			bits = sign;
		else
		{
			/* subnormal: normalize */
			int			e = -1;

			do
			{
				e++;
				mant <<= 1;
			} while ((mant & 0x400) == 0);
			mant &= 0x3FF;
			bits = sign | ((uint32_t) (127 - 15 - e) << 23) | (mant << 13);
		}
	}
	else if (exp == 0x1F)
		bits = sign | 0x7F800000 | (mant << 13);
	else
		bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
	memcpy(&f, &bits, sizeof(f));
	return f;
}

float
pgs_f16_to_f32(uint16_t h)
{
	return f16_to_f32_scalar(h);
}

uint16_t
pgs_f32_to_f16(float f)
{
	uint32_t	x;
	uint32_t	sign;
	uint32_t	absx;

	memcpy(&x, &f, sizeof(x));
	sign = (x >> 16) & 0x8000;
	absx = x & 0x7FFFFFFF;

	if (absx >= 0x7F800000)		/* Inf or NaN */
		return (uint16_t) (sign | 0x7C00 | (absx > 0x7F800000 ? 0x200 : 0));
	if (absx >= 0x477FF000)		/* rounds to >= 65520: overflow to Inf */
		return (uint16_t) (sign | 0x7C00);
	if (absx < 0x38800000)		/* result is subnormal or zero */
	{
		/* shift the implicit-1 mantissa into place, round to nearest even */
		uint32_t	e = absx >> 23;
		uint32_t	m;
		uint32_t	shift;
		uint32_t	r;

		if (e < 102)			/* below half of the smallest subnormal */
			return (uint16_t) sign;
		m = (absx & 0x7FFFFF) | 0x800000;
		shift = 126 - e;		/* 14 .. 24 */
		r = m >> shift;
		{
			uint32_t	rem = m & ((1u << shift) - 1);
			uint32_t	half = 1u << (shift - 1);

			if (rem > half || (rem == half && (r & 1)))
				r++;
		}
		return (uint16_t) (sign | r);
	}
	else
	{
		/* normal: rebias, round mantissa 23 -> 10 bits to nearest even */
		uint32_t	r = absx - 0x38000000;	/* rebias 127 -> 15 */
		uint32_t	rem = r & 0x1FFF;

		r >>= 13;
		if (rem > 0x1000 || (rem == 0x1000 && (r & 1)))
			r++;
		return (uint16_t) (sign | r);
	}
}

static float
dot_f32_scalar(const float *a, const float *b, size_t n)
{
	float		s = 0;

	for (size_t i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

/*
 * A sparse vector's inner product with a dense query indexed by its
 * components, summed in no fixed order, and the sum of the products'
 * absolute values (from which a caller bounds the rounding difference to
 * any other summation order).  Four independent accumulators.
 */
static void
sparse_dense_est_scalar(const int32_t *idx, const float *val, size_t n, const float *q,
						float *sum, float *abssum)
{
	float		a0 = 0,
				a1 = 0,
				a2 = 0,
				a3 = 0,
				m0 = 0,
				m1 = 0;
	size_t		i = 0;

	for (; i + 4 <= n; i += 4)
	{
		float		p0 = val[i] * q[idx[i]];
		float		p1 = val[i + 1] * q[idx[i + 1]];
		float		p2 = val[i + 2] * q[idx[i + 2]];
		float		p3 = val[i + 3] * q[idx[i + 3]];

		a0 += p0;
		a1 += p1;
		a2 += p2;
		a3 += p3;
		m0 += fabsf(p0) + fabsf(p1);
		m1 += fabsf(p2) + fabsf(p3);
	}
	for (; i < n; i++)
	{
		float		p = val[i] * q[idx[i]];

		a0 += p;
		m0 += fabsf(p);
	}
	*sum = (a0 + a1) + (a2 + a3);
	*abssum = m0 + m1;
}

/*
 * The uint16- and uint32-index entry points of a level's compact estimate:
 * its always-inlined body specialised on the index width.
 */
#define DEFINE_EST_H_ENTRIES(SUFFIX, ATTR) \
ATTR static void \
sparse_dense_est_h16_##SUFFIX(const void *idx, const uint16_t *val, size_t n, const float *q, \
							  float *sum, float *abssum) \
{ \
	sparse_dense_est_body_##SUFFIX(idx, 0, val, 1, n, q, sum, abssum); \
} \
ATTR static void \
sparse_dense_est_h32_##SUFFIX(const void *idx, const uint16_t *val, size_t n, const float *q, \
							  float *sum, float *abssum) \
{ \
	sparse_dense_est_body_##SUFFIX(idx, 1, val, 1, n, q, sum, abssum); \
}

/*
 * sparse_dense_est_scalar over a compact vector: uint16 (wide = 0) or uint32
 * components and float16 values (half is always 1 here: the float32 scalar
 * kernel above keeps its own loop, the reference order).  The two index
 * widths are the same loop, specialised by the constant argument.
 */
static inline void
sparse_dense_est_body_scalar(const void *idx, int wide, const uint16_t *val, int half, size_t n,
							 const float *q, float *sum, float *abssum)
{
	const uint16_t *i16 = (const uint16_t *) idx;
	const uint32_t *i32 = (const uint32_t *) idx;
	float		a0 = 0,
				a1 = 0,
				m0 = 0,
				m1 = 0;
	size_t		i = 0;

	for (; i + 2 <= n; i += 2)
	{
		float		p0 = f16_to_f32_scalar(val[i]) * q[wide ? i32[i] : i16[i]];
		float		p1 = f16_to_f32_scalar(val[i + 1]) * q[wide ? i32[i + 1] : i16[i + 1]];

		a0 += p0;
		a1 += p1;
		m0 += fabsf(p0);
		m1 += fabsf(p1);
	}
	for (; i < n; i++)
	{
		float		p = f16_to_f32_scalar(val[i]) * q[wide ? i32[i] : i16[i]];

		a0 += p;
		m0 += fabsf(p);
	}
	*sum = a0 + a1;
	*abssum = m0 + m1;
}

DEFINE_EST_H_ENTRIES(scalar, NOATTR)

static float
l2sq_f32_scalar(const float *a, const float *b, size_t n)
{
	float		s = 0;

	for (size_t i = 0; i < n; i++)
	{
		float		d = a[i] - b[i];

		s += d * d;
	}
	return s;
}

static void
cosine_parts_f32_scalar(const float *a, const float *b, size_t n,
						float *dot, float *na, float *nb)
{
	float		s = 0,
				x = 0,
				y = 0;

	for (size_t i = 0; i < n; i++)
	{
		s += a[i] * b[i];
		x += a[i] * a[i];
		y += b[i] * b[i];
	}
	*dot = s;
	*na = x;
	*nb = y;
}

static float
dot_f16_scalar(const uint16_t *a, const uint16_t *b, size_t n)
{
	float		s = 0;

	for (size_t i = 0; i < n; i++)
		s += f16_to_f32_scalar(a[i]) * f16_to_f32_scalar(b[i]);
	return s;
}

static float
l2sq_f16_scalar(const uint16_t *a, const uint16_t *b, size_t n)
{
	float		s = 0;

	for (size_t i = 0; i < n; i++)
	{
		float		d = f16_to_f32_scalar(a[i]) - f16_to_f32_scalar(b[i]);

		s += d * d;
	}
	return s;
}

static void
cosine_parts_f16_scalar(const uint16_t *a, const uint16_t *b, size_t n,
						float *dot, float *na, float *nb)
{
	float		s = 0,
				x = 0,
				y = 0;

	for (size_t i = 0; i < n; i++)
	{
		float		u = f16_to_f32_scalar(a[i]);
		float		v = f16_to_f32_scalar(b[i]);

		s += u * v;
		x += u * u;
		y += v * v;
	}
	*dot = s;
	*na = x;
	*nb = y;
}

static int32_t
dot_i8_scalar(const int8_t *a, const int8_t *b, size_t n)
{
	int32_t		s = 0;

	for (size_t i = 0; i < n; i++)
		s += (int32_t) a[i] * (int32_t) b[i];
	return s;
}

/* ===================== x86-64 levels ===================== */

static int	has_vnni = 0;		/* AVX512-VNNI, on top of the avx512 level (detect_level) */
static int	has_amx = 0;		/* AMX-TILE + AMX-INT8 with the OS's tile state (detect_level) */
static int	amx_granted = -1;	/* this process may use AMX: -1 not asked yet */
static int	amx_off = 0;		/* tests: pgs_kernels_set_amx(0) */

#ifdef PGS_X86

#define POPC_HW(x) ((uint64_t) __builtin_popcountll(x))
DEFINE_WORD_KERNELS(popcnt, __attribute__((target("popcnt"))), POPC_HW)

#define AVX2_ATTR __attribute__((target("avx2,fma,f16c,popcnt")))

/* horizontal sum of 8 floats */
AVX2_ATTR static inline float
hsum256_ps(__m256 v)
{
	__m128		lo = _mm256_castps256_ps128(v);
	__m128		hi = _mm256_extractf128_ps(v, 1);

	lo = _mm_add_ps(lo, hi);
	lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
	lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
	return _mm_cvtss_f32(lo);
}

AVX2_ATTR static float
dot_f32_avx2(const float *a, const float *b, size_t n)
{
	__m256		s0 = _mm256_setzero_ps(),
				s1 = _mm256_setzero_ps();
	size_t		i = 0;
	float		s;

	for (; i + 16 <= n; i += 16)
	{
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
	s = hsum256_ps(_mm256_add_ps(s0, s1));
	for (; i < n; i++)
		s += a[i] * b[i];
	return s;
}

AVX2_ATTR static float
l2sq_f32_avx2(const float *a, const float *b, size_t n)
{
	__m256		s0 = _mm256_setzero_ps(),
				s1 = _mm256_setzero_ps();
	size_t		i = 0;
	float		s;

	for (; i + 16 <= n; i += 16)
	{
		__m256		d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
		__m256		d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));

		s0 = _mm256_fmadd_ps(d0, d0, s0);
		s1 = _mm256_fmadd_ps(d1, d1, s1);
	}
	for (; i + 8 <= n; i += 8)
	{
		__m256		d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));

		s0 = _mm256_fmadd_ps(d0, d0, s0);
	}
	s = hsum256_ps(_mm256_add_ps(s0, s1));
	for (; i < n; i++)
	{
		float		d = a[i] - b[i];

		s += d * d;
	}
	return s;
}

AVX2_ATTR static void
cosine_parts_f32_avx2(const float *a, const float *b, size_t n,
					  float *dot, float *na, float *nb)
{
	__m256		s = _mm256_setzero_ps(),
				x = _mm256_setzero_ps(),
				y = _mm256_setzero_ps();
	size_t		i = 0;
	float		ds,
				xs,
				ys;

	for (; i + 8 <= n; i += 8)
	{
		__m256		u = _mm256_loadu_ps(a + i);
		__m256		v = _mm256_loadu_ps(b + i);

		s = _mm256_fmadd_ps(u, v, s);
		x = _mm256_fmadd_ps(u, u, x);
		y = _mm256_fmadd_ps(v, v, y);
	}
	ds = hsum256_ps(s);
	xs = hsum256_ps(x);
	ys = hsum256_ps(y);
	for (; i < n; i++)
	{
		ds += a[i] * b[i];
		xs += a[i] * a[i];
		ys += b[i] * b[i];
	}
	*dot = ds;
	*na = xs;
	*nb = ys;
}

AVX2_ATTR static inline __m256
load_f16x8(const uint16_t *p)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) p));
}

/*
 * sparse_dense_est_scalar (half = 0: float32 values, int32 or uint32 indices
 * as wide = 1) and its compact twin (half: float16 values, F16C converts
 * them) with eight-lane gathers: one body, specialised by its constant
 * arguments.
 */
AVX2_ATTR static inline __attribute__((always_inline)) void
sparse_dense_est_body_avx2(const void *idx, int wide, const void *val, int half, size_t n,
						   const float *q, float *sum, float *abssum)
{
	const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	__m256		acc = _mm256_setzero_ps(),
				mag = _mm256_setzero_ps();
	size_t		i = 0;
	float		s,
				m;

	for (; i + 8 <= n; i += 8)
	{
		__m256i		vi = wide ? _mm256_loadu_si256((const __m256i *) ((const uint32_t *) idx + i))
			: _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *) ((const uint16_t *) idx + i)));
		__m256		v = half ? load_f16x8((const uint16_t *) val + i) : _mm256_loadu_ps((const float *) val + i);
		__m256		p = _mm256_mul_ps(v, _mm256_i32gather_ps(q, vi, 4));

		acc = _mm256_add_ps(acc, p);
		mag = _mm256_add_ps(mag, _mm256_and_ps(p, absmask));
	}
	s = hsum256_ps(acc);
	m = hsum256_ps(mag);
	for (; i < n; i++)
	{
		float		p = (half ? f16_to_f32_scalar(((const uint16_t *) val)[i]) : ((const float *) val)[i]) *
			q[wide ? ((const uint32_t *) idx)[i] : ((const uint16_t *) idx)[i]];

		s += p;
		m += fabsf(p);
	}
	*sum = s;
	*abssum = m;
}

AVX2_ATTR static void
sparse_dense_est_avx2(const int32_t *idx, const float *val, size_t n, const float *q,
					  float *sum, float *abssum)
{
	sparse_dense_est_body_avx2(idx, 1, val, 0, n, q, sum, abssum);
}

DEFINE_EST_H_ENTRIES(avx2, AVX2_ATTR)

AVX2_ATTR static float
dot_f16_avx2(const uint16_t *a, const uint16_t *b, size_t n)
{
	__m256		s = _mm256_setzero_ps();
	size_t		i = 0;
	float		r;

	for (; i + 8 <= n; i += 8)
		s = _mm256_fmadd_ps(load_f16x8(a + i), load_f16x8(b + i), s);
	r = hsum256_ps(s);
	for (; i < n; i++)
		r += f16_to_f32_scalar(a[i]) * f16_to_f32_scalar(b[i]);
	return r;
}

AVX2_ATTR static float
l2sq_f16_avx2(const uint16_t *a, const uint16_t *b, size_t n)
{
	__m256		s = _mm256_setzero_ps();
	size_t		i = 0;
	float		r;

	for (; i + 8 <= n; i += 8)
	{
		__m256		d = _mm256_sub_ps(load_f16x8(a + i), load_f16x8(b + i));

		s = _mm256_fmadd_ps(d, d, s);
	}
	r = hsum256_ps(s);
	for (; i < n; i++)
	{
		float		d = f16_to_f32_scalar(a[i]) - f16_to_f32_scalar(b[i]);

		r += d * d;
	}
	return r;
}

AVX2_ATTR static void
cosine_parts_f16_avx2(const uint16_t *a, const uint16_t *b, size_t n,
					  float *dot, float *na, float *nb)
{
	__m256		s = _mm256_setzero_ps(),
				x = _mm256_setzero_ps(),
				y = _mm256_setzero_ps();
	size_t		i = 0;
	float		ds,
				xs,
				ys;

	for (; i + 8 <= n; i += 8)
	{
		__m256		u = load_f16x8(a + i);
		__m256		v = load_f16x8(b + i);

		s = _mm256_fmadd_ps(u, v, s);
		x = _mm256_fmadd_ps(u, u, x);
		y = _mm256_fmadd_ps(v, v, y);
	}
	ds = hsum256_ps(s);
	xs = hsum256_ps(x);
	ys = hsum256_ps(y);
	for (; i < n; i++)
	{
		float		u = f16_to_f32_scalar(a[i]);
		float		v = f16_to_f32_scalar(b[i]);

		ds += u * v;
		xs += u * u;
		ys += v * v;
	}
	*dot = ds;
	*na = xs;
	*nb = ys;
}

AVX2_ATTR static int32_t
dot_i8_avx2(const int8_t *a, const int8_t *b, size_t n)
{
	__m256i		acc = _mm256_setzero_si256();
	size_t		i = 0;
	int32_t		s;
	__m128i		lo;

	for (; i + 16 <= n; i += 16)
	{
		__m256i		x = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) (a + i)));
		__m256i		y = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) (b + i)));

		acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, y));
	}
	lo = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
	lo = _mm_add_epi32(lo, _mm_shuffle_epi32(lo, 0x4E));
	lo = _mm_add_epi32(lo, _mm_shuffle_epi32(lo, 0xB1));
	s = _mm_cvtsi128_si32(lo);
	for (; i < n; i++)
		s += (int32_t) a[i] * (int32_t) b[i];
	return s;
}

/*
 * Long codes: Muła's nibble-lookup popcount with vpshufb, accumulated with
 * vpsadbw.  Short codes stay on the POPCNT word loop, which is faster below a
 * few hundred bits.
 */
AVX2_ATTR static inline __m256i
popcnt256_bytes(__m256i v)
{
	const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
										 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
	const __m256i low = _mm256_set1_epi8(0x0F);
	__m256i		lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(v, low));
	__m256i		hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), low));

	return _mm256_add_epi8(lo, hi);
}

AVX2_ATTR static uint64_t
hamming_avx2(const uint8_t *a, const uint8_t *b, size_t nbytes)
{
	__m256i		acc = _mm256_setzero_si256();
	size_t		i = 0;
	uint64_t	c;

	if (nbytes < 64)
		return hamming_popcnt(a, b, nbytes);
	for (; i + 32 <= nbytes; i += 32)
	{
		__m256i		x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *) (a + i)),
										 _mm256_loadu_si256((const __m256i *) (b + i)));

		acc = _mm256_add_epi64(acc, _mm256_sad_epu8(popcnt256_bytes(x), _mm256_setzero_si256()));
	}
	c = (uint64_t) _mm256_extract_epi64(acc, 0) + (uint64_t) _mm256_extract_epi64(acc, 1) +
		(uint64_t) _mm256_extract_epi64(acc, 2) + (uint64_t) _mm256_extract_epi64(acc, 3);
	return c + hamming_popcnt(a + i, b + i, nbytes - i);
}

AVX2_ATTR static uint64_t
popcount_avx2(const uint8_t *a, size_t nbytes)
{
	__m256i		acc = _mm256_setzero_si256();
	size_t		i = 0;
	uint64_t	c;

	if (nbytes < 64)
		return popcount_popcnt(a, nbytes);
	for (; i + 32 <= nbytes; i += 32)
	{
		__m256i		x = _mm256_loadu_si256((const __m256i *) (a + i));

		acc = _mm256_add_epi64(acc, _mm256_sad_epu8(popcnt256_bytes(x), _mm256_setzero_si256()));
	}
	c = (uint64_t) _mm256_extract_epi64(acc, 0) + (uint64_t) _mm256_extract_epi64(acc, 1) +
		(uint64_t) _mm256_extract_epi64(acc, 2) + (uint64_t) _mm256_extract_epi64(acc, 3);
	return c + popcount_popcnt(a + i, nbytes - i);
}

AVX2_ATTR static void
hamming_batch_avx2(const uint8_t *q, const uint8_t *codes, size_t nbytes,
				   size_t stride, size_t n, uint32_t *out)
{
	if (nbytes <= 128)
	{
		hamming_batch_popcnt(q, codes, nbytes, stride, n, out);
		return;
	}
	for (size_t i = 0; i < n; i++)
		out[i] = (uint32_t) hamming_avx2(q, codes + i * stride, nbytes);
}

/* ---- AVX-512 VPOPCNTDQ: one vpopcntq per 512 bits ---- */
#define AVX512_ATTR __attribute__((target("avx512f,avx512bw,avx512vl,avx512vpopcntdq,avx2,fma,f16c,popcnt")))

AVX512_ATTR static uint64_t
hamming_avx512(const uint8_t *a, const uint8_t *b, size_t nbytes)
{
	__m512i		acc = _mm512_setzero_si512();
	size_t		i = 0;

	for (; i + 64 <= nbytes; i += 64)
	{
		__m512i		x = _mm512_xor_si512(_mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i));

		acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(x));
	}
	if (i < nbytes)
	{
		__mmask64	m = (((__mmask64) 1 << (nbytes - i)) - 1);
		__m512i		x = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, a + i),
										 _mm512_maskz_loadu_epi8(m, b + i));

		acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(x));
	}
	return (uint64_t) _mm512_reduce_add_epi64(acc);
}

AVX512_ATTR static uint64_t
popcount_avx512(const uint8_t *a, size_t nbytes)
{
	__m512i		acc = _mm512_setzero_si512();
	size_t		i = 0;

	for (; i + 64 <= nbytes; i += 64)
		acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_loadu_si512(a + i)));
	if (i < nbytes)
	{
		__mmask64	m = (((__mmask64) 1 << (nbytes - i)) - 1);

		acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_maskz_loadu_epi8(m, a + i)));
	}
	return (uint64_t) _mm512_reduce_add_epi64(acc);
}

/* per-code popcount vector of (q ^ code) over up to 4 zmm chunks */
AVX512_ATTR static inline __m512i
xor_popcnt_chunks(const __m512i *qz, const __mmask64 *masks, int nchunks, const uint8_t *c)
{
	__m512i		acc = _mm512_popcnt_epi64(_mm512_xor_si512(qz[0], _mm512_maskz_loadu_epi8(masks[0], c)));

	for (int k = 1; k < nchunks; k++)
		acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(
			_mm512_xor_si512(qz[k], _mm512_maskz_loadu_epi8(masks[k], c + 64 * k))));
	return acc;
}

/* the eight lane sums of v0..v7, as 8 x u64 in order, by a transpose-add tree */
AVX512_ATTR static inline __m512i
sum8_lanes(__m512i v0, __m512i v1, __m512i v2, __m512i v3,
		   __m512i v4, __m512i v5, __m512i v6, __m512i v7)
{
	__m512i		t01 = _mm512_add_epi64(_mm512_unpacklo_epi64(v0, v1), _mm512_unpackhi_epi64(v0, v1));
	__m512i		t23 = _mm512_add_epi64(_mm512_unpacklo_epi64(v2, v3), _mm512_unpackhi_epi64(v2, v3));
	__m512i		t45 = _mm512_add_epi64(_mm512_unpacklo_epi64(v4, v5), _mm512_unpackhi_epi64(v4, v5));
	__m512i		t67 = _mm512_add_epi64(_mm512_unpacklo_epi64(v6, v7), _mm512_unpackhi_epi64(v6, v7));
	__m512i		s0 = _mm512_add_epi64(_mm512_shuffle_i64x2(t01, t23, 0x88), _mm512_shuffle_i64x2(t01, t23, 0xDD));
	__m512i		s1 = _mm512_add_epi64(_mm512_shuffle_i64x2(t45, t67, 0x88), _mm512_shuffle_i64x2(t45, t67, 0xDD));

	return _mm512_add_epi64(_mm512_shuffle_i64x2(s0, s1, 0x88), _mm512_shuffle_i64x2(s0, s1, 0xDD));
}

/*
 * Codes of up to 256 bytes: one masked zmm load per 64 bytes of each code,
 * eight codes at a time, their per-lane counts reduced together so the
 * horizontal sums cost a few shuffles per eight codes.
 */
AVX512_ATTR static void
hamming_batch_avx512(const uint8_t *q, const uint8_t *codes, size_t nbytes,
					 size_t stride, size_t n, uint32_t *out)
{
	__m512i		qz[4];
	__mmask64	masks[4];
	int			nchunks = (int) ((nbytes + 63) / 64);
	size_t		i = 0;

	if (nbytes > 256)
	{
		for (; i < n; i++)
			out[i] = (uint32_t) hamming_avx512(q, codes + i * stride, nbytes);
		return;
	}
	for (int k = 0; k < nchunks; k++)
	{
		size_t		len = nbytes - 64 * (size_t) k;

		masks[k] = len >= 64 ? ~(__mmask64) 0 : (((__mmask64) 1 << len) - 1);
		qz[k] = _mm512_maskz_loadu_epi8(masks[k], q + 64 * k);
	}
	for (; i + 8 <= n; i += 8)
	{
		const uint8_t *c = codes + i * stride;
		__m512i		sums = sum8_lanes(xor_popcnt_chunks(qz, masks, nchunks, c),
									  xor_popcnt_chunks(qz, masks, nchunks, c + stride),
									  xor_popcnt_chunks(qz, masks, nchunks, c + 2 * stride),
									  xor_popcnt_chunks(qz, masks, nchunks, c + 3 * stride),
									  xor_popcnt_chunks(qz, masks, nchunks, c + 4 * stride),
									  xor_popcnt_chunks(qz, masks, nchunks, c + 5 * stride),
									  xor_popcnt_chunks(qz, masks, nchunks, c + 6 * stride),
									  xor_popcnt_chunks(qz, masks, nchunks, c + 7 * stride));

		_mm256_storeu_si256((__m256i *) (out + i), _mm512_cvtepi64_epi32(sums));
	}
	for (; i < n; i++)
		out[i] = (uint32_t) hamming_avx512(q, codes + i * stride, nbytes);
}

/* CPU feature detection with cpuid; AVX state must also be enabled by the OS. */
static int
detect_level(void)
{
	unsigned int eax,
				ebx,
				ecx,
				edx;
	int			level = PGS_LEVEL_SCALAR;
	int			osxsave,
				avx_os = 0,
				avx512_os = 0;

	if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
		return level;
	if (ecx & bit_POPCNT)
		level = PGS_LEVEL_POPCNT;
	else
		return level;
	osxsave = (ecx & bit_OSXSAVE) != 0;
	if (osxsave)
	{
		unsigned int xlo,
					xhi;

		__asm__ volatile ("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
		avx_os = (xlo & 0x6) == 0x6;
		avx512_os = (xlo & 0xE6) == 0xE6;
	}
	if (!(avx_os && (ecx & bit_FMA) && (ecx & bit_F16C) && (ecx & bit_AVX)))
		return level;
	if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx))
		return level;
	if (!(ebx & bit_AVX2))
		return level;
	level = PGS_LEVEL_AVX2;
	if (avx512_os && (ebx & bit_AVX512F) && (ebx & bit_AVX512BW) && (ebx & bit_AVX512VL) &&
		(ecx & bit_AVX512VPOPCNTDQ))
	{
		level = PGS_LEVEL_AVX512;
		has_vnni = (ecx & (1u << 11)) != 0;	/* CPUID.(7,0):ECX.AVX512_VNNI */
		/* CPUID.(7,0):EDX.AMX_TILE and AMX_INT8, and XCR0's XTILECFG + XTILEDATA */
		if ((edx & (1u << 24)) && (edx & (1u << 25)))
		{
			unsigned int xlo,
						xhi;

			__asm__ volatile ("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
			has_amx = (xlo & (3u << 17)) == (3u << 17);
		}
	}
	return level;
}

/* sparse_dense_est_body_avx2 with sixteen lanes; the tail is one masked step */
AVX512_ATTR static inline __attribute__((always_inline)) void
sparse_dense_est_body_avx512(const void *idx, int wide, const void *val, int half, size_t n,
							 const float *q, float *sum, float *abssum)
{
	__m512		acc = _mm512_setzero_ps(),
				mag = _mm512_setzero_ps();
	size_t		i = 0;

	for (; i + 16 <= n; i += 16)
	{
		__m512i		vi = wide ? _mm512_loadu_si512((const void *) ((const uint32_t *) idx + i))
			: _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *) ((const uint16_t *) idx + i)));
		__m512		v = half ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) ((const uint16_t *) val + i)))
			: _mm512_loadu_ps((const float *) val + i);
		__m512		p = _mm512_mul_ps(v, _mm512_i32gather_ps(vi, q, 4));

		acc = _mm512_add_ps(acc, p);
		mag = _mm512_add_ps(mag, _mm512_abs_ps(p));
	}
	if (i < n)
	{
		__mmask16	k = (__mmask16) ((1u << (n - i)) - 1);
		__m512i		vi = wide ? _mm512_maskz_loadu_epi32(k, (const uint32_t *) idx + i)
			: _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, (const uint16_t *) idx + i));
		__m512		v = half ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, (const uint16_t *) val + i))
			: _mm512_maskz_loadu_ps(k, (const float *) val + i);
		__m512		p = _mm512_mul_ps(v, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, vi, q, 4));

		acc = _mm512_add_ps(acc, p);
		mag = _mm512_add_ps(mag, _mm512_abs_ps(p));
	}
	*sum = _mm512_reduce_add_ps(acc);
	*abssum = _mm512_reduce_add_ps(mag);
}

AVX512_ATTR static void
sparse_dense_est_avx512(const int32_t *idx, const float *val, size_t n, const float *q,
						float *sum, float *abssum)
{
	sparse_dense_est_body_avx512(idx, 1, val, 0, n, q, sum, abssum);
}

DEFINE_EST_H_ENTRIES(avx512, AVX512_ATTR)

#else							/* !PGS_X86 */

static int
detect_level(void)
{
	return PGS_LEVEL_SCALAR;
}

#endif							/* PGS_X86 */

/* ===================== fused filter ===================== */

/*
 * Portable fused filter: distances in blocks of 64 through the level's batch
 * kernel, then a branch-free compaction.
 */
static size_t
hamming_filter_generic(void (*batch) (const uint8_t *, const uint8_t *, size_t, size_t, size_t, uint32_t *),
					   const uint8_t *q, const uint8_t *codes, size_t nbytes, size_t stride,
					   size_t n, uint32_t bound, uint32_t *idx_out, uint32_t *dist_out)
{
	uint32_t	d[64];
	size_t		k = 0;

	for (size_t base = 0; base < n; base += 64)
	{
		size_t		m = n - base < 64 ? n - base : 64;

		batch(q, codes + base * stride, nbytes, stride, m, d);
		for (size_t j = 0; j < m; j++)
		{
			idx_out[k] = (uint32_t) (base + j);
			dist_out[k] = d[j];
			k += d[j] <= bound;
		}
	}
	return k;
}

#ifdef PGS_X86
/* AVX-512: eight distances per step, compared and compress-stored in registers */
AVX512_ATTR static size_t
hamming_filter_avx512(const uint8_t *q, const uint8_t *codes, size_t nbytes, size_t stride,
					  size_t n, uint32_t bound, uint32_t *idx_out, uint32_t *dist_out)
{
	__m512i		qz[4];
	__mmask64	masks[4];
	int			nchunks = (int) ((nbytes + 63) / 64);
	__m256i		boundv = _mm256_set1_epi32((int) bound);
	__m256i		idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	const __m256i eight = _mm256_set1_epi32(8);
	size_t		i = 0;
	size_t		k = 0;

	if (nbytes > 256)
		return hamming_filter_generic(hamming_batch_avx512, q, codes, nbytes, stride, n, bound,
									  idx_out, dist_out);
	for (int c = 0; c < nchunks; c++)
	{
		size_t		len = nbytes - 64 * (size_t) c;

		masks[c] = len >= 64 ? ~(__mmask64) 0 : (((__mmask64) 1 << len) - 1);
		qz[c] = _mm512_maskz_loadu_epi8(masks[c], q + 64 * c);
	}
	for (; i + 8 <= n; i += 8)
	{
		const uint8_t *c = codes + i * stride;
		__m256i		d = _mm512_cvtepi64_epi32(
			sum8_lanes(xor_popcnt_chunks(qz, masks, nchunks, c),
					   xor_popcnt_chunks(qz, masks, nchunks, c + stride),
					   xor_popcnt_chunks(qz, masks, nchunks, c + 2 * stride),
					   xor_popcnt_chunks(qz, masks, nchunks, c + 3 * stride),
					   xor_popcnt_chunks(qz, masks, nchunks, c + 4 * stride),
					   xor_popcnt_chunks(qz, masks, nchunks, c + 5 * stride),
					   xor_popcnt_chunks(qz, masks, nchunks, c + 6 * stride),
					   xor_popcnt_chunks(qz, masks, nchunks, c + 7 * stride)));
		__mmask8	keep = _mm256_cmple_epu32_mask(d, boundv);

		if (keep)
		{
			_mm256_mask_compressstoreu_epi32(dist_out + k, keep, d);
			_mm256_mask_compressstoreu_epi32(idx_out + k, keep, idx);
			k += (size_t) __builtin_popcount((unsigned) keep);
		}
		idx = _mm256_add_epi32(idx, eight);
	}
	for (; i < n; i++)
	{
		uint32_t	d = (uint32_t) hamming_avx512(q, codes + i * stride, nbytes);

		idx_out[k] = (uint32_t) i;
		dist_out[k] = d;
		k += d <= bound;
	}
	return k;
}
#endif

/* ===================== dispatch ===================== */

typedef struct PgsDispatch
{
	uint64_t	(*popcount) (const uint8_t *, size_t);
	uint64_t	(*hamming) (const uint8_t *, const uint8_t *, size_t);
	void		(*and_or) (const uint8_t *, const uint8_t *, size_t, uint64_t *, uint64_t *);
	void		(*hamming_batch) (const uint8_t *, const uint8_t *, size_t, size_t, size_t, uint32_t *);
	size_t		(*hamming_filter) (const uint8_t *, const uint8_t *, size_t, size_t, size_t, uint32_t,
								   uint32_t *, uint32_t *);
	float		(*dot_f32) (const float *, const float *, size_t);
	float		(*l2sq_f32) (const float *, const float *, size_t);
	void		(*cosine_f32) (const float *, const float *, size_t, float *, float *, float *);
	float		(*dot_f16) (const uint16_t *, const uint16_t *, size_t);
	float		(*l2sq_f16) (const uint16_t *, const uint16_t *, size_t);
	void		(*cosine_f16) (const uint16_t *, const uint16_t *, size_t, float *, float *, float *);
	int32_t		(*dot_i8) (const int8_t *, const int8_t *, size_t);
	void		(*sparse_dense_est) (const int32_t *, const float *, size_t, const float *, float *, float *);
	void		(*sparse_dense_est_h16) (const void *, const uint16_t *, size_t, const float *, float *, float *);
	void		(*sparse_dense_est_h32) (const void *, const uint16_t *, size_t, const float *, float *, float *);
} PgsDispatch;

static PgsDispatch K;
static int	max_level = -1;
static int	cur_level = -1;

static void
set_table(int level)
{
	K.popcount = popcount_scalar;
	K.hamming = hamming_scalar;
	K.and_or = and_or_scalar;
	K.hamming_batch = hamming_batch_scalar;
	K.dot_f32 = dot_f32_scalar;
	K.l2sq_f32 = l2sq_f32_scalar;
	K.cosine_f32 = cosine_parts_f32_scalar;
	K.dot_f16 = dot_f16_scalar;
	K.l2sq_f16 = l2sq_f16_scalar;
	K.cosine_f16 = cosine_parts_f16_scalar;
	K.dot_i8 = dot_i8_scalar;
	K.sparse_dense_est = sparse_dense_est_scalar;
	K.sparse_dense_est_h16 = sparse_dense_est_h16_scalar;
	K.sparse_dense_est_h32 = sparse_dense_est_h32_scalar;
	K.hamming_filter = NULL;	/* generic over the level's batch kernel */
#ifdef PGS_X86
	if (level >= PGS_LEVEL_POPCNT)
	{
		K.popcount = popcount_popcnt;
		K.hamming = hamming_popcnt;
		K.and_or = and_or_popcnt;
		K.hamming_batch = hamming_batch_popcnt;
	}
	if (level >= PGS_LEVEL_AVX2)
	{
		K.popcount = popcount_avx2;
		K.hamming = hamming_avx2;
		K.hamming_batch = hamming_batch_avx2;
		K.dot_f32 = dot_f32_avx2;
		K.l2sq_f32 = l2sq_f32_avx2;
		K.cosine_f32 = cosine_parts_f32_avx2;
		K.dot_f16 = dot_f16_avx2;
		K.l2sq_f16 = l2sq_f16_avx2;
		K.cosine_f16 = cosine_parts_f16_avx2;
		K.dot_i8 = dot_i8_avx2;
		K.sparse_dense_est = sparse_dense_est_avx2;
		K.sparse_dense_est_h16 = sparse_dense_est_h16_avx2;
		K.sparse_dense_est_h32 = sparse_dense_est_h32_avx2;
	}
	if (level >= PGS_LEVEL_AVX512)
	{
		K.popcount = popcount_avx512;
		K.hamming = hamming_avx512;
		K.hamming_batch = hamming_batch_avx512;
		K.hamming_filter = hamming_filter_avx512;
		K.sparse_dense_est = sparse_dense_est_avx512;
		K.sparse_dense_est_h16 = sparse_dense_est_h16_avx512;
		K.sparse_dense_est_h32 = sparse_dense_est_h32_avx512;
	}
#endif
	cur_level = level;
}

void
pgs_kernels_init(void)
{
	if (max_level >= 0)
		return;
	max_level = detect_level();
	set_table(max_level);
}

int
pgs_kernels_max_level(void)
{
	pgs_kernels_init();
	return max_level;
}

int
pgs_kernels_level(void)
{
	pgs_kernels_init();
	return cur_level;
}

int
pgs_kernels_set_level(int level)
{
	pgs_kernels_init();
	if (level < PGS_LEVEL_SCALAR)
		level = PGS_LEVEL_SCALAR;
	if (level > max_level)
		level = max_level;
	set_table(level);
	return level;
}

/*
 * Linux enables the AMX tile data per process on request (arch_prctl
 * ARCH_REQ_XCOMP_PERM): until then a tile instruction raises SIGILL.  Asked
 * once, on first use; a refusal (old kernel, seccomp) leaves AMX unused.
 */
static int
amx_request(void)
{
#if defined(PGS_X86) && defined(__linux__) && defined(SYS_arch_prctl)
	if (amx_granted < 0)
		amx_granted = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */ ,
							  18 /* XFEATURE_XTILEDATA */ ) == 0;
	return amx_granted;
#else
	return 0;
#endif
}

int
pgs_kernels_amx(void)
{
	pgs_kernels_init();
	if (!has_amx || amx_off || cur_level < PGS_LEVEL_AVX512)
		return 0;
	return amx_request();
}

int
pgs_kernels_set_amx(int on)
{
	amx_off = !on;
	return pgs_kernels_amx();
}

int
pgs_kernels_vnni(void)
{
	pgs_kernels_init();
	return has_vnni && cur_level >= PGS_LEVEL_AVX512;
}

const char *
pgs_kernels_level_name(int level)
{
	switch (level)
	{
		case PGS_LEVEL_SCALAR:
			return "scalar";
		case PGS_LEVEL_POPCNT:
			return "popcnt";
		case PGS_LEVEL_AVX2:
			return "avx2";
		case PGS_LEVEL_AVX512:
			return "avx512";
		default:
			return "unknown";
	}
}

#define ENSURE_INIT() do { if (cur_level < 0) pgs_kernels_init(); } while (0)

uint64_t
pgs_popcount(const uint8_t *a, size_t nbytes)
{
	ENSURE_INIT();
	return K.popcount(a, nbytes);
}

uint64_t
pgs_hamming(const uint8_t *a, const uint8_t *b, size_t nbytes)
{
	ENSURE_INIT();
	return K.hamming(a, b, nbytes);
}

void
pgs_and_or_count(const uint8_t *a, const uint8_t *b, size_t nbytes,
				 uint64_t *and_count, uint64_t *or_count)
{
	ENSURE_INIT();
	K.and_or(a, b, nbytes, and_count, or_count);
}

void
pgs_hamming_batch(const uint8_t *q, const uint8_t *codes, size_t nbytes,
				  size_t stride, size_t n, uint32_t *out)
{
	ENSURE_INIT();
	K.hamming_batch(q, codes, nbytes, stride, n, out);
}

size_t
pgs_hamming_filter(const uint8_t *q, const uint8_t *codes, size_t nbytes, size_t stride,
				   size_t n, uint32_t bound, uint32_t *idx_out, uint32_t *dist_out)
{
	ENSURE_INIT();
	if (K.hamming_filter)
		return K.hamming_filter(q, codes, nbytes, stride, n, bound, idx_out, dist_out);
	return hamming_filter_generic(K.hamming_batch, q, codes, nbytes, stride, n, bound,
								  idx_out, dist_out);
}

float
pgs_dot_f32(const float *a, const float *b, size_t n)
{
	ENSURE_INIT();
	return K.dot_f32(a, b, n);
}

float
pgs_l2sq_f32(const float *a, const float *b, size_t n)
{
	ENSURE_INIT();
	return K.l2sq_f32(a, b, n);
}

void
pgs_cosine_parts_f32(const float *a, const float *b, size_t n,
					 float *dot, float *norm_a, float *norm_b)
{
	ENSURE_INIT();
	K.cosine_f32(a, b, n, dot, norm_a, norm_b);
}

float
pgs_dot_f16(const uint16_t *a, const uint16_t *b, size_t n)
{
	ENSURE_INIT();
	return K.dot_f16(a, b, n);
}

float
pgs_l2sq_f16(const uint16_t *a, const uint16_t *b, size_t n)
{
	ENSURE_INIT();
	return K.l2sq_f16(a, b, n);
}

void
pgs_cosine_parts_f16(const uint16_t *a, const uint16_t *b, size_t n,
					 float *dot, float *norm_a, float *norm_b)
{
	ENSURE_INIT();
	K.cosine_f16(a, b, n, dot, norm_a, norm_b);
}

int32_t
pgs_dot_i8(const int8_t *a, const int8_t *b, size_t n)
{
	ENSURE_INIT();
	return K.dot_i8(a, b, n);
}

/* ---- quantizers: simple enough that one portable version is the fast one ---- */

void
pgs_quantize_f32(const float *x, const float *t, size_t dim, uint8_t *out)
{
	size_t		nbytes = (dim + 7) / 8;

	memset(out, 0, nbytes);
	for (size_t i = 0; i < dim; i++)
	{
		float		thr = t ? t[i] : 0.0f;

		if (x[i] > thr)
			out[i >> 3] |= (uint8_t) (0x80 >> (i & 7));
	}
}

void
pgs_quantize_f16(const uint16_t *x, const float *t, size_t dim, uint8_t *out)
{
	size_t		nbytes = (dim + 7) / 8;

	memset(out, 0, nbytes);
	for (size_t i = 0; i < dim; i++)
	{
		float		thr = t ? t[i] : 0.0f;

		if (f16_to_f32_scalar(x[i]) > thr)
			out[i >> 3] |= (uint8_t) (0x80 >> (i & 7));
	}
}

double
pgs_dot_bits(const float *q, const uint8_t *bits, size_t dim)
{
	double		pos = 0,
				all = 0;

	for (size_t i = 0; i < dim; i++)
	{
		all += q[i];
		if (bits[i >> 3] & (0x80 >> (i & 7)))
			pos += q[i];
	}
	return 2.0 * pos - all;
}

void
pgs_bits_lut_build(const float *w, size_t dim, float *lut)
{
	size_t		nbytes = (dim + 7) / 8;

	for (size_t j = 0; j < nbytes; j++)
	{
		float	   *row = lut + j * 256;
		float		wk[8];

		for (int k = 0; k < 8; k++)
			wk[k] = (8 * j + k < dim) ? w[8 * j + k] : 0.0f;
		row[0] = 0.0f;
		/* each entry extends the entry without its lowest set bit */
		for (int b = 1; b < 256; b++)
		{
			int			low = b & -b;
			int			k = 7 - __builtin_ctz((unsigned) low);

			row[b] = row[b ^ low] + wk[k];
		}
	}
}

float
pgs_bits_lut_score(const float *lut, const uint8_t *code, size_t nbytes)
{
	float		s0 = 0,
				s1 = 0,
				s2 = 0,
				s3 = 0;
	size_t		j = 0;

	for (; j + 4 <= nbytes; j += 4)
	{
		s0 += lut[(j + 0) * 256 + code[j + 0]];
		s1 += lut[(j + 1) * 256 + code[j + 1]];
		s2 += lut[(j + 2) * 256 + code[j + 2]];
		s3 += lut[(j + 3) * 256 + code[j + 3]];
	}
	for (; j < nbytes; j++)
		s0 += lut[j * 256 + code[j]];
	return (s0 + s1) + (s2 + s3);
}

void
pgs_sparse_dense_est(const int32_t *idx, const float *val, size_t n, const float *q,
					 float *sum, float *abssum)
{
	ENSURE_INIT();
	K.sparse_dense_est(idx, val, n, q, sum, abssum);
}

void
pgs_sparse_dense_est_h(const void *idx, int wide, const uint16_t *val, size_t n, const float *q,
					   float *sum, float *abssum)
{
	ENSURE_INIT();
	if (wide)
		K.sparse_dense_est_h32(idx, val, n, q, sum, abssum);
	else
		K.sparse_dense_est_h16(idx, val, n, q, sum, abssum);
}
