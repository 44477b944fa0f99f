/*
 * mvrerank.c — MaxSim re-ranking of a first stage's candidates, with the
 * candidate pruning (CP) and early exit (EE) of "Multivector Reranking in
 * the Era of Strong First-Stage Retrievers" (Martinico et al., 2026).
 *
 *   maxsim_rerank(tbl regclass, col name, tids tid[], scores float8[],
 *                 query multivec, k int, alpha float8 DEFAULT NULL,
 *                 beta int DEFAULT NULL) RETURNS TABLE (tid tid, score float8)
 *
 * tids/scores are the first stage's candidates in descending score order
 * (e.g. from a sparse_block scan: -(emb <#> q)).  Each candidate's row is
 * fetched from tbl by TID with the statement's snapshot, only when it is
 * scored, so pruned and skipped candidates cost neither heap access nor
 * detoasting.  Invisible rows and NULL values are skipped.
 *   CP (alpha): candidates whose first-stage score is below (1 - alpha) x
 *   the k-th candidate's are dropped before scoring.
 *   EE (beta): the first k candidates fill a top-k; afterwards scoring stops
 *   after beta consecutive candidates that do not enter it.
 * The top k come back by descending MaxSim (ties: first-stage order), so
 * "sparse gather -> MaxSim re-rank" is one SQL statement joining on ctid.
 */
#include "postgres.h"

#include <math.h>

#include "access/detoast.h"
#include "access/genam.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "binary_scan/bscan.h"
#include "multivec.h"
#include "pgs_maxsim.h"
#include "pgsieve_topk.h"

#define RR_FN "maxsim_rerank"

/* The candidate arrays, checked: one dimension, same length, no NULLs. */
static int
RerankArrays(ArrayType *tids, ArrayType *scores, ItemPointer *tidv, float8 **scorev)
{
	int			ntid,
				nscore;
	Datum	   *td,
			   *sd;
	bool	   *tn,
			   *sn;

	if (ARR_NDIM(tids) > 1 || ARR_NDIM(scores) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s: tids and scores must be one-dimensional arrays", RR_FN)));
	deconstruct_array(tids, TIDOID, sizeof(ItemPointerData), false, TYPALIGN_SHORT, &td, &tn, &ntid);
	deconstruct_array(scores, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &sd, &sn, &nscore);
	if (ntid != nscore)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s: %d tids but %d scores", RR_FN, ntid, nscore)));
	*tidv = palloc(sizeof(ItemPointerData) * Max(ntid, 1));
	*scorev = palloc(sizeof(float8) * Max(ntid, 1));
	for (int i = 0; i < ntid; i++)
	{
		if (tn[i] || sn[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s: candidate %d has a NULL tid or score", RR_FN, i + 1)));
		(*tidv)[i] = *DatumGetItemPointer(td[i]);
		(*scorev)[i] = DatumGetFloat8(sd[i]);
		if (isnan((*scorev)[i]))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("%s: candidate %d has a NaN score", RR_FN, i + 1)));
		if (i > 0 && (*scorev)[i] > (*scorev)[i - 1])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s: candidates must come in descending first-stage score order (candidate %d scores above candidate %d)",
							RR_FN, i + 1, i)));
	}
	return ntid;
}

/*
 * A candidate's value, detoasted.  A value stored out of line without
 * compression (multivec's default STORAGE external) is read straight into
 * *buf, one buffer reused for every candidate, through the toast relation
 * the caller opened once: pg_detoast_datum would open and close that
 * relation and palloc (and free) a fresh copy per candidate, and the page
 * faults of those large allocations cost as much as the chunk reads.  Any
 * other form (inline, compressed, another toast relation) takes the
 * standard path.
 */
static MultiVec *
RerankDetoast(Relation toastrel, Datum value, MemoryContext mcxt, struct varlena **buf, Size *bufSize)
{
	struct varlena *attr = (struct varlena *) DatumGetPointer(value);
	struct varatt_external ptr;
	int32		size;

	if (toastrel == NULL || !VARATT_IS_EXTERNAL_ONDISK(attr))
		return DatumGetMultiVec(value);
	VARATT_EXTERNAL_GET_POINTER(ptr, attr);
	if (VARATT_EXTERNAL_IS_COMPRESSED(ptr) || ptr.va_toastrelid != RelationGetRelid(toastrel))
		return DatumGetMultiVec(value);
	size = VARATT_EXTERNAL_GET_EXTSIZE(ptr);
	if (*bufSize < (Size) size + VARHDRSZ)
	{
		if (*buf)
			pfree(*buf);
		*bufSize = Max((Size) size + VARHDRSZ, 2 * *bufSize);
		*buf = MemoryContextAllocHuge(mcxt, *bufSize);
	}
	SET_VARSIZE(*buf, size + VARHDRSZ);
	if (size > 0)
		table_relation_fetch_toast_slice(toastrel, ptr.va_valueid, size, 0, size, *buf);
	return (MultiVec *) *buf;
}

/* The multivec column col of rel (checking the caller may read it). */
static AttrNumber
RerankColumn(Relation rel, Name col)
{
	AttrNumber	att = get_attnum(RelationGetRelid(rel), NameStr(*col));

	if (att == InvalidAttrNumber || att < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("%s: column \"%s\" of relation \"%s\" does not exist",
						RR_FN, NameStr(*col), RelationGetRelationName(rel))));
	if (pg_attribute_aclcheck(RelationGetRelid(rel), att, GetUserId(), ACL_SELECT) != ACLCHECK_OK &&
		pg_class_aclcheck(RelationGetRelid(rel), GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s: permission denied for column \"%s\" of relation \"%s\"",
						RR_FN, NameStr(*col), RelationGetRelationName(rel))));
	return att;
}

/*
 * A valid multivec_fde index on exactly column att of rel (no expression),
 * opened with AccessShareLock, or NULL.  Its token copy is the column's
 * value byte for byte (bscantokens.c); a partial index just misses rows.
 */
static Relation
RerankTokenIndex(Relation rel, AttrNumber att)
{
	Oid			am = get_am_oid("multivec_fde", true);
	List	   *indexes;
	ListCell   *lc;
	Relation	found = NULL;

	if (!OidIsValid(am) || bscan_token_map_mb <= 0)
		return NULL;
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index ix = index->rd_index;

		if (index->rd_rel->relam == am && ix->indnatts == 1 && ix->indkey.values[0] == att &&
			ix->indisvalid && ix->indisready && ix->indislive)
		{
			found = index;
			break;
		}
		index_close(index, AccessShareLock);
	}
	list_free(indexes);
	return found;
}

/*
 * Screening (pgsieve.maxsim_screen): without early exit, an int8 column's
 * candidates are first screened with integer arithmetic
 * (pgs_maxsim_screen_i8), which bounds each one's exact MaxSim within
 * [lo, hi]; only those whose hi reaches the k-th largest lo are then scored
 * exactly.  Any other candidate is beaten, strictly, by at least k
 * candidates, so it cannot be in the top k whatever the tie-breaking: the
 * result is the same rows and the same scores, from fewer float MaxSims.
 * auto screens where the kernels have a fast path (AVX2 and up: AMX-INT8,
 * AVX512-VNNI or AVX2 integer products); on screens everywhere (the scalar
 * reference elsewhere: tests); off never.
 */
typedef enum RerankScreenMode
{
	RERANK_SCREEN_OFF,
	RERANK_SCREEN_ON,
	RERANK_SCREEN_AUTO
} RerankScreenMode;

static const struct config_enum_entry rerank_screen_options[] = {
	{"auto", RERANK_SCREEN_AUTO, false},
	{"on", RERANK_SCREEN_ON, false},
	{"off", RERANK_SCREEN_OFF, false},
	{"true", RERANK_SCREEN_ON, true},
	{"false", RERANK_SCREEN_OFF, true},
	{NULL, 0, false}
};

static int	rerank_screen = RERANK_SCREEN_AUTO;

void
MultiVecRerankInit(void)
{
	DefineCustomEnumVariable("pgsieve.maxsim_screen",
							 "Whether maxsim_rerank screens int8 candidates with integer arithmetic first.",
							 "The screen bounds each candidate's MaxSim and skips those that cannot reach the top k; "
							 "results are the same.  auto screens where the CPU has AVX2 or better.",
							 &rerank_screen, RERANK_SCREEN_AUTO, rerank_screen_options,
							 PGC_USERSET, 0, NULL, NULL, NULL);
}

/*
 * Buffers this backend keeps from call to call: the screen memory (about 150
 * bytes per dimension) and the buffer a candidate's token copy is read into.
 * Allocated anew per call, their tens of kilobytes came back from the kernel
 * with a page fault per 4 kB each time.  A call takes them over (the statics
 * are NULL meanwhile) and hands them back at its end, so an error in between
 * cannot leave a dangling pointer: the next call then finds the statics NULL
 * and resets the context, freeing whatever the failed call held.  A buffer
 * above RERANK_KEEP_MAX (a huge value) is not kept.
 */
#define RERANK_KEEP_MAX ((Size) 1024 * 1024)

static MemoryContext rerankKeepCxt = NULL;
static void *keptScreen = NULL;
static Size keptScreenSize = 0;
static char *keptTokBuf = NULL;
static Size keptTokBufSize = 0;

/* what maxsim_rerank reads candidates with, opened once per call */
typedef struct RerankReader
{
	Relation	rel;
	AttrNumber	att;
	Snapshot	snapshot;
	TupleTableSlot *slot;
	Relation	toastrel;
	BlockNumber nblocks;
	Relation	tokIndex;
	BscanTokenMap tokMap;
	char	   *tokBuf;			/* in rerankKeepCxt */
	Size		tokBufSize;
	struct varlena *valbuf;
	Size		valbufSize;
	MemoryContext mcxt;			/* the call's context: buffers */
	MemoryContext rowCtx;		/* per candidate: detoasted copies */
	int			fromIndex;		/* candidates read from the index's token copy */
	int			fromTable;		/* ... from the heap row */
} RerankReader;

/*
 * The candidate's value with the statement's snapshot, or NULL (no such row,
 * invisible, or NULL).  Valid until RerankRelease.
 */
static MultiVec *
RerankFetch(RerankReader *rd, ItemPointer tid)
{
	struct varlena *copy = NULL;
	MemoryContext old;
	Datum		value;
	bool		isnull;
	MultiVec   *mv;

	/* a TID past the table's end names no row (ReadBuffer would fail) */
	if (!ItemPointerIsValid(tid) || ItemPointerGetBlockNumber(tid) >= rd->nblocks ||
		!table_tuple_fetch_row_version(rd->rel, tid, rd->snapshot, rd->slot))
		return NULL;
	if (rd->tokMap)
	{
		old = MemoryContextSwitchTo(rd->mcxt);
		old = MemoryContextSwitchTo(rerankKeepCxt);
		copy = BscanTokenMapRead(rd->tokMap, rd->tokIndex, tid, &rd->tokBuf, &rd->tokBufSize);
		MemoryContextSwitchTo(old);
		if (copy)
		{
			rd->fromIndex++;
			return (MultiVec *) copy;
		}
	}
	value = slot_getattr(rd->slot, rd->att, &isnull);
	if (isnull)
	{
		ExecClearTuple(rd->slot);
		return NULL;
	}
	rd->fromTable++;
	old = MemoryContextSwitchTo(rd->rowCtx);
	mv = RerankDetoast(rd->toastrel, value, rd->mcxt, &rd->valbuf, &rd->valbufSize);
	MemoryContextSwitchTo(old);
	return mv;
}

static void
RerankRelease(RerankReader *rd)
{
	MemoryContextReset(rd->rowCtx);
	ExecClearTuple(rd->slot);
}

/* whether the candidate's row is visible to the statement's snapshot */
static bool
RerankVisible(RerankReader *rd, ItemPointer tid)
{
	bool		visible;

	if (!ItemPointerIsValid(tid) || ItemPointerGetBlockNumber(tid) >= rd->nblocks)
		return false;
	visible = table_tuple_fetch_row_version(rd->rel, tid, rd->snapshot, rd->slot);
	ExecClearTuple(rd->slot);
	return visible;
}

/* candidate order for the bar: larger lo first, then first-stage order */
typedef struct ScreenedLo
{
	double		lo;
	int			i;
} ScreenedLo;

static int
CmpScreenedLo(const void *a, const void *b)
{
	const ScreenedLo *x = a;
	const ScreenedLo *y = b;

	if (x->lo != y->lo)
		return x->lo > y->lo ? -1 : 1;
	return x->i - y->i;
}

/*
 * The screen's pass: lo/hi bounds of every candidate it can screen
 * (screened[i]); false for the others (not int8, unreadable, NaN), which the
 * exact pass decides alone.  Returns the bar: the k-th largest lo among
 * visible candidates (-inf when fewer than k).
 *
 * Tokens found in the index's copy are screened without a visibility check:
 * the copy under a TID is the value of the row version at that TID (the map
 * validates it), and a screen only estimates.  Visibility is then checked
 * in descending lo order until k visible candidates set the bar, so a dead
 * row never sets it, and the exact pass checks every candidate it scores.
 * Tokens read from the table come with their visibility.
 */
static double
RerankScreen(RerankReader *rd, ItemPointer tids, int n, int k, MultiVec *query, void *screen,
			 double *lo, double *hi, bool *screened, int *nscreened)
{
	ScreenedLo *order = palloc(sizeof(ScreenedLo) * n);
	char	   *visible = palloc(n);	/* 1 yes, 0 unknown */
	int			m = 0;
	int			seen = 0;
	double		bar = -INFINITY;
	int			fromIndex = rd->fromIndex;	/* the counters are the exact pass's */
	int			fromTable = rd->fromTable;

	for (int i = 0; i < n; i++)
	{
		MultiVec   *mv = NULL;
		double		est,
					bound;

		CHECK_FOR_INTERRUPTS();
		screened[i] = false;
		visible[i] = 0;
		if (rd->tokMap && ItemPointerIsValid(&tids[i]))
		{
			MemoryContext old = MemoryContextSwitchTo(rerankKeepCxt);

			mv = (MultiVec *) BscanTokenMapRead(rd->tokMap, rd->tokIndex, &tids[i], &rd->tokBuf, &rd->tokBufSize);
			MemoryContextSwitchTo(old);
		}
		if (mv == NULL)
		{
			mv = RerankFetch(rd, &tids[i]);
			if (mv == NULL)
				continue;
			visible[i] = 1;
		}
		if (mv->format == MV_INT8 && mv->dim == query->dim)
		{
			est = pgs_maxsim_screen_i8(screen, MV_I8(mv), MV_SCALES(mv), mv->ntok, &bound);
			if (!isnan(est))
			{
				lo[i] = est - bound;
				hi[i] = est + bound;
				screened[i] = true;
				order[m].lo = lo[i];
				order[m].i = i;
				m++;
			}
		}
		RerankRelease(rd);
	}
	qsort(order, m, sizeof(ScreenedLo), CmpScreenedLo);
	for (int j = 0; j < m; j++)
	{
		int			i = order[j].i;

		CHECK_FOR_INTERRUPTS();
		if (!visible[i] && !RerankVisible(rd, &tids[i]))
		{
			screened[i] = false;	/* invisible: the exact pass skips it too */
			continue;
		}
		if (++seen == k)
		{
			bar = order[j].lo;
			break;
		}
	}
	pfree(order);
	pfree(visible);
	rd->fromIndex = fromIndex;
	rd->fromTable = fromTable;
	*nscreened = m;
	return bar;
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(pgsieve_maxsim_rerank);
Datum
pgsieve_maxsim_rerank(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			relid = PG_GETARG_OID(0);
	Name		col = PG_GETARG_NAME(1);
	MultiVec   *query = PG_GETARG_MULTIVEC_P(4);
	int			k = PG_GETARG_INT32(5);
	bool		cp = !PG_ARGISNULL(6);
	double		alpha = cp ? PG_GETARG_FLOAT8(6) : 0;
	bool		ee = !PG_ARGISNULL(7);
	int			beta = ee ? PG_GETARG_INT32(7) : 0;
	ItemPointer tids;
	float8	   *scores;
	int			n;
	RerankReader rd;
	MaxSimCache cache;
	PgsHit	   *heap;
	int64		nheap = 0;
	int			stall = 0;
	const float *qf;
	void	   *screen;			/* rerankKeepCxt's screen memory, screenSize bytes */
	Size		screenSize;
	bool		screening = false;
	double	   *lo = NULL,
			   *hi = NULL;
	bool	   *screened = NULL;
	double		bar = -INFINITY;
	int			nscreened = 0;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3) ||
		PG_ARGISNULL(4) || PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s: only alpha and beta may be NULL", RR_FN)));
	if (k < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: k must be at least 1, got %d", RR_FN, k)));
	if (cp && !(alpha >= 0 && alpha <= 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: alpha must be between 0 and 1, got %g", RR_FN, alpha)));
	if (ee && beta < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: beta must be at least 1, got %d", RR_FN, beta)));
	n = RerankArrays(PG_GETARG_ARRAYTYPE_P(2), PG_GETARG_ARRAYTYPE_P(3), &tids, &scores);

	PgsInitMaterializedSRF(fcinfo, 0);

	/* CP: the k-th candidate's first-stage score sets the bar */
	if (cp && n > k)
	{
		double		cpbar = (1.0 - alpha) * scores[k - 1];

		/* for negative scores (1 - alpha) x s is above s: keep the k */
		if (scores[k - 1] < 0)
			cpbar = (1.0 + alpha) * scores[k - 1];
		while (n > k && scores[n - 1] < cpbar)
			n--;
	}

	memset(&rd, 0, sizeof(rd));
	rd.rel = relation_open(relid, AccessShareLock);
	if (rd.rel->rd_rel->relkind != RELKIND_RELATION && rd.rel->rd_rel->relkind != RELKIND_MATVIEW)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("%s: \"%s\" is not a table or materialized view", RR_FN,
						RelationGetRelationName(rd.rel))));
	rd.att = RerankColumn(rd.rel, col);
	if (TupleDescAttr(RelationGetDescr(rd.rel), rd.att - 1)->atttypid != get_fn_expr_argtype(fcinfo->flinfo, 4))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s: column \"%s\" is not of type multivec", RR_FN, NameStr(*col))));

	rd.snapshot = GetActiveSnapshot();
	rd.slot = table_slot_create(rd.rel, NULL);
	rd.toastrel = OidIsValid(rd.rel->rd_rel->reltoastrelid) ?
		table_open(rd.rel->rd_rel->reltoastrelid, AccessShareLock) : NULL;
	rd.nblocks = RelationGetNumberOfBlocks(rd.rel);
	rd.tokIndex = n > 0 ? RerankTokenIndex(rd.rel, rd.att) : NULL;
	if (rd.tokIndex)
		rd.tokMap = BscanTokenMapOpen(rd.tokIndex);
	rd.mcxt = CurrentMemoryContext;
	rd.rowCtx = AllocSetContextCreate(CurrentMemoryContext, "maxsim_rerank row", ALLOCSET_DEFAULT_SIZES);
	if (rerankKeepCxt == NULL)
		rerankKeepCxt = AllocSetContextCreate(TopMemoryContext, "maxsim_rerank buffers", ALLOCSET_DEFAULT_SIZES);
	if (keptScreen == NULL && keptTokBuf == NULL)
		MemoryContextReset(rerankKeepCxt);	/* first call, or a call failed holding them */
	rd.tokBuf = keptTokBuf;
	rd.tokBufSize = keptTokBufSize;
	keptTokBuf = NULL;
	keptTokBufSize = 0;
	screen = keptScreen;
	screenSize = keptScreenSize;
	keptScreen = NULL;
	keptScreenSize = 0;
	memset(&cache, 0, sizeof(cache));
	cache.mcxt = CurrentMemoryContext;
	qf = MultiVecFloats(query);	/* once, not per candidate */
	heap = palloc(sizeof(PgsHit) * k);

	/* screen when the exact pass would score more than k candidates in full (no early exit) */
	if (!ee && n > k && (rerank_screen == RERANK_SCREEN_ON ||
						 (rerank_screen == RERANK_SCREEN_AUTO && pgs_maxsim_screen_fast())))
	{
		Size		need = pgs_maxsim_screen_bytes(query->dim);

		if (screenSize < need)
		{
			if (screen)
				pfree(screen);
			screen = MemoryContextAlloc(rerankKeepCxt, need);
			screenSize = need;
		}
		if (pgs_maxsim_screen_prepare(qf, query->ntok, query->dim, screen))
		{
			lo = palloc(sizeof(double) * n);
			hi = palloc(sizeof(double) * n);
			screened = palloc(sizeof(bool) * n);
			bar = RerankScreen(&rd, tids, n, k, query, screen, lo, hi, screened, &nscreened);
			screening = true;
		}
	}

	for (int i = 0; i < n; i++)
	{
		PgsHit		hit;
		MultiVec   *mv;

		CHECK_FOR_INTERRUPTS();
		if (ee && nheap == k && stall >= beta)
			break;
		/* screened out: at least k candidates score above hi[i] */
		if (screened && screened[i] && hi[i] < bar)
			continue;
		hit.tid = tids[i];
		mv = RerankFetch(&rd, &hit.tid);
		if (mv == NULL)
			continue;
		hit.score = MultiVecMaxSimFloats(mv, qf, query->ntok, query->dim, &cache);
		RerankRelease(&rd);
		hit.key = (uint32) i;
		if (PgsTopKPush(heap, &nheap, k, &hit))
			stall = 0;
		else
			stall++;
	}

	qsort(heap, nheap, sizeof(PgsHit), PgsHitCmpBestFirst);
	for (int i = 0; i < nheap; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};
		ItemPointer tp = palloc(sizeof(ItemPointerData));

		*tp = heap[i].tid;
		values[0] = ItemPointerGetDatum(tp);
		values[1] = Float8GetDatum(heap[i].score);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	ExecDropSingleTupleTableSlot(rd.slot);
	if (screening)
		elog(DEBUG1, "%s: screened %d of %d candidates; %d scored exactly for the top %d",
			 RR_FN, nscreened, n, rd.fromIndex + rd.fromTable, k);
	elog(DEBUG1, "%s: %d candidates read from index \"%s\", %d from the table",
		 RR_FN, rd.fromIndex, rd.tokIndex ? RelationGetRelationName(rd.tokIndex) : "(none)", rd.fromTable);
	/* hand the buffers back for the next call */
	if (rd.tokBufSize > RERANK_KEEP_MAX)
	{
		pfree(rd.tokBuf);
		rd.tokBuf = NULL;
		rd.tokBufSize = 0;
	}
	if (screenSize > RERANK_KEEP_MAX)
	{
		pfree(screen);
		screen = NULL;
		screenSize = 0;
	}
	keptTokBuf = rd.tokBuf;
	keptTokBufSize = rd.tokBufSize;
	keptScreen = screen;
	keptScreenSize = screenSize;
	if (rd.tokIndex)
		index_close(rd.tokIndex, AccessShareLock);
	if (rd.toastrel)
		table_close(rd.toastrel, AccessShareLock);
	relation_close(rd.rel, AccessShareLock);
	return (Datum) 0;
}
