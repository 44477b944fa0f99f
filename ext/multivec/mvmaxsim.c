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

/*
 * Scratch memory of MultiVecMaxSim, grown on demand in cache->mcxt; an
 * SQL call site keeps one in fn_extra so rows of one query reuse it.
 */
static void
CacheReserve(MaxSimCache *cache, int nq, int dim)
{
	if (cache->dim < dim)
	{
		if (cache->scratch)
			pfree(cache->scratch);
		cache->scratch = MemoryContextAlloc(cache->mcxt, pgs_maxsim_scratch_bytes(dim));
		pgs_maxsim_scratch_init(cache->scratch);
		cache->dim = dim;
	}
	if (cache->nq < nq)
	{
		if (cache->qmax)
			pfree(cache->qmax);
		cache->qmax = MemoryContextAlloc(cache->mcxt, sizeof(float) * nq);
		cache->nq = nq;
	}
}

/*
 * MaxSim of doc against a float32 query of nq tokens of dim dimensions, as
 * SQL maxsim() computes it.  cache may be NULL (scratch is then allocated in
 * the current memory context and freed).  For C callers such as an index
 * re-ranking candidates against one query.
 */
double
MultiVecMaxSimFloats(MultiVec *doc, const float *q, int nq, int dim, MaxSimCache *cache)
{
	MaxSimCache local = {CurrentMemoryContext, 0, NULL, 0, NULL};
	MaxSimCache *c = cache ? cache : &local;
	int			nd = doc->ntok;
	int			qstep;
	int			dstep;
	double		result;

	if (doc->dim != dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different multivec dimensions %d and %d", doc->dim, dim)));
	CacheReserve(c, nq, dim);
	for (int i = 0; i < nq; i++)
		c->qmax[i] = -INFINITY;

	qstep = Min(nq, MAXSIM_QUERY_STEP);
	dstep = (int) Max(32, MAXSIM_WORK_PER_CALL / ((int64) qstep * dim));
	for (int q0 = 0; q0 < nq; q0 += qstep)
	{
		int			n = Min(qstep, nq - q0);
		const float *qp = q + (size_t) q0 * dim;
		float	   *qmax = c->qmax + q0;

		for (int d0 = 0; d0 < nd; d0 += dstep)
		{
			int			m = Min(dstep, nd - d0);
			size_t		off = (size_t) d0 * dim;

			CHECK_FOR_INTERRUPTS();
			switch (doc->format)
			{
				case MV_FLOAT32:
					pgs_maxsim_update_f32(qp, n, MV_F32(doc) + off, m, dim, qmax, c->scratch);
					break;
				case MV_FLOAT16:
					pgs_maxsim_update_f16(qp, n, MV_F16(doc) + off, m, dim, qmax, c->scratch);
					break;
				case MV_INT8:
					pgs_maxsim_update_i8(qp, n, MV_I8(doc) + off, MV_SCALES(doc) + d0, m, dim,
										 qmax, c->scratch);
					break;
				default:
					elog(ERROR, "corrupt multivec: format code %d", doc->format);
			}
		}
	}
	result = pgs_maxsim_sum(c->qmax, nq);
	if (cache == NULL)
	{
		pfree(local.scratch);
		pfree(local.qmax);
	}
	return result;
}

double
MultiVecMaxSim(MultiVec *doc, MultiVec *query, MaxSimCache *cache)
{
	if (doc->dim != query->dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different multivec dimensions %d and %d", doc->dim, query->dim)));
	return MultiVecMaxSimFloats(doc, MultiVecFloats(query), query->ntok, query->dim, cache);
}

/* the call site's cache (none when called without an FmgrInfo, e.g. DirectFunctionCall) */
static MaxSimCache *
CallSiteCache(FunctionCallInfo fcinfo)
{
	MaxSimCache *cache;

	if (fcinfo->flinfo == NULL)
		return NULL;
	cache = (MaxSimCache *) fcinfo->flinfo->fn_extra;
	if (cache == NULL)
	{
		cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(MaxSimCache));
		cache->mcxt = fcinfo->flinfo->fn_mcxt;
		fcinfo->flinfo->fn_extra = cache;
	}
	return cache;
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_maxsim);
Datum
multivec_maxsim(PG_FUNCTION_ARGS)
{
	MultiVec   *doc = PG_GETARG_MULTIVEC_P(0);
	MultiVec   *query = PG_GETARG_MULTIVEC_P(1);

	PG_RETURN_FLOAT8(MultiVecMaxSim(doc, query, CallSiteCache(fcinfo)));
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_maxsim_distance);
Datum
multivec_maxsim_distance(PG_FUNCTION_ARGS)
{
	MultiVec   *doc = PG_GETARG_MULTIVEC_P(0);
	MultiVec   *query = PG_GETARG_MULTIVEC_P(1);

	PG_RETURN_FLOAT8(-MultiVecMaxSim(doc, query, CallSiteCache(fcinfo)));
}
