/*
 * pgs_maxsim.h — late-interaction (ColBERT MaxSim) kernels.
 *
 * Plain C99 with no PostgreSQL headers, compiled into the extension and into
 * the Python client's cffi module like pgs_kernels.c, whose dispatch level
 * (pgs_kernels_level()) these kernels follow.
 *
 *   MaxSim(Q, D) = sum over query tokens q_i of max over document tokens d_j
 *                  of <q_i, d_j>
 *
 * Tokens are stored row-major: token t of a set of n tokens of dim elements
 * starts at element t * dim.  The query is always float32; a document is
 * float32, IEEE binary16 (raw uint16 bit patterns) or int8 codes with one
 * float32 scale per token (value = code * scale).
 *
 * Every document format is first widened to float32 in a small packed panel,
 * so each <q_i, d_j> is the same float32 fused multiply-add chain over the
 * dimensions at every SIMD level above scalar (the scalar level rounds each
 * product separately): a float16 or int8 document scores exactly like its
 * dequantized float32 copy.  Maxima are exact; the final sum is in double,
 * in query-token order.
 */
#ifndef PGS_MAXSIM_H
#define PGS_MAXSIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Bytes of scratch memory the kernels below need for tokens of dim
 * dimensions (packed document panels or a transposed query, 64-byte aligned
 * inside).  The caller allocates it, calls pgs_maxsim_scratch_init once, and
 * may reuse it for any call with that dim or less; reusing it for one query
 * across many documents saves re-transposing a short query each time.
 */
size_t		pgs_maxsim_scratch_bytes(int dim);
void		pgs_maxsim_scratch_init(void *scratch);

/*
 * Running maxima: for each query token i < nq,
 *     qmax[i] = max(qmax[i], max over j < nd of <q_i, d_j>).
 * Initialize qmax to -INFINITY for a fresh score.  Splitting the document
 * tokens (or the query tokens, with the matching qmax slice) across calls
 * gives bit-identical maxima, which lets a caller check for interrupts
 * between calls.
 */
void		pgs_maxsim_update_f32(const float *q, int nq, const float *d, int nd, int dim,
								  float *qmax, void *scratch);
void		pgs_maxsim_update_f16(const float *q, int nq, const uint16_t *d, int nd, int dim,
								  float *qmax, void *scratch);
void		pgs_maxsim_update_i8(const float *q, int nq, const int8_t *d, const float *scale,
								 int nd, int dim, float *qmax, void *scratch);

/*
 * MaxSim of a whole query against a whole document: the running maxima
 * above from -INFINITY, summed in double.  nq == 0 gives 0; nd < 1 (an empty
 * document, which has no MaxSim) gives NaN, never -INFINITY.
 */
double		pgs_maxsim_f32(const float *q, int nq, const float *d, int nd, int dim, void *scratch);
double		pgs_maxsim_f16(const float *q, int nq, const uint16_t *d, int nd, int dim, void *scratch);
double		pgs_maxsim_i8(const float *q, int nq, const int8_t *d, const float *scale,
						  int nd, int dim, void *scratch);

/* Sum of nq running maxima in double, in order (the last step of MaxSim). */
double		pgs_maxsim_sum(const float *qmax, int nq);

/*
 * int8 quantization of one token of dim finite floats: scale = max|x| / 127
 * (float32), code = rint(x / scale) (round half to even, float32 division),
 * so value = code * scale and |code| <= 127.  An all-zero token, or one so
 * tiny that the scale underflows to 0, gets scale 0 and all-zero codes.
 * Returns the scale.  numpy: s = np.float32(np.abs(x).max() / np.float32(127));
 * codes = np.rint(x / s).
 */
float		pgs_quantize_i8_token(const float *x, int dim, int8_t *codes);

/*
 * Screening int8 documents (a re-rank's first pass).  The query is rounded
 * to int16 per token once (pgs_maxsim_screen_prepare); then each document's
 * codes are multiplied with it in exact integer arithmetic, which gives an
 * estimate of the MaxSim that pgs_maxsim_i8 computes and a bound on their
 * difference: |pgs_maxsim_i8(...) - estimate| <= *bound, for every level and
 * every input, rounding of the float kernel included (derivation at
 * screen_bound in pgs_maxsim.c).  A re-rank of n candidates to k then scores
 * exactly only those whose estimate + bound reaches the k-th best
 * estimate - bound: the others cannot be in the top k, so the result is the
 * same, in fewer float MaxSims.  With AMX tiles (int8 products of the query's
 * two int8 halves) a screen is two to three times as fast as the float kernel
 * at 384 dimensions, with AVX512-VNNI or AVX2 (vpmaddwd) about 1.5 times;
 * pgs_maxsim_screen_fast() says whether this CPU has one of those paths
 * (below AVX2 the screen is a scalar reference: correct, not faster).  Every
 * path gives the same bits.
 *
 * The screen memory (pgs_maxsim_screen_bytes) holds the rounded query and
 * row buffers; it is prepared once per query.  prepare returns 0, and the
 * caller should not screen, for an empty query or one of more than 32 tokens.
 * A document with no tokens, or whose estimate is not finite, gives NaN.
 */
int			pgs_maxsim_screen_fast(void);
size_t		pgs_maxsim_screen_bytes(int dim);

/* The path prepare picks for dim: 0 scalar, 1 AVX2, 2 AVX512-VNNI, 3 AMX. */
int			pgs_maxsim_screen_path(int dim);
int			pgs_maxsim_screen_prepare(const float *q, int nq, int dim, void *screen);
double		pgs_maxsim_screen_i8(void *screen, const int8_t *d, const float *scale, int nd,
								 double *bound);

#ifdef __cplusplus
}
#endif

#endif							/* PGS_MAXSIM_H */
