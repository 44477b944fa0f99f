/*
 * pgsieve_pages.c — page helpers shared by the access methods.
 */
#include "postgres.h"

#include "access/generic_xlog.h"
#include "access/itup.h"

#include "pgsieve_compat.h"
#include "pgsieve_pages.h"

/*
 * Builds assemble each page in local memory and write it once: a new block
 * at the end of the fork, logged as a full page image (GenericXLog skips the
 * WAL by itself for relations that need none).
 */
BlockNumber
PgsAppendPage(Relation index, ForkNumber forkNum, Page image)
{
	Buffer		buf = PgsNewBuffer(index, forkNum);
	BlockNumber blkno = BufferGetBlockNumber(buf);
	GenericXLogState *state = GenericXLogStart(index);
	Page		page = GenericXLogRegisterBuffer(state, buf, GENERIC_XLOG_FULL_IMAGE);

	memcpy(page, image, BLCKSZ);
	GenericXLogFinish(state);
	UnlockReleaseBuffer(buf);
	return blkno;
}

void
PgsSetNullIndexTuple(IndexScanDesc scan, IndexTuple *cache, MemoryContext ctx)
{
	if (*cache == NULL)
	{
		Datum		values[INDEX_MAX_KEYS] = {0};
		bool		isnull[INDEX_MAX_KEYS];
		MemoryContext old = MemoryContextSwitchTo(ctx);

		memset(isnull, true, sizeof(isnull));
		*cache = index_form_tuple(RelationGetDescr(scan->indexRelation), values, isnull);
		MemoryContextSwitchTo(old);
	}
	scan->xs_itup = *cache;
	scan->xs_itupdesc = RelationGetDescr(scan->indexRelation);
}
