/*
 * sblockcache.c — a backend-local copy of the compact stream's pages.
 *
 * A scan estimates a thousand or so documents from their compact records,
 * each on a random page of the compact stream.  Through shared buffers each
 * of them costs a pin and an unpin (atomic operations on a buffer header that
 * is itself a cache miss) plus a TLB and cache miss on the page: together
 * more than the estimate.  An in-process engine (Seismic) reads plain memory.
 *
 * The compact stream is written by the build and never changed afterwards
 * (inserts go to the tail, VACUUM flags forward records, REINDEX writes a new
 * relfilenode), so a copy of a page stays exact for the index's life.  Each
 * backend therefore keeps, for a few indexes, a copy of the compact pages its
 * scans touched, filled one page at a time on first use and read without any
 * buffer traffic afterwards.  A copy is keyed by the index, its relfilenode
 * and the build's nonce (a random number the build writes on the meta page),
 * so a REINDEX, TRUNCATE or rebuild never meets an old copy.  Indexes built
 * before the nonce existed (nonce 0) are not cached.
 *
 * pgsieve.sparse_cache_mb bounds the memory of all copies in a backend; an
 * index whose compact stream does not fit is read through shared buffers as
 * before, and the least recently used copies make room for a new one.  Only
 * touched pages take memory: the copy's address range is reserved, not
 * written, until a page is loaded.
 */
#include "postgres.h"

#ifndef WIN32
#include <sys/mman.h>
#endif

#include "storage/bufmgr.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "sblock.h"
#include "pgsieve_pages.h"

int			sblock_cache_mb = SBLOCK_DEFAULT_CACHE_MB;

#define SBLOCK_CACHE_SLOTS 4
#define SBLOCK_CACHE_HUGE ((Size) 2 * 1024 * 1024)	/* a transparent huge page on x86-64 */

/* typedef'd in sblock.h: a repeated typedef is C11, and PG 15's bitcode build compiles as C99 */
struct SblockCacheSlot
{
	Oid			relid;
	RelFileNumber relNumber;
	uint32		nonce;
	BlockNumber start;			/* the compact stream's first block */
	BlockNumber npages;
	char	   *pages;			/* npages x BLCKSZ, a page valid once loaded */
	Size		mapped;			/* pages' mapping's length, or 0 if palloc'd */
	uint64	   *loaded;			/* bitmap over the pages */
	uint64		used;			/* LRU clock */
	uint64		gen;			/* scans check it: a slot may be reused under them */
};

static SblockCacheSlot cacheSlots[SBLOCK_CACHE_SLOTS];
static uint64 cacheClock = 0;
static uint64 cacheGens = 0;

static Size
SblockCacheBytes(const SblockCacheSlot *slot)
{
	return slot->pages ? (Size) slot->npages * BLCKSZ : 0;
}

/*
 * Room for need bytes of pages, reserved, not touched: pages take memory as
 * they are loaded.  On Linux the range is asked to be backed by transparent
 * huge pages: the records a scan reads lie on random pages, and with 4 kB
 * pages nearly every one was a TLB miss.
 */
static char *
SblockCacheReserve(Size need, Size *mapped)
{
#if !defined(WIN32) && defined(MAP_ANONYMOUS)
	Size		len = TYPEALIGN(SBLOCK_CACHE_HUGE, need);
	void	   *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p != MAP_FAILED)
	{
#ifdef MADV_HUGEPAGE
		(void) madvise(p, len, MADV_HUGEPAGE);
#endif
		*mapped = len;
		return p;
	}
#endif
	*mapped = 0;
	return MemoryContextAllocExtended(TopMemoryContext, need, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
}

static void
SblockCacheFree(SblockCacheSlot *slot)
{
#if !defined(WIN32) && defined(MAP_ANONYMOUS)
	if (slot->pages && slot->mapped > 0)
		(void) munmap(slot->pages, slot->mapped);
	else
#endif
	if (slot->pages)
		pfree(slot->pages);
	slot->mapped = 0;
	if (slot->loaded)
		pfree(slot->loaded);
	slot->pages = NULL;
	slot->loaded = NULL;
	slot->npages = 0;
}

/*
 * The cache slot of index (whose meta page says where its compact stream is),
 * set up if needed; *gen is what SblockCachePage checks.  NULL when the
 * stream is not cached: caching off, no nonce, a temporary index, or a
 * stream larger than pgsieve.sparse_cache_mb.
 */
SblockCacheSlot *
SblockCacheFor(Relation index, const SblockMetaPageData *meta, uint64 *gen)
{
	Size		limit = (Size) sblock_cache_mb * 1024 * 1024;
	BlockNumber npages = (BlockNumber) ((meta->compact.bytes + SBLOCK_PAGE_BYTES - 1) / SBLOCK_PAGE_BYTES);
	Size		need = (Size) npages * BLCKSZ;
	SblockCacheSlot *slot = NULL;

	if (meta->buildNonce == 0 || npages == 0 || need > limit || RelationUsesLocalBuffers(index))
		return NULL;
	for (int i = 0; i < SBLOCK_CACHE_SLOTS; i++)
	{
		SblockCacheSlot *s = &cacheSlots[i];

		if (s->pages != NULL && s->relid == RelationGetRelid(index) &&
			s->relNumber == PgsRelFileNumber(index) && s->nonce == meta->buildNonce &&
			s->start == meta->compact.start && s->npages == npages)
		{
			s->used = ++cacheClock;
			*gen = s->gen;
			return s;
		}
	}

	/* a copy of an older build of this index is of no use any more */
	for (int i = 0; i < SBLOCK_CACHE_SLOTS; i++)
		if (cacheSlots[i].pages != NULL && cacheSlots[i].relid == RelationGetRelid(index))
			SblockCacheFree(&cacheSlots[i]);
	/* the least recently used slots make room (a limit lowered since counts too) */
	for (;;)
	{
		SblockCacheSlot *lru = NULL;
		Size		inuse = 0;

		slot = NULL;
		for (int i = 0; i < SBLOCK_CACHE_SLOTS; i++)
		{
			SblockCacheSlot *s = &cacheSlots[i];

			inuse += SblockCacheBytes(s);
			if (s->pages == NULL)
				slot = slot ? slot : s;
			else if (lru == NULL || s->used < lru->used)
				lru = s;
		}
		if (slot != NULL && inuse + need <= limit)
			break;
		if (lru == NULL)
			return NULL;
		SblockCacheFree(lru);
	}

	slot->pages = SblockCacheReserve(need, &slot->mapped);
	slot->loaded = MemoryContextAllocExtended(TopMemoryContext, sizeof(uint64) * ((Size) npages / 64 + 1),
											  MCXT_ALLOC_ZERO | MCXT_ALLOC_NO_OOM);
	if (slot->pages == NULL || slot->loaded == NULL)
	{
		SblockCacheFree(slot);
		return NULL;
	}
	slot->relid = RelationGetRelid(index);
	slot->relNumber = PgsRelFileNumber(index);
	slot->nonce = meta->buildNonce;
	slot->start = meta->compact.start;
	slot->npages = npages;
	slot->used = ++cacheClock;
	slot->gen = ++cacheGens;
	*gen = slot->gen;
	return slot;
}

/* false if the slot was given to another index since SblockCacheFor returned gen */
bool
SblockCacheValid(const SblockCacheSlot *slot, uint64 gen)
{
	return slot != NULL && slot->gen == gen && slot->pages != NULL;
}

/*
 * The copy of compact-stream block blkno (a block of the stream), loaded
 * through reader r (which checks the page) on first use.
 */
Page
SblockCachePage(SblockCacheSlot *slot, SblockReader *r, BlockNumber blkno)
{
	BlockNumber i = blkno - slot->start;
	Page		copy;

	Assert(blkno >= slot->start && i < slot->npages);
	copy = (Page) (slot->pages + (Size) i * BLCKSZ);
	if (!(slot->loaded[i / 64] & ((uint64) 1 << (i % 64))))
	{
		Buffer		buf = SblockReaderPinExtra(r, blkno);

		/* the page never changes after the build: a pin is enough to copy it */
		memcpy(copy, BufferGetPage(buf), BLCKSZ);
		ReleaseBuffer(buf);
		slot->loaded[i / 64] |= (uint64) 1 << (i % 64);
	}
	return copy;
}
