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
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "binary_scan/bscan.h"
#include "multivec.h"
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
	Relation	rel;
	Relation	toastrel;
	struct varlena *valbuf = NULL;
	Size		valbufSize = 0;
	AttrNumber	att;
	TupleTableSlot *slot;
	Snapshot	snapshot = GetActiveSnapshot();
	MaxSimCache cache;
	PgsHit	   *heap;
	int64		nheap = 0;
	int			stall = 0;
	MemoryContext rowCtx;
	BlockNumber nblocks;
	Relation	tokIndex;
	BscanTokenMap tokMap = NULL;
	char	   *tokBuf = NULL;
	Size		tokBufSize = 0;
	const float *qf;
	int			fromIndex = 0;	/* candidates scored from the index's token copy */
	int			fromTable = 0;	/* ... from the heap row */

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
		double		bar = (1.0 - alpha) * scores[k - 1];

		/* for negative scores (1 - alpha) x s is above s: keep the k */
		if (scores[k - 1] < 0)
			bar = (1.0 + alpha) * scores[k - 1];
		while (n > k && scores[n - 1] < bar)
			n--;
	}

	rel = relation_open(relid, AccessShareLock);
	if (rel->rd_rel->relkind != RELKIND_RELATION && rel->rd_rel->relkind != RELKIND_MATVIEW)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("%s: \"%s\" is not a table or materialized view", RR_FN,
						RelationGetRelationName(rel))));
	att = RerankColumn(rel, col);
	if (TupleDescAttr(RelationGetDescr(rel), att - 1)->atttypid != get_fn_expr_argtype(fcinfo->flinfo, 4))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s: column \"%s\" is not of type multivec", RR_FN, NameStr(*col))));

	slot = table_slot_create(rel, NULL);
	toastrel = OidIsValid(rel->rd_rel->reltoastrelid) ?
		table_open(rel->rd_rel->reltoastrelid, AccessShareLock) : NULL;
	nblocks = RelationGetNumberOfBlocks(rel);
	tokIndex = n > 0 ? RerankTokenIndex(rel, att) : NULL;
	if (tokIndex)
		tokMap = BscanTokenMapOpen(tokIndex);
	memset(&cache, 0, sizeof(cache));
	cache.mcxt = CurrentMemoryContext;
	qf = MultiVecFloats(query);	/* once, not per candidate */
	heap = palloc(sizeof(PgsHit) * k);
	rowCtx = AllocSetContextCreate(CurrentMemoryContext, "maxsim_rerank row", ALLOCSET_DEFAULT_SIZES);

	for (int i = 0; i < n; i++)
	{
		PgsHit		hit;
		bool		isnull;
		Datum		value;
		MemoryContext old;
		struct varlena *copy = NULL;

		CHECK_FOR_INTERRUPTS();
		if (ee && nheap == k && stall >= beta)
			break;
		hit.tid = tids[i];
		/* a TID past the table's end names no row (ReadBuffer would fail) */
		if (!ItemPointerIsValid(&hit.tid) || ItemPointerGetBlockNumber(&hit.tid) >= nblocks ||
			!table_tuple_fetch_row_version(rel, &hit.tid, snapshot, slot))
			continue;
		if (tokMap)
		{
			old = MemoryContextSwitchTo(cache.mcxt);
			copy = BscanTokenMapRead(tokMap, tokIndex, &hit.tid, &tokBuf, &tokBufSize);
			MemoryContextSwitchTo(old);
		}
		if (copy == NULL)
		{
			value = slot_getattr(slot, att, &isnull);
			if (isnull)
			{
				ExecClearTuple(slot);
				continue;
			}
		}
		if (copy)
			fromIndex++;
		else
			fromTable++;
		old = MemoryContextSwitchTo(rowCtx);
		hit.score = MultiVecMaxSimFloats(copy ? (MultiVec *) copy :
										 RerankDetoast(toastrel, value, cache.mcxt, &valbuf, &valbufSize),
										 qf, query->ntok, query->dim, &cache);
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowCtx);
		ExecClearTuple(slot);
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

	ExecDropSingleTupleTableSlot(slot);
	elog(DEBUG1, "%s: %d candidates read from index \"%s\", %d from the table",
		 RR_FN, fromIndex, tokIndex ? RelationGetRelationName(tokIndex) : "(none)", fromTable);
	if (tokIndex)
		index_close(tokIndex, AccessShareLock);
	if (toastrel)
		table_close(toastrel, AccessShareLock);
	relation_close(rel, AccessShareLock);
	return (Datum) 0;
}
