/*
 * bscanbuild.c — building a binary_scan index.
 *
 * Two passes over the heap when the quantizer learns thresholds:
 *   1. per-dimension means and variances of the (cosine-normalized) vectors,
 *      in float8;
 *   2. quantize every row and append its code to a page built in local
 *      memory; each full page is written once, WAL-logged as a full image.
 * Sign quantization and bit columns skip pass 1.  Memory use is a few pages
 * plus one float8 per dimension, whatever the table size, so the build never
 * needs maintenance_work_mem.
 */
#include "postgres.h"

#include <math.h>

#include "access/generic_xlog.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "commands/progress.h"
#include "pgstat.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "bscan.h"
#include "pgsieve_pages.h"

typedef struct BscanBuildState
{
	Relation	index;
	ForkNumber	forkNum;
	BscanInfo	info;

	/* pass 1 */
	double	   *sums;
	double	   *sumsq;
	double		nsummed;

	/* pass 2 */
	Page		page;			/* data page being filled, local memory */
	BlockNumber lastPage;		/* last data page written */
	Page		nullPage;		/* null page being filled */
	BlockNumber lastNullPage;
	float	   *scratch;
	uint8	   *code;
	double		indtuples;

	MemoryContext tmpCtx;
} BscanBuildState;

/* Fix the dimensions from the first value (or check against them). */
static void
BscanBuildSeeDims(BscanBuildState *bs, Datum value)
{
	int			dims = BscanValueDims(value, &bs->info.p);

	if (bs->info.p.dims == 0)
	{
		bs->info.p.dims = dims;
		bs->info.p.codeBytes = (dims + 7) / 8;
		bs->info.p.capacity = BscanCapacity(&bs->info.p);
		if (bs->info.p.capacity < 1)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("binary_scan index cannot hold codes of %d bits", dims)));
	}
	else
		BscanCheckDims(dims, bs->info.p.dims);
}

static void
BscanMeanCallback(Relation heap, ItemPointer tid, Datum *values, bool *isnull,
				  bool tupleIsAlive, void *state)
{
	BscanBuildState *bs = (BscanBuildState *) state;
	MemoryContext old;
	Datum		value;

	if (isnull[0])
		return;
	old = MemoryContextSwitchTo(bs->tmpCtx);
	value = PointerGetDatum(PG_DETOAST_DATUM(values[0]));	/* once per row */
	BscanBuildSeeDims(bs, value);
	if (bs->sums == NULL)
	{
		MemoryContext parent = MemoryContextGetParent(bs->tmpCtx);

		bs->sums = MemoryContextAllocZero(parent, sizeof(double) * bs->info.p.dims);
		bs->sumsq = MemoryContextAllocZero(parent, sizeof(double) * bs->info.p.dims);
		bs->scratch = MemoryContextAlloc(parent, sizeof(float) * bs->info.p.dims);
	}
	if (BscanValueToFloats(value, &bs->info.p, false, bs->scratch))
	{
		for (int i = 0; i < bs->info.p.dims; i++)
		{
			bs->sums[i] += bs->scratch[i];
			bs->sumsq[i] += (double) bs->scratch[i] * bs->scratch[i];
		}
		bs->nsummed += 1;
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(bs->tmpCtx);
}

static void
BscanFlushPage(BscanBuildState *bs)
{
	if (BscanPageGetOpaque(bs->page)->count == 0)
		return;
	if (bs->info.p.storeTokens)
		BscanPageGetOpaque(bs->page)->next = bs->lastPage;	/* the chain of data pages */
	bs->lastPage = PgsAppendPage(bs->index, bs->forkNum, bs->page);
	BscanInitPage(bs->page, BSCAN_PAGE_DATA);
}

/* Append one code, its heap TID and (store_tokens) its value's place to the local data page. */
static void
BscanBuildAdd(BscanBuildState *bs, ItemPointer tid, const BscanTokPtr *tok)
{
	BscanPageOpaque opaque = BscanPageGetOpaque(bs->page);
	int			n = opaque->count;

	memcpy(BscanPageCodes(bs->page) + (Size) n * bs->info.p.codeBytes, bs->code, bs->info.p.codeBytes);
	BscanTidPut(&BscanPageTids(bs->page, bs->info.p.capacity, bs->info.p.codeBytes)[n], tid);
	if (bs->info.p.storeTokens)
		BscanPageTokPtrs(bs->page, bs->info.p.capacity, bs->info.p.codeBytes)[n] = *tok;
	opaque->count = n + 1;
	((PageHeader) bs->page)->pd_lower = BscanDataPageLower(&bs->info.p, n + 1);
	if (opaque->count >= bs->info.p.capacity)
		BscanFlushPage(bs);
}

/* Write the local null page, if it holds anything. */
static void
BscanFlushNullPage(BscanBuildState *bs)
{
	if (BscanPageGetOpaque(bs->nullPage)->count == 0)
		return;
	if (bs->info.p.storeTokens)
		BscanPageGetOpaque(bs->nullPage)->next = bs->lastNullPage;
	bs->lastNullPage = PgsAppendPage(bs->index, bs->forkNum, bs->nullPage);
	BscanInitPage(bs->nullPage, BSCAN_PAGE_NULLS);
}

static void
BscanBuildAddNull(BscanBuildState *bs, ItemPointer tid)
{
	BscanPageOpaque opaque = BscanPageGetOpaque(bs->nullPage);

	BscanPageNullTids(bs->nullPage)[opaque->count++] = *tid;
	((PageHeader) bs->nullPage)->pd_lower =
		BSCAN_CODES_OFFSET + (Size) opaque->count * sizeof(ItemPointerData);
	if (opaque->count >= BSCAN_NULLS_PER_PAGE)
		BscanFlushNullPage(bs);
}

static void
BscanEncodeCallback(Relation heap, ItemPointer tid, Datum *values, bool *isnull,
					bool tupleIsAlive, void *state)
{
	BscanBuildState *bs = (BscanBuildState *) state;
	MemoryContext old;
	Datum		value;
	BscanTokPtr tok = {InvalidBlockNumber, 0};

	if (isnull[0])
	{
		BscanBuildAddNull(bs, tid);
		bs->indtuples += 1;
		return;
	}
	old = MemoryContextSwitchTo(bs->tmpCtx);
	value = PointerGetDatum(PG_DETOAST_DATUM(values[0]));	/* once per row */
	BscanBuildSeeDims(bs, value);
	if (bs->code == NULL)
	{
		MemoryContext parent = MemoryContextGetParent(bs->tmpCtx);

		bs->code = MemoryContextAlloc(parent, bs->info.p.codeBytes);
		if (bs->scratch == NULL)
			bs->scratch = MemoryContextAlloc(parent, sizeof(float) * bs->info.p.dims);
	}
	BscanEncode(value, &bs->info, bs->code, bs->scratch);
	if (bs->info.p.storeTokens)
		BscanTokenWrite(bs->index, &bs->info.p, value, &tok);
	MemoryContextSwitchTo(old);
	MemoryContextReset(bs->tmpCtx);

	BscanBuildAdd(bs, tid, &tok);
	bs->indtuples += 1;
}

/*
 * Write the statistics pages (blocks 1..T) from the accumulated sums: the
 * per-dimension means (the quantization thresholds), then the standard
 * deviations (the scales of the asymmetric scores).
 */
static void
BscanWriteThresholds(BscanBuildState *bs)
{
	int			dims = bs->info.p.dims;
	int			total = 2 * dims;
	int			done = 0;
	float	   *stats = palloc(sizeof(float) * total);
	PGAlignedBlock buf;
	Page		page = (Page) buf.data;

	for (int i = 0; i < dims; i++)
	{
		double		mean = bs->sums[i] / bs->nsummed;
		double		var = bs->sumsq[i] / bs->nsummed - mean * mean;

		stats[i] = (float) mean;
		stats[dims + i] = (float) sqrt(Max(var, 0.0));
	}
	bs->info.thresholds = stats;
	bs->info.scales = stats + dims;

	bs->info.p.thresholdPages = 0;
	while (done < total)
	{
		int			n = Min((int) BSCAN_THRESHOLDS_PER_PAGE, total - done);

		BscanInitPage(page, BSCAN_PAGE_THRESHOLDS);
		memcpy(PageGetContents(page), stats + done, sizeof(float) * n);
		((PageHeader) page)->pd_lower = (PageGetContents(page) - (char *) page) + sizeof(float) * n;
		PgsAppendPage(bs->index, bs->forkNum, page);
		bs->info.p.thresholdPages++;
		done += n;
	}
}

/* Rewrite the meta page (block 0) from bs->info. */
static void
BscanUpdateMeta(Relation index, ForkNumber forkNum, const BscanInfo *info)
{
	Buffer		buf = ReadBufferExtended(index, forkNum, BSCAN_METAPAGE_BLKNO, RBM_NORMAL, NULL);
	GenericXLogState *state;
	Page		page;

	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	state = GenericXLogStart(index);
	page = GenericXLogRegisterBuffer(state, buf, GENERIC_XLOG_FULL_IMAGE);
	BscanWriteMetaPage(page, info);
	GenericXLogFinish(state);
	UnlockReleaseBuffer(buf);
}

static void
BscanInitBuildState(BscanBuildState *bs, Relation index, ForkNumber forkNum)
{
	int32		typmod = TupleDescAttr(RelationGetDescr(index), 0)->atttypmod;

	memset(bs, 0, sizeof(*bs));
	bs->index = index;
	bs->forkNum = forkNum;
	bs->info.p.kind = BscanGetKind(index);
	bs->info.p.metric = BscanGetMetric(index);
	bs->info.p.quantizer = bs->info.p.kind == BSCAN_KIND_BIT ?
		BSCAN_QUANTIZER_SIGN : BscanGetQuantizerOption(index);
	bs->info.p.insertPage = InvalidBlockNumber;
	bs->info.p.nullPage = InvalidBlockNumber;
	bs->info.p.tokenPage = InvalidBlockNumber;
	bs->lastPage = InvalidBlockNumber;
	bs->lastNullPage = InvalidBlockNumber;
	if (bs->info.p.kind == BSCAN_KIND_MULTIVEC)
		MvfdeInitParams(index, &bs->info.p);	/* FDE parameters; dims from a typmod */
	else if (typmod > 0)
	{
		if (typmod > BSCAN_MAX_DIM)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("binary_scan index supports at most %d dimensions, column has %d",
							BSCAN_MAX_DIM, typmod)));
		bs->info.p.dims = typmod;
		bs->info.p.codeBytes = (typmod + 7) / 8;
		bs->info.p.capacity = BscanCapacity(&bs->info.p);
	}
	bs->tmpCtx = AllocSetContextCreate(CurrentMemoryContext, "binary_scan build tuple",
									   ALLOCSET_DEFAULT_SIZES);
	bs->page = palloc(BLCKSZ);
	BscanInitPage(bs->page, BSCAN_PAGE_DATA);
	bs->nullPage = palloc(BLCKSZ);
	BscanInitPage(bs->nullPage, BSCAN_PAGE_NULLS);
}

IndexBuildResult *
bscanbuild(Relation heap, Relation index, IndexInfo *indexInfo)
{
	BscanBuildState bs;
	IndexBuildResult *result;
	double		reltuples;
	PGAlignedBlock metabuf;

	if (RelationGetNumberOfBlocks(index) != 0)
		elog(ERROR, "index \"%s\" already contains data", RelationGetRelationName(index));

	BscanInitBuildState(&bs, index, MAIN_FORKNUM);

	/* block 0: a placeholder meta page, rewritten at the end */
	BscanWriteMetaPage((Page) metabuf.data, &bs.info);
	PgsAppendPage(index, MAIN_FORKNUM, (Page) metabuf.data);

	if (bs.info.p.quantizer == BSCAN_QUANTIZER_MEAN)
	{
		pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, BSCAN_PHASE_STATISTICS);
		table_index_build_scan(heap, index, indexInfo, true, true, BscanMeanCallback, &bs, NULL);
		if (bs.nsummed > 0)
			BscanWriteThresholds(&bs);
		else
			bs.info.p.quantizer = BSCAN_QUANTIZER_SIGN;	/* nothing to learn from */
	}

	pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, BSCAN_PHASE_QUANTIZE);
	reltuples = table_index_build_scan(heap, index, indexInfo, true, true, BscanEncodeCallback, &bs, NULL);
	BscanFlushPage(&bs);
	BscanFlushNullPage(&bs);

	bs.info.p.insertPage = bs.lastPage;
	bs.info.p.nullPage = bs.lastNullPage;
	BscanUpdateMeta(index, MAIN_FORKNUM, &bs.info);

	MemoryContextDelete(bs.tmpCtx);

	result = palloc(sizeof(IndexBuildResult));
	result->heap_tuples = reltuples;
	result->index_tuples = bs.indtuples;
	return result;
}

/* The init fork of an unlogged index: just a meta page, WAL-logged. */
void
bscanbuildempty(Relation index)
{
	BscanBuildState bs;
	PGAlignedBlock metabuf;

	BscanInitBuildState(&bs, index, INIT_FORKNUM);
	bs.info.p.quantizer = BSCAN_QUANTIZER_SIGN;	/* nothing to learn thresholds from */
	BscanWriteMetaPage((Page) metabuf.data, &bs.info);
	PgsWriteInitForkPage(index, (Page) metabuf.data);
	MemoryContextDelete(bs.tmpCtx);
}
