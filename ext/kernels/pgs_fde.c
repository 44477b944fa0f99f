/*
 * pgs_fde.c — MUVERA fixed dimensional encodings (FDE), pgsieve variant.
 *
 * MUVERA (Dhulipala et al., NeurIPS'24) turns a set of token vectors into one
 * vector whose inner products approximate Chamfer / MaxSim similarity.  The
 * reference C++ draws its randomness from implementation-defined std::
 * distributions, so no two public implementations agree bit for bit.  This
 * file defines pgsieve's own construction, exactly.  It is a storage format:
 * FDEs stored by one build must match queries encoded by another, in SQL or
 * in Python, so any change here needs a new version of the spec and of
 * tests/data/fde_golden.json.
 *
 * ---- pgsieve FDE spec, version 1 ----------------------------------------------------------
 *
 * Inputs: tokens x_0 .. x_{n-1} in R^d (float32, finite, n >= 1), R = reps >= 1,
 * k = ksim in [0, 15], B = 2^k partitions, d' = dproj if dproj > 0 else d,
 * L = R * B * d'.  Integer arithmetic is on uint64 modulo 2^64; float
 * arithmetic is IEEE binary64, round to nearest even; (double) of a float32
 * is exact, and so is every product by +-1 below.
 *
 * 1. PRNG, counter based.  sm64 is one SplitMix64 step:
 *        z += 0x9E3779B97F4A7C15
 *        z  = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
 *        z  = (z ^ (z >> 27)) * 0x94D049BB133111EB
 *        sm64(z) = z ^ (z >> 31)
 *    key(seed, rep, stream)         = sm64(sm64(sm64(seed) ^ rep) ^ stream)
 *    draw(seed, rep, stream, index) = sm64(key(seed, rep, stream) ^ index)
 *    Streams: 1 = SimHash signs, 2 = AMS inner projection, 3 = final
 *    projection (with rep = 0).  A SQL bigint seed is read as its two's
 *    complement uint64.
 *
 * 2. SimHash, per repetition r (only when k > 0).  For coordinate i in [0, d):
 *        u = draw(seed, r, 1, i);  g_r[i][j] = -1 if bit (63 - j) of u is 1, else +1   (j < k)
 *    Token t's sketch: h_j = sum_{i = 0 .. d-1} g_r[i][j] * (double) x_t[i], added in
 *    float64 in increasing i, starting from +0.0.  bit_j = (h_j > 0), so an
 *    exact zero gives 0.  Partition label p_t = sum_j bit_j << j (plain
 *    binary, no Gray code).  With k = 0 every label is 0.
 *
 * 3. Inner projection, per r.  Identity (dproj = 0): y_t[c] = (double) x_t[c].
 *    AMS count-sketch (dproj > 0): for i in [0, d):
 *        u = draw(seed, r, 2, i);  col_i = ((u >> 32) * d') >> 32;  s_i = -1 if (u & 1) else +1
 *    y_t[c] = sum of s_i * (double) x_t[i] over the i with col_i = c, in
 *    increasing i, from +0.0: exactly one +-1 per input coordinate, no scaling.
 *
 * 4. Blocks, per r.  V_p = sum of y_t over the tokens with p_t = p, in
 *    increasing t, from +0.0 (float64); n_p = their number.
 *    Query (SUM):       F_p = V_p; empty partitions stay 0.  fill_empty is an error.
 *    Document (AVERAGE): F_p[c] = V_p[c] / n_p (one float64 division) when n_p > 0;
 *                       an empty partition stays 0, or with fill_empty is y_t* for the
 *                       token t* minimising popcount(p_t XOR p), ties to the lowest t.
 *    Unprojected FDE: G[(r * B + p) * d' + c] = F_p[c] for r < R, p < B, c < d'.
 *
 * 5. Final projection (final_dim > 0): for m = 0 .. L-1 in increasing m:
 *        u = draw(seed, 0, 3, m);  h = ((u >> 32) * final_dim) >> 32;
 *        out64[h] += (u & 1) ? -G[m] : G[m]            (float64, from +0.0)
 *    Otherwise out64 = G.
 *
 * 6. Output: out[i] = (float) out64[i], round to nearest even.  A result
 *    beyond float32's range is an error, never an infinity.
 *
 * -------------------------------------------------------------------------------------------
 *
 * Implementation notes.  Nothing is precomputed globally: each call draws
 * each repetition's signs and columns once into scratch.  Tokens are
 * transposed into float64 blocks of FDE_LANES tokens so that the SimHash and
 * AMS loops run across token lanes (the SIMD levels of pgs_kernels.h);
 * vectorizing across tokens never reorders any one sum, so every level gives
 * the same bits (a fused multiply-add of an exact +-1 product rounds exactly
 * like the separate add).  Skipping all-zero blocks in step 5 changes
 * nothing: out64 starts at +0.0 and, in round-to-nearest, a sum never turns
 * into -0.0, so adding +-0 is the identity.
 */
#include "pgs_fde.h"
#include "pgs_kernels.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* the spec is binary64 arithmetic; x87 excess precision would change the bits */
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0
#error "pgs_fde.c needs FLT_EVAL_METHOD == 0 (on 32-bit x86 build with -msse2 -mfpmath=sse)"
#endif

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define FDE_X86 1
#include <immintrin.h>
#endif

#define FDE_STREAM_SIMHASH	1
#define FDE_STREAM_AMS		2
#define FDE_STREAM_FINAL	3

/* tokens per block of the transposed token matrix (two AVX-512 registers) */
#define FDE_LANES	16

/* ===================== PRNG ===================== */

static inline uint64_t
sm64(uint64_t z)
{
	z += UINT64_C(0x9E3779B97F4A7C15);
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static inline uint64_t
fde_key(uint64_t seed, uint64_t rep, uint64_t stream)
{
	return sm64(sm64(sm64(seed) ^ rep) ^ stream);
}

uint64_t
pgs_fde_draw(uint64_t seed, uint64_t rep, uint64_t stream, uint64_t index)
{
	return sm64(fde_key(seed, rep, stream) ^ index);
}

/* multiply-shift: a uniform bucket in [0, n) from the high 32 bits of u */
static inline uint32_t
fde_bucket(uint64_t u, uint32_t n)
{
	return (uint32_t) (((u >> 32) * (uint64_t) n) >> 32);
}

/* ===================== validation ===================== */

/* R * B * d' (64-bit: up to 2^43 before the range check) */
static uint64_t
blocks_len(const PgsFdeParams *p)
{
	uint64_t	dp = p->dproj > 0 ? (uint64_t) p->dproj : (uint64_t) p->dim;

	return (uint64_t) p->reps * ((uint64_t) 1 << p->ksim) * dp;
}

int
pgs_fde_check(const PgsFdeParams *p, int is_query)
{
	if (p->dim < 1 || p->dim > PGS_FDE_MAX_DIM)
		return PGS_FDE_ERR_DIM;
	if (p->reps < 1 || p->reps > PGS_FDE_MAX_REPS)
		return PGS_FDE_ERR_REPS;
	if (p->ksim < 0 || p->ksim > PGS_FDE_MAX_KSIM)
		return PGS_FDE_ERR_KSIM;
	if (p->dproj < 0 || p->dproj > PGS_FDE_MAX_DPROJ)
		return PGS_FDE_ERR_DPROJ;
	if (p->final_dim < 0 || p->final_dim > PGS_FDE_MAX_FINAL_DIM)
		return PGS_FDE_ERR_FINAL_DIM;
	/* each factor is bounded above, so this product cannot overflow 64 bits */
	if (blocks_len(p) > PGS_FDE_MAX_BLOCKS_LEN)
		return PGS_FDE_ERR_TOO_LONG;
	if (is_query && p->fill_empty)
		return PGS_FDE_ERR_FILL_QUERY;
	return PGS_FDE_OK;
}

const char *
pgs_fde_strerror(int code)
{
	switch (code)
	{
		case PGS_FDE_OK:
			return "ok";
		case PGS_FDE_ERR_DIM:
			return "token dimension must be between 1 and 65536";
		case PGS_FDE_ERR_REPS:
			return "reps must be between 1 and 4096";
		case PGS_FDE_ERR_KSIM:
			return "ksim must be between 0 and 15";
		case PGS_FDE_ERR_DPROJ:
			return "dproj must be between 0 (identity) and 65536";
		case PGS_FDE_ERR_FINAL_DIM:
			return "final_dim must be between 0 (none) and 16777216";
		case PGS_FDE_ERR_TOO_LONG:
			return "reps * 2^ksim * (dproj, or the token dimension when dproj is 0) must not exceed 16777216";
		case PGS_FDE_ERR_FILL_QUERY:
			return "fill_empty applies to documents only; a query encoding cannot fill empty partitions";
		case PGS_FDE_ERR_NO_TOKENS:
			return "at least one token is required";
		case PGS_FDE_ERR_TOO_MANY_TOKENS:
			return "at most 1048576 tokens are allowed";
		case PGS_FDE_ERR_NONFINITE:
			return "token values must be finite (no NaN or Infinity)";
		case PGS_FDE_ERR_SCRATCH:
			return "scratch buffer too small";
		case PGS_FDE_ERR_OVERFLOW:
			return "the encoding overflows float32 (token values too large)";
		default:
			return "unknown FDE error";
	}
}

size_t
pgs_fde_output_dim(const PgsFdeParams *p)
{
	if (pgs_fde_check(p, 0) != PGS_FDE_OK)
		return 0;
	return p->final_dim > 0 ? (size_t) p->final_dim : (size_t) blocks_len(p);
}

/* ===================== scratch layout ===================== */

/*
 * One call's working memory, carved out of the caller's scratch.  Everything
 * except xt (the transposed tokens) is rebuilt for each repetition.
 */
typedef struct FdeScratch
{
	double	   *xt;				/* d x npad: xt[i * npad + t] = x_t[i], padding lanes 0 */
	double	   *sg;				/* d x ksim: SimHash signs +-1 of coordinate i */
	uint32_t   *acol;			/* d: AMS column of each input coordinate */
	double	   *asg;			/* d: AMS sign +-1 of each input coordinate */
	double	   *yl;				/* d' x FDE_LANES: one block's AMS projections, lane-major */
	double	   *y;				/* npad x d': AMS-projected tokens, token-major */
	uint32_t   *label;			/* npad: partition labels */
	double	   *blk;			/* B x d': block sums, then F_p */
	uint32_t   *cnt;			/* B: tokens per partition */
	int32_t    *owner;			/* B: fill source token of each partition */
	uint8_t    *dist;			/* B: its label's Hamming distance */
	double	   *fin;			/* final_dim: final projection sums */
} FdeScratch;

#define FDE_NSLOTS	12
#define FDE_ALIGN	64

/* *r = a * b * c, false on size_t overflow (size_t may be 32 bits wide) */
static int
mul3(size_t a, size_t b, size_t c, size_t *r)
{
	size_t		limit = SIZE_MAX / 4;

	if (b != 0 && a > limit / b)
		return 0;
	if (c != 0 && a * b > limit / c)
		return 0;
	*r = a * b * c;
	return 1;
}

static size_t
padded_tokens(size_t ntok)
{
	return (ntok + FDE_LANES - 1) / FDE_LANES * FDE_LANES;
}

/* Lay the regions out from base (NULL: only measure).  Returns the bytes
 * needed, including slack to align any base, or 0 on overflow. */
static size_t
fde_layout(const PgsFdeParams *p, size_t ntok, void *base, FdeScratch *s)
{
	size_t		d = (size_t) p->dim;
	size_t		npad = padded_tokens(ntok);
	size_t		dp = p->dproj > 0 ? (size_t) p->dproj : d;
	size_t		yd = p->dproj > 0 ? dp : 0;
	size_t		nb = (size_t) 1 << p->ksim;
	size_t		sizes[FDE_NSLOTS];
	void	  **slots[FDE_NSLOTS] = {
		(void **) &s->xt, (void **) &s->sg, (void **) &s->acol, (void **) &s->asg,
		(void **) &s->yl, (void **) &s->y, (void **) &s->label,
		(void **) &s->blk, (void **) &s->cnt, (void **) &s->owner, (void **) &s->dist,
		(void **) &s->fin
	};
	uintptr_t	start = (uintptr_t) base;
	size_t		off = base ? (FDE_ALIGN - start % FDE_ALIGN) % FDE_ALIGN : 0;

	if (!mul3(d, npad, sizeof(double), &sizes[0]) ||
		!mul3(d, (size_t) p->ksim, sizeof(double), &sizes[1]) ||
		!mul3(yd, FDE_LANES, sizeof(double), &sizes[4]) ||
		!mul3(npad, yd, sizeof(double), &sizes[5]) ||
		!mul3(nb, dp, sizeof(double), &sizes[7]))
		return 0;
	sizes[2] = d * sizeof(uint32_t);
	sizes[3] = d * sizeof(double);
	sizes[6] = npad * sizeof(uint32_t);
	sizes[8] = nb * sizeof(uint32_t);
	sizes[9] = nb * sizeof(int32_t);
	sizes[10] = nb;
	sizes[11] = (size_t) p->final_dim * sizeof(double);
	for (int i = 0; i < FDE_NSLOTS; i++)
	{
		if (base)
			*slots[i] = (void *) (start + off);
		if (sizes[i] > SIZE_MAX / 4 - off)
			return 0;
		off += (sizes[i] + FDE_ALIGN - 1) / FDE_ALIGN * FDE_ALIGN;
	}
	return base ? off : off + FDE_ALIGN;
}

size_t
pgs_fde_scratch_bytes(const PgsFdeParams *p, size_t ntok)
{
	FdeScratch	s;

	if (pgs_fde_check(p, 0) != PGS_FDE_OK || ntok == 0 || ntok > PGS_FDE_MAX_TOKENS)
		return 0;
	return fde_layout(p, ntok, NULL, &s);
}

/* ===================== per-level loops ===================== */

/*
 * Each dispatch level provides:
 *   block:   for one block of FDE_LANES tokens (transposed at xt, row stride
 *            npad): the SimHash labels, or-ed into label[0 .. FDE_LANES),
 *            and, when yl is not NULL, the AMS projections
 *            yl[c * FDE_LANES + l] += s_i * x_l[i] for i = 0 .. d-1 in order
 *            (c = col_i), yl zeroed by the caller;
 *   transpose, untranspose: tokens (float32, row-major) into float64 lane
 *            blocks, and a block's lane-major projections into token-major y;
 *   add, add_f32, div, store: element-wise v += y, v += (double) x,
 *            v /= den, out = (float) v (reporting whether all are finite).
 * Lanes never mix and every lane adds in the spec's order, so the levels
 * agree bit for bit; a fused multiply-add of an exact +-1 product rounds
 * exactly like the separate add.
 *
 * Why this shape: one pass over a block's coordinates serves both the
 * SimHash dot products and the AMS scatter.  The SimHash bits are
 * accumulated in groups of K (a compile-time constant at every call of a
 * *_group helper, always inlined into a switch) so that 2K independent
 * register chains keep the FMA units busy; the AMS scatter's loads and
 * stores hide behind those FMAs.
 */
#define FDE_INLINE static inline __attribute__((always_inline))

/* Call FN(args..., K) with K = k as a compile-time constant, 0 <= k <= 6 or 8. */
#define FDE_SWITCH_K6(FN, k, ...) \
	switch (k) \
	{ \
		case 0: FN(__VA_ARGS__, 0); break; \
		case 1: FN(__VA_ARGS__, 1); break; \
		case 2: FN(__VA_ARGS__, 2); break; \
		case 3: FN(__VA_ARGS__, 3); break; \
		case 4: FN(__VA_ARGS__, 4); break; \
		case 5: FN(__VA_ARGS__, 5); break; \
		default: FN(__VA_ARGS__, 6); break; \
	}
#define FDE_SWITCH_K8(FN, k, ...) \
	switch (k) \
	{ \
		case 7: FN(__VA_ARGS__, 7); break; \
		case 8: FN(__VA_ARGS__, 8); break; \
		default: FDE_SWITCH_K6(FN, k, __VA_ARGS__); break; \
	}

/* Run GROUP over the SimHash bits in passes of at most MAXK; the first pass
 * (or the only one, when ksim is 0) also does the AMS scatter. */
#define FDE_BLOCK_PASSES(SWITCH, GROUP, MAXK, ksim, yl, ...) \
	for (int j0 = 0; j0 == 0 || j0 < (ksim); j0 += (MAXK)) \
	{ \
		int			k_ = (ksim) - j0 < (MAXK) ? (ksim) - j0 : (MAXK); \
		SWITCH(GROUP, k_, __VA_ARGS__, j0, j0 == 0 ? (yl) : NULL); \
	}

/* ---- portable: one lane at a time ---- */

#define FDE_GROUP_SCALAR 8

FDE_INLINE void
block_group_scalar(const double *xt, size_t npad, int d, const double *sg, int ksim,
				   const uint32_t *acol, const double *asg, uint32_t *label, int j0,
				   double *yl, const int K)
{
	for (int l = 0; l < FDE_LANES; l++)
	{
		double		acc[FDE_GROUP_SCALAR];

		_Pragma("GCC unroll 8")
		for (int k = 0; k < K; k++)
			acc[k] = 0.0;
		for (int i = 0; i < d; i++)
		{
			double		x = xt[(size_t) i * npad + l];
			const double *s = sg + (size_t) i * ksim + j0;

			_Pragma("GCC unroll 8")
			for (int k = 0; k < K; k++)
				acc[k] += s[k] * x;
			if (yl)
				yl[(size_t) acol[i] * FDE_LANES + l] += asg[i] * x;
		}
		_Pragma("GCC unroll 8")
		for (int k = 0; k < K; k++)
			label[l] |= (uint32_t) (acc[k] > 0.0) << (j0 + k);
	}
}

static void
block_scalar(const double *xt, size_t npad, int d, const double *sg, int ksim,
			 const uint32_t *acol, const double *asg, double *yl, uint32_t *label)
{
	FDE_BLOCK_PASSES(FDE_SWITCH_K8, block_group_scalar, FDE_GROUP_SCALAR, ksim, yl,
					 xt, npad, d, sg, ksim, acol, asg, label);
}

/* Tokens as float64, transposed into blocks of FDE_LANES; padding lanes are 0. */
static void
transpose_scalar(const float *x, size_t ntok, int d, size_t npad, double *xt)
{
	for (size_t b = 0; b < npad; b += FDE_LANES)
	{
		size_t		nl = ntok - b < FDE_LANES ? ntok - b : FDE_LANES;

		for (int i = 0; i < d; i++)
		{
			double	   *dst = xt + (size_t) i * npad + b;
			const float *src = x + b * (size_t) d + i;

			for (size_t l = 0; l < nl; l++)
				dst[l] = (double) src[l * (size_t) d];
			for (size_t l = nl; l < FDE_LANES; l++)
				dst[l] = 0.0;
		}
	}
}

/* One block's lane-major AMS projections into the token-major y. */
static void
untranspose_scalar(const double *yl, size_t dp, double *y)
{
	for (size_t l = 0; l < FDE_LANES; l++)
		for (size_t c = 0; c < dp; c++)
			y[l * dp + c] = yl[c * FDE_LANES + l];
}

static void
add_scalar(double *v, const double *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		v[i] += y[i];
}

static void
add_f32_scalar(double *v, const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		v[i] += (double) x[i];
}

static void
div_scalar(double *v, size_t n, double den)
{
	for (size_t i = 0; i < n; i++)
		v[i] = v[i] / den;
}

static int
store_scalar(const double *v, size_t n, float *out)
{
	int			ok = 1;

	for (size_t i = 0; i < n; i++)
	{
		out[i] = (float) v[i];
		ok &= fabsf(out[i]) <= FLT_MAX;		/* false for Inf and NaN */
	}
	return ok;
}

#ifdef FDE_X86

#define FDE_AVX2_ATTR __attribute__((target("avx2,fma")))
#define FDE_AVX512_ATTR __attribute__((target("avx512f,avx512vl,avx2,fma")))

/* ---- AVX2: 8 lanes (two registers) at a time, 6 bits per pass ---- */

#define FDE_GROUP_AVX2 6

FDE_AVX2_ATTR FDE_INLINE void
block_group_avx2(const double *xt, size_t npad, int d, const double *sg, int ksim,
				 const uint32_t *acol, const double *asg, uint32_t *label, int j0,
				 double *yl, const int K)
{
	__m256d		lo[FDE_GROUP_AVX2 + 1],
				hi[FDE_GROUP_AVX2 + 1];

	_Pragma("GCC unroll 8")
	for (int k = 0; k < K; k++)
		lo[k] = hi[k] = _mm256_setzero_pd();
	for (int i = 0; i < d; i++)
	{
		const double *x = xt + (size_t) i * npad;
		const double *s = sg + (size_t) i * ksim + j0;
		__m256d		xl = _mm256_loadu_pd(x);
		__m256d		xh = _mm256_loadu_pd(x + 4);

		_Pragma("GCC unroll 8")
		for (int k = 0; k < K; k++)
		{
			__m256d		g = _mm256_broadcast_sd(s + k);

			lo[k] = _mm256_fmadd_pd(g, xl, lo[k]);
			hi[k] = _mm256_fmadd_pd(g, xh, hi[k]);
		}
		if (yl)
		{
			double	   *y = yl + (size_t) acol[i] * FDE_LANES;
			__m256d		a = _mm256_broadcast_sd(asg + i);

			_mm256_storeu_pd(y, _mm256_fmadd_pd(a, xl, _mm256_loadu_pd(y)));
			_mm256_storeu_pd(y + 4, _mm256_fmadd_pd(a, xh, _mm256_loadu_pd(y + 4)));
		}
	}
	_Pragma("GCC unroll 8")
	for (int k = 0; k < K; k++)
	{
		int			m = _mm256_movemask_pd(_mm256_cmp_pd(lo[k], _mm256_setzero_pd(), _CMP_GT_OQ)) |
			_mm256_movemask_pd(_mm256_cmp_pd(hi[k], _mm256_setzero_pd(), _CMP_GT_OQ)) << 4;

		for (int l = 0; l < 8; l++)
			label[l] |= (uint32_t) ((m >> l) & 1) << (j0 + k);
	}
}

FDE_AVX2_ATTR static void
block_avx2(const double *xt, size_t npad, int d, const double *sg, int ksim,
		   const uint32_t *acol, const double *asg, double *yl, uint32_t *label)
{
	for (int h = 0; h < FDE_LANES; h += 8)
	{
		double	   *ylh = yl ? yl + h : NULL;

		FDE_BLOCK_PASSES(FDE_SWITCH_K6, block_group_avx2, FDE_GROUP_AVX2, ksim, ylh,
						 xt + h, npad, d, sg, ksim, acol, asg, label + h);
	}
}

FDE_AVX2_ATTR static void
add_avx2(double *v, const double *y, size_t n)
{
	size_t		i = 0;

	for (; i + 4 <= n; i += 4)
		_mm256_storeu_pd(v + i, _mm256_add_pd(_mm256_loadu_pd(v + i), _mm256_loadu_pd(y + i)));
	for (; i < n; i++)
		v[i] += y[i];
}

FDE_AVX2_ATTR static void
add_f32_avx2(double *v, const float *x, size_t n)
{
	size_t		i = 0;

	for (; i + 4 <= n; i += 4)
		_mm256_storeu_pd(v + i, _mm256_add_pd(_mm256_loadu_pd(v + i),
											  _mm256_cvtps_pd(_mm_loadu_ps(x + i))));
	for (; i < n; i++)
		v[i] += (double) x[i];
}

FDE_AVX2_ATTR static void
div_avx2(double *v, size_t n, double den)
{
	__m256d		dv = _mm256_set1_pd(den);
	size_t		i = 0;

	for (; i + 4 <= n; i += 4)
		_mm256_storeu_pd(v + i, _mm256_div_pd(_mm256_loadu_pd(v + i), dv));
	for (; i < n; i++)
		v[i] = v[i] / den;
}

FDE_AVX2_ATTR static int
store_avx2(const double *v, size_t n, float *out)
{
	__m128		lim = _mm_set1_ps(FLT_MAX);
	__m128		abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7FFFFFFF));
	int			ok = 1;
	size_t		i = 0;

	for (; i + 4 <= n; i += 4)
	{
		__m128		f = _mm256_cvtpd_ps(_mm256_loadu_pd(v + i));

		_mm_storeu_ps(out + i, f);
		ok &= _mm_movemask_ps(_mm_cmp_ps(_mm_and_ps(f, abs_mask), lim, _CMP_LE_OQ)) == 0xF;
	}
	return ok & store_scalar(v + i, n - i, out + i);
}

/* ---- AVX-512: all 16 lanes (two registers), 8 bits per pass ---- */

#define FDE_GROUP_AVX512 8

FDE_AVX512_ATTR FDE_INLINE void
block_group_avx512(const double *xt, size_t npad, int d, const double *sg, int ksim,
				   const uint32_t *acol, const double *asg, uint32_t *label, int j0,
				   double *yl, const int K)
{
	__m512d		lo[FDE_GROUP_AVX512 + 1],
				hi[FDE_GROUP_AVX512 + 1];

	_Pragma("GCC unroll 8")
	for (int k = 0; k < K; k++)
		lo[k] = hi[k] = _mm512_setzero_pd();
	for (int i = 0; i < d; i++)
	{
		const double *x = xt + (size_t) i * npad;
		const double *s = sg + (size_t) i * ksim + j0;
		__m512d		xl = _mm512_loadu_pd(x);
		__m512d		xh = _mm512_loadu_pd(x + 8);

		_Pragma("GCC unroll 8")
		for (int k = 0; k < K; k++)
		{
			__m512d		g = _mm512_set1_pd(s[k]);

			lo[k] = _mm512_fmadd_pd(g, xl, lo[k]);
			hi[k] = _mm512_fmadd_pd(g, xh, hi[k]);
		}
		if (yl)
		{
			double	   *y = yl + (size_t) acol[i] * FDE_LANES;
			__m512d		a = _mm512_set1_pd(asg[i]);

			_mm512_storeu_pd(y, _mm512_fmadd_pd(a, xl, _mm512_loadu_pd(y)));
			_mm512_storeu_pd(y + 8, _mm512_fmadd_pd(a, xh, _mm512_loadu_pd(y + 8)));
		}
	}
	_Pragma("GCC unroll 8")
	for (int k = 0; k < K; k++)
	{
		unsigned	m = _mm512_cmp_pd_mask(lo[k], _mm512_setzero_pd(), _CMP_GT_OQ) |
			(unsigned) _mm512_cmp_pd_mask(hi[k], _mm512_setzero_pd(), _CMP_GT_OQ) << 8;

		for (int l = 0; l < FDE_LANES; l++)
			label[l] |= (uint32_t) ((m >> l) & 1) << (j0 + k);
	}
}

FDE_AVX512_ATTR static void
block_avx512(const double *xt, size_t npad, int d, const double *sg, int ksim,
			 const uint32_t *acol, const double *asg, double *yl, uint32_t *label)
{
	FDE_BLOCK_PASSES(FDE_SWITCH_K8, block_group_avx512, FDE_GROUP_AVX512, ksim, yl,
					 xt, npad, d, sg, ksim, acol, asg, label);
}

/* one gather per coordinate and block (d * FDE_LANES < 2^31: int32 indices) */
FDE_AVX512_ATTR static void
transpose_avx512(const float *x, size_t ntok, int d, size_t npad, double *xt)
{
	const __m512i rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8,
															 7, 6, 5, 4, 3, 2, 1, 0),
											_mm512_set1_epi32(d));

	for (size_t b = 0; b < npad; b += FDE_LANES)
	{
		size_t		nl = ntok - b < FDE_LANES ? ntok - b : FDE_LANES;
		__mmask16	live = (__mmask16) ((1u << nl) - 1);

		for (int i = 0; i < d; i++)
		{
			__m512		v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), live, rows,
													 x + b * (size_t) d + i, 4);
			double	   *dst = xt + (size_t) i * npad + b;

			_mm512_storeu_pd(dst, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
			_mm512_storeu_pd(dst + 8, _mm512_cvtps_pd(_mm256_castpd_ps(
				_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
		}
	}
}

/* 8 x 8 transposes: unpack pairs, then swap 128-bit, then 256-bit halves */
FDE_AVX512_ATTR static void
untranspose_avx512(const double *yl, size_t dp, double *y)
{
	const __m512i i2lo = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
	const __m512i i2hi = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
	const __m512i i3lo = _mm512_set_epi64(11, 10, 9, 8, 3, 2, 1, 0);
	const __m512i i3hi = _mm512_set_epi64(15, 14, 13, 12, 7, 6, 5, 4);

	if (dp % 8 != 0)
	{
		untranspose_scalar(yl, dp, y);
		return;
	}
	for (size_t c0 = 0; c0 < dp; c0 += 8)
		for (size_t l0 = 0; l0 < FDE_LANES; l0 += 8)
		{
			__m512d		r[8],
						t[8],
						u[8];

			for (int j = 0; j < 8; j++)
				r[j] = _mm512_loadu_pd(yl + (c0 + j) * FDE_LANES + l0);
			for (int j = 0; j < 8; j += 2)
			{
				t[j] = _mm512_unpacklo_pd(r[j], r[j + 1]);
				t[j + 1] = _mm512_unpackhi_pd(r[j], r[j + 1]);
			}
			for (int j = 0; j < 8; j += 4)
			{
				u[j] = _mm512_permutex2var_pd(t[j], i2lo, t[j + 2]);
				u[j + 2] = _mm512_permutex2var_pd(t[j], i2hi, t[j + 2]);
				u[j + 1] = _mm512_permutex2var_pd(t[j + 1], i2lo, t[j + 3]);
				u[j + 3] = _mm512_permutex2var_pd(t[j + 1], i2hi, t[j + 3]);
			}
			for (int j = 0; j < 4; j++)
			{
				_mm512_storeu_pd(y + (l0 + j) * dp + c0, _mm512_permutex2var_pd(u[j], i3lo, u[j + 4]));
				_mm512_storeu_pd(y + (l0 + j + 4) * dp + c0, _mm512_permutex2var_pd(u[j], i3hi, u[j + 4]));
			}
		}
}

FDE_AVX512_ATTR static void
add_avx512(double *v, const double *y, size_t n)
{
	size_t		i = 0;

	for (; i + 8 <= n; i += 8)
		_mm512_storeu_pd(v + i, _mm512_add_pd(_mm512_loadu_pd(v + i), _mm512_loadu_pd(y + i)));
	add_avx2(v + i, y + i, n - i);
}

FDE_AVX512_ATTR static void
add_f32_avx512(double *v, const float *x, size_t n)
{
	size_t		i = 0;

	for (; i + 8 <= n; i += 8)
		_mm512_storeu_pd(v + i, _mm512_add_pd(_mm512_loadu_pd(v + i),
											  _mm512_cvtps_pd(_mm256_loadu_ps(x + i))));
	add_f32_avx2(v + i, x + i, n - i);
}

FDE_AVX512_ATTR static void
div_avx512(double *v, size_t n, double den)
{
	__m512d		dv = _mm512_set1_pd(den);
	size_t		i = 0;

	for (; i + 8 <= n; i += 8)
		_mm512_storeu_pd(v + i, _mm512_div_pd(_mm512_loadu_pd(v + i), dv));
	div_avx2(v + i, n - i, den);
}

#endif							/* FDE_X86 */

typedef struct FdeOps
{
	void		(*block) (const double *, size_t, int, const double *, int,
						  const uint32_t *, const double *, double *, uint32_t *);
	void		(*transpose) (const float *, size_t, int, size_t, double *);
	void		(*untranspose) (const double *, size_t, double *);
	void		(*add) (double *, const double *, size_t);
	void		(*add_f32) (double *, const float *, size_t);
	void		(*div) (double *, size_t, double);
	int			(*store) (const double *, size_t, float *);
} FdeOps;

/* The loops of the level in use (pgs_kernels_set_level pins it for tests). */
static void
pick_ops(FdeOps *ops)
{
	int			level = pgs_kernels_level();

	ops->block = block_scalar;
	ops->transpose = transpose_scalar;
	ops->untranspose = untranspose_scalar;
	ops->add = add_scalar;
	ops->add_f32 = add_f32_scalar;
	ops->div = div_scalar;
	ops->store = store_scalar;
#ifdef FDE_X86
	if (level >= PGS_LEVEL_AVX2)
	{
		ops->block = block_avx2;
		ops->add = add_avx2;
		ops->add_f32 = add_f32_avx2;
		ops->div = div_avx2;
		ops->store = store_avx2;
	}
	if (level >= PGS_LEVEL_AVX512)
	{
		ops->block = block_avx512;
		ops->transpose = transpose_avx512;
		ops->untranspose = untranspose_avx512;
		ops->add = add_avx512;
		ops->add_f32 = add_f32_avx512;
		ops->div = div_avx512;
	}
#else
	(void) level;
#endif
}

/* ===================== steps ===================== */

/* x with its sign flipped when neg is 1: exact, and without a branch on a
 * random bit (which would mispredict half the time) */
static inline double
flip_sign(double x, uint64_t neg)
{
	uint64_t	b;

	memcpy(&b, &x, sizeof(b));
	b ^= neg << 63;
	memcpy(&x, &b, sizeof(x));
	return x;
}

/* Step 2's signs and step 3's columns for repetition r. */
static void
draw_rep(const PgsFdeParams *p, uint32_t r, FdeScratch *s)
{
	uint64_t	k1 = fde_key(p->seed, r, FDE_STREAM_SIMHASH);
	uint64_t	k2 = fde_key(p->seed, r, FDE_STREAM_AMS);
	int			d = p->dim;
	int			ksim = p->ksim;
	uint32_t	dproj = (uint32_t) p->dproj;

	for (int i = 0; i < d && ksim > 0; i++)
	{
		uint64_t	u = sm64(k1 ^ (uint64_t) i);
		double	   *g = s->sg + (size_t) i * ksim;

		/* +-1.0 built from its bits: sign = bit 63 - j of u, no branch or table */
		for (int j = 0; j < ksim; j++)
		{
			uint64_t	bits = UINT64_C(0x3FF0000000000000) | ((u << j) & UINT64_C(0x8000000000000000));

			memcpy(g + j, &bits, sizeof(bits));
		}
	}
	for (int i = 0; i < d && dproj > 0; i++)
	{
		uint64_t	u = sm64(k2 ^ (uint64_t) i);

		s->acol[i] = fde_bucket(u, dproj);
		s->asg[i] = flip_sign(1.0, u & 1);
	}
}

/* Step 4's sums V_p and counts n_p, tokens in increasing order. */
static void
accumulate_blocks(const PgsFdeParams *p, const FdeOps *ops, FdeScratch *s, const float *x,
				  size_t ntok, size_t dp, size_t nb)
{
	memset(s->blk, 0, nb * dp * sizeof(double));
	memset(s->cnt, 0, nb * sizeof(uint32_t));
	for (size_t t = 0; t < ntok; t++)
	{
		double	   *v = s->blk + (size_t) s->label[t] * dp;

		s->cnt[s->label[t]]++;
		if (p->dproj > 0)
			ops->add(v, s->y + t * dp, dp);
		else
			ops->add_f32(v, x + t * dp, dp);
	}
}

/*
 * For every partition, the token with the nearest label (ties: the lowest
 * index), by a multi-source breadth-first search over the label hypercube:
 * the tokens at distance D from p are exactly those at distance D-1 from p's
 * neighbours at distance D-1, so p's owner is the least of their owners.
 * O(B * ksim^2) instead of O(B * ntok).
 */
static void
find_fill_owners(const FdeScratch *s, size_t ntok, int ksim, size_t nb)
{
	for (size_t q = 0; q < nb; q++)
	{
		s->owner[q] = -1;
		s->dist[q] = 0xFF;
	}
	for (size_t t = ntok; t-- > 0;)
	{
		s->owner[s->label[t]] = (int32_t) t;	/* descending t: the lowest wins */
		s->dist[s->label[t]] = 0;
	}
	for (int D = 1; D <= ksim; D++)
	{
		int			unassigned = 0;

		/* owners of layer D from layer D-1 only; dist is set after the pass */
		for (size_t q = 0; q < nb; q++)
		{
			if (s->dist[q] != 0xFF)
				continue;
			for (int j = 0; j < ksim; j++)
			{
				size_t		nq = q ^ ((size_t) 1 << j);

				if (s->dist[nq] == D - 1 && (s->owner[q] < 0 || s->owner[nq] < s->owner[q]))
					s->owner[q] = s->owner[nq];
			}
		}
		for (size_t q = 0; q < nb; q++)
		{
			if (s->dist[q] == 0xFF && s->owner[q] >= 0)
				s->dist[q] = (uint8_t) D;
			unassigned |= s->dist[q] == 0xFF;
		}
		if (!unassigned)
			break;
	}
}

/* Step 4's F_p for a document: averages, and fills when asked. */
static void
finish_document(const PgsFdeParams *p, const FdeOps *ops, FdeScratch *s, const float *x,
				size_t ntok, size_t dp, size_t nb)
{
	int			any_empty = 0;

	for (size_t q = 0; q < nb; q++)
	{
		if (s->cnt[q] == 0)
			any_empty = 1;
		else if (s->cnt[q] > 1)		/* v / 1 == v */
			ops->div(s->blk + q * dp, dp, (double) s->cnt[q]);
	}
	if (!p->fill_empty || !any_empty)
		return;
	find_fill_owners(s, ntok, p->ksim, nb);
	for (size_t q = 0; q < nb; q++)
	{
		size_t		t = (size_t) s->owner[q];
		double	   *v = s->blk + q * dp;

		if (s->cnt[q] != 0)
			continue;
		/* a copy, not an add to +0.0, which would turn a -0.0 token value into +0.0 */
		if (p->dproj > 0)
			memcpy(v, s->y + t * dp, dp * sizeof(double));
		else
			for (size_t c = 0; c < dp; c++)
				v[c] = (double) x[t * dp + c];
	}
}

/* Step 5 for repetition r's blocks (coordinates m in increasing order). */
static void
final_project_rep(const PgsFdeParams *p, const FdeScratch *s, uint32_t r, size_t dp,
				  size_t nb, uint64_t kfin)
{
	uint32_t	fd = (uint32_t) p->final_dim;

	for (size_t q = 0; q < nb; q++)
	{
		const double *v = s->blk + q * dp;
		uint64_t	m0 = ((uint64_t) r * nb + q) * dp;

		if (s->cnt[q] == 0 && !p->fill_empty)
			continue;			/* all +0.0: adds nothing (see the header) */
		for (size_t c = 0; c < dp; c++)
		{
			uint64_t	u = sm64(kfin ^ (m0 + c));

			s->fin[fde_bucket(u, fd)] += flip_sign(v[c], u & 1);
		}
	}
}

static int
tokens_finite(const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return 0;
	return 1;
}

/* ===================== entry point ===================== */

int
pgs_fde_encode(const PgsFdeParams *p, int is_query, const float *tokens, size_t ntok,
			   float *out, void *scratch, size_t scratch_bytes)
{
	return pgs_fde_encode_interruptible(p, is_query, tokens, ntok, out, scratch, scratch_bytes,
										NULL, NULL);
}

/* blocks of FDE_LANES tokens between two calls of the check callback */
#define FDE_CHECK_BLOCKS 64

int
pgs_fde_encode_interruptible(const PgsFdeParams *p, int is_query, const float *tokens,
							 size_t ntok, float *out, void *scratch, size_t scratch_bytes,
							 void (*check) (void *), void *arg)
{
	FdeScratch	s;
	FdeOps		ops;
	size_t		npad = padded_tokens(ntok);
	size_t		dp,
				nb;
	size_t		need;
	int			ok = 1;
	int			rc = pgs_fde_check(p, is_query);

	if (rc != PGS_FDE_OK)
		return rc;
	if (ntok == 0)
		return PGS_FDE_ERR_NO_TOKENS;
	if (ntok > PGS_FDE_MAX_TOKENS)
		return PGS_FDE_ERR_TOO_MANY_TOKENS;
	need = pgs_fde_scratch_bytes(p, ntok);
	if (need == 0 || scratch == NULL || scratch_bytes < need)
		return PGS_FDE_ERR_SCRATCH;

	fde_layout(p, ntok, scratch, &s);
	pick_ops(&ops);
	dp = p->dproj > 0 ? (size_t) p->dproj : (size_t) p->dim;
	nb = (size_t) 1 << p->ksim;
	if (p->final_dim > 0)
		memset(s.fin, 0, (size_t) p->final_dim * sizeof(double));
	if (p->ksim > 0 || p->dproj > 0)
		ops.transpose(tokens, ntok, p->dim, npad, s.xt);
	memset(s.label, 0, npad * sizeof(uint32_t));

	for (uint32_t r = 0; r < (uint32_t) p->reps; r++)
	{
		if (check)
			check(arg);
		draw_rep(p, r, &s);
		for (size_t b = 0; b < npad; b += FDE_LANES)
		{
			double	   *yl = p->dproj > 0 ? s.yl : NULL;

			if (p->ksim == 0 && yl == NULL)
				break;			/* identity, one partition: nothing per token */
			if (check && b > 0 && b % (FDE_CHECK_BLOCKS * FDE_LANES) == 0)
				check(arg);
			memset(s.label + b, 0, FDE_LANES * sizeof(uint32_t));
			if (yl)
				memset(yl, 0, dp * FDE_LANES * sizeof(double));
			ops.block(s.xt + b, npad, p->dim, s.sg, p->ksim, s.acol, s.asg, yl, s.label + b);
			if (yl)
				ops.untranspose(yl, dp, s.y + b * dp);
		}
		accumulate_blocks(p, &ops, &s, tokens, ntok, dp, nb);
		if (!is_query)
			finish_document(p, &ops, &s, tokens, ntok, dp, nb);
		if (p->final_dim > 0)
			final_project_rep(p, &s, r, dp, nb, fde_key(p->seed, 0, FDE_STREAM_FINAL));
		else
			ok &= ops.store(s.blk, nb * dp, out + (size_t) r * nb * dp);
	}
	if (p->final_dim > 0)
		ok = ops.store(s.fin, (size_t) p->final_dim, out);
	/*
	 * Every input coordinate reaches some output coordinate in every
	 * repetition, so a NaN or infinite token always shows up here; only then
	 * is the input scanned, to tell bad input from a float32 overflow.
	 */
	if (!ok)
		return tokens_finite(tokens, ntok * (size_t) p->dim) ? PGS_FDE_ERR_OVERFLOW
			: PGS_FDE_ERR_NONFINITE;
	return PGS_FDE_OK;
}
