/*
 * pgsieve_check.h — the index verifier shared by the access methods
 * (pgsieve_check.c), and what each AM's checker (bscancheck.c,
 * sblockcheck.c) implements.
 *
 * pgsieve_index_check(index, heapallindexed) locks the table and the index
 * like amcheck's bt_index_check (AccessShareLock), then the AM's checker
 * walks every page of the index and raises ERRCODE_INDEX_CORRUPTED, naming
 * the index and the block, at the first broken invariant.  With
 * heapallindexed the checker also records every live index entry as (heap
 * TID, fingerprint of what the entry stores), and the table is scanned under
 * an MVCC snapshot taken before the index was read: every row that snapshot
 * sees must have exactly one entry, and the entry must be what the AM would
 * store for the row's value today.
 */
#ifndef PGSIEVE_CHECK_H
#define PGSIEVE_CHECK_H

#include "postgres.h"

#include "storage/block.h"
#include "storage/buf.h"
#include "storage/bufpage.h"
#include "storage/itemptr.h"
#include "utils/rel.h"

/* one live index entry, for heapallindexed */
typedef struct PgsCheckEntry
{
	ItemPointerData tid;
	uint16		unused;
	BlockNumber blkno;			/* where the entry lies (for the error message) */
	uint32		pos;			/* its slot on that page, or its ordinal */
	uint64		fp;				/* the AM's fingerprint of what it stores */
} PgsCheckEntry;

/* the fingerprint of a NULL row's entry (no AM stores anything else for it) */
#define PGS_CHECK_NULL_FP		UINT64CONST(0x4e554c4c524f5753)

typedef struct PgsCheckState PgsCheckState;

/*
 * The fingerprint the AM would store for a heap row's (detoasted) value;
 * false when the index could not hold it at all (then no entry matches).
 */
typedef bool (*PgsCheckFingerprint) (PgsCheckState *st, Datum value, bool isnull, uint64 *fp);

struct PgsCheckState
{
	Relation	index;
	Relation	heap;
	const char *amname;			/* the access method's name, for messages */
	bool		heapallindexed;
	BufferAccessStrategy strategy;

	/* live entries, filled by the AM's checker when heapallindexed */
	PgsCheckEntry *entries;
	Size		nentries;
	Size		maxentries;

	PgsCheckFingerprint fingerprint;
	void	   *amstate;		/* the AM checker's own state for its fingerprint */

	MemoryContext tupleCtx;		/* reset per heap row */
	int64		heapTuples;		/* rows checked against the index */
};

/* Raise ERRCODE_INDEX_CORRUPTED: "<am> index "<name>" is corrupted at block B: <detail>". */
extern void PgsCheckCorrupt(PgsCheckState *st, BlockNumber blkno, const char *fmt,...) pg_attribute_printf(3, 4);

/*
 * Copy block blkno into page (BLCKSZ bytes) under a share lock; returns
 * false for an all-zero page (PageIsNew).  The page header's fields are
 * checked against a page of that AM (special space of specialSize bytes).
 */
extern bool PgsCheckReadPage(PgsCheckState *st, BlockNumber blkno, Page page, Size specialSize);

/* A heap TID as an index may store it (valid block, offset 1..MaxHeapTuplesPerPage). */
extern bool PgsCheckTidIsValid(ItemPointer tid);

/* Record a live entry (heapallindexed only). */
extern void PgsCheckAddEntry(PgsCheckState *st, ItemPointer tid, BlockNumber blkno, uint32 pos, uint64 fp);

/* per-AM checkers */
extern void BscanCheckIndex(PgsCheckState *st);
extern void SblockCheckIndex(PgsCheckState *st);

#endif							/* PGSIEVE_CHECK_H */
