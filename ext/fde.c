/*
 * fde.c — SQL wrappers of the MUVERA FDE kernel (kernels/pgs_fde.c).
 *
 *   muvera_fde(tokens real[], is_query boolean, reps, ksim, dproj, seed,
 *              fill_empty, final_dim) RETURNS vector
 *   muvera_fde(tokens vector[], ...)  the same over an array of pgvector vectors
 *
 * The encoding is the kernel's; this file only turns SQL values into a
 * contiguous float matrix and parameters, maps the kernel's error codes to
 * ereport, and builds pgvector's vector.  The Python client runs the same
 * kernel, so both produce the same bytes.
 *
 * NULL handling: the function is not STRICT because fill_empty's default is
 * NULL ("true for documents, false for queries").  NULL tokens give a NULL
 * result, as a STRICT function would for a NULL column; a NULL in any other
 * argument is an error rather than a silent NULL, since it is a mistake in
 * the call, not missing data.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "pgs_fde.h"
#include "pgsieve.h"
#include "multivec/multivec.h"
#include "pgvector_types.h"

#define FDE_FN "muvera_fde"

/* argument positions, shared by both overloads */
#define ARG_TOKENS		0
#define ARG_IS_QUERY	1
#define ARG_REPS		2
#define ARG_KSIM		3
#define ARG_DPROJ		4
#define ARG_SEED		5
#define ARG_FILL_EMPTY	6
#define ARG_FINAL_DIM	7

/* A token matrix: ntok rows of dim floats, contiguous. */
typedef struct FdeTokens
{
	const float *x;
	int			ntok;
	int			dim;
} FdeTokens;

static void
RequireArg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s: %s must not be NULL", FDE_FN, name)));
}

/* The SQL arguments other than tokens, as kernel parameters (not yet
 * validated: the kernel's check does that, once, for SQL and Python alike). */
static PgsFdeParams
GetFdeParams(FunctionCallInfo fcinfo, int dim, bool *is_query)
{
	PgsFdeParams p;

	RequireArg(fcinfo, ARG_IS_QUERY, "is_query");
	RequireArg(fcinfo, ARG_REPS, "reps");
	RequireArg(fcinfo, ARG_KSIM, "ksim");
	RequireArg(fcinfo, ARG_DPROJ, "dproj");
	RequireArg(fcinfo, ARG_SEED, "seed");
	RequireArg(fcinfo, ARG_FINAL_DIM, "final_dim");
	*is_query = PG_GETARG_BOOL(ARG_IS_QUERY);
	memset(&p, 0, sizeof(p));
	p.dim = dim;
	p.reps = PG_GETARG_INT32(ARG_REPS);
	p.ksim = PG_GETARG_INT32(ARG_KSIM);
	p.dproj = PG_GETARG_INT32(ARG_DPROJ);
	p.final_dim = PG_GETARG_INT32(ARG_FINAL_DIM);
	/* a bigint seed is its two's complement uint64, as the spec says */
	p.seed = (uint64) PG_GETARG_INT64(ARG_SEED);
	if (PG_ARGISNULL(ARG_FILL_EMPTY))
		p.fill_empty = !*is_query;
	else
		p.fill_empty = PG_GETARG_BOOL(ARG_FILL_EMPTY);
	return p;
}

/* ereport a kernel error code as an error of who (never returns for a non-OK code) */
void
PgsFdeReportError(const char *who, int rc)
{
	int			sqlstate;

	switch (rc)
	{
		case PGS_FDE_OK:
			return;
		case PGS_FDE_ERR_NONFINITE:
		case PGS_FDE_ERR_NO_TOKENS:
			sqlstate = ERRCODE_DATA_EXCEPTION;
			break;
		case PGS_FDE_ERR_OVERFLOW:
			sqlstate = ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE;
			break;
		case PGS_FDE_ERR_TOO_MANY_TOKENS:
		case PGS_FDE_ERR_TOO_LONG:
			sqlstate = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
			break;
		case PGS_FDE_ERR_SCRATCH:
			sqlstate = ERRCODE_INTERNAL_ERROR;
			break;
		default:
			sqlstate = ERRCODE_INVALID_PARAMETER_VALUE;
			break;
	}
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("%s: %s", who, pgs_fde_strerror(rc))));
}

/* Every value finite, naming the first bad token (1-based, as SQL arrays). */
static void
CheckTokensFinite(const char *who, const FdeTokens *t)
{
	for (int i = 0; i < t->ntok; i++)
	{
		const float *row = t->x + (size_t) i * t->dim;

		CHECK_FOR_INTERRUPTS();
		for (int j = 0; j < t->dim; j++)
			if (!isfinite(row[j]))
				ereport(ERROR,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("%s: token %d contains %s at dimension %d; values must be finite",
								who, i + 1, isnan(row[j]) ? "NaN" : "Infinity", j + 1)));
	}
}

/* tokens real[]: a 2-D array, one row per token */
static FdeTokens
TokensFromRealArray(ArrayType *arr)
{
	FdeTokens	t;

	if (ARR_ELEMTYPE(arr) != FLOAT4OID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s: tokens must be real[]", FDE_FN)));
	if (ARR_NDIM(arr) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s: tokens must not be empty", FDE_FN)));
	if (ARR_NDIM(arr) != 2)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s: tokens must be a two-dimensional real[] (one row per token), not %d-dimensional",
						FDE_FN, ARR_NDIM(arr)),
				 errhint("Write a single token as '{{...}}', or pass a vector[].")));
	if (ARR_HASNULL(arr) && array_contains_nulls(arr))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s: tokens must not contain NULLs", FDE_FN)));
	t.ntok = ARR_DIMS(arr)[0];
	t.dim = ARR_DIMS(arr)[1];
	/* float4 is fixed-width and int-aligned: the elements are a plain matrix */
	t.x = (const float *) ARR_DATA_PTR(arr);
	return t;
}

/* tokens vector[]: a 1-D array of pgvector vectors of one dimension */
static FdeTokens
TokensFromVectorArray(ArrayType *arr)
{
	FdeTokens	t;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	float	   *x;

	if (ARR_NDIM(arr) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s: tokens must not be empty", FDE_FN)));
	if (ARR_NDIM(arr) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s: tokens must be a one-dimensional vector[], not %d-dimensional",
						FDE_FN, ARR_NDIM(arr))));
	get_typlenbyvalalign(ARR_ELEMTYPE(arr), &typlen, &typbyval, &typalign);
	deconstruct_array(arr, ARR_ELEMTYPE(arr), typlen, typbyval, typalign, &elems, &nulls, &n);
	t.ntok = n;
	t.dim = 0;
	x = NULL;
	for (int i = 0; i < n; i++)
	{
		PgvVector  *v;

		CHECK_FOR_INTERRUPTS();
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s: tokens must not contain NULLs (token %d is NULL)", FDE_FN, i + 1)));
		v = DatumGetPgvVector(elems[i]);
		if (i == 0)
		{
			t.dim = v->dim;
			if (t.dim < 1)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("%s: tokens must have at least 1 dimension", FDE_FN)));
			x = palloc_extended(sizeof(float) * (Size) n * t.dim, MCXT_ALLOC_HUGE);
		}
		else if (v->dim != t.dim)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("%s: tokens have different dimensions %d and %d (token %d)",
							FDE_FN, t.dim, v->dim, i + 1)));
		memcpy(x + (size_t) i * t.dim, v->x, sizeof(float) * t.dim);
		if ((Pointer) v != DatumGetPointer(elems[i]))
			pfree(v);
	}
	t.x = x;
	return t;
}

/* The kernel's progress callback: a long encoding stays cancellable. */
static void
FdeCheckInterrupts(void *arg)
{
	CHECK_FOR_INTERRUPTS();
}

/*
 * Encode ntok tokens of dim floats into out (pgs_fde_output_dim floats) as a
 * query or a document FDE, reporting any problem as an error of who (the SQL
 * function, or the multivec_fde index).  p->dim must be dim.
 */
void
PgsFdeEncode(const char *who, const PgsFdeParams *p, bool is_query, const float *x, int ntok,
			 float *out)
{
	FdeTokens	t;
	size_t		scratch_bytes;
	void	   *scratch;
	int			rc;

	t.x = x;
	t.ntok = ntok;
	t.dim = p->dim;
	if (ntok < 1)
		PgsFdeReportError(who, PGS_FDE_ERR_NO_TOKENS);
	PgsFdeReportError(who, pgs_fde_check(p, is_query));
	if ((size_t) ntok > PGS_FDE_MAX_TOKENS)
		PgsFdeReportError(who, PGS_FDE_ERR_TOO_MANY_TOKENS);
	CheckTokensFinite(who, &t);

	scratch_bytes = pgs_fde_scratch_bytes(p, (size_t) ntok);
	if (scratch_bytes == 0 || scratch_bytes > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s: %d tokens of %d dimensions with these parameters need more than 1 GB of working memory",
						who, ntok, p->dim)));
	scratch = palloc(scratch_bytes);
	rc = pgs_fde_encode_interruptible(p, is_query, x, (size_t) ntok, out,
									  scratch, scratch_bytes, FdeCheckInterrupts, NULL);
	pfree(scratch);
	PgsFdeReportError(who, rc);
}

/* Validate everything, run the kernel, and return pgvector's vector. */
static Datum
EncodeFde(FunctionCallInfo fcinfo, const FdeTokens *t)
{
	bool		is_query;
	PgsFdeParams p = GetFdeParams(fcinfo, t->dim, &is_query);
	size_t		out_dim;
	PgvVector  *result;

	if (t->ntok < 1)
		PgsFdeReportError(FDE_FN, PGS_FDE_ERR_NO_TOKENS);
	PgsFdeReportError(FDE_FN, pgs_fde_check(&p, is_query));
	out_dim = pgs_fde_output_dim(&p);
	if (out_dim > PGV_VECTOR_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s: the encoding would have %zu dimensions, more than vector's %d",
						FDE_FN, out_dim, PGV_VECTOR_MAX_DIM),
				 errdetail("reps * 2^ksim * %s = %d * %d * %d.",
						   p.dproj > 0 ? "dproj" : "token dimensions", p.reps, 1 << p.ksim,
						   p.dproj > 0 ? p.dproj : p.dim),
				 errhint("Pass final_dim (at most %d) to count-sketch it down, or lower reps, ksim or dproj.",
						 PGV_VECTOR_MAX_DIM)));
	result = (PgvVector *) palloc0(offsetof(PgvVector, x) + sizeof(float) * out_dim);
	SET_VARSIZE(result, offsetof(PgvVector, x) + sizeof(float) * out_dim);
	result->dim = (int16) out_dim;
	PgsFdeEncode(FDE_FN, &p, is_query, t->x, t->ntok, result->x);
	PG_RETURN_POINTER(result);
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(pgsieve_muvera_fde_real);
Datum
pgsieve_muvera_fde_real(PG_FUNCTION_ARGS)
{
	FdeTokens	t;

	if (PG_ARGISNULL(ARG_TOKENS))
		PG_RETURN_NULL();
	t = TokensFromRealArray(PG_GETARG_ARRAYTYPE_P(ARG_TOKENS));
	return EncodeFde(fcinfo, &t);
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(pgsieve_muvera_fde_vector);
Datum
pgsieve_muvera_fde_vector(PG_FUNCTION_ARGS)
{
	FdeTokens	t;

	if (PG_ARGISNULL(ARG_TOKENS))
		PG_RETURN_NULL();
	t = TokensFromVectorArray(PG_GETARG_ARRAYTYPE_P(ARG_TOKENS));
	return EncodeFde(fcinfo, &t);
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(pgsieve_muvera_fde_multivec);
Datum
pgsieve_muvera_fde_multivec(PG_FUNCTION_ARGS)
{
	FdeTokens	t;
	MultiVec   *mv;

	if (PG_ARGISNULL(ARG_TOKENS))
		PG_RETURN_NULL();
	mv = PG_GETARG_MULTIVEC_P(ARG_TOKENS);
	t.x = MultiVecFloats(mv);
	t.ntok = mv->ntok;
	t.dim = mv->dim;
	return EncodeFde(fcinfo, &t);
}
