/*
 * bscaninsert.c — inserting into a binary_scan index.
 *
 * A new row is quantized with the thresholds learned at build time (cached
 * per relcache entry, BscanCachedStats) and its
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
 * Add (code, tid[, tok]) to the data page, or tid alone to the null page
 * (code NULL); the caller has the page locked.
 */
static void
BscanPageAdd(Page page, const BscanInfo *info, const uint8 *code, ItemPointer tid, const BscanTokPtr *tok)
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
	memcpy(BscanPageCodes(page) + (Size) n * info->p.codeBytes, code, info->p.codeBytes);
	BscanTidPut(&BscanPageTids(page, info->p.capacity, info->p.codeBytes)[n], tid);
	if (info->p.storeTokens)
		BscanPageTokPtrs(page, info->p.capacity, info->p.codeBytes)[n] = *tok;
	((PageHeader) page)->pd_lower = BscanDataPageLower(&info->p, n + 1);
}

/*
 * Write the entry under the meta page's lock (see the file comment): a code
 * goes to the insert page, a NULL row's TID (code NULL) to the null page.
 * With store_tokens the value (detoasted) is first appended to the token
 * pages, under the same lock, and the entry points to it.
 */
static void
BscanInsertEntry(Relation index, BscanInfo *info, const uint8 *code, ItemPointer tid, Datum value)
{
	Buffer		metabuf = ReadBuffer(index, BSCAN_METAPAGE_BLKNO);
	Buffer		buf = InvalidBuffer;
	GenericXLogState *state;
	Page		page;
	BscanMetaPage meta;
	BlockNumber target;
	int			capacity = code ? info->p.capacity : BSCAN_NULLS_PER_PAGE;
	bool		newPage = false;
	bool		fixDims;
	bool		tokens;
	BscanTokPtr tok = {InvalidBlockNumber, 0};

	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	meta = BscanPageGetMeta(BufferGetPage(metabuf));

	/* another backend may have fixed the dimensions of an empty index */
	if (code && meta->p.dims != 0 && meta->p.dims != info->p.dims)
	{
		int			expected = meta->p.dims;

		UnlockReleaseBuffer(metabuf);
		BscanCheckDims(info->p.dims, expected);
	}
	if (code && meta->p.tokenDim != 0 && meta->p.tokenDim != info->p.tokenDim)
	{
		int			expected = meta->p.tokenDim;

		UnlockReleaseBuffer(metabuf);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("multivec_fde index expects tokens of %d dimensions, got %d",
						expected, info->p.tokenDim)));
	}
	fixDims = code && meta->p.dims == 0;

	/* the value first: an entry must never point to bytes a crash could lose */
	tokens = code && info->p.storeTokens;
	if (tokens)
	{
		info->p.tokenPage = meta->p.tokenPage;
		info->p.tokenFree = meta->p.tokenFree;
		BscanTokenWrite(index, &info->p, value, &tok);
	}

	target = code ? meta->p.insertPage : meta->p.nullPage;
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
	{
		BscanInitPage(page, code ? BSCAN_PAGE_DATA : BSCAN_PAGE_NULLS);
		if (meta->p.storeTokens)
			BscanPageGetOpaque(page)->next = target;	/* the chain (bscan.h): the previous newest */
	}
	BscanPageAdd(page, info, code, tid, &tok);

	/* the meta page changes only when a page is added, the dims get fixed or a value was stored */
	if (newPage || fixDims || tokens)
	{
		meta = BscanPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0));
		if (fixDims)
		{
			meta->p.dims = info->p.dims;
			meta->p.tokenDim = info->p.tokenDim;
			meta->p.codeBytes = info->p.codeBytes;
			meta->p.capacity = info->p.capacity;
		}
		if (tokens)
		{
			meta->p.tokenPage = info->p.tokenPage;
			meta->p.tokenFree = info->p.tokenFree;
		}
		if (newPage && code)
			meta->p.insertPage = BufferGetBlockNumber(buf);
		else if (newPage)
			meta->p.nullPage = BufferGetBlockNumber(buf);
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
	Datum		value;
	uint8	   *code;
	float	   *scratch = NULL;

	/* a NULL row has no code, only its TID on a null page */
	if (isnull[0])
	{
		BscanInfo	none;

		memset(&none, 0, sizeof(none));
		BscanInsertEntry(index, &none, NULL, heap_tid, (Datum) 0);
		return false;
	}

	ctx = AllocSetContextCreate(CurrentMemoryContext, "binary_scan insert", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(ctx);

	value = PointerGetDatum(PG_DETOAST_DATUM(values[0]));	/* once, for every use below */
	BscanReadInfo(index, &info);
	if (info.p.dims == 0)
	{
		/* first value into an index built on an empty table without typmod */
		info.p.dims = BscanValueDims(value, &info.p);
		info.p.codeBytes = (info.p.dims + 7) / 8;
		info.p.capacity = BscanCapacity(&info.p);
		if (info.p.capacity < 1)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("binary_scan index cannot hold codes of %d bits", info.p.dims)));
	}
	else
		BscanCheckDims(BscanValueDims(value, &info.p), info.p.dims);

	BscanCachedStats(index, &info);
	code = palloc(info.p.codeBytes);
	if (info.p.kind != BSCAN_KIND_BIT)
		scratch = palloc(sizeof(float) * info.p.dims);
	BscanEncode(value, &info, code, scratch);

	BscanInsertEntry(index, &info, code, heap_tid, value);

	MemoryContextSwitchTo(old);
	MemoryContextDelete(ctx);
	return false;
}
