/*
 * bscanscan.c — scanning a binary_scan index.
 *
 * A scan has three stages.
 *
 *   1. Gather: the Hamming distance from the quantized query to every code,
 *      computed page by page under a share lock by the fused SIMD kernel
 *      pgs_hamming_filter, keeping the best G by (distance, heap TID) among
 *      the keys after the previous gather's last one.  (distance, TID) is a
 *      total order, so consecutive gathers never overlap or skip a row, even
 *      if VACUUM moves entries between pages meanwhile.
 *   2. Narrow: each gathered code is scored asymmetrically — the float query
 *      against the code read as per-dimension mean +- standard deviation
 *      (pgs_bits_lut_score, one table lookup per code byte) — and the
 *      candidates are ordered by that estimate, which ranks far better than
 *      Hamming distance alone.
 *   3. Re-rank: the next R candidates in that order have their visible heap
 *      row fetched with the scan's snapshot, the index column (or
 *      expression) evaluated on it, and the ORDER BY operator's own distance
 *      function applied — exactly what a sequential scan computes — then are
 *      returned sorted by it.  A multivec_fde index with store_tokens keeps
 *      the indexed value itself (bscantokens.c): the operator runs on that
 *      copy and the heap is not read; the executor's visibility check of
 *      each returned TID drops dead rows.
 *
 * R = pgsieve.binary_rerank and G = R x pgsieve.binary_oversample.  If the
 * executor wants more rows (a WHERE clause rejected some), the next chunks of
 * the gathered candidates are re-ranked, then the next gathers, each twice as
 * large as the one before, so a scan never stops at k and eventually returns
 * every row.  Rows come in exact order within a chunk.
 *
 * On bit columns the code is the value: Hamming order is exact, stages 2 and
 * 3 are skipped.  A scan without ORDER BY (the planner picks one when
 * sequential scans are disabled) or ordered by the distance to NULL returns
 * every indexed row in code order.  Rows whose value is NULL come last.
 *
 * Selection keeps at most 2G candidates: when the buffer fills, a histogram
 * of the (small integer) distances gives the G-th smallest distance, which
 * becomes the acceptance bound handed to the kernel, so after the first few
 * pages almost nothing leaves it.  Memory is O(G + dims), whatever the table
 * size.
 */
#include "postgres.h"

#include <math.h>

#include "access/relscan.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "bscan.h"
#include "pgs_kernels.h"
#include "pgsieve_pages.h"

typedef struct BscanCand
{
	uint32		dist;			/* Hamming distance */
	float		est;			/* asymmetric estimate, lower is closer */
	ItemPointerData tid;
	BscanTokPtr tok;			/* the stored value (store_tokens) */
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
	MemoryContext queryCtx;		/* reset per rescan: query, tables */
	MemoryContext gatherCtx;	/* reset per gather: candidates */
	MemoryContext chunkCtx;		/* reset per re-ranked chunk: results */
	MemoryContext tupleCtx;		/* reset per re-ranked row */

	BscanInfo	info;
	bool		started;
	bool		nullsDone;		/* the rows whose value is NULL were returned */
	bool		haveQuery;		/* false without ORDER BY or for a NULL query */
	bool		rerankHeap;		/* re-rank exactly (not for bit columns) */
	bool		rerankTokens;	/* ... from the index's copy of the values, not the heap */
	BlockNumber tokenBlocks;	/* the index's size as last seen (BscanTokenRead grows it): bounds token pointers */
	char	   *tokenBuf;		/* one stored value, reused */
	Size		tokenBufSize;
	bool		useEstimate;	/* narrow by asymmetric scores */
	Datum		query;
	uint8	   *qcode;
	float	   *lut;			/* asymmetric score table */

	/* gathers: each starts strictly after the previous one's last key */
	int			gatherSize;
	int			maxEntries;		/* upper bound on entries in the index */
	bool		gathersDone;
	bool		haveLower;
	uint32		lowerDist;
	ItemPointerData lowerTid;

	/* the current gather, in narrowing order, consumed in chunks */
	BscanCand  *cands;
	int			ncands;
	int			candCap;
	int			candPos;
	int			chunkSize;
	uint32	   *hist;
	uint32	   *dists;			/* per page: distances of the codes the kernel kept */
	uint32	   *keptIdx;		/* ... and their positions on the page */

	/* the current chunk, in return order */
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

/* (block, offset) order of heap TIDs, inline for the sorts below */
static inline int
BscanTidCmp(const ItemPointerData *a, const ItemPointerData *b)
{
	BlockNumber ba = ItemPointerGetBlockNumberNoCheck(a);
	BlockNumber bb = ItemPointerGetBlockNumberNoCheck(b);
	OffsetNumber oa = ItemPointerGetOffsetNumberNoCheck(a);
	OffsetNumber ob = ItemPointerGetOffsetNumberNoCheck(b);

	if (ba != bb)
		return ba < bb ? -1 : 1;
	return (oa > ob) - (oa < ob);
}

/* the gather key: (Hamming distance, TID) */
static inline int
BscanCandKeyCmp(const BscanCand *a, const BscanCand *b)
{
	if (a->dist != b->dist)
		return a->dist < b->dist ? -1 : 1;
	return BscanTidCmp(&a->tid, &b->tid);
}

/* the narrowing order: asymmetric estimate, then the gather key */
static inline int
BscanCandEstCmp(const BscanCand *a, const BscanCand *b)
{
	if (a->est != b->est)
		return a->est < b->est ? -1 : 1;
	return BscanCandKeyCmp(a, b);
}

#define ST_SORT bscan_sort_key
#define ST_ELEMENT_TYPE BscanCand
#define ST_COMPARE(a, b) BscanCandKeyCmp(a, b)
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

#define ST_SORT bscan_sort_est
#define ST_ELEMENT_TYPE BscanCand
#define ST_COMPARE(a, b) BscanCandEstCmp(a, b)
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

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
	so->gatherCtx = AllocSetContextCreate(so->scanCtx, "binary_scan gather",
										  ALLOCSET_DEFAULT_SIZES);
	so->chunkCtx = AllocSetContextCreate(so->scanCtx, "binary_scan chunk",
										 ALLOCSET_DEFAULT_SIZES);
	so->tupleCtx = AllocSetContextCreate(so->scanCtx, "binary_scan rerank tuple",
										 ALLOCSET_SMALL_SIZES);

	PgsInitOrderByScan(scan, norderbys);
	scan->opaque = so;
	return scan;
}

void
bscanrescan(IndexScanDesc scan, ScanKey keys, int nkeys, ScanKey orderbys, int norderbys)
{
	BscanScanOpaque so = (BscanScanOpaque) scan->opaque;

	PgsRescanKeys(scan, keys, orderbys);

	so->started = false;
	so->nullsDone = false;
	so->gathersDone = false;
	so->haveLower = false;
	so->ncands = 0;
	so->candPos = 0;
	so->nresults = 0;
	so->next = 0;
	MemoryContextReset(so->tupleCtx);
	MemoryContextReset(so->chunkCtx);
	MemoryContextReset(so->gatherCtx);
	MemoryContextReset(so->queryCtx);
}

/*
 * The asymmetric score table for the query floats q (normalized for cosine):
 * each code is read as x_i = t_i + s_i * (2 b_i - 1) (t the threshold, s the
 * scale; 0 and 1 without learned statistics), and the estimate keeps only
 * the code-dependent part, with weights
 *   -q_i s_i           for inner product and cosine (minus the dot product),
 *   (t_i - q_i) s_i    for L2 (half the squared distance, up to a constant).
 */
static float *
BscanBuildLut(const BscanInfo *info, const float *q)
{
	int			dims = info->p.dims;
	float	   *w = palloc(sizeof(float) * dims);
	float	   *lut = palloc(sizeof(float) * 256 * (Size) info->p.codeBytes);

	for (int i = 0; i < dims; i++)
	{
		float		t = info->thresholds ? info->thresholds[i] : 0.0f;
		float		s = info->scales ? info->scales[i] : 1.0f;

		w[i] = info->p.metric == BSCAN_L2_STRATEGY ? (t - q[i]) * s : -q[i] * s;
	}
	pgs_bits_lut_build(w, dims, lut);
	pfree(w);
	return lut;
}

/*
 * Set up on the first gettuple: read the meta page, quantize the query, build
 * the score table, and create the heap-fetch machinery (once per scan).
 */
static void
BscanStartScan(IndexScanDesc scan)
{
	BscanScanOpaque so = (BscanScanOpaque) scan->opaque;
	MemoryContext old = MemoryContextSwitchTo(so->queryCtx);
	ScanKey		ob = scan->numberOfOrderBys > 0 ? &scan->orderByData[0] : NULL;
	BscanInfo  *info = &so->info;
	BlockNumber dataPages;

	BscanReadInfo(scan->indexRelation, info);
	BscanCachedStats(scan->indexRelation, info);
	if (info->thresholds)
	{
		/* a relcache rebuild during the scan (heap fetches may see one) frees rd_amcache */
		float	   *stats = palloc(sizeof(float) * 2 * info->p.dims);

		memcpy(stats, info->thresholds, sizeof(float) * 2 * info->p.dims);
		info->thresholds = stats;
		info->scales = stats + info->p.dims;
	}
	so->started = true;
	pgstat_count_index_scan(scan->indexRelation);	/* pg_stat_user_indexes.idx_scan */
	so->gathersDone = (info->p.dims == 0);	/* nothing was ever indexed */
	so->haveQuery = ob != NULL && !(ob->sk_flags & SK_ISNULL);
	so->rerankHeap = so->haveQuery && info->p.kind != BSCAN_KIND_BIT;
	so->rerankTokens = so->rerankHeap && info->p.storeTokens;
	so->useEstimate = so->rerankHeap && BscanOversample(info->p.kind) > 1;
	so->chunkSize = BscanRerank(info->p.kind);
	if (so->gathersDone)
	{
		MemoryContextSwitchTo(old);
		return;
	}

	/* no gather needs more room than the index has entries */
	so->tokenBlocks = RelationGetNumberOfBlocks(scan->indexRelation);
	dataPages = so->tokenBlocks - 1 - info->p.thresholdPages;
	so->maxEntries = (int) Min((int64) dataPages * info->p.capacity + 1, (int64) PG_INT32_MAX / 4);
	so->gatherSize = (int) Min((int64) BscanRerank(info->p.kind) *
							   (so->useEstimate ? BscanOversample(info->p.kind) : 1),
							   (int64) so->maxEntries);

	so->qcode = palloc0(info->p.codeBytes);
	if (so->haveQuery)
	{
		Datum		value = PointerGetDatum(PG_DETOAST_DATUM(ob->sk_argument));
		int			qdims = BscanValueDims(value, &info->p);

		BscanCheckDims(qdims, info->p.dims);
		if (info->p.kind == BSCAN_KIND_BIT)
			BscanEncode(value, info, so->qcode, NULL);
		else
		{
			float	   *q = palloc(sizeof(float) * info->p.dims);

			BscanValueToFloats(value, &info->p, true, q);
			pgs_quantize_f32(q, info->thresholds, info->p.dims, so->qcode);
			if (so->useEstimate)
				so->lut = BscanBuildLut(info, q);
		}
		so->query = value;
	}

	so->dists = palloc(sizeof(uint32) * Max(info->p.capacity, 1));
	so->keptIdx = palloc(sizeof(uint32) * Max(info->p.capacity, 1));
	so->hist = palloc(sizeof(uint32) * (info->p.dims + 1));

	MemoryContextSwitchTo(so->scanCtx);
	if (so->rerankHeap && !so->rerankTokens && so->fetch == NULL)
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

/* Shrink the candidate buffer to the best G (see the file comment). */
static void
BscanCompact(BscanScanOpaque so, int G, uint32 *boundDist, ItemPointerData *boundTid)
{
	int			dims = so->info.p.dims;
	uint32		cum = 0;
	uint32		t = 0;
	int			kept = 0;

	memset(so->hist, 0, sizeof(uint32) * (dims + 1));
	for (int i = 0; i < so->ncands; i++)
		so->hist[so->cands[i].dist]++;
	for (t = 0; t <= (uint32) dims; t++)
	{
		cum += so->hist[t];
		if (cum >= (uint32) G)
			break;
	}

	if (cum > (uint32) (G + (so->candCap - G) / 2))
	{
		/* heavy ties at the bound: cut exactly at G by (distance, TID) */
		bscan_sort_key(so->cands, so->ncands);
		so->ncands = G;
		*boundDist = so->cands[G - 1].dist;
		*boundTid = so->cands[G - 1].tid;
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
 * Keep exactly the first G candidates in (distance, TID) order, with the
 * largest key last (the next gather starts after it).  Only the candidates
 * tied at the cut distance need sorting; without narrowing (bit columns, no
 * query) the rows are returned in key order, so everything is sorted.
 */
static void
BscanCutGather(BscanScanOpaque so, int G)
{
	uint32		t;
	uint32		below = 0;
	int			kept = 0;
	int			nties;
	BscanCand  *ties;

	if (!so->useEstimate || so->ncands <= G)
	{
		bscan_sort_key(so->cands, so->ncands);
		so->ncands = Min(so->ncands, G);
		return;
	}

	memset(so->hist, 0, sizeof(uint32) * (so->info.p.dims + 1));
	for (int i = 0; i < so->ncands; i++)
		so->hist[so->cands[i].dist]++;
	for (t = 0; below + so->hist[t] < (uint32) G; t++)
		below += so->hist[t];

	/* everything closer than t, then the ties at t in TID order */
	ties = MemoryContextAlloc(so->gatherCtx, sizeof(BscanCand) * so->hist[t]);
	nties = 0;
	for (int i = 0; i < so->ncands; i++)
	{
		if (so->cands[i].dist < t)
			so->cands[kept++] = so->cands[i];
		else if (so->cands[i].dist == t)
			ties[nties++] = so->cands[i];
	}
	bscan_sort_key(ties, nties);
	memcpy(so->cands + kept, ties, sizeof(BscanCand) * (G - kept));
	so->ncands = G;
	pfree(ties);
}

/*
 * Stage 1 (and the scores of stage 2): gather the next G candidates in
 * (Hamming distance, TID) order after the previous gather, leaving them in
 * so->cands in the order they are to be re-ranked.  Returns how many.
 */
static int
BscanGather(IndexScanDesc scan, int G)
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

	MemoryContextReset(so->gatherCtx);
	ItemPointerSet(&boundTid, InvalidBlockNumber, MaxOffsetNumber);
	so->candCap = (int) Min((int64) 2 * G + 64, (int64) so->maxEntries + 64);
	so->cands = MemoryContextAlloc(so->gatherCtx, sizeof(BscanCand) * so->candCap);
	so->ncands = 0;
	so->candPos = 0;

	for (BlockNumber blkno = BscanFirstListed(&info->p, BSCAN_PAGE_DATA), next, steps = 0;
		 BlockNumberIsValid(blkno) && blkno < nblocks; blkno = next)
	{
		Buffer		buf;
		Page		page;
		BscanPageOpaque opaque;
		BscanTid   *tids;
		BscanTokPtr *toks;
		uint8	   *codes;
		size_t		nkept;

		CHECK_FOR_INTERRUPTS();
		buf = ReadBuffer(index, blkno);
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		opaque = BscanPageGetOpaque(page);
		next = BscanNextListed(index, &info->p, BSCAN_PAGE_DATA, blkno, page, nblocks, &steps);
		if (PageIsNew(page) || opaque->kind != BSCAN_PAGE_DATA || opaque->count == 0)
		{
			UnlockReleaseBuffer(buf);
			continue;
		}
		tids = BscanPageTids(page, info->p.capacity, info->p.codeBytes);
		toks = info->p.storeTokens ? BscanPageTokPtrs(page, info->p.capacity, info->p.codeBytes) : NULL;
		codes = BscanPageCodes(page);
		nkept = pgs_hamming_filter(so->qcode, codes, info->p.codeBytes, info->p.codeBytes,
								   opaque->count, boundDist, so->keptIdx, so->dists);

		/* the bound may have tightened within the page: check again */
		for (size_t j = 0; j < nkept; j++)
		{
			uint32		d = so->dists[j];
			ItemPointerData tidData = BscanTidGet(&tids[so->keptIdx[j]]);
			ItemPointer tid = &tidData;
			BscanCand  *c;

			if (d > boundDist)
				continue;
			if (haveLower && d <= lowerDist &&
				(d < lowerDist || BscanTidCmp(tid, &lowerTid) <= 0))
				continue;
			if (d == boundDist && BscanTidCmp(tid, &boundTid) > 0)
				continue;
			c = &so->cands[so->ncands];
			c->dist = d;
			c->tid = *tid;
			if (toks)
				c->tok = toks[so->keptIdx[j]];
			c->est = so->useEstimate ?
				pgs_bits_lut_score(so->lut, codes + (Size) so->keptIdx[j] * info->p.codeBytes,
								   info->p.codeBytes) : 0.0f;
			if (++so->ncands == so->candCap)
				BscanCompact(so, G, &boundDist, &boundTid);
		}
		UnlockReleaseBuffer(buf);
	}

	BscanCutGather(so, G);
	if (so->ncands > 0)
	{
		so->haveLower = true;
		so->lowerDist = so->cands[so->ncands - 1].dist;
		so->lowerTid = so->cands[so->ncands - 1].tid;
	}
	if (so->useEstimate)
		bscan_sort_est(so->cands, so->ncands);
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

	if (!table_index_fetch_tuple(so->fetch, &fetchTid, scan->xs_snapshot, so->slot,
								 &call_again, &all_dead))
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

	*isnull = valueNull;
	if (!valueNull)
		*dist = DatumGetFloat8(FunctionCall2Coll(&ob->sk_func, ob->sk_collation, value, so->query));
	if (so->estate)
		ResetPerTupleExprContext(so->estate);
	ExecClearTuple(so->slot);
	return true;
}

/*
 * The exact distance for one candidate from the index's copy of its value
 * (store_tokens): the ORDER BY operator's function on the same bytes the
 * heap row holds.  Visibility is left to the executor.
 */
static void
BscanTokenDistance(IndexScanDesc scan, const BscanCand *c, double *dist)
{
	BscanScanOpaque so = (BscanScanOpaque) scan->opaque;
	ScanKey		ob = &scan->orderByData[0];
	MemoryContext old = MemoryContextSwitchTo(so->scanCtx);
	struct varlena *v = BscanTokenRead(scan->indexRelation, c->tok, &so->tokenBlocks,
									   &so->tokenBuf, &so->tokenBufSize);

	MemoryContextSwitchTo(old);
	*dist = DatumGetFloat8(FunctionCall2Coll(&ob->sk_func, ob->sk_collation, PointerGetDatum(v), so->query));
}

/* Re-rank candidates [from, to) of the gather into so->results. */
static void
BscanRerankChunk(IndexScanDesc scan, int from, int to)
{
	BscanScanOpaque so = (BscanScanOpaque) scan->opaque;

	so->results = MemoryContextAlloc(so->chunkCtx, sizeof(BscanResult) * (to - from));
	for (int i = from; i < to; i++)
	{
		BscanResult *r = &so->results[so->nresults];
		MemoryContext old;
		bool		visible;

		if (!so->rerankHeap)
		{
			/* bit columns (exact Hamming) or no query: the codes give the order */
			r->dist = so->cands[i].dist;
			r->isnull = !so->haveQuery;
			r->tid = so->cands[i].tid;
			so->nresults++;
			continue;
		}

		CHECK_FOR_INTERRUPTS();
		old = MemoryContextSwitchTo(so->tupleCtx);
		if (so->rerankTokens)
		{
			BscanTokenDistance(scan, &so->cands[i], &r->dist);
			r->isnull = false;
			visible = true;
		}
		else
			visible = BscanExactDistance(scan, &so->cands[i].tid, &r->dist, &r->isnull);
		MemoryContextSwitchTo(old);
		MemoryContextReset(so->tupleCtx);
		if (visible)
		{
			r->tid = so->cands[i].tid;
			so->nresults++;
		}
	}
	if (so->rerankHeap)
		qsort(so->results, so->nresults, sizeof(BscanResult), BscanResultCmp);
}

/*
 * The last chunk: the rows whose value is NULL, which sort after every
 * distance (ORDER BY ... ASC puts NULLs last).
 */
static void
BscanNullChunk(IndexScanDesc scan)
{
	BscanScanOpaque so = (BscanScanOpaque) scan->opaque;
	Relation	index = scan->indexRelation;
	BlockNumber nblocks = RelationGetNumberOfBlocks(index);
	int			cap = 64;

	so->results = MemoryContextAlloc(so->chunkCtx, sizeof(BscanResult) * cap);
	for (BlockNumber blkno = BscanFirstListed(&so->info.p, BSCAN_PAGE_NULLS), next, steps = 0;
		 BlockNumberIsValid(blkno) && blkno < nblocks; blkno = next)
	{
		Buffer		buf;
		Page		page;

		CHECK_FOR_INTERRUPTS();
		buf = ReadBuffer(index, blkno);
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		next = BscanNextListed(index, &so->info.p, BSCAN_PAGE_NULLS, blkno, page, nblocks, &steps);
		if (!PageIsNew(page) && BscanPageGetOpaque(page)->kind == BSCAN_PAGE_NULLS)
		{
			int			n = BscanPageGetOpaque(page)->count;

			if (so->nresults + n > cap)
			{
				cap = Max(cap * 2, so->nresults + n);
				so->results = repalloc_huge(so->results, sizeof(BscanResult) * cap);
			}
			for (int i = 0; i < n; i++)
			{
				BscanResult *r = &so->results[so->nresults++];

				r->dist = 0;
				r->isnull = true;
				r->tid = BscanPageNullTids(page)[i];
			}
		}
		UnlockReleaseBuffer(buf);
	}
	so->nullsDone = true;
}

/* Produce the next chunk of rows in so->results; false when none is left. */
static bool
BscanNextChunk(IndexScanDesc scan)
{
	BscanScanOpaque so = (BscanScanOpaque) scan->opaque;

	MemoryContextReset(so->chunkCtx);
	so->nresults = 0;
	so->next = 0;

	while (so->nresults == 0)
	{
		int			to;

		if (so->candPos >= so->ncands)
		{
			int			n;

			if (so->gathersDone)
			{
				if (so->nullsDone)
					return false;
				BscanNullChunk(scan);
				if (so->nresults > 0)
					return true;
				continue;
			}
			n = BscanGather(scan, so->gatherSize);
			if (n < so->gatherSize)
				so->gathersDone = true;
			/* later gathers happen only under filters: grow them geometrically */
			so->gatherSize = (int) Min((int64) so->gatherSize * 2, (int64) so->maxEntries);
			if (n == 0)
				continue;
		}

		/* rows without an exact distance to compute come all at once */
		to = so->rerankHeap ? (int) Min((int64) so->candPos + so->chunkSize, (int64) so->ncands)
			: so->ncands;
		BscanRerankChunk(scan, so->candPos, to);
		so->candPos = to;
		if (so->rerankHeap)
			so->chunkSize = (int) Min((int64) so->chunkSize * 2, (int64) BSCAN_MAX_RERANK);
	}
	return true;
}

bool
bscangettuple(IndexScanDesc scan, ScanDirection dir)
{
	BscanScanOpaque so = (BscanScanOpaque) scan->opaque;
	BscanResult *r;

	if (!IsMVCCSnapshot(scan->xs_snapshot))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("binary_scan index scans need an MVCC snapshot")));

	if (!so->started)
		BscanStartScan(scan);

	while (so->next >= so->nresults)
	{
		if (!BscanNextChunk(scan))
			return false;
	}

	r = &so->results[so->next++];
	scan->xs_heaptid = r->tid;
	scan->xs_recheck = false;
	scan->xs_recheckorderby = false;
	scan->xs_orderbyvals[0] = Float8GetDatum(r->dist);
	scan->xs_orderbynulls[0] = r->isnull;

	/* we cannot return the indexed value, only a tuple that says nothing */
	if (scan->xs_want_itup)
		PgsSetNullIndexTuple(scan, &so->nullItup, so->scanCtx);
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
