/*
 * pgs_maxsim.c — MaxSim kernels (see pgs_maxsim.h), dispatched on the level
 * pgs_kernels.c detected.
 *
 * MaxSim is a small matrix product S = Q D^T (query tokens x document tokens)
 * followed by a row-wise max and a sum, so the kernels are shaped like a GEMM
 * micro-kernel:
 *
 *   1. The document is consumed in panels of W tokens (W = 8, 16 or 32
 *      floats, one or two SIMD registers).  A panel is widened to float32 and
 *      transposed to dimension-major order once (panel[k * W + j] = d_j[k]),
 *      which is also where float16 and int8 documents are converted: each
 *      document element is converted once per call, not once per query token.
 *   2. For a block of MR query tokens, step k broadcasts q_i[k] and adds
 *      q_i[k] * panel[k] into MR x (W / lanes) accumulators with FMA: every
 *      panel load serves MR query tokens and every broadcast serves W document
 *      tokens, and the accumulators hold MR x W dot products at once with no
 *      horizontal reduction.
 *   3. The block's dot products are folded into per-query-token running
 *      maxima kept as vectors (VLANES lanes per query token); the horizontal
 *      max happens once per query token at the end.
 *
 * A partial last panel is padded with copies of the document's last token: a
 * duplicate cannot change a maximum, so no lane masking is needed.  NaN dot
 * products (only possible after float overflow, inf - inf) are ignored by the
 * maxima at every level.
 *
 * Short queries (at most QV_MAXQ tokens: ColBERT queries without [MASK]
 * expansion, a re-ranker's query) take a second shape that needs no document
 * packing at all, which is most of the work when few query tokens share each
 * packed panel: the query is transposed once per call into lane groups
 * (qT[k] holds element k of L query tokens), and each document token row is
 * read in place — step k broadcasts d_j[k] and multiplies it by qT[k], so
 * the SIMD lanes are query tokens and the running maxima need no horizontal
 * step.  Each <q_i, d_j> is still acc = fma(q_i[k], d_j[k], acc) for k = 0,
 * 1, ... from acc = 0 (a product commutes exactly), so both shapes give the
 * same bits.  float16 / int8 document rows are widened into a small row
 * buffer first, with the same conversions as the packing.
 */
#include "pgs_maxsim.h"
#include "pgs_kernels.h"

#include <math.h>
#include <string.h>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define PGS_X86 1
#include <immintrin.h>
#endif

#define PANEL_MAX	32			/* widest panel of any level, in tokens */
#define QV_MAXQ		32			/* query tokens the query-vector shape takes */
#define QV_ROWS		8			/* document token rows per query-vector step */
#define VLANES		16			/* running-maximum lanes per query token */
#define QPASS		240			/* query tokens per pass (multiple of every MR) */

typedef enum DocFormat
{
	DOC_F32,
	DOC_F16,
	DOC_I8
} DocFormat;

/* a document: nd tokens of dim elements in one of the three formats */
typedef struct DocRef
{
	DocFormat	fmt;
	const void *d;
	const float *scale;			/* DOC_I8 only */
	int			nd;
	int			dim;
} DocRef;

/* widen panel tokens j0 .. j0 + W - 1 of doc into panel (dimension-major) */
typedef void (*PackFn) (const DocRef *doc, int j0, int W, float *panel);

/* fold the dot products of nq query tokens with a W-token panel into vmax */
typedef void (*ComputeFn) (const float *q, int nq, int dim, const float *panel, float *vmax);

/* one panel shape of a level */
typedef struct PanelKernel
{
	int			W;
	ComputeFn	compute;
} PanelKernel;

size_t
pgs_maxsim_scratch_bytes(int dim)
{
	size_t		d = dim > 0 ? (size_t) dim : 1;

	/* header, query copy, then a panel or the transposed query + widened rows */
	return (2 * QV_MAXQ + QV_ROWS) * d * sizeof(float) + 3 * 64;
}

static inline float *
align64(void *p)
{
	return (float *) (((uintptr_t) p + 63) & ~(uintptr_t) 63);
}

/*
 * Scratch layout: a 64-byte header saying which query the transposed query
 * (qT) currently holds, a copy of that query, then the work area (a packed
 * panel, or qT followed by the widened rows).  Re-ranking or scanning calls
 * the kernel once per document with the same query: comparing the query
 * with the copy (a memcmp) is much cheaper than transposing it again.  A
 * panel overwrites qT, so the packed-panel shape clears the header.
 */
#define SCRATCH_MAGIC 0x51564d53	/* "SMVQ" */

typedef struct ScratchHeader
{
	uint32_t	magic;			/* SCRATCH_MAGIC when qT is valid */
	int			nq;
	int			dim;
	int			lanes;
} ScratchHeader;

static inline ScratchHeader *
scratch_header(void *scratch)
{
	return (ScratchHeader *) align64(scratch);
}

static inline float *
scratch_qcopy(void *scratch)
{
	return (float *) ((char *) align64(scratch) + 64);
}

static inline float *
scratch_work(void *scratch, int dim)
{
	return align64(scratch_qcopy(scratch) + (size_t) QV_MAXQ * (size_t) dim);
}

void
pgs_maxsim_scratch_init(void *scratch)
{
	memset(scratch_header(scratch), 0, sizeof(ScratchHeader));
}

/* token t of the panel starting at j0, the last token standing in for padding */
static inline int
panel_token(const DocRef *doc, int j)
{
	return j < doc->nd ? j : doc->nd - 1;
}

/* element k of document token t, as float32 */
static inline float
doc_value(const DocRef *doc, int t, int k)
{
	size_t		off = (size_t) t * (size_t) doc->dim + (size_t) k;

	switch (doc->fmt)
	{
		case DOC_F16:
			return pgs_f16_to_f32(((const uint16_t *) doc->d)[off]);
		case DOC_I8:
			return (float) ((const int8_t *) doc->d)[off] * doc->scale[t];
		case DOC_F32:
		default:
			return ((const float *) doc->d)[off];
	}
}

/* ===================== scalar baseline ===================== */

static void
pack_scalar(const DocRef *doc, int j0, int W, float *panel)
{
	for (int j = 0; j < W; j++)
	{
		int			t = panel_token(doc, j0 + j);

		for (int k = 0; k < doc->dim; k++)
			panel[(size_t) k * W + j] = doc_value(doc, t, k);
	}
}

#define SCALAR_W 16

static void
compute_scalar(const float *q, int nq, int dim, const float *panel, float *vmax)
{
	for (int i = 0; i < nq; i++)
	{
		const float *qi = q + (size_t) i * dim;
		float	   *vm = vmax + (size_t) i * VLANES;
		float		acc[SCALAR_W] = {0};

		for (int k = 0; k < dim; k++)
		{
			const float *p = panel + (size_t) k * SCALAR_W;
			float		a = qi[k];

			for (int j = 0; j < SCALAR_W; j++)
				acc[j] += a * p[j];
		}
		for (int j = 0; j < SCALAR_W; j++)
			if (acc[j] > vm[j])
				vm[j] = acc[j];
	}
}

/* ===================== x86-64 levels ===================== */

#ifdef PGS_X86

#define AVX2_ATTR __attribute__((target("avx2,fma,f16c")))
#define AVX512_ATTR __attribute__((target("avx512f,avx2,fma,f16c")))
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* in-register transpose of an 8 x 8 block: v[r][c] becomes v[c][r] */
AVX2_ATTR static ALWAYS_INLINE void
transpose8_ps(__m256 *v)
{
	__m256		t0 = _mm256_unpacklo_ps(v[0], v[1]);
	__m256		t1 = _mm256_unpackhi_ps(v[0], v[1]);
	__m256		t2 = _mm256_unpacklo_ps(v[2], v[3]);
	__m256		t3 = _mm256_unpackhi_ps(v[2], v[3]);
	__m256		t4 = _mm256_unpacklo_ps(v[4], v[5]);
	__m256		t5 = _mm256_unpackhi_ps(v[4], v[5]);
	__m256		t6 = _mm256_unpacklo_ps(v[6], v[7]);
	__m256		t7 = _mm256_unpackhi_ps(v[6], v[7]);
	__m256		s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
	__m256		s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
	__m256		s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
	__m256		s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
	__m256		s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
	__m256		s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
	__m256		s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
	__m256		s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));

	v[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
	v[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
	v[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
	v[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
	v[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
	v[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
	v[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
	v[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* eight consecutive elements k .. k + 7 of document token t, widened */
AVX2_ATTR static ALWAYS_INLINE __m256
load8_doc(const DocRef *doc, DocFormat fmt, int t, int k)
{
	size_t		off = (size_t) t * (size_t) doc->dim + (size_t) k;

	switch (fmt)
	{
		case DOC_F16:
			return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) ((const uint16_t *) doc->d + off)));
		case DOC_I8:
			{
				__m128i		c = _mm_loadl_epi64((const __m128i *) ((const int8_t *) doc->d + off));

				return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c)),
									 _mm256_set1_ps(doc->scale[t]));
			}
		case DOC_F32:
		default:
			return _mm256_loadu_ps((const float *) doc->d + off);
	}
}

/*
 * Pack by 8 x 8 blocks: eight tokens' next eight elements, transposed in
 * registers, become eight panel rows.  Leftover dimensions (dim % 8) go
 * element by element.  The conversions are the scalar ones, exactly.
 */
AVX2_ATTR static ALWAYS_INLINE void
pack_avx2_fmt(const DocRef *doc, DocFormat fmt, int j0, int W, float *panel)
{
	int			dim = doc->dim;

	for (int g = 0; g < W; g += 8)
	{
		int			t[8];
		int			k = 0;

		for (int r = 0; r < 8; r++)
			t[r] = panel_token(doc, j0 + g + r);
		for (; k + 8 <= dim; k += 8)
		{
			__m256		v[8];

			for (int r = 0; r < 8; r++)
				v[r] = load8_doc(doc, fmt, t[r], k);
			transpose8_ps(v);
			for (int r = 0; r < 8; r++)
				_mm256_store_ps(panel + (size_t) (k + r) * W + g, v[r]);
		}
		for (; k < dim; k++)
			for (int r = 0; r < 8; r++)
				panel[(size_t) k * W + g + r] = doc_value(doc, t[r], k);
	}
}

AVX2_ATTR static void
pack_avx2_f32(const DocRef *doc, int j0, int W, float *panel)
{
	pack_avx2_fmt(doc, DOC_F32, j0, W, panel);
}

AVX2_ATTR static void
pack_avx2_f16(const DocRef *doc, int j0, int W, float *panel)
{
	pack_avx2_fmt(doc, DOC_F16, j0, W, panel);
}

AVX2_ATTR static void
pack_avx2_i8(const DocRef *doc, int j0, int W, float *panel)
{
	pack_avx2_fmt(doc, DOC_I8, j0, W, panel);
}

/*
 * AVX2 micro-kernel: M (<= MR) query tokens x NV ymm of panel tokens.
 * With NV = 2, MR = 6: 12 accumulators + 2 panel vectors + 1 broadcast fit
 * the 16 ymm registers, and each step issues 12 FMAs for 8 loads.
 */
#define AVX2_MR2 6
#define AVX2_MR1 12

AVX2_ATTR static ALWAYS_INLINE void
block_avx2(const float *q, int dim, const float *panel, float *vmax, const int M, const int NV)
{
	__m256		acc[AVX2_MR1][2];
	const int	W = 8 * NV;

	_Pragma("GCC unroll 12")
	for (int i = 0; i < M; i++)
		for (int v = 0; v < NV; v++)
			acc[i][v] = _mm256_setzero_ps();
	for (int k = 0; k < dim; k++)
	{
		__m256		p[2];

		for (int v = 0; v < NV; v++)
			p[v] = _mm256_load_ps(panel + (size_t) k * W + 8 * v);
		_Pragma("GCC unroll 12")
		for (int i = 0; i < M; i++)
		{
			__m256		b = _mm256_broadcast_ss(q + (size_t) i * dim + k);

			for (int v = 0; v < NV; v++)
				acc[i][v] = _mm256_fmadd_ps(b, p[v], acc[i][v]);
		}
	}
	_Pragma("GCC unroll 12")
	for (int i = 0; i < M; i++)
	{
		/* max(x, running) keeps the running value when x is NaN */
		__m256		m = _mm256_loadu_ps(vmax + (size_t) i * VLANES);

		for (int v = 0; v < NV; v++)
			m = _mm256_max_ps(acc[i][v], m);
		_mm256_storeu_ps(vmax + (size_t) i * VLANES, m);
	}
}

/* a remainder block of M query tokens (M < MR), M a compile-time constant */
#define BLOCK_CASE(FN, M, NV) \
	case M: FN(q + (size_t) i * dim, dim, panel, vmax + (size_t) i * VLANES, M, NV); break;

AVX2_ATTR static void
compute_avx2_2(const float *q, int nq, int dim, const float *panel, float *vmax)
{
	int			i = 0;

	for (; i + AVX2_MR2 <= nq; i += AVX2_MR2)
		block_avx2(q + (size_t) i * dim, dim, panel, vmax + (size_t) i * VLANES, AVX2_MR2, 2);
	switch (nq - i)
	{
			BLOCK_CASE(block_avx2, 1, 2)
			BLOCK_CASE(block_avx2, 2, 2)
			BLOCK_CASE(block_avx2, 3, 2)
			BLOCK_CASE(block_avx2, 4, 2)
			BLOCK_CASE(block_avx2, 5, 2)
		default:
			break;
	}
}

#define DEFINE_COMPUTE_MR12(NAME, FN, MR, NV) \
ATTR_##NAME static void \
NAME(const float *q, int nq, int dim, const float *panel, float *vmax) \
{ \
	int			i = 0; \
	for (; i + MR <= nq; i += MR) \
		FN(q + (size_t) i * dim, dim, panel, vmax + (size_t) i * VLANES, MR, NV); \
	switch (nq - i) \
	{ \
		BLOCK_CASE(FN, 1, NV) BLOCK_CASE(FN, 2, NV) BLOCK_CASE(FN, 3, NV) \
		BLOCK_CASE(FN, 4, NV) BLOCK_CASE(FN, 5, NV) BLOCK_CASE(FN, 6, NV) \
		BLOCK_CASE(FN, 7, NV) BLOCK_CASE(FN, 8, NV) BLOCK_CASE(FN, 9, NV) \
		BLOCK_CASE(FN, 10, NV) BLOCK_CASE(FN, 11, NV) \
		default: break; \
	} \
}

#define ATTR_compute_avx2_1 AVX2_ATTR
DEFINE_COMPUTE_MR12(compute_avx2_1, block_avx2, AVX2_MR1, 1)

/* ---------- query-vector shape (see the file comment) ---------- */

/*
 * qT[(g * dim + k) * L + l] = q_{g L + l}[k]; lanes past nq hold 0, whose
 * products are never folded into a maximum that is read.
 */
static void
qv_pack_query_shape(const float *q, int nq, int dim, int L, int pair, void *scratch, float *qT)
{
	ScratchHeader *h = scratch_header(scratch);
	float	   *copy = scratch_qcopy(scratch);
	size_t		n = (size_t) nq * (size_t) dim;
	int			groups = pair ? 1 : (nq + L - 1) / L;
	int			code = pair ? -L : L;	/* the header tells the two shapes apart */

	if (h->magic == SCRATCH_MAGIC && h->nq == nq && h->dim == dim && h->lanes == code &&
		memcmp(copy, q, n * sizeof(float)) == 0)
		return;
	h->magic = 0;

	for (int g = 0; g < groups; g++)
		for (int l = 0; l < L; l++)
		{
			/* pair: lanes l and l + L/2 hold the same query token (two document rows per vector) */
			int			i = pair ? l % (L / 2) : g * L + l;
			float	   *dst = qT + (size_t) g * dim * L + l;
			const float *src = q + (size_t) i * dim;

			for (int k = 0; k < dim; k++)
				dst[(size_t) k * L] = i < nq ? src[k] : 0.0f;
		}
	memcpy(copy, q, n * sizeof(float));
	h->nq = nq;
	h->dim = dim;
	h->lanes = code;
	h->magic = SCRATCH_MAGIC;
}

static void
qv_pack_query(const float *q, int nq, int dim, int L, void *scratch, float *qT)
{
	qv_pack_query_shape(q, nq, dim, L, 0, scratch, qT);
}

/*
 * Widen rows j .. j + T - 1 of a float16 / int8 document into rows
 * (dim-major per row), with the conversions of the packing (an int8 code
 * times its token's scale; float16 exactly).  The format is a constant in
 * each instance: a switch per eight elements cost as much as the
 * conversions, and the widening was 40% of an int8 document's MaxSim.
 */
AVX2_ATTR static ALWAYS_INLINE void
qv_widen_rows_fmt(const DocRef *doc, DocFormat fmt, int j, int T, float *rows)
{
	int			dim = doc->dim;

	for (int t = 0; t < T; t++)
	{
		float	   *r = rows + (size_t) t * dim;
		int			k = 0;

		for (; k + 8 <= dim; k += 8)
			_mm256_storeu_ps(r + k, load8_doc(doc, fmt, j + t, k));
		for (; k < dim; k++)
			r[k] = doc_value(doc, j + t, k);
	}
}

AVX2_ATTR static void
qv_widen_rows(const DocRef *doc, int j, int T, float *rows)
{
	if (doc->fmt == DOC_I8)
		qv_widen_rows_fmt(doc, DOC_I8, j, T, rows);
	else
		qv_widen_rows_fmt(doc, DOC_F16, j, T, rows);
}

/* the T rows starting at document token j, as float32: in place, or widened */
AVX2_ATTR static ALWAYS_INLINE const float *
qv_rows(const DocRef *doc, int j, int T, float *rowbuf)
{
	if (doc->fmt == DOC_F32)
		return (const float *) doc->d + (size_t) j * doc->dim;
	qv_widen_rows(doc, j, T, rowbuf);
	return rowbuf;
}

/*
 * AVX2: one lane group of 8 query tokens, T (<= QV_ROWS) document rows:
 * 8 accumulators + 1 query vector + 1 broadcast of the 16 ymm registers.
 */
AVX2_ATTR static ALWAYS_INLINE void
qv_block_avx2(const float *qT, int dim, const float *rows, __m256 *vmax, const int T)
{
	__m256		acc[QV_ROWS];

	_Pragma("GCC unroll 8")
	for (int t = 0; t < T; t++)
		acc[t] = _mm256_setzero_ps();
	for (int k = 0; k < dim; k++)
	{
		__m256		qv = _mm256_load_ps(qT + (size_t) k * 8);

		_Pragma("GCC unroll 8")
		for (int t = 0; t < T; t++)
			acc[t] = _mm256_fmadd_ps(_mm256_broadcast_ss(rows + (size_t) t * dim + k), qv, acc[t]);
	}
	_Pragma("GCC unroll 8")
	for (int t = 0; t < T; t++)
		*vmax = _mm256_max_ps(acc[t], *vmax);
}

#define QV_CASE(FN, T, ...) case T: FN(__VA_ARGS__, T); break;
#define QV_SWITCH(FN, n, ...) \
	switch (n) \
	{ \
		QV_CASE(FN, 1, __VA_ARGS__) QV_CASE(FN, 2, __VA_ARGS__) QV_CASE(FN, 3, __VA_ARGS__) \
		QV_CASE(FN, 4, __VA_ARGS__) QV_CASE(FN, 5, __VA_ARGS__) QV_CASE(FN, 6, __VA_ARGS__) \
		QV_CASE(FN, 7, __VA_ARGS__) QV_CASE(FN, 8, __VA_ARGS__) \
		default: break; \
	}

AVX2_ATTR static void
qv_update_avx2(const float *q, int nq, const DocRef *doc, float *qmax, void *scratch)
{
	int			dim = doc->dim;
	int			groups = (nq + 7) / 8;
	__m256		vmax[QV_MAXQ / 8];
	float		lanes[QV_MAXQ];

	float	   *qT = scratch_work(scratch, dim);
	float	   *rowbuf = align64(qT + (size_t) QV_MAXQ * dim);

	qv_pack_query(q, nq, dim, 8, scratch, qT);
	for (int g = 0; g < groups; g++)
		vmax[g] = _mm256_set1_ps(-INFINITY);
	for (int j = 0; j < doc->nd; j += QV_ROWS)
	{
		int			T = doc->nd - j < QV_ROWS ? doc->nd - j : QV_ROWS;
		const float *rows = qv_rows(doc, j, T, rowbuf);

		for (int g = 0; g < groups; g++)
			QV_SWITCH(qv_block_avx2, T, qT + (size_t) g * dim * 8, dim, rows, &vmax[g]);
	}
	for (int g = 0; g < groups; g++)
		_mm256_storeu_ps(lanes + 8 * g, vmax[g]);
	for (int i = 0; i < nq; i++)
		if (lanes[i] > qmax[i])
			qmax[i] = lanes[i];
}

/*
 * AVX-512 micro-kernel: the same shape on zmm.  NV = 2, MR = 12: 24
 * accumulators + 2 panel vectors + 1 broadcast of the 32 zmm registers.
 */
#define AVX512_MR 12

AVX512_ATTR static ALWAYS_INLINE void
block_avx512(const float *q, int dim, const float *panel, float *vmax, const int M, const int NV)
{
	__m512		acc[AVX512_MR][2];
	const int	W = 16 * NV;

	_Pragma("GCC unroll 12")
	for (int i = 0; i < M; i++)
		for (int v = 0; v < NV; v++)
			acc[i][v] = _mm512_setzero_ps();
	for (int k = 0; k < dim; k++)
	{
		__m512		p[2];

		for (int v = 0; v < NV; v++)
			p[v] = _mm512_load_ps(panel + (size_t) k * W + 16 * v);
		_Pragma("GCC unroll 12")
		for (int i = 0; i < M; i++)
		{
			__m512		b = _mm512_set1_ps(q[(size_t) i * dim + k]);

			for (int v = 0; v < NV; v++)
				acc[i][v] = _mm512_fmadd_ps(b, p[v], acc[i][v]);
		}
	}
	_Pragma("GCC unroll 12")
	for (int i = 0; i < M; i++)
	{
		__m512		m = _mm512_loadu_ps(vmax + (size_t) i * VLANES);

		for (int v = 0; v < NV; v++)
			m = _mm512_max_ps(acc[i][v], m);
		_mm512_storeu_ps(vmax + (size_t) i * VLANES, m);
	}
}

#define ATTR_compute_avx512_2 AVX512_ATTR
#define ATTR_compute_avx512_1 AVX512_ATTR
DEFINE_COMPUTE_MR12(compute_avx512_2, block_avx512, AVX512_MR, 2)
DEFINE_COMPUTE_MR12(compute_avx512_1, block_avx512, AVX512_MR, 1)

/*
 * AVX-512: G (1 or 2) lane groups of 16 query tokens at once, T document
 * rows: 16 accumulators + 2 query vectors + 1 broadcast of 32 zmm.  (Sixteen
 * rows a step for one group measured no faster: the widened rows and qT
 * then fill L1.)
 */
AVX512_ATTR static ALWAYS_INLINE void
qv_block_avx512(const float *qT, int dim, const float *rows, __m512 *vmax, const int G, const int T)
{
	__m512		acc[QV_ROWS][2];

	_Pragma("GCC unroll 8")
	for (int t = 0; t < T; t++)
		for (int g = 0; g < G; g++)
			acc[t][g] = _mm512_setzero_ps();
	for (int k = 0; k < dim; k++)
	{
		__m512		qv[2];

		for (int g = 0; g < G; g++)
			qv[g] = _mm512_load_ps(qT + ((size_t) g * dim + k) * 16);
		_Pragma("GCC unroll 8")
		for (int t = 0; t < T; t++)
		{
			__m512		b = _mm512_set1_ps(rows[(size_t) t * dim + k]);

			for (int g = 0; g < G; g++)
				acc[t][g] = _mm512_fmadd_ps(b, qv[g], acc[t][g]);
		}
	}
	_Pragma("GCC unroll 8")
	for (int t = 0; t < T; t++)
		for (int g = 0; g < G; g++)
			vmax[g] = _mm512_max_ps(acc[t][g], vmax[g]);
}

/*
 * AVX-512, at most 8 query tokens: lanes 0-7 score document row 2p and lanes
 * 8-15 row 2p + 1 against the same query tokens, so a vector does twice the
 * work of the one-row shape, whose lanes past nq would be idle.  Each lane
 * still runs its own FMA chain over k, so the maxima are the same bits.  An
 * odd last row is paired with itself.
 */
AVX512_ATTR static ALWAYS_INLINE void
qv_block_pair_avx512(const float *qT, int dim, const float *rows, __m512 *vmax, const int T)
{
	__m512		acc[QV_ROWS / 2];
	const int	P = (T + 1) / 2;

	_Pragma("GCC unroll 4")
	for (int p = 0; p < P; p++)
		acc[p] = _mm512_setzero_ps();
	for (int k = 0; k < dim; k++)
	{
		__m512		qv = _mm512_load_ps(qT + (size_t) k * 16);

		_Pragma("GCC unroll 4")
		for (int p = 0; p < P; p++)
		{
			const float *r0 = rows + (size_t) (2 * p) * dim;
			const float *r1 = rows + (size_t) (2 * p + 1 < T ? 2 * p + 1 : 2 * p) * dim;
			__m512		b = _mm512_mask_broadcastss_ps(_mm512_set1_ps(r0[k]), (__mmask16) 0xFF00,
													   _mm_load_ss(r1 + k));

			acc[p] = _mm512_fmadd_ps(b, qv, acc[p]);
		}
	}
	_Pragma("GCC unroll 4")
	for (int p = 0; p < P; p++)
		*vmax = _mm512_max_ps(acc[p], *vmax);
}

/* sixteen consecutive elements k .. k + 15 of document token t, widened as load8_doc does */
AVX512_ATTR static ALWAYS_INLINE __m512
load16_doc(const DocRef *doc, DocFormat fmt, int t, int k)
{
	size_t		off = (size_t) t * (size_t) doc->dim + (size_t) k;

	if (fmt == DOC_F16)
		return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) ((const uint16_t *) doc->d + off)));
	return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *) ((const int8_t *) doc->d + off)))),
						 _mm512_set1_ps(doc->scale[t]));
}

AVX512_ATTR static ALWAYS_INLINE void
qv_widen_rows_fmt_avx512(const DocRef *doc, DocFormat fmt, int j, int T, float *rows)
{
	int			dim = doc->dim;

	for (int t = 0; t < T; t++)
	{
		float	   *r = rows + (size_t) t * dim;
		int			k = 0;

		for (; k + 16 <= dim; k += 16)
			_mm512_storeu_ps(r + k, load16_doc(doc, fmt, j + t, k));
		for (; k < dim; k++)
			r[k] = doc_value(doc, j + t, k);
	}
}

/* the T rows starting at document token j, as float32 (qv_rows with 16-wide conversions) */
AVX512_ATTR static const float *
qv_rows_avx512(const DocRef *doc, int j, int T, float *rowbuf)
{
	if (doc->fmt == DOC_F32)
		return (const float *) doc->d + (size_t) j * doc->dim;
	if (doc->fmt == DOC_I8)
		qv_widen_rows_fmt_avx512(doc, DOC_I8, j, T, rowbuf);
	else
		qv_widen_rows_fmt_avx512(doc, DOC_F16, j, T, rowbuf);
	return rowbuf;
}

AVX512_ATTR static void
qv_update_avx512(const float *q, int nq, const DocRef *doc, float *qmax, void *scratch)
{
	int			dim = doc->dim;
	int			groups = (nq + 15) / 16;
	__m512		vmax[2];
	float		lanes[QV_MAXQ];

	float	   *qT = scratch_work(scratch, dim);
	float	   *rowbuf = align64(qT + (size_t) QV_MAXQ * dim);

	if (nq <= 8)
	{
		qv_pack_query_shape(q, nq, dim, 16, 1, scratch, qT);
		vmax[0] = _mm512_set1_ps(-INFINITY);
		for (int j = 0; j < doc->nd; j += QV_ROWS)
		{
			int			T = doc->nd - j < QV_ROWS ? doc->nd - j : QV_ROWS;
			const float *rows = qv_rows_avx512(doc, j, T, rowbuf);

			QV_SWITCH(qv_block_pair_avx512, T, qT, dim, rows, &vmax[0])
		}
		_mm512_storeu_ps(lanes, vmax[0]);
		for (int i = 0; i < nq; i++)
		{
			float		m = lanes[i] > lanes[i + 8] ? lanes[i] : lanes[i + 8];

			if (m > qmax[i])
				qmax[i] = m;
		}
		return;
	}
	qv_pack_query(q, nq, dim, 16, scratch, qT);
	vmax[0] = vmax[1] = _mm512_set1_ps(-INFINITY);
	for (int j = 0; j < doc->nd; j += QV_ROWS)
	{
		int			T = doc->nd - j < QV_ROWS ? doc->nd - j : QV_ROWS;
		const float *rows = qv_rows_avx512(doc, j, T, rowbuf);

		if (groups == 1)
			QV_SWITCH(qv_block_avx512, T, qT, dim, rows, vmax, 1)
		else
			QV_SWITCH(qv_block_avx512, T, qT, dim, rows, vmax, 2)
	}
	_mm512_storeu_ps(lanes, vmax[0]);
	_mm512_storeu_ps(lanes + 16, vmax[1]);
	for (int i = 0; i < nq; i++)
		if (lanes[i] > qmax[i])
			qmax[i] = lanes[i];
}

#endif							/* PGS_X86 */

/* ===================== driver ===================== */

/*
 * Each level has a wide panel for the bulk of the document and a narrow one
 * for a short remainder, which wastes less work on padding.
 */
typedef struct LevelKernels
{
	PackFn		pack;
	PanelKernel wide;
	PanelKernel narrow;
} LevelKernels;

static void
level_kernels(DocFormat fmt, LevelKernels *lk)
{
	int			level = pgs_kernels_level();

	lk->pack = pack_scalar;
	lk->wide.W = SCALAR_W;
	lk->wide.compute = compute_scalar;
	lk->narrow = lk->wide;
#ifdef PGS_X86
	if (level >= PGS_LEVEL_AVX2)
	{
		lk->pack = fmt == DOC_F16 ? pack_avx2_f16 : fmt == DOC_I8 ? pack_avx2_i8 : pack_avx2_f32;
		lk->wide.W = 16;
		lk->wide.compute = compute_avx2_2;
		lk->narrow.W = 8;
		lk->narrow.compute = compute_avx2_1;
	}
	if (level >= PGS_LEVEL_AVX512)
	{
		lk->wide.W = 32;
		lk->wide.compute = compute_avx512_2;
		lk->narrow.W = 16;
		lk->narrow.compute = compute_avx512_1;
	}
#else
	(void) level;
	(void) fmt;
#endif
}

static void
maxsim_update(const float *q, int nq, const DocRef *doc, float *qmax, void *scratch)
{
	float		vmax[QPASS * VLANES];
	float	   *panel = scratch_work(scratch, doc->dim);
	LevelKernels lk;

	if (nq <= 0 || doc->nd <= 0 || doc->dim <= 0)
		return;
#ifdef PGS_X86
	if (nq <= QV_MAXQ && pgs_kernels_level() >= PGS_LEVEL_AVX2)
	{
		if (pgs_kernels_level() >= PGS_LEVEL_AVX512)
			qv_update_avx512(q, nq, doc, qmax, scratch);
		else
			qv_update_avx2(q, nq, doc, qmax, scratch);
		return;
	}
#endif
	scratch_header(scratch)->magic = 0;	/* the panels overwrite qT */
	level_kernels(doc->fmt, &lk);
	for (int q0 = 0; q0 < nq; q0 += QPASS)
	{
		int			n = nq - q0 < QPASS ? nq - q0 : QPASS;
		const float *qp = q + (size_t) q0 * doc->dim;

		for (int i = 0; i < n * VLANES; i++)
			vmax[i] = -INFINITY;
		for (int j0 = 0; j0 < doc->nd;)
		{
			const PanelKernel *pk = doc->nd - j0 <= lk.narrow.W ? &lk.narrow : &lk.wide;

			lk.pack(doc, j0, pk->W, panel);
			pk->compute(qp, n, doc->dim, panel, vmax);
			j0 += pk->W;
		}
		for (int i = 0; i < n; i++)
		{
			float		m = qmax[q0 + i];

			for (int l = 0; l < VLANES; l++)
				if (vmax[i * VLANES + l] > m)
					m = vmax[i * VLANES + l];
			qmax[q0 + i] = m;
		}
	}
}

void
pgs_maxsim_update_f32(const float *q, int nq, const float *d, int nd, int dim,
					  float *qmax, void *scratch)
{
	DocRef		doc = {DOC_F32, d, NULL, nd, dim};

	maxsim_update(q, nq, &doc, qmax, scratch);
}

void
pgs_maxsim_update_f16(const float *q, int nq, const uint16_t *d, int nd, int dim,
					  float *qmax, void *scratch)
{
	DocRef		doc = {DOC_F16, d, NULL, nd, dim};

	maxsim_update(q, nq, &doc, qmax, scratch);
}

void
pgs_maxsim_update_i8(const float *q, int nq, const int8_t *d, const float *scale,
					 int nd, int dim, float *qmax, void *scratch)
{
	DocRef		doc = {DOC_I8, d, scale, nd, dim};

	maxsim_update(q, nq, &doc, qmax, scratch);
}

double
pgs_maxsim_sum(const float *qmax, int nq)
{
	double		s = 0;

	for (int i = 0; i < nq; i++)
		s += qmax[i];
	return s;
}

/* whole-query MaxSim: running maxima in QPASS-sized slices on the stack */
static double
maxsim_full(const float *q, int nq, const DocRef *doc, void *scratch)
{
	float		qmax[QPASS];
	double		s = 0;

	if (nq <= 0)
		return 0.0;
	if (doc->nd <= 0)
		return NAN;
	for (int q0 = 0; q0 < nq; q0 += QPASS)
	{
		int			n = nq - q0 < QPASS ? nq - q0 : QPASS;

		for (int i = 0; i < n; i++)
			qmax[i] = -INFINITY;
		maxsim_update(q + (size_t) q0 * doc->dim, n, doc, qmax, scratch);
		/* one running sum in query order, as pgs_maxsim_sum over all maxima */
		for (int i = 0; i < n; i++)
			s += qmax[i];
	}
	return s;
}

double
pgs_maxsim_f32(const float *q, int nq, const float *d, int nd, int dim, void *scratch)
{
	DocRef		doc = {DOC_F32, d, NULL, nd, dim};

	return maxsim_full(q, nq, &doc, scratch);
}

double
pgs_maxsim_f16(const float *q, int nq, const uint16_t *d, int nd, int dim, void *scratch)
{
	DocRef		doc = {DOC_F16, d, NULL, nd, dim};

	return maxsim_full(q, nq, &doc, scratch);
}

double
pgs_maxsim_i8(const float *q, int nq, const int8_t *d, const float *scale,
			  int nd, int dim, void *scratch)
{
	DocRef		doc = {DOC_I8, d, scale, nd, dim};

	return maxsim_full(q, nq, &doc, scratch);
}

float
pgs_quantize_i8_token(const float *x, int dim, int8_t *codes)
{
	float		m = 0.0f;
	float		scale;

	for (int k = 0; k < dim; k++)
	{
		float		a = fabsf(x[k]);

		if (a > m)
			m = a;
	}
	scale = m / 127.0f;
	if (scale == 0.0f)
	{
		memset(codes, 0, (size_t) (dim > 0 ? dim : 0));
		return 0.0f;
	}
	for (int k = 0; k < dim; k++)
	{
		float		c = rintf(x[k] / scale);

		/* x / scale can round a hair past 127 for the largest element */
		if (c > 127.0f)
			c = 127.0f;
		else if (c < -127.0f)
			c = -127.0f;
		codes[k] = (int8_t) c;
	}
	return scale;
}

/* ===================== screening int8 documents ===================== */

/*
 * The query rounded to int16 per token: q_ik = sq_i * Q_ik + e_ik with
 * |Q_ik| <= qm and |e_ik| <= E_i.  qm keeps every integer dot product of a
 * row of dim codes (|code| <= 128) inside int32, the accumulators of the
 * integer instructions (which wrap, so they must never overflow), and below
 * 127 * 256 + 127 so that Q splits into two int8 halves, Q = 256 hi + lo
 * with lo, hi in [-128, 127], for the int8 tile products of AMX.
 *
 * Screen memory, after this header: Q row-major (SCREEN_MAXQ rows of dpad
 * int16; the scalar reference reads it), the same values laid out for the
 * path chosen at prepare time, and a buffer of document rows.  dpad is dim
 * rounded up to 64; padding is zeros.
 *   AVX2: lane groups of 8 tokens, qT[((g * dpad / 2 + k / 2) * 8 + l) * 2
 *     + k % 2] = Q_{8 g + l, k}; the row buffer as for VNNI.
 *   VNNI: lane groups of 16 tokens, qT[((g * dpad / 2 + k / 2) * 16 + l) * 2
 *     + k % 2] = Q_{16 g + l, k} (for at most 8 tokens, one group whose lanes
 *     l and l + 8 both hold token l, so a step scores two document rows); the
 *     row buffer holds SCREEN_ROWS document rows widened to int16.
 *   AMX: per lane group g, chunk c of 64 dimensions and half h (hi, lo), a
 *     1 KB B tile, B[r][4 l + b] = half of Q_{16 g + l, 64 c + 4 r + b}; the
 *     row buffer holds a document of fewer than 16 tokens padded to 16 rows.
 */
#define SCREEN_MAXQ 32
#define SCREEN_ROWS 8
#define SCREEN_QM_MAX 32639		/* 127 * 256 + 127 */

enum
{
	SCREEN_SCALAR,
	SCREEN_AVX2,
	SCREEN_VNNI,
	SCREEN_AMX
};

typedef struct ScreenHeader
{
	int			nq;
	int			dim;
	int			dpad;
	int			path;			/* SCREEN_SCALAR, SCREEN_AVX2, SCREEN_VNNI or SCREEN_AMX */
	int			pair;			/* VNNI, nq <= 8: two rows per step */
	int			kpairs;			/* AVX2 / VNNI: int16 pairs per row the products run over */
	double		wmax;			/* refuse documents whose W would let the float kernel overflow */
	double		bsum;			/* sum of berr */
	float		sq[SCREEN_MAXQ];	/* per-token scale of the rounded query */
	double		qabs[SCREEN_MAXQ];	/* max_k |q_ik| */
	double		berr[SCREEN_MAXQ];	/* B_i of screen_bound */
} ScreenHeader;

#define SCREEN_HEADER_BYTES ((sizeof(ScreenHeader) + 63) & ~(size_t) 63)

static inline int
screen_dpad(int dim)
{
	return (dim + 63) & ~63;
}

static inline int16_t *
screen_qplain(void *screen)
{
	return (int16_t *) ((char *) align64(screen) + SCREEN_HEADER_BYTES);
}

static inline void *
screen_layout(void *screen, int dpad)
{
	return screen_qplain(screen) + (size_t) SCREEN_MAXQ * dpad;
}

static inline void *
screen_rowbuf(void *screen, int dpad)
{
	return (char *) screen_layout(screen, dpad) + (size_t) 2 * 16 * dpad * sizeof(int16_t);
}

int
pgs_maxsim_screen_fast(void)
{
	return pgs_kernels_level() >= PGS_LEVEL_AVX2;
}

/*
 * AMX tiles take whole groups of 4 dimensions; from 64 dimensions up, a tile
 * row that reads past its token's last dimension stays inside the next token
 * (screen_update_amx).
 */
int
pgs_maxsim_screen_path(int dim)
{
	if (pgs_kernels_amx() && dim % 4 == 0 && dim >= 64)
		return SCREEN_AMX;
	if (pgs_kernels_vnni())
		return SCREEN_VNNI;
	return pgs_kernels_level() >= PGS_LEVEL_AVX2 ? SCREEN_AVX2 : SCREEN_SCALAR;
}

size_t
pgs_maxsim_screen_bytes(int dim)
{
	size_t		dpad = (size_t) screen_dpad(dim > 0 ? dim : 1);

	/* Q, its layout (64 dpad bytes either way), SCREEN_ROWS int16 rows >= 16 int8 rows */
	return 64 + SCREEN_HEADER_BYTES + (SCREEN_MAXQ * dpad + 2 * 16 * dpad + SCREEN_ROWS * dpad) * sizeof(int16_t);
}

/*
 * screen_bound: why |exact - estimate| <= bound.  Let u = 2^-24, dq_jk =
 * fl(code_jk * sd_j) = code_jk * sd_j * (1 + d_jk) with |d_jk| <= u the
 * dequantized document the float kernel reads, x_ij = sum_k q_ik * dq_jk
 * exactly, f_ij the kernel's float dot product, I_ij = sum_k Q_ik * code_jk
 * (exact, int32) and a_ij = fl(fl(I_ij) * sd_j), the screen's value, so the
 * estimate of max_j f_ij is sq_i * max_j a_ij (exact in double; sq_i >= 0).
 * With L1_j = sum_k |code_jk| <= 128 dim and qabs_i = max_k |q_ik|:
 *   |f_ij - x_ij|            <= g * sum_k |q_ik dq_jk|, g = (dim + 2) u / (1 - (dim + 2) u)
 *                                (an FMA chain, or products rounded then summed)
 *                            <= g * qabs_i * (1 + u) * |sd_j| L1_j
 *   |x_ij - sq_i sd_j I_ij|  =  |sd_j sum_k code_jk (e_ik + q_ik d_jk)| <= |sd_j| L1_j (E_i + u qabs_i)
 *   |sq_i sd_j I_ij - sq_i a_ij| <= (2u + u^2) |sd_j| |sq_i I_ij| <= 2.01 u |sd_j| L1_j (qabs_i + E_i)
 * so |f_ij - sq_i a_ij| <= |sd_j| L1_j B_i with B_i the sum of the three
 * factors, and a maximum moves by at most the largest such difference:
 *   |max_j f_ij - sq_i max_j a_ij| <= W B_i, W = 128 dim max_j |sd_j|.
 * (The exact max_j |sd_j| L1_j is up to about 4x smaller, but summing |code|
 * cost a third of the screen's time; the looser W lets a few more candidates
 * through to the exact pass, which costs less.)
 * Both MaxSims sum their nq maxima in double (error <= nq 2^-53 per term's
 * magnitude, taken twice), and subnormal results can lose up to 2^-149 per
 * operation, absolutely: screen_bound adds both.  A document with
 * qabs_i * W too large for the float kernel (overflow) is not screened.
 */
static double
screen_bound(const ScreenHeader *h, double W, double estAbs)
{
	double		b = W * h->bsum * (1.0 + ldexp(1.0, -40));
	double		tiny = 0;

	for (int i = 0; i < h->nq; i++)
		tiny += (double) (h->dim + 2) * (1.0 + h->qabs[i]) * ldexp(1.0, -148);
	return b + (double) h->nq * ldexp(1.0, -51) * (estAbs + b) + tiny;
}

/* round token i of q into Q (row i of qplain); sets sq, qabs and berr */
static void
screen_round_token(ScreenHeader *h, const float *qi, int i, double qm, int16_t *row)
{
	double		u = ldexp(1.0, -24);
	double		g = (h->dim + 2) * u / (1.0 - (h->dim + 2) * u);
	float		m = 0.0f;
	float		s;
	double		inv;
	double		e = 0;

	for (int k = 0; k < h->dim; k++)
		if (fabsf(qi[k]) > m)
			m = fabsf(qi[k]);
	s = (float) (m / qm);
	inv = s > 0 ? 1.0 / s : 0.0;
	for (int k = 0; k < h->dim; k++)
	{
		/*
		 * Round half away from zero, without a libm call: any integer would
		 * do for the bound, which takes the actual error r, so this only
		 * has to be close.
		 */
		double		t = (double) qi[k] * inv;
		double		c = (double) (int32_t) (t + (t >= 0 ? 0.5 : -0.5));
		double		r;

		if (c > qm)
			c = qm;
		else if (c < -qm)
			c = -qm;
		r = fabs((double) qi[k] - (double) s * c);	/* s * c is exact in double */
		if (r > e)
			e = r;
		row[k] = (int16_t) c;
	}
	e *= 1.0 + ldexp(1.0, -50);
	h->sq[i] = s;
	h->qabs[i] = m;
	h->berr[i] = (g * m * (1 + u) + e + u * m + 2.01 * u * (m + e)) * (1.0 + ldexp(1.0, -40));
}

/* the VNNI lane layout of Q */
static void
screen_layout_vnni(const ScreenHeader *h, const int16_t *Q, int16_t *qT)
{
	/* the lane groups in use (one for a pair-shaped query) */
	memset(qT, 0, (size_t) (h->nq > 16 ? 2 : 1) * 16 * h->dpad * sizeof(int16_t));
	for (int i = 0; i < h->nq; i++)
		for (int rep = 0; rep < (h->pair ? 2 : 1); rep++)
		{
			int			g = h->pair ? 0 : i / 16;
			int			l = h->pair ? i + 8 * rep : i % 16;

			for (int k = 0; k < h->dim; k++)
				qT[(((size_t) g * (h->dpad / 2) + k / 2) * 16 + l) * 2 + k % 2] = Q[(size_t) i * h->dpad + k];
		}
}

/* the AVX2 lane layout: groups of 8 tokens, qT[((g * dpad / 2 + k / 2) * 8 + l) * 2 + k % 2] */
static void
screen_layout_avx2(const ScreenHeader *h, const int16_t *Q, int16_t *qT)
{
	memset(qT, 0, (size_t) ((h->nq + 7) / 8) * 8 * h->dpad * sizeof(int16_t));
	for (int i = 0; i < h->nq; i++)
		for (int k = 0; k < h->dim; k++)
			qT[(((size_t) (i / 8) * (h->dpad / 2) + k / 2) * 8 + i % 8) * 2 + k % 2] = Q[(size_t) i * h->dpad + k];
}

/* the AMX B tiles of Q: the balanced int8 halves, hi = (Q - lo) / 256 */
static void
screen_layout_amx(const ScreenHeader *h, const int16_t *Q, int8_t *bt)
{
	int			nch = h->dpad / 64;

	memset(bt, 0, (size_t) (h->nq > 16 ? 2 : 1) * 16 * h->dpad * sizeof(int16_t));
	for (int i = 0; i < h->nq; i++)
	{
		int			g = i / 16,
					l = i % 16;

		for (int k = 0; k < h->dim; k++)
		{
			int			q = Q[(size_t) i * h->dpad + k];
			int			lo = ((q + 128) & 255) - 128;
			int			hi = (q - lo) / 256;
			size_t		tile = ((size_t) g * nch + k / 64) * 2;
			size_t		at = (size_t) ((k % 64) / 4) * 64 + (size_t) l * 4 + k % 4;

			bt[tile * 1024 + at] = (int8_t) hi;
			bt[(tile + 1) * 1024 + at] = (int8_t) lo;
		}
	}
}

int
pgs_maxsim_screen_prepare(const float *q, int nq, int dim, void *screen)
{
	ScreenHeader *h = (ScreenHeader *) align64(screen);
	int			dpad = screen_dpad(dim);
	int16_t    *Q = screen_qplain(screen);
	double		qm = floor(2147483647.0 / (128.0 * dim));
	double		qmaxAll = 0;

	if (nq < 1 || nq > SCREEN_MAXQ || dim < 1)
		return 0;
	if (qm > SCREEN_QM_MAX)
		qm = SCREEN_QM_MAX;
	h->nq = nq;
	h->dim = dim;
	h->dpad = dpad;
	h->pair = nq <= 8;
	h->bsum = 0;
	memset(Q, 0, (size_t) nq * dpad * sizeof(int16_t));
	for (int i = 0; i < nq; i++)
	{
		screen_round_token(h, q + (size_t) i * dim, i, qm, Q + (size_t) i * dpad);
		h->bsum += h->berr[i];
		if (h->qabs[i] > qmaxAll)
			qmaxAll = h->qabs[i];
	}
	/* partial sums of the float kernel stay below qabs_i * (1 + u) * W */
	h->wmax = qmaxAll > 0 ? 1e36 / qmaxAll : INFINITY;

	h->path = pgs_maxsim_screen_path(dim);
	/* the products stop at the last 32 (VNNI) or 2 (AVX2) dimensions holding data, not at dpad */
	h->kpairs = h->path == SCREEN_VNNI ? ((dim + 31) & ~31) / 2 : (dim + 1) / 2;
	if (h->path == SCREEN_AVX2)
		screen_layout_avx2(h, Q, screen_layout(screen, dpad));
	else if (h->path == SCREEN_AMX)
		screen_layout_amx(h, Q, screen_layout(screen, dpad));
	else if (h->path == SCREEN_VNNI)
		screen_layout_vnni(h, Q, screen_layout(screen, dpad));
	return 1;
}

/* the scalar reference: the same integers and the same two float roundings as the vector paths */
static void
screen_update_scalar(const ScreenHeader *h, const int16_t *Q, const int8_t *d, const float *scale,
					 int nd, float *amax)
{
	for (int j = 0; j < nd; j++)
	{
		const int8_t *c = d + (size_t) j * h->dim;

		for (int i = 0; i < h->nq; i++)
		{
			const int16_t *qi = Q + (size_t) i * h->dpad;
			int64_t		dot = 0;
			float		a;

			for (int k = 0; k < h->dim; k++)
				dot += (int64_t) qi[k] * c[k];
			a = (float) (int32_t) dot * scale[j];
			if (a > amax[i])
				amax[i] = a;
		}
	}
}

#ifdef PGS_X86

/* rows j .. j + T - 1 widened to int16 (an odd dim padded with a zero), 16 codes a step */
AVX2_ATTR static void
screen_widen_avx2(const int8_t *d, int dim, int dpad, int j, int T, int16_t *rows)
{
	for (int t = 0; t < T; t++)
	{
		const int8_t *src = d + (size_t) (j + t) * dim;
		int16_t    *dst = rows + (size_t) t * dpad;
		int			k = 0;

		for (; k + 16 <= dim; k += 16)
			_mm256_storeu_si256((__m256i *) (dst + k),
								_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) (src + k))));
		for (; k < ((dim + 1) & ~1); k++)	/* kpairs' last pair */
			dst[k] = k < dim ? src[k] : 0;
	}
}

/*
 * AVX2: one lane group of 8 query tokens, T rows; vpmaddwd multiplies two
 * dimensions' int16 pairs per lane and adds them (exact: |sum| < 2^31 by
 * qm), then fl(fl(I) * sd) as on every path.
 */
AVX2_ATTR static ALWAYS_INLINE void
screen_block_avx2(const int16_t *qT, int dpad, int kp, const int16_t *rows, const float *sc, __m256 *vmax,
				  const int T)
{
	__m256i		acc[SCREEN_ROWS];

	_Pragma("GCC unroll 8")
	for (int t = 0; t < T; t++)
		acc[t] = _mm256_setzero_si256();
	for (int k2 = 0; k2 < kp; k2++)
	{
		__m256i		qv = _mm256_load_si256((const __m256i *) (qT + (size_t) k2 * 16));

		_Pragma("GCC unroll 8")
		for (int t = 0; t < T; t++)
			acc[t] = _mm256_add_epi32(acc[t],
									  _mm256_madd_epi16(qv, _mm256_set1_epi32(((const int32_t *) (rows + (size_t) t * dpad))[k2])));
	}
	_Pragma("GCC unroll 8")
	for (int t = 0; t < T; t++)
		*vmax = _mm256_max_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc[t]), _mm256_set1_ps(sc[t])), *vmax);
}

AVX2_ATTR static void
screen_update_avx2(const ScreenHeader *h, const int16_t *qT, int16_t *rows, const int8_t *d,
				   const float *scale, int nd, float *amax)
{
	int			groups = (h->nq + 7) / 8;
	__m256		vmax[SCREEN_MAXQ / 8];
	float		lanes[SCREEN_MAXQ];

	for (int g = 0; g < groups; g++)
		vmax[g] = _mm256_set1_ps(-INFINITY);
	for (int j = 0; j < nd; j += SCREEN_ROWS)
	{
		int			T = nd - j < SCREEN_ROWS ? nd - j : SCREEN_ROWS;

		screen_widen_avx2(d, h->dim, h->dpad, j, T, rows);
		for (int g = 0; g < groups; g++)
			QV_SWITCH(screen_block_avx2, T, qT + (size_t) g * 8 * h->dpad, h->dpad, h->kpairs, rows, scale + j,
					  &vmax[g])
	}
	for (int g = 0; g < groups; g++)
		_mm256_storeu_ps(lanes + 8 * g, vmax[g]);
	for (int i = 0; i < h->nq; i++)
		if (lanes[i] > amax[i])
			amax[i] = lanes[i];
}

#define VNNI_ATTR __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define AMX_ATTR __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

/* rows j .. j + T - 1 widened to int16 (zero-padded to a multiple of 32) */
VNNI_ATTR static void
screen_widen_avx512(const int8_t *d, int dim, int dpad, int j, int T, int16_t *rows)
{
	for (int t = 0; t < T; t++)
	{
		const int8_t *src = d + (size_t) (j + t) * dim;
		int16_t    *dst = rows + (size_t) t * dpad;

		for (int k = 0; k < dim; k += 32)
		{
			__m256i		c;

			if (k + 32 <= dim)
				c = _mm256_loadu_si256((const __m256i *) (src + k));
			else
				c = _mm256_maskz_loadu_epi8(k < dim ? (__mmask32) ((1u << (dim - k)) - 1) : 0, src + k);
			_mm512_store_si512((void *) (dst + k), _mm512_cvtepi8_epi16(c));
		}
	}
}

/* G lane groups of 16 query tokens, T rows: each lane an int32 dot product, then fl(fl(I) * sd) */
VNNI_ATTR static ALWAYS_INLINE void
screen_block_avx512(const int16_t *qT, int dpad, int kp, const int16_t *rows, const float *sc,
					__m512 *vmax, const int G, const int T)
{
	__m512i		acc[SCREEN_ROWS][2];

	_Pragma("GCC unroll 8")
	for (int t = 0; t < T; t++)
		for (int g = 0; g < G; g++)
			acc[t][g] = _mm512_setzero_si512();
	for (int k2 = 0; k2 < kp; k2++)
	{
		__m512i		qv[2];

		for (int g = 0; g < G; g++)
			qv[g] = _mm512_load_si512((const void *) (qT + ((size_t) g * (dpad / 2) + k2) * 32));
		_Pragma("GCC unroll 8")
		for (int t = 0; t < T; t++)
		{
			__m512i		b = _mm512_set1_epi32(((const int32_t *) (rows + (size_t) t * dpad))[k2]);

			for (int g = 0; g < G; g++)
				acc[t][g] = _mm512_dpwssd_epi32(acc[t][g], qv[g], b);
		}
	}
	_Pragma("GCC unroll 8")
	for (int t = 0; t < T; t++)
		for (int g = 0; g < G; g++)
			vmax[g] = _mm512_max_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc[t][g]), _mm512_set1_ps(sc[t])), vmax[g]);
}

/* at most 8 query tokens: lanes 0-7 score row 2p, lanes 8-15 row 2p + 1 (an odd last row pairs with itself) */
VNNI_ATTR static ALWAYS_INLINE void
screen_block_pair_avx512(const int16_t *qT, int dpad, int kp, const int16_t *rows, const float *sc,
						 __m512 *vmax, const int T)
{
	__m512i		acc[SCREEN_ROWS / 2];
	const int	P = (T + 1) / 2;

	_Pragma("GCC unroll 4")
	for (int p = 0; p < P; p++)
		acc[p] = _mm512_setzero_si512();
	for (int k2 = 0; k2 < kp; k2++)
	{
		__m512i		qv = _mm512_load_si512((const void *) (qT + (size_t) k2 * 32));

		_Pragma("GCC unroll 4")
		for (int p = 0; p < P; p++)
		{
			const int32_t *r0 = (const int32_t *) (rows + (size_t) (2 * p) * dpad);
			const int32_t *r1 = (const int32_t *) (rows + (size_t) (2 * p + 1 < T ? 2 * p + 1 : 2 * p) * dpad);
			__m512i		b = _mm512_mask_set1_epi32(_mm512_set1_epi32(r0[k2]), (__mmask16) 0xFF00, r1[k2]);

			acc[p] = _mm512_dpwssd_epi32(acc[p], qv, b);
		}
	}
	_Pragma("GCC unroll 4")
	for (int p = 0; p < P; p++)
	{
		__m512		s = _mm512_mask_blend_ps((__mmask16) 0xFF00, _mm512_set1_ps(sc[2 * p]),
											 _mm512_set1_ps(sc[2 * p + 1 < T ? 2 * p + 1 : 2 * p]));

		*vmax = _mm512_max_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc[p]), s), *vmax);
	}
}

/* fold the lanes of vmax (lane groups, or the pair shape's two halves) into amax */
static void
screen_fold_lanes(const ScreenHeader *h, const float *lanes, float *amax)
{
	for (int i = 0; i < h->nq; i++)
	{
		float		m = h->pair && h->path == SCREEN_VNNI && lanes[i + 8] > lanes[i] ? lanes[i + 8] : lanes[i];

		if (m > amax[i])
			amax[i] = m;
	}
}

VNNI_ATTR static void
screen_update_vnni(const ScreenHeader *h, const int16_t *qT, int16_t *rows, const int8_t *d,
				   const float *scale, int nd, float *amax)
{
	__m512		vmax[2] = {_mm512_set1_ps(-INFINITY), _mm512_set1_ps(-INFINITY)};
	float		lanes[32];
	int			groups = h->nq > 16 ? 2 : 1;

	for (int j = 0; j < nd; j += SCREEN_ROWS)
	{
		int			T = nd - j < SCREEN_ROWS ? nd - j : SCREEN_ROWS;
		const float *sc = scale + j;

		screen_widen_avx512(d, h->dim, h->dpad, j, T, rows);
		if (h->pair)
			QV_SWITCH(screen_block_pair_avx512, T, qT, h->dpad, h->kpairs, rows, sc, &vmax[0])
		else if (groups == 1)
			QV_SWITCH(screen_block_avx512, T, qT, h->dpad, h->kpairs, rows, sc, vmax, 1)
		else
			QV_SWITCH(screen_block_avx512, T, qT, h->dpad, h->kpairs, rows, sc, vmax, 2)
	}
	_mm512_storeu_ps(lanes, vmax[0]);
	_mm512_storeu_ps(lanes + 16, vmax[1]);
	screen_fold_lanes(h, lanes, amax);
}

/* the tile configuration: 64 bytes, palette 1 */
typedef struct TileConfig
{
	uint8_t		palette;
	uint8_t		start_row;
	uint8_t		reserved[14];
	uint16_t	colsb[16];
	uint8_t		rows[16];
} TileConfig;

/* a block of 16 document tokens for the tiles: rows in place or in the row buffer */
typedef struct AmxBlock
{
	const int8_t *a;			/* row 0 */
	int			lda;			/* bytes between rows */
	const float *sc;			/* the rows' scales */
	int			rows;			/* rows to fold (the others are padding) */
} AmxBlock;

/* fold a block's hi/lo products into vmax: I = 256 hi + lo, then fl(fl(I) * sd) */
AMX_ATTR static ALWAYS_INLINE __m512
screen_amx_fold(const int32_t *chi, const int32_t *clo, const AmxBlock *x, __m512 vmax)
{
	for (int t = 0; t < x->rows; t++)
	{
		__m512i		I = _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512((const void *) (chi + 16 * t)), 8),
										 _mm512_load_si512((const void *) (clo + 16 * t)));

		vmax = _mm512_max_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(I), _mm512_set1_ps(x->sc[t])), vmax);
	}
	return vmax;
}

/*
 * One or two blocks against one lane group of the query: tmm0/tmm1 64
 * dimensions of each block, tmm2/tmm3 the query chunk's hi/lo B tiles,
 * tmm4-7 the int32 accumulators (block x half), so up to four tile products
 * are in flight instead of one dependent chain.  Past dim the B tiles are
 * zero, so a row may read into the next row's bytes.  I = 256 hi + lo is
 * exact (int32 arithmetic wraps, and the true I fits).
 */
AMX_ATTR static __m512
screen_amx_blocks(const AmxBlock *x, const AmxBlock *y, const int8_t *bg, int nch, __m512 vmax)
{
	int32_t		c[4][256] __attribute__((aligned(64)));

	_tile_zero(4);
	_tile_zero(5);
	if (y)
	{
		_tile_zero(6);
		_tile_zero(7);
	}
	for (int ch = 0; ch < nch; ch++)
	{
		_tile_loadd(2, bg + (size_t) ch * 2048, 64);
		_tile_loadd(3, bg + (size_t) ch * 2048 + 1024, 64);
		_tile_loadd(0, x->a + (size_t) ch * 64, x->lda);
		_tile_dpbssd(4, 0, 2);
		_tile_dpbssd(5, 0, 3);
		if (y)
		{
			_tile_loadd(1, y->a + (size_t) ch * 64, y->lda);
			_tile_dpbssd(6, 1, 2);
			_tile_dpbssd(7, 1, 3);
		}
	}
	_tile_stored(4, c[0], 64);
	_tile_stored(5, c[1], 64);
	vmax = screen_amx_fold(c[0], c[1], x, vmax);
	if (y)
	{
		_tile_stored(6, c[2], 64);
		_tile_stored(7, c[3], 64);
		vmax = screen_amx_fold(c[2], c[3], y, vmax);
	}
	return vmax;
}

/*
 * A document in blocks of 16 tokens, two at a time.  Blocks are read in
 * place when every byte a tile reads lies inside the document: always when
 * dim is a multiple of 64, and for every block but the last otherwise (the
 * last row of such a block reads at most dpad - dim < dim bytes into the
 * rows after it, and at least one follows: dim >= 64 on this path).  The
 * last block of a document of at least 16 tokens is its last 16 rows (they
 * overlap the block before: a repeated row cannot change a maximum); it is
 * copied into the row buffer, rows zero-padded to dpad, when dim is not a
 * multiple of 64 or the document has fewer than 16 tokens (then only its
 * real rows are folded).
 */
AMX_ATTR static void
screen_update_amx(const ScreenHeader *h, const int8_t *bt, int8_t *pad, const int8_t *d,
				  const float *scale, int nd, float *amax)
{
	TileConfig	cfg;
	int			dim = h->dim;
	int			nch = h->dpad / 64;
	int			groups = h->nq > 16 ? 2 : 1;
	int			nb = (nd + 15) / 16;
	int			lastStart = nd < 16 ? 0 : nd - 16;
	float		lanes[32];
	AmxBlock	last = {d + (size_t) lastStart * dim, dim, scale + lastStart, nd < 16 ? nd : 16};

	if (nd < 16 || dim % 64 != 0)
	{
		memset(pad, 0, (size_t) 16 * h->dpad);
		for (int t = 0; t < last.rows; t++)
			memcpy(pad + (size_t) t * h->dpad, d + (size_t) (lastStart + t) * dim, dim);
		last.a = pad;
		last.lda = h->dpad;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.palette = 1;
	for (int t = 0; t < 8; t++)
	{
		cfg.colsb[t] = 64;
		cfg.rows[t] = 16;
	}
	_tile_loadconfig(&cfg);
	for (int g = 0; g < groups; g++)
	{
		__m512		vmax = _mm512_set1_ps(-INFINITY);
		const int8_t *bg = bt + (size_t) g * nch * 2 * 1024;

		for (int b = 0; b < nb; b += 2)
		{
			AmxBlock	x = {d + (size_t) b * 16 * dim, dim, scale + (size_t) b * 16, 16};
			AmxBlock	y = {d + (size_t) (b + 1) * 16 * dim, dim, scale + (size_t) (b + 1) * 16, 16};

			if (b == nb - 1)
				vmax = screen_amx_blocks(&last, NULL, bg, nch, vmax);
			else
				vmax = screen_amx_blocks(&x, b + 1 == nb - 1 ? &last : &y, bg, nch, vmax);
		}
		_mm512_storeu_ps(lanes + 16 * g, vmax);
	}
	_tile_release();
	screen_fold_lanes(h, lanes, amax);
}

#endif							/* PGS_X86 */

double
pgs_maxsim_screen_i8(void *screen, const int8_t *d, const float *scale, int nd, double *bound)
{
	ScreenHeader *h = (ScreenHeader *) align64(screen);
	float		amax[SCREEN_MAXQ];
	double		W = 0;
	double		est = 0;
	double		estAbs = 0;

	*bound = NAN;
	if (nd < 1)
		return NAN;
	for (int i = 0; i < h->nq; i++)
		amax[i] = -INFINITY;
	for (int j = 0; j < nd; j++)
		if (fabs((double) scale[j]) > W)
			W = fabs((double) scale[j]);
	W *= 128.0 * h->dim;
	if (!(W <= h->wmax))
		return NAN;				/* the float kernel could overflow: not screened */
	switch (h->path)
	{
#ifdef PGS_X86
		case SCREEN_AMX:
			screen_update_amx(h, screen_layout(screen, h->dpad), screen_rowbuf(screen, h->dpad), d, scale, nd,
							  amax);
			break;
		case SCREEN_AVX2:
			screen_update_avx2(h, screen_layout(screen, h->dpad), screen_rowbuf(screen, h->dpad), d, scale, nd,
							   amax);
			break;
		case SCREEN_VNNI:
			screen_update_vnni(h, screen_layout(screen, h->dpad), screen_rowbuf(screen, h->dpad), d, scale, nd,
							   amax);
			break;
#endif
		default:
			screen_update_scalar(h, screen_qplain(screen), d, scale, nd, amax);
			break;
	}
	for (int i = 0; i < h->nq; i++)
	{
		double		t = (double) h->sq[i] * (double) amax[i];

		est += t;
		estAbs += fabs(t);
	}
	*bound = screen_bound(h, W, estAbs);
	if (!isfinite(est) || !isfinite(*bound))
		return NAN;
	return est;
}
