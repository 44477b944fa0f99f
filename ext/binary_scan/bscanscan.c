/*
 * bscanscan.c — scanning a binary_scan index.
 *
 * A scan works in batches.  Each batch
 *   1. gathers: computes the Hamming distance from the quantized query to
 *      every code (SIMD, page by page, under a share lock) and keeps the
 *      best R by (distance, heap TID) among those after the previous batch's
 *      last key — a total order, so consecutive batches never overlap or skip
 *      a row even if VACUUM moves entries between pages meanwhile;
 *   2. re-ranks: fetches each candidate's visible heap row with the scan's
 *      snapshot, evaluates the index column (or expression) on it, and
 *      computes the ORDER BY operator's own distance function — exactly what
 *      a sequential scan computes — then sorts by that distance.
 * Rows are returned in exact order within a batch.  The first batch has
 * R = pgsieve.binary_rerank; if the executor asks for more rows (a WHERE
 * clause rejected some), the next batches double R, so a scan never stops
 * at k and eventually returns every row.  A scan without ORDER BY (the
 * planner picks one when sequential scans are disabled) or ordered by the
 * distance to NULL returns every indexed row in code order.
 *
 * Selection keeps at most 2R candidates: when the buffer fills, a histogram
 * of the (small integer) distances gives the R-th smallest distance, which
 * becomes the acceptance bound.  The fused kernel pgs_hamming_filter drops
 * codes beyond the bound while still in SIMD registers, so after the first
 * few pages almost nothing leaves the kernel.  Memory is O(R + dims), whatever the
 * table size.
 */
#include "postgres.h"

#include <math.h>

#include "access/relscan.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "bscan.h"
#include "pgs_kernels.h"

typedef struct BscanCand
{
	uint32		dist;
	ItemPointerData tid;
} BscanCand;

typedef struct BscanResult
{
	double		dist;
	bool		isnull;
	ItemPointerData tid;
} BscanResult;

typedef struct BscanScanOpaqueData
{
	MemoryContext scanCtx;		/* lives as long as the scan */
	MemoryContext queryCtx;		/* reset per rescan (query, buffers) */
	MemoryContext batchCtx;		/* reset per batch */
	MemoryContext tupleCtx;		/* reset per re-ranked row */

	BscanInfo	info;
	bool		started;
	bool		exhausted;
	bool		haveQuery;		/* false for ORDER BY col <op> NULL */
	Datum		query;
	uint8	   *qcode;

	/* where the next batch starts: strictly after this key */
	bool		haveLower;
	uint32		lowerDist;
	ItemPointerData lowerTid;
	int			batchSize;

	/* candidate buffer and its helpers */
	BscanCand  *cands;
	int			ncands;
	int			candCap;
	uint32	   *hist;
	uint32	   *dists;			/* per page: distances of the codes the kernel kept */
	uint32	   *keptIdx;		/* ... and their positions on the page */

	/* the current batch, in return order */
	BscanResult *results;
	int			nresults;
	int			next;

	/* an all-NULL index tuple for index-only scans that need no column */
	IndexTuple	nullItup;

	/* re-rank from the heap */
	IndexInfo  *indexInfo;
	EState	   *estate;
	TupleTableSlot *slot;
	IndexFetchTableData *fetch;
} BscanScanOpaqueData;

typedef BscanScanOpaqueData *BscanScanOpaque;

static int
BscanCandCmp(const void *a, const void *b)
{
	const BscanCand *x = (const BscanCand *) a;
	const BscanCand *y = (const BscanCand *) b;

	if (x->dist != y->dist)
		return x->dist < y->dist ? -1 : 1;
	return ItemPointerCompare((ItemPointer) &x->tid, (ItemPointer) &y->tid);
}

/* exact distances ascending, NULL and NaN last (as ORDER BY float8 sorts), then TID */
static int
BscanResultCmp(const void *a, const void *b)
{
	const BscanResult *x = (const BscanResult *) a;
	const BscanResult *y = (const BscanResult *) b;

	if (x->isnull != y->isnull)
		return x->isnull ? 1 : -1;
	if (!x->isnull)
	{
		bool		xn = isnan(x->dist);
		bool		yn = isnan(y->dist);

		if (xn != yn)
			return xn ? 1 : -1;
		if (!xn && x->dist != y->dist)
			return x->dist < y->dist ? -1 : 1;
	}
	return ItemPointerCompare((ItemPointer) &x->tid, (ItemPointer) &y->tid);
}

IndexScanDesc
bscanbeginscan(Relation index, int nkeys, int norderbys)
{
	IndexScanDesc scan = RelationGetIndexScan(index, nkeys, norderbys);
	BscanScanOpaque so = palloc0(sizeof(BscanScanOpaqueData));

	so->scanCtx = AllocSetContextCreate(CurrentMemoryContext, "binary_scan scan",
										ALLOCSET_DEFAULT_SIZES);
	so->queryCtx = AllocSetContextCreate(so->scanCtx, "binary_scan query",
										 ALLOCSET_DEFAULT_SIZES);
	so->batchCtx = AllocSetContextCreate(so->scanCtx, "binary_scan batch",
										 ALLOCSET_DEFAULT_SIZES);
	so->tupleCtx = AllocSetContextCreate(so->scanCtx, "binary_scan rerank tuple",
										 ALLOCSET_SMALL_SIZES);
	/* the executor reads the distances we report for each row */
	scan->xs_orderbyvals = palloc0(sizeof(Datum) * Max(norderbys, 1));
	scan->xs_orderbynulls = palloc(sizeof(bool) * Max(norderbys, 1));
	scan->xs_orderbynulls[0] = true;
	scan->opaque = so;
	return scan;
}

void
bscanrescan(IndexScanDesc scan, ScanKey keys, int nkeys, ScanKey orderbys, int norderbys)
{
	BscanScanOpaque so = (BscanScanOpaque) scan->opaque;

	if (keys && scan->numberOfKeys > 0)
		memmove(scan->keyData, keys, scan->numberOfKeys * sizeof(ScanKeyData));
	if (orderbys && scan->numberOfOrderBys > 0)
		memmove(scan->orderByData, orderbys, scan->numberOfOrderBys * sizeof(ScanKeyData));

	so->started = false;
	so->exhausted = false;
	so->haveLower = false;
	so->nresults = 0;
	so->next = 0;
	MemoryContextReset(so->batchCtx);
	MemoryContextReset(so->queryCtx);
}

/*
 * Set up on the first gettuple: read the meta page, quantize the query,
 * allocate the selection buffers and the heap-fetch machinery.
 */
static void
BscanStartScan(IndexScanDesc scan)
{
	BscanScanOpaque so = (BscanScanOpaque) scan->opaque;
	MemoryContext old = MemoryContextSwitchTo(so->queryCtx);
	ScanKey		ob = scan->numberOfOrderBys > 0 ? &scan->orderByData[0] : NULL;
	BscanInfo  *info = &so->info;
	int			capacityPerPage;

	BscanReadInfo(scan->indexRelation, info, true);
	so->started = true;
	so->exhausted = (info->dims == 0);	/* nothing was ever indexed */
	/* without ORDER BY (or ordered by distance to NULL) every row is returned */
	so->haveQuery = ob != NULL && !(ob->sk_flags & SK_ISNULL);
	so->batchSize = bscan_rerank;
	if (so->exhausted)
	{
		MemoryContextSwitchTo(old);
		return;
	}

	so->qcode = palloc0(info->codeBytes);
	if (so->haveQuery)
	{
		Datum		value = PointerGetDatum(PG_DETOAST_DATUM(ob->sk_argument));
		float	   *scratch = NULL;
		int			qdims = BscanValueDims(value, info->kind);

		BscanCheckDims(qdims, info->dims);
		if (info->kind != BSCAN_KIND_BIT)
			scratch = palloc(sizeof(float) * info->dims);
		BscanEncode(value, info, so->qcode, scratch);
		so->query = value;
	}

	capacityPerPage = Max(info->capacity, 1);
	so->dists = palloc(sizeof(uint32) * capacityPerPage);
	so->keptIdx = palloc(sizeof(uint32) * capacityPerPage);
	so->hist = palloc(sizeof(uint32) * (info->dims + 1));

	/*
	 * Bit columns are ordered exactly by the codes; others re-rank from the
	 * heap.  The fetch machinery outlives rescans.
	 */
	MemoryContextSwitchTo(so->scanCtx);
	if (info->kind != BSCAN_KIND_BIT && so->haveQuery && so->fetch == NULL)
	{
		so->indexInfo = BuildIndexInfo(scan->indexRelation);
		so->slot = table_slot_create(scan->heapRelation, NULL);
		so->fetch = table_index_fetch_begin(scan->heapRelation);
		if (so->indexInfo->ii_IndexAttrNumbers[0] == 0)
		{
			so->estate = CreateExecutorState();
			GetPerTupleExprContext(so->estate)->ecxt_scantuple = so->slot;
		}
	}
	MemoryContextSwitchTo(old);
}

/* Shrink the candidate buffer to the best R (see the file comment). */
static void
BscanCompact(BscanScanOpaque so, int R, uint32 *boundDist, ItemPointerData *boundTid)
{
	int			dims = so->info.dims;
	uint32		cum = 0;
	uint32		t = 0;
	int			kept = 0;

	memset(so->hist, 0, sizeof(uint32) * (dims + 1));
	for (int i = 0; i < so->ncands; i++)
		so->hist[so->cands[i].dist]++;
	for (t = 0; t <= (uint32) dims; t++)
	{
		cum += so->hist[t];
		if (cum >= (uint32) R)
			break;
	}

	if (cum > (uint32) (R + (so->candCap - R) / 2))
	{
		/* heavy ties at the bound: cut exactly at R by (distance, TID) */
		qsort(so->cands, so->ncands, sizeof(BscanCand), BscanCandCmp);
		so->ncands = R;
		*boundDist = so->cands[R - 1].dist;
		*boundTid = so->cands[R - 1].tid;
		return;
	}

	for (int i = 0; i < so->ncands; i++)
		if (so->cands[i].dist <= t)
			so->cands[kept++] = so->cands[i];
	so->ncands = kept;
	*boundDist = t;
	ItemPointerSet(boundTid, InvalidBlockNumber, MaxOffsetNumber);
}

/*
 * Gather the next R candidates in (Hamming distance, TID) order after the
 * previous batch.  Returns the number gathered (sorted in so->cands).
 */
static int
BscanGather(IndexScanDesc scan, int R)
{
	BscanScanOpaque so = (BscanScanOpaque) scan->opaque;
	Relation	index = scan->indexRelation;
	BscanInfo  *info = &so->info;
	BlockNumber nblocks = RelationGetNumberOfBlocks(index);
	uint32		boundDist = PG_UINT32_MAX;
	ItemPointerData boundTid;
	uint32		lowerDist = so->lowerDist;
	ItemPointerData lowerTid = so->lowerTid;
	bool		haveLower = so->haveLower;

	ItemPointerSet(&boundTid, InvalidBlockNumber, MaxOffsetNumber);
	so->candCap = Max(2 * R, R + 64);
	so->cands = MemoryContextAlloc(so->batchCtx, sizeof(BscanCand) * so->candCap);
	so->ncands = 0;

	for (BlockNumber blkno = 1 + info->thresholdPages; blkno < nblocks; blkno++)
	{
		Buffer		buf;
		Page		page;
		BscanPageOpaque opaque;
		ItemPointerData *tids;
		int			n;
		size_t		nkept;

		CHECK_FOR_INTERRUPTS();
		buf = ReadBuffer(index, blkno);
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		opaque = BscanPageGetOpaque(page);
		if (PageIsNew(page) || opaque->kind != BSCAN_PAGE_DATA || opaque->count == 0)
		{
			UnlockReleaseBuffer(buf);
			continue;
		}
		n = opaque->count;
		tids = BscanPageTids(page, info->capacity, info->codeBytes);
		nkept = pgs_hamming_filter(so->qcode, BscanPageCodes(page), info->codeBytes,
								   info->codeBytes, n, boundDist, so->keptIdx, so->dists);

		/* the bound may have tightened within the page: check again */
		for (size_t j = 0; j < nkept; j++)
		{
			uint32		d = so->dists[j];
			ItemPointer tid = &tids[so->keptIdx[j]];

			if (d > boundDist)
				continue;
			if (haveLower && d <= lowerDist &&
				(d < lowerDist || ItemPointerCompare(tid, &lowerTid) <= 0))
				continue;
			if (d == boundDist && ItemPointerCompare(tid, &boundTid) > 0)
				continue;
			so->cands[so->ncands].dist = d;
			so->cands[so->ncands].tid = *tid;
			if (++so->ncands == so->candCap)
				BscanCompact(so, R, &boundDist, &boundTid);
		}
		UnlockReleaseBuffer(buf);
	}

	qsort(so->cands, so->ncands, sizeof(BscanCand), BscanCandCmp);
	if (so->ncands > R)
		so->ncands = R;
	if (so->ncands > 0)
	{
		so->haveLower = true;
		so->lowerDist = so->cands[so->ncands - 1].dist;
		so->lowerTid = so->cands[so->ncands - 1].tid;
	}
	return so->ncands;
}

/*
 * The exact distance for one candidate, from its visible heap row.  Returns
 * false if no row version is visible to the scan's snapshot.
 */
static bool
BscanExactDistance(IndexScanDesc scan, ItemPointer tid, double *dist, bool *isnull)
{
	BscanScanOpaque so = (BscanScanOpaque) scan->opaque;
	ScanKey		ob = &scan->orderByData[0];
	ItemPointerData fetchTid = *tid;
	bool		call_again = false;
	bool		all_dead = false;
	Datum		value;
	bool		valueNull;
	bool		found;

	found = table_index_fetch_tuple(so->fetch, &fetchTid, scan->xs_snapshot, so->slot,
									&call_again, &all_dead);
	if (!found)
		return false;

	if (so->estate == NULL)
		value = slot_getattr(so->slot, so->indexInfo->ii_IndexAttrNumbers[0], &valueNull);
	else
	{
		Datum		values[INDEX_MAX_KEYS];
		bool		nulls[INDEX_MAX_KEYS];

		FormIndexDatum(so->indexInfo, so->slot, so->estate, values, nulls);
		value = values[0];
		valueNull = nulls[0];
	}

	if (valueNull)
		*isnull = true;
	else
	{
		*isnull = false;
		*dist = DatumGetFloat8(FunctionCall2Coll(&ob->sk_func, ob->sk_collation, value, so->query));
	}
	if (so->estate)
		ResetPerTupleExprContext(so->estate);
	ExecClearTuple(so->slot);
	return true;
}

/* Produce the next batch of rows in so->results; false when none is left. */
static bool
BscanNextBatch(IndexScanDesc scan)
{
	BscanScanOpaque so = (BscanScanOpaque) scan->opaque;
	MemoryContext old;
	int			n;

	MemoryContextReset(so->batchCtx);
	so->nresults = 0;
	so->next = 0;
	if (so->exhausted)
		return false;

	n = BscanGather(scan, so->batchSize);
	if (n < so->batchSize)
		so->exhausted = true;
	/* later batches only happen under filters: grow them geometrically */
	so->batchSize = (int) Min((int64) so->batchSize * 2, (int64) BSCAN_MAX_RERANK);
	if (n == 0)
		return false;

	so->results = MemoryContextAlloc(so->batchCtx, sizeof(BscanResult) * n);
	if (so->info.kind == BSCAN_KIND_BIT || !so->haveQuery)
	{
		/* bit columns (exact Hamming) or a NULL query: codes give the order */
		for (int i = 0; i < n; i++)
		{
			so->results[i].dist = so->cands[i].dist;
			so->results[i].isnull = !so->haveQuery;
			so->results[i].tid = so->cands[i].tid;
		}
		so->nresults = n;
		return true;
	}

	for (int i = 0; i < n; i++)
	{
		BscanResult *r = &so->results[so->nresults];

		CHECK_FOR_INTERRUPTS();
		old = MemoryContextSwitchTo(so->tupleCtx);
		if (BscanExactDistance(scan, &so->cands[i].tid, &r->dist, &r->isnull))
		{
			r->tid = so->cands[i].tid;
			so->nresults++;
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(so->tupleCtx);
	}
	qsort(so->results, so->nresults, sizeof(BscanResult), BscanResultCmp);
	return true;
}

bool
bscangettuple(IndexScanDesc scan, ScanDirection dir)
{
	BscanScanOpaque so = (BscanScanOpaque) scan->opaque;

	if (!IsMVCCSnapshot(scan->xs_snapshot))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("binary_scan index scans need an MVCC snapshot")));

	if (!so->started)
		BscanStartScan(scan);

	while (so->next >= so->nresults)
	{
		if (!BscanNextBatch(scan))
			return false;
	}

	{
		BscanResult *r = &so->results[so->next++];

		scan->xs_heaptid = r->tid;
		scan->xs_recheck = false;
		scan->xs_recheckorderby = false;
		scan->xs_orderbyvals[0] = Float8GetDatum(r->dist);
		scan->xs_orderbynulls[0] = r->isnull;
	}

	/*
	 * The planner may choose an index-only scan when a query needs no column
	 * at all (SELECT count(*) with sequential scans disabled).  We cannot
	 * return the indexed value, only a tuple that says nothing.
	 */
	if (scan->xs_want_itup)
	{
		if (so->nullItup == NULL)
		{
			Datum		values[1] = {(Datum) 0};
			bool		isnull[1] = {true};
			MemoryContext old = MemoryContextSwitchTo(so->scanCtx);

			so->nullItup = index_form_tuple(RelationGetDescr(scan->indexRelation), values, isnull);
			MemoryContextSwitchTo(old);
		}
		scan->xs_itup = so->nullItup;
		scan->xs_itupdesc = RelationGetDescr(scan->indexRelation);
	}
	return true;
}

void
bscanendscan(IndexScanDesc scan)
{
	BscanScanOpaque so = (BscanScanOpaque) scan->opaque;

	if (so->fetch)
		table_index_fetch_end(so->fetch);
	if (so->slot)
		ExecDropSingleTupleTableSlot(so->slot);
	if (so->estate)
		FreeExecutorState(so->estate);
	MemoryContextDelete(so->scanCtx);
	pfree(so);
	scan->opaque = NULL;
}
