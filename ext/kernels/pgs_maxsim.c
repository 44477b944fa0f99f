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
