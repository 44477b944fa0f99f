/*
 * bscantokens.c — multivec_fde's copy of each document's tokens.
 *
 * Re-ranking a candidate by exact MaxSim needs its tokens.  From the heap
 * that is a heap fetch plus, for any real document (kilobytes of tokens),
 * a TOAST index descent and one heap fetch per 2 kB chunk, then a copy: most
 * of a re-rank's cost.  With store_tokens (the default) the index keeps the
 * indexed multivec value, byte for byte as the column (or index expression)
 * gave it, in token pages, and each data entry points to it.  The re-rank
 * then reads a few index pages and computes the ORDER BY operator's own
 * function on those bytes — the same value, so the same distance as a
 * sequential scan.  The heap is not read at all: the executor checks each
 * returned TID's visibility anyway and skips dead rows (a HOT chain keeps
 * the indexed value, so the copy is the value of every version it leads to).
 *
 * A value is appended where the previous one ended (MAXALIGNed) and runs on
 * into new pages as needed; a token page's opaque `next` names the page its
 * last value continues on.  Token pages never change except by such appends
 * (and the link set when a value runs on), which inserts make under the meta
 * page's exclusive lock; the bytes of a value are WAL-logged before the data
 * entry that points to it, so a crash can leave unreferenced bytes but never
 * an entry pointing to missing ones.  VACUUM removes entries, not their
 * values: the space is reclaimed by REINDEX, like emptied data pages.
 */
#include "postgres.h"

#include "access/generic_xlog.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "bscan.h"

/* a value is not started in the last few bytes of a page (its header must fit) */
#define BSCAN_TOKENS_MIN_START	64

static void
BscanInitTokenPage(Page page)
{
	BscanInitPage(page, BSCAN_PAGE_TOKENS);
	BscanPageGetOpaque(page)->next = InvalidBlockNumber;
}

/* Copy as much of value[*done .. len) as fits from offset *off; advance both. */
static void
BscanTokenPut(Page page, uint32 *off, const char *value, Size len, Size *done)
{
	Size		n = Min(len - *done, (Size) BSCAN_TOKENS_END - *off);

	memcpy((char *) page + *off, value + *done, n);
	*done += n;
	*off += n;
	((PageHeader) page)->pd_lower = *off;
}

/*
 * Append the (detoasted) value to the token pages and return where it
 * starts.  p->tokenPage / p->tokenFree say where to append and are advanced;
 * the caller writes them to the meta page (inserts hold its exclusive lock,
 * a build writes the meta page at the end).  Each WAL record holds at most
 * two pages: the page being filled and the new page it links to.
 */
void
BscanTokenWrite(Relation index, BscanParams *p, Datum value, BscanTokPtr *ptr)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(value);
	const char *bytes = (const char *) v;
	Size		len = VARSIZE(v);
	Size		done = 0;
	uint32		off = 0;
	Buffer		cur = InvalidBuffer;
	GenericXLogState *state;
	Page		page = NULL;

	Assert(!VARATT_IS_EXTENDED(v));
	if (len > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("multivec_fde cannot store a value of %zu bytes", len)));

	/*
	 * Continue on the last token page if it has room.  Its pd_lower, not
	 * p->tokenFree, says where: an insert that crashed after writing its
	 * value but before its entry and the meta page leaves bytes nobody
	 * points to, which are skipped.
	 */
	if (BlockNumberIsValid(p->tokenPage))
	{
		cur = ReadBuffer(index, p->tokenPage);
		LockBuffer(cur, BUFFER_LOCK_EXCLUSIVE);
		page = BufferGetPage(cur);
		if (PageIsNew(page) || BscanPageGetOpaque(page)->kind != BSCAN_PAGE_TOKENS ||
			((PageHeader) page)->pd_lower < p->tokenFree ||
			((PageHeader) page)->pd_lower > BSCAN_TOKENS_END)
			ereport(ERROR,
					(errcode(ERRCODE_INDEX_CORRUPTED),
					 errmsg("multivec_fde index \"%s\" has a damaged token page %u",
							RelationGetRelationName(index), p->tokenPage)));
		off = MAXALIGN(((PageHeader) page)->pd_lower);
		if (off + BSCAN_TOKENS_MIN_START > BSCAN_TOKENS_END)
		{
			UnlockReleaseBuffer(cur);
			cur = InvalidBuffer;
		}
	}
	state = GenericXLogStart(index);
	if (BufferIsValid(cur))
		page = GenericXLogRegisterBuffer(state, cur, 0);
	else
	{
		cur = PgsNewBuffer(index, MAIN_FORKNUM);
		page = GenericXLogRegisterBuffer(state, cur, GENERIC_XLOG_FULL_IMAGE);
		BscanInitTokenPage(page);
		off = BSCAN_CODES_OFFSET;
	}

	ptr->blkno = BufferGetBlockNumber(cur);
	ptr->offset = off;
	BscanPageGetOpaque(page)->count++;
	BscanTokenPut(page, &off, bytes, len, &done);

	while (done < len)
	{
		Buffer		next = PgsNewBuffer(index, MAIN_FORKNUM);
		Page		npage = GenericXLogRegisterBuffer(state, next, GENERIC_XLOG_FULL_IMAGE);

		CHECK_FOR_INTERRUPTS();
		BscanInitTokenPage(npage);
		BscanPageGetOpaque(page)->next = BufferGetBlockNumber(next);
		GenericXLogFinish(state);
		UnlockReleaseBuffer(cur);

		cur = next;
		state = GenericXLogStart(index);
		page = GenericXLogRegisterBuffer(state, cur, 0);
		off = BSCAN_CODES_OFFSET;
		BscanTokenPut(page, &off, bytes, len, &done);
	}
	GenericXLogFinish(state);
	p->tokenPage = BufferGetBlockNumber(cur);
	p->tokenFree = off;
	UnlockReleaseBuffer(cur);
}

static void
BscanTokenCorrupt(Relation index, BlockNumber blkno, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INDEX_CORRUPTED),
			 errmsg("multivec_fde index \"%s\" has a damaged token page %u: %s",
					RelationGetRelationName(index), blkno, what)));
}

/*
 * Read the value starting at ptr into *buf (grown as needed, MAXALIGNed,
 * allocated in the current memory context) and return it.  Every page number
 * followed must lie below the index's size (nblocks, the caller's last look
 * at it, refreshed once when a page lies beyond: concurrent inserts extend
 * the index while a scan runs).  Each page is read under a share lock: an
 * insert may be appending to the last page meanwhile.
 */
struct varlena *
BscanTokenRead(Relation index, BscanTokPtr ptr, BlockNumber *nblocks, char **buf, Size *bufSize)
{
	return BscanTokenReadRecent(index, ptr, nblocks, buf, bufSize, NULL);
}

/* ReadBuffer, first trying the buffer rb (may be NULL) last saw blkno in */
Buffer
BscanReadBufferRecent(Relation index, BlockNumber blkno, BscanRecentBuffers *rb)
{
	Buffer		b;

	if (rb == NULL || blkno >= rb->nrecent)
		return ReadBuffer(index, blkno);
	if (BufferIsValid(rb->recent[blkno]) && PgsReadRecentBuffer(index, blkno, rb->recent[blkno]))
		return rb->recent[blkno];
	b = ReadBuffer(index, blkno);
	rb->recent[blkno] = b;
	return b;
}

/* BscanTokenRead, reading pages through rb (NULL: plain ReadBuffer) */
struct varlena *
BscanTokenReadRecent(Relation index, BscanTokPtr ptr, BlockNumber *nblocks, char **buf, Size *bufSize,
					 BscanRecentBuffers *rb)
{
	BlockNumber blkno = ptr.blkno;
	uint32		off = ptr.offset;
	Size		len = 0;
	Size		done = 0;

	if (off < BSCAN_CODES_OFFSET || off != MAXALIGN(off) || off + VARHDRSZ > BSCAN_TOKENS_END)
		BscanTokenCorrupt(index, blkno, "a token pointer has a bad offset");
	do
	{
		Buffer		b;
		Page		page;
		Size		n;

		/* an insert that committed after the caller sized the index may have extended it */
		if (blkno >= *nblocks)
			*nblocks = RelationGetNumberOfBlocks(index);
		if (blkno == 0 || blkno >= *nblocks)
			BscanTokenCorrupt(index, blkno, "a token pointer or link is out of range");
		b = BscanReadBufferRecent(index, blkno, rb);
		LockBuffer(b, BUFFER_LOCK_SHARE);
		page = BufferGetPage(b);
		if (PageIsNew(page) || BscanPageGetOpaque(page)->kind != BSCAN_PAGE_TOKENS ||
			((PageHeader) page)->pd_lower > BSCAN_TOKENS_END ||
			((PageHeader) page)->pd_lower < off + (done == 0 ? VARHDRSZ : 0))
		{
			UnlockReleaseBuffer(b);
			BscanTokenCorrupt(index, blkno, "not a token page, or shorter than a value on it");
		}
		if (done == 0)
		{
			struct varlena *head = (struct varlena *) ((char *) page + off);

			len = VARATT_IS_4B_U(head) ? VARSIZE(head) : 0;
			if (len < VARHDRSZ || len > MaxAllocSize)
			{
				UnlockReleaseBuffer(b);
				BscanTokenCorrupt(index, blkno, "a stored value has a bad length");
			}
			if (*bufSize < len)
			{
				if (*buf)
					pfree(*buf);
				*bufSize = Max(len, (Size) 8192);
				*buf = palloc(*bufSize);
			}
		}
		n = Min(len - done, (Size) ((PageHeader) page)->pd_lower - off);
		memcpy(*buf + done, (char *) page + off, n);
		done += n;
		blkno = BscanPageGetOpaque(page)->next;
		UnlockReleaseBuffer(b);
		off = BSCAN_CODES_OFFSET;
		if (done < len && (n == 0 || !BlockNumberIsValid(blkno)))
			BscanTokenCorrupt(index, ptr.blkno, "a stored value is cut short");
	} while (done < len);
	return (struct varlena *) *buf;
}
