/*
 * mvmaxsim.c — MaxSim between multivectors, and the @# distance.
 *
 *   maxsim(doc, query) = sum over query tokens q of max over doc tokens d of <q, d>
 *   doc @# query       = -maxsim(doc, query), so ORDER BY mv @# q LIMIT k is
 *                        ascending, like pgvector's <#>
 *
 * The query is widened to float32 once; the document is scored in its
 * stored format by the shared kernel (ext/kernels/pgs_maxsim.c), which the
 * Python client compiles too, so pgsieve.kernels.maxsim gives the same
 * float8 bit for bit.
 */
#include "postgres.h"

#include <math.h>

#include "miscadmin.h"

#include "multivec.h"
#include "pgs_maxsim.h"

/*
 * Multiply-adds per kernel call.  The kernel cannot check for interrupts, so
 * big inputs (up to 8192 x 8192 tokens of 16000 dimensions) are scored in
 * pieces of about this much work, a few milliseconds each.  Splitting changes
 * no result: the running maxima are exact.
 */
#define MAXSIM_WORK_PER_CALL ((int64) 1 << 24)
#define MAXSIM_QUERY_STEP 240

/* per-call-site scratch, kept across rows of one query */
typedef struct MaxSimCache
{
	int			dim;
	void	   *scratch;		/* pgs_maxsim_scratch_bytes(dim) */
	int			nq;
	float	   *qmax;			/* nq running maxima */
} MaxSimCache;

static MaxSimCache *
GetCache(FunctionCallInfo fcinfo, int nq, int dim)
{
	MaxSimCache *cache = (MaxSimCache *) fcinfo->flinfo->fn_extra;

	if (cache == NULL)
	{
		cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(MaxSimCache));
		fcinfo->flinfo->fn_extra = cache;
	}
	if (cache->dim < dim)
	{
		if (cache->scratch)
			pfree(cache->scratch);
		cache->scratch = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, pgs_maxsim_scratch_bytes(dim));
		cache->dim = dim;
	}
	if (cache->nq < nq)
	{
		if (cache->qmax)
			pfree(cache->qmax);
		cache->qmax = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(float) * nq);
		cache->nq = nq;
	}
	return cache;
}

static double
MultiVecMaxSim(FunctionCallInfo fcinfo, MultiVec *doc, MultiVec *query)
{
	int			dim = doc->dim;
	int			nq = query->ntok;
	int			nd = doc->ntok;
	const float *q;
	MaxSimCache *cache;
	int			qstep;
	int			dstep;

	if (doc->dim != query->dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different multivec dimensions %d and %d", doc->dim, query->dim)));
	q = MultiVecFloats(query);
	cache = GetCache(fcinfo, nq, dim);
	for (int i = 0; i < nq; i++)
		cache->qmax[i] = -INFINITY;

	qstep = Min(nq, MAXSIM_QUERY_STEP);
	dstep = (int) Max(32, MAXSIM_WORK_PER_CALL / ((int64) qstep * dim));
	for (int q0 = 0; q0 < nq; q0 += qstep)
	{
		int			n = Min(qstep, nq - q0);
		const float *qp = q + (size_t) q0 * dim;
		float	   *qmax = cache->qmax + q0;

		for (int d0 = 0; d0 < nd; d0 += dstep)
		{
			int			m = Min(dstep, nd - d0);
			size_t		off = (size_t) d0 * dim;

			CHECK_FOR_INTERRUPTS();
			switch (doc->format)
			{
				case MV_FLOAT32:
					pgs_maxsim_update_f32(qp, n, MV_F32(doc) + off, m, dim, qmax, cache->scratch);
					break;
				case MV_FLOAT16:
					pgs_maxsim_update_f16(qp, n, MV_F16(doc) + off, m, dim, qmax, cache->scratch);
					break;
				case MV_INT8:
					pgs_maxsim_update_i8(qp, n, MV_I8(doc) + off, MV_SCALES(doc) + d0, m, dim,
										 qmax, cache->scratch);
					break;
				default:
					elog(ERROR, "corrupt multivec: format code %d", doc->format);
			}
		}
	}
	return pgs_maxsim_sum(cache->qmax, nq);
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_maxsim);
Datum
multivec_maxsim(PG_FUNCTION_ARGS)
{
	MultiVec   *doc = PG_GETARG_MULTIVEC_P(0);
	MultiVec   *query = PG_GETARG_MULTIVEC_P(1);

	PG_RETURN_FLOAT8(MultiVecMaxSim(fcinfo, doc, query));
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_maxsim_distance);
Datum
multivec_maxsim_distance(PG_FUNCTION_ARGS)
{
	MultiVec   *doc = PG_GETARG_MULTIVEC_P(0);
	MultiVec   *query = PG_GETARG_MULTIVEC_P(1);

	PG_RETURN_FLOAT8(-MultiVecMaxSim(fcinfo, doc, query));
}
