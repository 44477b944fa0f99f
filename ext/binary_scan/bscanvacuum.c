/*
 * bscanvacuum.c — VACUUM support for binary_scan.
 *
 * bulkdelete visits every data page under an exclusive lock, asks the
 * callback about each heap TID, and closes the holes by moving the page's
 * last entries into them (order within and across pages does not matter to
 * a scan, which orders by (distance, TID) itself).  Scans copy what they need
 * from a page under a share lock and keep no position on it, so compaction
 * cannot confuse them.  Emptied pages stay in place and are refilled only by
 * REINDEX; the insert page keeps receiving rows.  With store_tokens an entry's
 * pointer moves with it; the values of removed entries stay in the token
 * pages until REINDEX (bscantokens.c).
 */
#include "postgres.h"

#include "access/generic_xlog.h"
#include "commands/vacuum.h"
#include "miscadmin.h"

#include "bscan.h"

/* Remove dead TIDs from one null page; returns how many it removed. */
static int
BscanVacuumNullPage(Page page, IndexBulkDeleteCallback callback, void *callback_state, int *remaining)
{
	BscanPageOpaque opaque = BscanPageGetOpaque(page);
	ItemPointerData *tids = BscanPageNullTids(page);
	int			n = opaque->count;
	int			kept = 0;

	for (int i = 0; i < n; i++)
		if (!callback(&tids[i], callback_state))
			tids[kept++] = tids[i];
	for (int i = kept; i < n; i++)
		ItemPointerSetInvalid(&tids[i]);
	opaque->count = kept;
	((PageHeader) page)->pd_lower = BSCAN_CODES_OFFSET + (Size) kept * sizeof(ItemPointerData);
	*remaining = kept;
	return n - kept;
}

/* Remove dead entries from one data page; returns how many it removed. */
static int
BscanVacuumPage(Page page, const BscanInfo *info, IndexBulkDeleteCallback callback,
				void *callback_state, int *remaining)
{
	BscanPageOpaque opaque = BscanPageGetOpaque(page);
	uint8	   *codes = BscanPageCodes(page);
	BscanTid   *tids = BscanPageTids(page, info->p.capacity, info->p.codeBytes);
	BscanTokPtr *toks = info->p.storeTokens ? BscanPageTokPtrs(page, info->p.capacity, info->p.codeBytes) : NULL;
	ItemPointerData invalid;
	int			n = opaque->count;
	int			removed = 0;
	int			i = 0;

	ItemPointerSetInvalid(&invalid);
	while (i < n)
	{
		ItemPointerData tid = BscanTidGet(&tids[i]);

		if (!callback(&tid, callback_state))
		{
			i++;
			continue;
		}
		/* move the last entry into slot i and look at slot i again */
		n--;
		removed++;
		if (i != n)
		{
			memcpy(codes + (Size) i * info->p.codeBytes, codes + (Size) n * info->p.codeBytes,
				   info->p.codeBytes);
			tids[i] = tids[n];
			if (toks)
				toks[i] = toks[n];
		}
		memset(codes + (Size) n * info->p.codeBytes, 0, info->p.codeBytes);
		BscanTidPut(&tids[n], &invalid);
		if (toks)
			memset(&toks[n], 0, sizeof(BscanTokPtr));
	}
	opaque->count = n;
	((PageHeader) page)->pd_lower = BscanDataPageLower(&info->p, n);
	*remaining = n;
	return removed;
}

IndexBulkDeleteResult *
bscanbulkdelete(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
				IndexBulkDeleteCallback callback, void *callback_state)
{
	Relation	index = info->index;
	BscanInfo	binfo;
	BlockNumber nblocks;

	if (stats == NULL)
		stats = palloc0(sizeof(IndexBulkDeleteResult));

	BscanReadInfo(index, &binfo);
	stats->num_index_tuples = 0;

	nblocks = RelationGetNumberOfBlocks(index);
	/* with token pages, the chains of data then null pages; else every block once (BscanFirstListed) */
	for (int pass = 0; pass < (binfo.p.storeTokens ? 2 : 1); pass++)
	for (BlockNumber blkno = BscanFirstListed(&binfo.p, pass == 0 ? BSCAN_PAGE_DATA : BSCAN_PAGE_NULLS), next, steps = 0;
		 BlockNumberIsValid(blkno) && blkno < nblocks; blkno = next)
	{
		Buffer		buf;
		Page		page;
		GenericXLogState *state;
		int			removed;
		int			remaining;
		int			kind;

		PgsVacuumDelayPoint();
		buf = ReadBufferExtended(index, MAIN_FORKNUM, blkno, RBM_NORMAL, info->strategy);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		page = BufferGetPage(buf);
		next = BscanNextListed(index, &binfo.p, pass == 0 ? BSCAN_PAGE_DATA : BSCAN_PAGE_NULLS, blkno, page,
							   nblocks, &steps);
		kind = PageIsNew(page) ? 0 : BscanPageGetOpaque(page)->kind;
		if (kind != BSCAN_PAGE_DATA && kind != BSCAN_PAGE_NULLS)
		{
			UnlockReleaseBuffer(buf);
			continue;
		}

		state = GenericXLogStart(index);
		page = GenericXLogRegisterBuffer(state, buf, 0);
		if (kind == BSCAN_PAGE_DATA)
			removed = BscanVacuumPage(page, &binfo, callback, callback_state, &remaining);
		else
			removed = BscanVacuumNullPage(page, callback, callback_state, &remaining);
		if (removed > 0)
			GenericXLogFinish(state);
		else
			GenericXLogAbort(state);
		UnlockReleaseBuffer(buf);

		stats->tuples_removed += removed;
		stats->num_index_tuples += remaining;
	}
	stats->num_pages = nblocks;
	return stats;
}

IndexBulkDeleteResult *
bscanvacuumcleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats)
{
	Relation	index = info->index;

	if (info->analyze_only)
		return stats;

	/* no bulkdelete pass ran: count the entries ourselves */
	if (stats == NULL)
	{
		BscanInfo	binfo;
		BlockNumber nblocks = RelationGetNumberOfBlocks(index);

		stats = palloc0(sizeof(IndexBulkDeleteResult));
		BscanReadInfo(index, &binfo);
		for (int pass = 0; pass < (binfo.p.storeTokens ? 2 : 1); pass++)
		for (BlockNumber blkno = BscanFirstListed(&binfo.p, pass == 0 ? BSCAN_PAGE_DATA : BSCAN_PAGE_NULLS), next, steps = 0;
			 BlockNumberIsValid(blkno) && blkno < nblocks; blkno = next)
		{
			Buffer		buf;
			Page		page;

			PgsVacuumDelayPoint();
			buf = ReadBufferExtended(index, MAIN_FORKNUM, blkno, RBM_NORMAL, info->strategy);
			LockBuffer(buf, BUFFER_LOCK_SHARE);
			page = BufferGetPage(buf);
			next = BscanNextListed(index, &binfo.p, pass == 0 ? BSCAN_PAGE_DATA : BSCAN_PAGE_NULLS, blkno, page,
								   nblocks, &steps);
			if (!PageIsNew(page) && (BscanPageGetOpaque(page)->kind == BSCAN_PAGE_DATA ||
									 BscanPageGetOpaque(page)->kind == BSCAN_PAGE_NULLS))
				stats->num_index_tuples += BscanPageGetOpaque(page)->count;
			UnlockReleaseBuffer(buf);
		}
	}
	stats->num_pages = RelationGetNumberOfBlocks(index);
	return stats;
}
