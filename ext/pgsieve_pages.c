/*
 * pgsieve_pages.c — helpers shared by the access methods: pages, scans, the
 * handler's common part.
 */
#include "postgres.h"

#include "access/generic_xlog.h"
#include "access/itup.h"
#include "commands/vacuum.h"
#include "miscadmin.h"
#include "nodes/pathnodes.h"

#include <float.h>

#include "pgsieve_compat.h"
#include "pgsieve_pages.h"

/* Write image over the new, exclusively locked buffer as a full page image, and release it. */
static void
PgsWriteNewPage(Relation index, Buffer buf, const char *image)
{
	GenericXLogState *state = GenericXLogStart(index);
	Page		page = GenericXLogRegisterBuffer(state, buf, GENERIC_XLOG_FULL_IMAGE);

	memcpy(page, image, BLCKSZ);
	GenericXLogFinish(state);
	UnlockReleaseBuffer(buf);
}

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

	PgsWriteNewPage(index, buf, image);
	return blkno;
}

/*
 * Append count page images (consecutive BLCKSZ pages at images) at the end
 * of the fork, as PgsAppendPage does one.  The fork is extended once per
 * batch where the server can (PgsExtendBy): extending it page by page cost a
 * zero-filling write() per page, most of the time a build spent writing.
 */
void
PgsAppendPages(Relation index, ForkNumber forkNum, const char *images, int count)
{
	while (count > 0)
	{
		Buffer		bufs[PGS_APPEND_BATCH];
		int			extended = PgsExtendBy(index, forkNum, Min(count, PGS_APPEND_BATCH), bufs);

		for (int i = 0; i < extended; i++)
		{
			LockBuffer(bufs[i], BUFFER_LOCK_EXCLUSIVE);
			PgsWriteNewPage(index, bufs[i], images + (Size) i * BLCKSZ);
		}
		images += (Size) extended * BLCKSZ;
		count -= extended;
	}
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

IndexAmRoutine *
PgsMakeOrderByAmRoutine(void)
{
	IndexAmRoutine *amroutine = makeNode(IndexAmRoutine);

	/* makeNode zeroes every other field: no such capability, no callback */
	amroutine->amstrategies = 0;
	amroutine->amcanorderbyop = true;
	amroutine->amoptionalkey = true;
	amroutine->amparallelvacuumoptions = VACUUM_OPTION_PARALLEL_BULKDEL;
	amroutine->amkeytype = InvalidOid;
	return amroutine;
}

void
PgsInitOrderByScan(IndexScanDesc scan, int norderbys)
{
	scan->xs_orderbyvals = palloc0(sizeof(Datum) * Max(norderbys, 1));
	scan->xs_orderbynulls = palloc(sizeof(bool) * Max(norderbys, 1));
	scan->xs_orderbynulls[0] = true;
}

void
PgsWriteInitForkPage(Relation index, Page image)
{
	Buffer		buf = PgsNewBuffer(index, INIT_FORKNUM);

	START_CRIT_SECTION();
	memcpy(BufferGetPage(buf), image, BLCKSZ);
	MarkBufferDirty(buf);
	log_newpage_buffer(buf, true);
	END_CRIT_SECTION();
	UnlockReleaseBuffer(buf);
}

void
PgsRescanKeys(IndexScanDesc scan, ScanKey keys, ScanKey orderbys)
{
	if (keys && scan->numberOfKeys > 0)
		memmove(scan->keyData, keys, scan->numberOfKeys * sizeof(ScanKeyData));
	if (orderbys && scan->numberOfOrderBys > 0)
		memmove(scan->orderByData, orderbys, scan->numberOfOrderBys * sizeof(ScanKeyData));
}

bool
PgsCostWithoutOrderBy(struct IndexPath *path, Cost *indexStartupCost, Cost *indexTotalCost,
					  Selectivity *indexSelectivity, double *indexCorrelation, double *indexPages)
{
	if (path->indexorderbys != NIL)
		return false;
	*indexStartupCost = DBL_MAX;
	*indexTotalCost = DBL_MAX;
	*indexSelectivity = 0;
	*indexCorrelation = 0;
	*indexPages = 0;
	return true;
}
