/*
 * sblockvacuum.c — VACUUM support for sparse_block.
 *
 * bulkdelete walks every document record of the forward and tail streams and
 * flags those whose heap row is dead; scans skip flagged documents.  A
 * record's header never spans pages, so flagging changes one page, and all
 * the flags set on one page go into one GenericXLog record.  The space of
 * flagged documents (and their postings) is reclaimed by REINDEX, which also
 * clusters the tail.
 */
#include "postgres.h"

#include "access/generic_xlog.h"
#include "commands/vacuum.h"
#include "miscadmin.h"

#include "sblock.h"

typedef struct SblockVacuumPage
{
	Buffer		buf;
	BlockNumber blkno;
	GenericXLogState *state;
	Page		page;			/* the registered copy once state is set */
} SblockVacuumPage;

static void
SblockVacuumRelease(SblockVacuumPage *vp)
{
	if (!BufferIsValid(vp->buf))
		return;
	if (vp->state)
		GenericXLogFinish(vp->state);
	UnlockReleaseBuffer(vp->buf);
	vp->buf = InvalidBuffer;
	vp->blkno = InvalidBlockNumber;
	vp->state = NULL;
}

/* Flag the dead documents among the n records of stream s. */
static void
SblockVacuumStream(IndexVacuumInfo *info, const SblockStream *s, uint32 n,
				   IndexBulkDeleteCallback callback, void *callback_state,
				   IndexBulkDeleteResult *stats)
{
	SblockVacuumPage vp = {InvalidBuffer, InvalidBlockNumber, NULL, NULL};
	uint64		offset = 0;

	for (uint32 i = 0; i < n;)
	{
		BlockNumber blkno;
		SblockDocHeader *hdr;
		Page		page;

		offset = SblockDocAlign(offset);
		if (offset >= s->bytes)
			ereport(ERROR,
					(errcode(ERRCODE_INDEX_CORRUPTED),
					 errmsg("sparse_block index \"%s\" has fewer documents than its meta page says",
							RelationGetRelationName(info->index))));
		blkno = s->start + (BlockNumber) (offset / SBLOCK_PAGE_BYTES);
		if (blkno != vp.blkno)
		{
			SblockVacuumRelease(&vp);
			PgsVacuumDelayPoint();
			vp.buf = ReadBufferExtended(info->index, MAIN_FORKNUM, blkno, RBM_NORMAL, info->strategy);
			LockBuffer(vp.buf, BUFFER_LOCK_EXCLUSIVE);
			vp.blkno = blkno;
		}
		page = vp.state ? vp.page : BufferGetPage(vp.buf);
		hdr = (SblockDocHeader *) (PageGetContents(page) + offset % SBLOCK_PAGE_BYTES);
		if (hdr->flags & SBLOCK_DOC_PAD)
		{
			/* the build moved the next record to the next page */
			offset = SblockNextPage(offset);
			continue;
		}
		if (!(hdr->flags & SBLOCK_DOC_DELETED))
		{
			if (callback(&hdr->tid, callback_state))
			{
				if (vp.state == NULL)
				{
					vp.state = GenericXLogStart(info->index);
					vp.page = GenericXLogRegisterBuffer(vp.state, vp.buf, 0);
					hdr = (SblockDocHeader *) (PageGetContents(vp.page) + offset % SBLOCK_PAGE_BYTES);
				}
				hdr->flags |= SBLOCK_DOC_DELETED;
				stats->tuples_removed += 1;
			}
			else
				stats->num_index_tuples += 1;
		}
		offset += SblockDocBytes(hdr->nnz);
		i++;
	}
	SblockVacuumRelease(&vp);
}

IndexBulkDeleteResult *
sblockbulkdelete(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
				 IndexBulkDeleteCallback callback, void *callback_state)
{
	SblockMetaPageData meta;

	if (stats == NULL)
		stats = palloc0(sizeof(IndexBulkDeleteResult));
	SblockReadMeta(info->index, &meta);
	stats->num_index_tuples = 0;
	SblockVacuumStream(info, &meta.forward, meta.ndocs, callback, callback_state, stats);
	SblockVacuumStream(info, &meta.tail, meta.tailDocs, callback, callback_state, stats);
	stats->num_pages = RelationGetNumberOfBlocks(info->index);
	return stats;
}

IndexBulkDeleteResult *
sblockvacuumcleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats)
{
	if (info->analyze_only)
		return stats;
	if (stats == NULL)
	{
		SblockMetaPageData meta;

		stats = palloc0(sizeof(IndexBulkDeleteResult));
		SblockReadMeta(info->index, &meta);
		/* without a bulkdelete pass, report what was indexed */
		stats->num_index_tuples = meta.ndocs + meta.tailDocs;
		stats->estimated_count = true;
	}
	stats->num_pages = RelationGetNumberOfBlocks(info->index);
	return stats;
}
