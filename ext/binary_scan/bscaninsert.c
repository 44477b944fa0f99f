/*
 * bscaninsert.c — inserting into a binary_scan index.
 *
 * A new row is quantized with the thresholds learned at build time and its
 * code appended to the insert page named by the meta page; when that page is
 * full a new one is added.  The meta page's exclusive lock serializes
 * inserts (they are short: one code copy), and every page change goes
 * through GenericXLog, so an insert is searchable as soon as it commits and
 * survives a crash.  Thresholds stay as learned: REINDEX re-learns them.
 */
#include "postgres.h"

#include "access/generic_xlog.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "bscan.h"

/*
 * The index's thresholds, read once per relcache entry: they never change
 * after the build (REINDEX makes a new relfilenode and a new entry).
 */
static const float *
BscanCachedThresholds(Relation index, const BscanInfo *info)
{
	if (info->thresholdPages == 0)
		return NULL;
	if (index->rd_amcache == NULL)
	{
		BscanInfo	full;
		MemoryContext old = MemoryContextSwitchTo(index->rd_indexcxt);

		BscanReadInfo(index, &full, true);
		MemoryContextSwitchTo(old);
		index->rd_amcache = full.thresholds;
	}
	return (const float *) index->rd_amcache;
}

/*
 * Add (code, tid) to the data page, or tid alone to the null page (code
 * NULL); the caller has the page locked.
 */
static void
BscanPageAdd(Page page, const BscanInfo *info, const uint8 *code, ItemPointer tid)
{
	BscanPageOpaque opaque = BscanPageGetOpaque(page);
	int			n = opaque->count;

	opaque->count = n + 1;
	if (code == NULL)
	{
		BscanPageNullTids(page)[n] = *tid;
		((PageHeader) page)->pd_lower = BSCAN_CODES_OFFSET + (Size) (n + 1) * sizeof(ItemPointerData);
		return;
	}
	memcpy(BscanPageCodes(page) + (Size) n * info->codeBytes, code, info->codeBytes);
	BscanPageTids(page, info->capacity, info->codeBytes)[n] = *tid;
	((PageHeader) page)->pd_lower =
		BscanTidsOffset(info->capacity, info->codeBytes) + (Size) (n + 1) * sizeof(ItemPointerData);
}

/*
 * Write the entry under the meta page's lock (see the file comment): a code
 * goes to the insert page, a NULL row's TID (code NULL) to the null page.
 */
static void
BscanInsertEntry(Relation index, BscanInfo *info, const uint8 *code, ItemPointer tid)
{
	Buffer		metabuf = ReadBuffer(index, BSCAN_METAPAGE_BLKNO);
	Buffer		buf = InvalidBuffer;
	GenericXLogState *state;
	Page		page;
	BscanMetaPage meta;
	BlockNumber target;
	int			capacity = code ? info->capacity : BSCAN_NULLS_PER_PAGE;
	bool		newPage = false;
	bool		fixDims;

	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	meta = BscanPageGetMeta(BufferGetPage(metabuf));

	/* another backend may have fixed the dimensions of an empty index */
	if (code && meta->dims != 0 && meta->dims != info->dims)
	{
		int			expected = meta->dims;

		UnlockReleaseBuffer(metabuf);
		BscanCheckDims(info->dims, expected);
	}
	fixDims = code && meta->dims == 0;

	target = code ? meta->insertPage : meta->nullPage;
	if (BlockNumberIsValid(target))
	{
		buf = ReadBuffer(index, target);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		if (BscanPageGetOpaque(BufferGetPage(buf))->count >= capacity)
		{
			UnlockReleaseBuffer(buf);
			buf = InvalidBuffer;
		}
	}
	if (!BufferIsValid(buf))
	{
		buf = PgsNewBuffer(index, MAIN_FORKNUM);
		newPage = true;
	}

	state = GenericXLogStart(index);
	page = GenericXLogRegisterBuffer(state, buf, newPage ? GENERIC_XLOG_FULL_IMAGE : 0);
	if (newPage)
		BscanInitPage(page, code ? BSCAN_PAGE_DATA : BSCAN_PAGE_NULLS);
	BscanPageAdd(page, info, code, tid);

	/* the meta page changes only when a page is added or the dims get fixed */
	if (newPage || fixDims)
	{
		meta = BscanPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0));
		if (fixDims)
		{
			meta->dims = info->dims;
			meta->codeBytes = info->codeBytes;
			meta->capacity = info->capacity;
		}
		if (code)
			meta->insertPage = BufferGetBlockNumber(buf);
		else
			meta->nullPage = BufferGetBlockNumber(buf);
	}
	GenericXLogFinish(state);

	UnlockReleaseBuffer(buf);
	UnlockReleaseBuffer(metabuf);
}

bool
bscaninsert(Relation index, Datum *values, bool *isnull, ItemPointer heap_tid,
			Relation heap, IndexUniqueCheck checkUnique,
			bool indexUnchanged,
			IndexInfo *indexInfo)
{
	MemoryContext ctx;
	MemoryContext old;
	BscanInfo	info;
	uint8	   *code;
	float	   *scratch = NULL;

	/* a NULL row has no code, only its TID on a null page */
	if (isnull[0])
	{
		BscanInfo	none;

		memset(&none, 0, sizeof(none));
		BscanInsertEntry(index, &none, NULL, heap_tid);
		return false;
	}

	ctx = AllocSetContextCreate(CurrentMemoryContext, "binary_scan insert", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(ctx);

	BscanReadInfo(index, &info, false);
	if (info.dims == 0)
	{
		/* first value into an index built on an empty table without typmod */
		info.dims = BscanValueDims(values[0], info.kind);
		info.codeBytes = (info.dims + 7) / 8;
		info.capacity = BscanCapacity(info.codeBytes);
		if (info.capacity < 1)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("binary_scan index cannot hold codes of %d bits", info.dims)));
	}
	else
		BscanCheckDims(BscanValueDims(values[0], info.kind), info.dims);

	info.thresholds = (float *) BscanCachedThresholds(index, &info);
	code = palloc(info.codeBytes);
	if (info.kind != BSCAN_KIND_BIT)
		scratch = palloc(sizeof(float) * info.dims);
	BscanEncode(values[0], &info, code, scratch);

	BscanInsertEntry(index, &info, code, heap_tid);

	MemoryContextSwitchTo(old);
	MemoryContextDelete(ctx);
	return false;
}
