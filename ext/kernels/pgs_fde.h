/*
 * pgs_fde.h — MUVERA fixed dimensional encodings (FDE), pgsieve's portable
 * variant.
 *
 * Plain C99 with no PostgreSQL headers and no allocation: the caller passes
 * scratch memory (palloc in the extension, a numpy buffer in the Python
 * client), so the very same file serves both and their FDEs are
 * byte-identical.  The exact construction — the PRNG, the tie and summation
 * rules that make it reproducible — is specified at the top of pgs_fde.c.
 */
#ifndef PGS_FDE_H
#define PGS_FDE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Parameter bounds (inclusive). */
enum
{
	PGS_FDE_MAX_DIM = 65536,	/* token dimensions */
	PGS_FDE_MAX_REPS = 4096,	/* repetitions R */
	PGS_FDE_MAX_KSIM = 15,		/* SimHash bits: B = 2^ksim partitions */
	PGS_FDE_MAX_DPROJ = 65536,	/* AMS inner projection dimension d' */
	PGS_FDE_MAX_FINAL_DIM = 16777216,	/* final count-sketch dimension */
	PGS_FDE_MAX_BLOCKS_LEN = 16777216,	/* R * B * d' before the final sketch */
	PGS_FDE_MAX_TOKENS = 1048576
};

/* Error codes (pgs_fde_strerror gives the message). */
typedef enum
{
	PGS_FDE_OK = 0,
	PGS_FDE_ERR_DIM = 1,
	PGS_FDE_ERR_REPS = 2,
	PGS_FDE_ERR_KSIM = 3,
	PGS_FDE_ERR_DPROJ = 4,
	PGS_FDE_ERR_FINAL_DIM = 5,
	PGS_FDE_ERR_TOO_LONG = 6,
	PGS_FDE_ERR_FILL_QUERY = 7,
	PGS_FDE_ERR_NO_TOKENS = 8,
	PGS_FDE_ERR_TOO_MANY_TOKENS = 9,
	PGS_FDE_ERR_NONFINITE = 10,
	PGS_FDE_ERR_SCRATCH = 11,
	PGS_FDE_ERR_OVERFLOW = 12
} PgsFdeError;

typedef struct PgsFdeParams
{
	int32_t		dim;			/* token dimensions d, 1..PGS_FDE_MAX_DIM */
	int32_t		reps;			/* repetitions R, 1..PGS_FDE_MAX_REPS */
	int32_t		ksim;			/* SimHash bits, 0..PGS_FDE_MAX_KSIM */
	int32_t		dproj;			/* 0 = identity (d' = d), else AMS sketch to d' = dproj */
	int32_t		final_dim;		/* 0 = none, else a final count-sketch to final_dim */
	int32_t		fill_empty;		/* nonzero: fill empty partitions (documents only) */
	uint64_t	seed;
} PgsFdeParams;

/* Validate params for a query (is_query != 0) or a document encoding. */
int			pgs_fde_check(const PgsFdeParams *p, int is_query);

/* Message for an error code (a static string, never NULL). */
const char *pgs_fde_strerror(int code);

/* Length of the encoding: final_dim, or R * 2^ksim * d'.  0 if p is invalid. */
size_t		pgs_fde_output_dim(const PgsFdeParams *p);

/* Bytes of scratch pgs_fde_encode needs for ntok tokens; 0 if p is invalid or
 * ntok is 0 or above PGS_FDE_MAX_TOKENS. */
size_t		pgs_fde_scratch_bytes(const PgsFdeParams *p, size_t ntok);

/*
 * Encode ntok tokens (row-major, ntok x p->dim floats, which must be finite)
 * as a query (SUM per partition) or a document (AVERAGE, optionally filled)
 * FDE.  out receives pgs_fde_output_dim(p) floats.  scratch must hold
 * pgs_fde_scratch_bytes(p, ntok) bytes (any alignment).  Returns PGS_FDE_OK
 * or an error code; out's contents are unspecified after an error.
 */
int			pgs_fde_encode(const PgsFdeParams *p, int is_query, const float *tokens,
						   size_t ntok, float *out, void *scratch, size_t scratch_bytes);

/*
 * The same, calling check(arg) at least once per repetition and per 1024
 * tokens, so that a long encoding can be interrupted (the extension passes a
 * CHECK_FOR_INTERRUPTS wrapper, which may longjmp out: the kernel holds
 * nothing but the caller's memory).
 */
int			pgs_fde_encode_interruptible(const PgsFdeParams *p, int is_query,
										 const float *tokens, size_t ntok, float *out,
										 void *scratch, size_t scratch_bytes,
										 void (*check) (void *), void *arg);

/* The spec's counter-based PRNG, exposed so tests can check it directly:
 * SplitMix64 of key(seed, rep, stream) ^ index (see pgs_fde.c). */
uint64_t	pgs_fde_draw(uint64_t seed, uint64_t rep, uint64_t stream, uint64_t index);

#ifdef __cplusplus
}
#endif

#endif							/* PGS_FDE_H */
