/*
 * sblockinsert.c — inserting into a sparse_block index.
 *
 * A new document goes to the tail stream, which every scan scores
 * exhaustively, so it is searchable as soon as it commits; REINDEX folds the
 * tail into the clustered posting lists.  The meta page's exclusive lock
 * serializes inserts.  The record's pages are written first (one GenericXLog
 * record each, as a record may span more pages than one WAL record takes)
 * and the meta page's tail length last: a crash in between leaves bytes
 * beyond the tail's end, which nothing reads and the next insert overwrites.
 */
#include "postgres.h"

#include "access/generic_xlog.h"
#include "utils/memutils.h"

#include "sblock.h"

/* Write len bytes at offset of the tail stream, adding pages as needed. */
static void
SblockTailWrite(Relation index, const SblockStream *tail, uint64 offset, const char *data, Size len)
{
	while (len > 0)
	{
		BlockNumber blkno = tail->start + (BlockNumber) (offset / SBLOCK_PAGE_BYTES);
		int			pos = (int) (offset % SBLOCK_PAGE_BYTES);
		Size		n = Min(len, (Size) (SBLOCK_PAGE_BYTES - pos));
		bool		isNew = blkno >= RelationGetNumberOfBlocks(index);
		Buffer		buf;
		GenericXLogState *state;
		Page		page;

		if (isNew)
		{
			buf = PgsNewBuffer(index, MAIN_FORKNUM);
			if (BufferGetBlockNumber(buf) != blkno)
				elog(ERROR, "sparse_block index \"%s\": tail page %u is not at the end of the relation",
					 RelationGetRelationName(index), blkno);
		}
		else
		{
			buf = ReadBuffer(index, blkno);
			LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		}
		state = GenericXLogStart(index);
		page = GenericXLogRegisterBuffer(state, buf, isNew ? GENERIC_XLOG_FULL_IMAGE : 0);
		if (isNew || PageIsNew(page))
		{
			SblockInitPage(page, SBLOCK_PAGE_STREAM);
			((PageHeader) page)->pd_lower = MAXALIGN(SizeOfPageHeaderData) + SBLOCK_PAGE_BYTES;
		}
		memcpy(PageGetContents(page) + pos, data, n);
		GenericXLogFinish(state);
		UnlockReleaseBuffer(buf);

		data += n;
		offset += n;
		len -= n;
	}
}

bool
sblockinsert(Relation index, Datum *values, bool *isnull, ItemPointer heap_tid,
			 Relation heap, IndexUniqueCheck checkUnique,
			 bool indexUnchanged,
			 IndexInfo *indexInfo)
{
	MemoryContext ctx;
	MemoryContext old;
	SblockDoc	v;
	int			dim;
	Buffer		metabuf;
	SblockMetaPage meta;
	SblockDocHeader hdr;
	char	   *record;
	Size		len;
	uint64		offset;
	GenericXLogState *state;

	ctx = AllocSetContextCreate(CurrentMemoryContext, "sparse_block insert", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(ctx);
	if (isnull[0])
	{
		/* an empty record flagged NULL: a scan returns NULL rows last */
		memset(&v, 0, sizeof(v));
		v.flags = SBLOCK_DOC_NULL;
		dim = 0;
	}
	else
		dim = SblockCheckValue(values[0], 0, &v);

	metabuf = ReadBuffer(index, SBLOCK_METAPAGE_BLKNO);
	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	meta = SblockPageGetMeta(BufferGetPage(metabuf));
	if (dim != 0 && meta->dim != 0 && meta->dim != dim)
	{
		int			expected = meta->dim;

		UnlockReleaseBuffer(metabuf);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("sparse_block index expects sparsevec of %d dimensions, got %d", expected, dim)));
	}

	/* the record: header, indices, values */
	memset(&hdr, 0, sizeof(hdr));
	hdr.tid = *heap_tid;
	hdr.flags = v.flags;
	hdr.ordinal = meta->ndocs + meta->tailDocs;
	hdr.nnz = v.nnz;
	len = SBLOCK_DOC_HEADER_SIZE + (Size) v.nnz * 8;
	record = palloc0(len);
	memcpy(record, &hdr, SBLOCK_DOC_HEADER_SIZE);
	if (v.nnz > 0)				/* an empty vector's arrays may be NULL: memcpy(NULL) is undefined */
	{
		memcpy(record + SBLOCK_DOC_HEADER_SIZE, v.indices, sizeof(int32) * v.nnz);
		memcpy(record + SBLOCK_DOC_HEADER_SIZE + sizeof(int32) * v.nnz, v.values, sizeof(float) * v.nnz);
	}
	offset = SblockDocAlign(meta->tail.bytes);

	SblockTailWrite(index, &meta->tail, offset, record, len);

	state = GenericXLogStart(index);
	meta = SblockPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0));
	if (dim != 0)
		meta->dim = dim;
	meta->tail.bytes = offset + len;
	meta->tailDocs++;
	GenericXLogFinish(state);
	UnlockReleaseBuffer(metabuf);

	MemoryContextSwitchTo(old);
	MemoryContextDelete(ctx);
	return false;
}
