/*
 * bscantokmap.c — find a heap row's value in a multivec_fde index's token
 * pages, for re-ranking outside the index scan (maxsim_rerank).
 *
 * maxsim_rerank scores candidates that other indexes found, by heap TID.
 * Read from the heap, a document's tokens cost a TOAST index descent and a
 * heap fetch per 2 kB chunk, which is most of a re-rank.  When a
 * multivec_fde index with store_tokens covers the column, the same bytes sit
 * in its token pages (bscantokens.c), a few consecutive pages per value.
 * What is missing is the way from a heap TID to the index entry: entries are
 * stored in insertion order.
 *
 * Each backend keeps, per index, a sorted array mapping heap TIDs to the
 * data page that held their entry when the map was made.  The map is only a
 * hint: a lookup reads that data page under a share lock and takes the token
 * pointer from the entry that carries the TID *now*, so the answer always
 * comes from the index as it is, and a stale map can only miss:
 *   - VACUUM moves entries only within their page (bscanvacuum.c), so a
 *     live entry is still on the page the map names;
 *   - an entry VACUUM removed belongs to a dead row, which the caller has
 *     already rejected by its visibility check; its TID can be reused by a
 *     new row only after that removal, and the new row's entry is then the
 *     one found (on the page) or none is (a miss);
 *   - rows inserted after the map was made, heap-only tuples of HOT chains
 *     (the index points to the chain's root) and NULL values have no entry
 *     on the named page: misses.
 * A miss sends the caller to the heap, so every answer is right; the map is
 * rebuilt when misses are frequent and the index has grown by a sixteenth
 * since it was made.
 *
 * With the map goes the buffer each index page was last found in (4 bytes
 * per page), so that reading a candidate's data page and token pages again
 * pins them through ReadRecentBuffer, skipping the shared buffer-mapping
 * lookup (a tenth of a re-rank's time); a page since evicted is read as
 * usual.  The map costs 16 bytes per indexed row plus those 4 per page, in a
 * memory context of its own, limited by pgsieve.token_map_mb (0 turns the
 * map off).
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "bscan.h"

#define BSCAN_TOKMAP_SLOTS		4
#define BSCAN_TOKMAP_DEFAULT_MB	64

int			bscan_token_map_mb = BSCAN_TOKMAP_DEFAULT_MB;

/* one indexed row: its heap TID as (block << 16 | offset), and the data page that held its entry */
typedef struct BscanTokenMapEntry
{
	uint64		key;
	BlockNumber page;
} BscanTokenMapEntry;

typedef struct BscanTokenMapData
{
	Oid			indexOid;		/* InvalidOid: free slot */
	RelFileNumber relNumber;
	BlockNumber builtBlocks;	/* the index's size when the map was made */
	/* the data page layout (fixed for the index's life) */
	int32		capacity;
	int32		codeBytes;
	bool		rebuild;		/* misses were frequent: make it again once the index grew */
	uint64		lastUse;
	int64		n;
	struct BscanTokenMapEntry *entries; /* by ascending key */
	BscanRecentBuffers rb;		/* where this backend last found each page (builtBlocks entries) */
	MemoryContext cxt;
	/* per call */
	BlockNumber nblocks;
	int			lookups;
	int			misses;
} BscanTokenMapData;

static BscanTokenMapData maps[BSCAN_TOKMAP_SLOTS];
static uint64 useClock = 0;

void
BscanTokenMapInit(void)
{
	DefineCustomIntVariable("pgsieve.token_map_mb",
							"Memory per backend for the heap-TID map maxsim_rerank uses to read tokens "
							"from a multivec_fde index's copy instead of TOAST.",
							"16 bytes per indexed row and 4 per index page; an index whose map would not fit is read from the heap. "
							"0 turns the map off.",
							&bscan_token_map_mb, BSCAN_TOKMAP_DEFAULT_MB, 0, 1024 * 1024,
							PGC_USERSET, GUC_UNIT_MB, NULL, NULL, NULL);
}

static inline uint64
BscanTidKey(const ItemPointerData *tid)
{
	return ((uint64) ItemPointerGetBlockNumberNoCheck(tid) << 16) | ItemPointerGetOffsetNumberNoCheck(tid);
}

static int
BscanTokenMapEntryCmp(const void *a, const void *b)
{
	uint64		x = ((const BscanTokenMapEntry *) a)->key;
	uint64		y = ((const BscanTokenMapEntry *) b)->key;

	return x < y ? -1 : x > y;
}

static void
BscanTokenMapFree(BscanTokenMapData *m)
{
	if (m->cxt)
		MemoryContextDelete(m->cxt);
	memset(m, 0, sizeof(*m));
}

/*
 * Walk the chain of data pages and collect (heap TID, data page) for every
 * entry.  Returns false, leaving the slot free, when the map would exceed
 * pgsieve.token_map_mb.
 */
static bool
BscanTokenMapBuild(Relation index, const BscanParams *p, BscanTokenMapData *m)
{
	Size		limit = (Size) bscan_token_map_mb * 1024 * 1024;
	BlockNumber nblocks = RelationGetNumberOfBlocks(index);
	int64		cap = 1024;
	int64		n = 0;
	BscanTokenMapEntry *entries;
	/* under the statement's context until complete, so an error or cancel frees it */
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "multivec_fde token map",
											  ALLOCSET_DEFAULT_SIZES);

	entries = MemoryContextAllocHuge(cxt, sizeof(BscanTokenMapEntry) * cap);
	for (BlockNumber blkno = BscanFirstListed(p, BSCAN_PAGE_DATA), next, steps = 0;
		 BlockNumberIsValid(blkno) && blkno < nblocks; blkno = next)
	{
		Buffer		buf;
		Page		page;
		int			count;
		BscanTid   *tids;

		CHECK_FOR_INTERRUPTS();
		buf = ReadBuffer(index, blkno);
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		next = BscanNextListed(index, p, BSCAN_PAGE_DATA, blkno, page, nblocks, &steps);
		count = Min(BscanPageGetOpaque(page)->count, p->capacity);
		tids = BscanPageTids(page, p->capacity, p->codeBytes);
		if ((Size) (n + count) * sizeof(BscanTokenMapEntry) + (Size) nblocks * sizeof(Buffer) > limit)
		{
			UnlockReleaseBuffer(buf);
			MemoryContextDelete(cxt);
			return false;
		}
		if (n + count > cap)
		{
			cap = Max(2 * cap, n + count);
			entries = repalloc_huge(entries, sizeof(BscanTokenMapEntry) * cap);
		}
		for (int i = 0; i < count; i++)
		{
			ItemPointerData tid = BscanTidGet(&tids[i]);

			entries[n].key = BscanTidKey(&tid);
			entries[n].page = blkno;
			n++;
		}
		UnlockReleaseBuffer(buf);
	}
	qsort(entries, n, sizeof(BscanTokenMapEntry), BscanTokenMapEntryCmp);
	m->rb.recent = MemoryContextAllocHuge(cxt, sizeof(Buffer) * Max(nblocks, 1));
	memset(m->rb.recent, 0, sizeof(Buffer) * Max(nblocks, 1));	/* InvalidBuffer */
	m->rb.nrecent = nblocks;
	MemoryContextSetParent(cxt, TopMemoryContext);
	m->entries = entries;
	m->n = n;
	m->cxt = cxt;
	m->indexOid = RelationGetRelid(index);
	m->relNumber = PgsRelFileNumber(index);
	m->builtBlocks = nblocks;
	m->capacity = p->capacity;
	m->codeBytes = p->codeBytes;
	m->rebuild = false;
	return true;
}

/*
 * The map of a multivec_fde index with store_tokens, made or refreshed as
 * needed; NULL when the index keeps no token copy or the map is off or
 * would not fit.  Valid until the next BscanTokenMapOpen.
 */
BscanTokenMap
BscanTokenMapOpen(Relation index)
{
	BscanInfo	info;
	BscanTokenMapData *m = NULL;
	BscanTokenMapData *victim = &maps[0];

	if (bscan_token_map_mb <= 0)
		return NULL;
	BscanReadInfo(index, &info);
	if (!info.p.storeTokens || info.p.kind != BSCAN_KIND_MULTIVEC)
		return NULL;

	for (int i = 0; i < BSCAN_TOKMAP_SLOTS; i++)
	{
		if (maps[i].indexOid == RelationGetRelid(index))
			m = &maps[i];
		if (maps[i].lastUse < victim->lastUse)
			victim = &maps[i];
	}
	/*
	 * Make the map again after frequent misses only once the index has grown
	 * by a sixteenth since: misses that new rows do not explain (HOT chains,
	 * NULLs) must not rebuild it on every call, and under a steady stream of
	 * inserts this bounds the rebuilds' cost to a constant per inserted row.
	 */
	if (m && (m->relNumber != PgsRelFileNumber(index) ||
			  (m->rebuild && RelationGetNumberOfBlocks(index) >= m->builtBlocks + Max(8, m->builtBlocks / 16))))
		BscanTokenMapFree(m);
	if (m == NULL || m->indexOid == InvalidOid)
	{
		if (m == NULL)
		{
			m = victim;
			BscanTokenMapFree(m);
		}
		if (!BscanTokenMapBuild(index, &info.p, m))
			return NULL;
	}
	m->lastUse = ++useClock;
	m->nblocks = RelationGetNumberOfBlocks(index);
	m->lookups = 0;
	m->misses = 0;
	return m;
}

/* Search one data page's entries for tid; its token pointer if found. */
static bool
BscanTokenMapProbe(Relation index, BscanTokenMapData *m, BlockNumber blkno, const ItemPointerData *tid,
				   BscanTokPtr *ptr)
{
	Buffer		buf = BscanReadBufferRecent(index, blkno, &m->rb);
	Page		page;
	bool		found = false;

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	if (!PageIsNew(page) && BscanPageGetOpaque(page)->kind == BSCAN_PAGE_DATA)
	{
		int			count = Min(BscanPageGetOpaque(page)->count, m->capacity);
		BscanTid   *tids = BscanPageTids(page, m->capacity, m->codeBytes);

		for (int i = 0; i < count; i++)
			if (memcmp(tids[i].b, tid, sizeof(ItemPointerData)) == 0)
			{
				*ptr = BscanPageTokPtrs(page, m->capacity, m->codeBytes)[i];
				found = true;
				break;
			}
	}
	UnlockReleaseBuffer(buf);
	return found;
}

/*
 * The index's copy of the value of the row at tid, read into *buf (grown as
 * needed in the current memory context), or NULL when the index has no entry
 * for tid on the page the map names: then read the heap.  Visibility is the
 * caller's to check: the value is the row version's at tid, visible or not.
 */
struct varlena *
BscanTokenMapRead(BscanTokenMap map, Relation index, const ItemPointerData *tid, char **buf, Size *bufSize)
{
	BscanTokenMapData *m = (BscanTokenMapData *) map;
	uint64		key = BscanTidKey(tid);
	int64		lo = 0,
				hi = m->n;
	BscanTokPtr ptr;

	while (lo < hi)
	{
		int64		mid = lo + (hi - lo) / 2;

		if (m->entries[mid].key < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	m->lookups++;
	if (lo >= m->n || m->entries[lo].key != key || m->entries[lo].page >= m->nblocks ||
		!BscanTokenMapProbe(index, m, m->entries[lo].page, tid, &ptr))
	{
		/* frequent misses after new rows: make the map again next time */
		if (++m->misses >= 4 && m->misses * 8 >= m->lookups)
			m->rebuild = true;
		return NULL;
	}
	return BscanTokenReadRecent(index, ptr, &m->nblocks, buf, bufSize, &m->rb);
}
