/*
 * pgsieve_check.c — pgsieve_index_check(index regclass, heapallindexed
 * boolean DEFAULT false): an amcheck-style verifier for binary_scan,
 * multivec_fde and sparse_block indexes.
 *
 * Behaviour follows contrib/amcheck's bt_index_check:
 *   - AccessShareLock on the table, then the index (table first, so the
 *     lock order matches every other path and cannot deadlock); concurrent
 *     reads, inserts and VACUUM go on while it runs;
 *   - it runs as the table's owner in a security-restricted operation, with
 *     GUC changes rolled back, because the heap scan evaluates index
 *     expressions and predicates;
 *   - it returns nothing and raises ERRCODE_INDEX_CORRUPTED at the first
 *     violation, naming the index and the block; DEBUG1 messages report
 *     what was verified (pages, entries, heap rows);
 *   - invalid indexes (a failed CREATE INDEX CONCURRENTLY) and other
 *     sessions' temporary indexes are refused; an unlogged index is skipped
 *     with a NOTICE during recovery (it has no main fork there).
 *
 * The structural checks are the AM's (bscancheck.c, sblockcheck.c).  With
 * heapallindexed they also hand every live entry over as (heap TID,
 * fingerprint of the stored code or document); the table is then scanned
 * with table_index_build_scan under an MVCC snapshot registered before the
 * index was read, as CREATE INDEX CONCURRENTLY's first scan does.  Every row
 * visible to that snapshot had its entry inserted before the snapshot was
 * taken, and VACUUM cannot remove an entry whose row the snapshot still
 * sees, so each such row must have exactly one entry, and the fingerprint
 * the AM computes from the row's value must equal the entry's.  Entries are
 * kept exactly (a sorted array, 24 bytes an entry), not in a Bloom filter:
 * nothing is missed, and duplicates are found too.
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xlog.h"
#include "catalog/index.h"
#include "catalog/pg_class.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "binary_scan/bscan.h"
#include "sparse_block/sblock.h"
#include "pgsieve_check.h"

void
PgsCheckCorrupt(PgsCheckState *st, BlockNumber blkno, const char *fmt,...)
{
	StringInfoData detail;

	initStringInfo(&detail);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&detail, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&detail, needed);
	}
	if (BlockNumberIsValid(blkno))
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("%s index \"%s\" is corrupted at block %u: %s",
						st->amname, RelationGetRelationName(st->index), blkno, detail.data),
				 errhint("REINDEX the index.")));
	ereport(ERROR,
			(errcode(ERRCODE_INDEX_CORRUPTED),
			 errmsg("%s index \"%s\" is corrupted: %s",
					st->amname, RelationGetRelationName(st->index), detail.data),
			 errhint("REINDEX the index.")));
}

static bool
PgsPageIsAllZero(const char *page)
{
	for (Size i = 0; i < BLCKSZ; i++)
		if (page[i] != 0)
			return false;
	return true;
}

bool
PgsCheckReadPage(PgsCheckState *st, BlockNumber blkno, Page page, Size specialSize)
{
	Buffer		buf;
	PageHeader	ph = (PageHeader) page;

	CHECK_FOR_INTERRUPTS();
	buf = ReadBufferExtended(st->index, MAIN_FORKNUM, blkno, RBM_NORMAL, st->strategy);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	memcpy(page, BufferGetPage(buf), BLCKSZ);
	UnlockReleaseBuffer(buf);

	if (PageIsNew(page))
	{
		if (!PgsPageIsAllZero((const char *) page))
			PgsCheckCorrupt(st, blkno, "page has no header but is not all zero");
		return false;
	}
	if (PageGetPageSize(page) != BLCKSZ || PageGetPageLayoutVersion(page) != PG_PAGE_LAYOUT_VERSION)
		PgsCheckCorrupt(st, blkno, "page header has size %zu and layout version %u",
						(Size) PageGetPageSize(page), (unsigned) PageGetPageLayoutVersion(page));
	if (ph->pd_special != BLCKSZ - MAXALIGN(specialSize))
		PgsCheckCorrupt(st, blkno, "special space starts at %u, expected %zu",
						(unsigned) ph->pd_special, (Size) (BLCKSZ - MAXALIGN(specialSize)));
	/* no line pointers, no tuples: pd_upper stays where PageInit put it */
	if (ph->pd_lower < SizeOfPageHeaderData || ph->pd_lower > ph->pd_upper || ph->pd_upper != ph->pd_special)
		PgsCheckCorrupt(st, blkno, "page header bounds are inconsistent (pd_lower %u, pd_upper %u, pd_special %u)",
						(unsigned) ph->pd_lower, (unsigned) ph->pd_upper, (unsigned) ph->pd_special);
	return true;
}

bool
PgsCheckTidIsValid(ItemPointer tid)
{
	return BlockNumberIsValid(ItemPointerGetBlockNumberNoCheck(tid)) &&
		ItemPointerGetOffsetNumberNoCheck(tid) >= FirstOffsetNumber &&
		ItemPointerGetOffsetNumberNoCheck(tid) <= MaxHeapTuplesPerPage;
}

void
PgsCheckAddEntry(PgsCheckState *st, ItemPointer tid, BlockNumber blkno, uint32 pos, uint64 fp)
{
	PgsCheckEntry *e;

	if (st->nentries == st->maxentries)
	{
		Size		grow = Max(st->maxentries * 2, (Size) 1024);

		if (grow > MaxAllocHugeSize / sizeof(PgsCheckEntry))
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("index \"%s\" has too many entries for heapallindexed verification",
							RelationGetRelationName(st->index))));
		st->entries = st->entries ?
			repalloc_huge(st->entries, sizeof(PgsCheckEntry) * grow) :
			MemoryContextAllocHuge(CurrentMemoryContext, sizeof(PgsCheckEntry) * grow);
		st->maxentries = grow;
	}
	e = &st->entries[st->nentries++];
	e->tid = *tid;
	e->unused = 0;
	e->blkno = blkno;
	e->pos = pos;
	e->fp = fp;
}

static int
PgsCheckEntryCmp(const void *a, const void *b)
{
	return ItemPointerCompare(&((PgsCheckEntry *) a)->tid, &((PgsCheckEntry *) b)->tid);
}

static void
PgsCheckHeapCallback(Relation index, ItemPointer tid, Datum *values, bool *isnull,
					 bool tupleIsAlive, void *state)
{
	PgsCheckState *st = (PgsCheckState *) state;
	PgsCheckEntry key;
	PgsCheckEntry *e;
	MemoryContext old;
	uint64		fp = 0;
	bool		ok;

	st->heapTuples++;
	key.tid = *tid;
	e = bsearch(&key, st->entries, st->nentries, sizeof(PgsCheckEntry), PgsCheckEntryCmp);
	if (e == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("heap tuple (%u,%u) of table \"%s\" has no entry in %s index \"%s\"",
						ItemPointerGetBlockNumber(tid), ItemPointerGetOffsetNumber(tid),
						RelationGetRelationName(st->heap), st->amname, RelationGetRelationName(st->index)),
				 errhint("REINDEX the index.")));

	old = MemoryContextSwitchTo(st->tupleCtx);
	ok = st->fingerprint(st, values[0], isnull[0], &fp);
	MemoryContextSwitchTo(old);
	MemoryContextReset(st->tupleCtx);
	if (!ok || fp != e->fp)
		PgsCheckCorrupt(st, e->blkno, "entry %u for heap tuple (%u,%u) does not match the row's %s value",
						e->pos, ItemPointerGetBlockNumber(tid), ItemPointerGetOffsetNumber(tid),
						isnull[0] ? "NULL" : "current");
}

/* Sort the entries, refuse duplicates, then look every visible heap row up. */
static void
PgsCheckHeap(PgsCheckState *st, Snapshot snapshot)
{
	IndexInfo  *indexInfo;
	TableScanDesc scan;

	if (st->nentries > 1)
		qsort(st->entries, st->nentries, sizeof(PgsCheckEntry), PgsCheckEntryCmp);
	for (Size i = 1; i < st->nentries; i++)
	{
		PgsCheckEntry *a = &st->entries[i - 1];
		PgsCheckEntry *b = &st->entries[i];

		if ((i & 0xffff) == 0)
			CHECK_FOR_INTERRUPTS();
		if (ItemPointerEquals(&a->tid, &b->tid))
			PgsCheckCorrupt(st, b->blkno, "heap tuple (%u,%u) has two live entries: entry %u here and entry %u at block %u",
							ItemPointerGetBlockNumberNoCheck(&b->tid), ItemPointerGetOffsetNumberNoCheck(&b->tid),
							b->pos, a->pos, a->blkno);
	}

	st->tupleCtx = AllocSetContextCreate(CurrentMemoryContext, "pgsieve_index_check row",
										 ALLOCSET_DEFAULT_SIZES);
	indexInfo = BuildIndexInfo(st->index);

	/*
	 * The scan behaves as the first scan of CREATE INDEX CONCURRENTLY: rows
	 * visible to our snapshot, HOT chains reported by their root TID (the one
	 * the index stores).  Never wait on uniqueness or exclusion checks.
	 */
	indexInfo->ii_Concurrent = true;
	indexInfo->ii_Unique = false;
	indexInfo->ii_ExclusionOps = NULL;
	indexInfo->ii_ExclusionProcs = NULL;
	indexInfo->ii_ExclusionStrats = NULL;
	scan = table_beginscan_strat(st->heap, snapshot, 0, NULL, true, true);

	elog(DEBUG1, "verifying that every row of \"%s\" visible to a new snapshot has its entry in index \"%s\"",
		 RelationGetRelationName(st->heap), RelationGetRelationName(st->index));
	table_index_build_scan(st->heap, st->index, indexInfo, true, false, PgsCheckHeapCallback, st, scan);
	ereport(DEBUG1,
			(errmsg_internal("pgsieve_index_check: " INT64_FORMAT " heap tuples of \"%s\" checked against %zu live entries of \"%s\"",
							 st->heapTuples, RelationGetRelationName(st->heap), st->nentries,
							 RelationGetRelationName(st->index))));
	MemoryContextDelete(st->tupleCtx);
	st->tupleCtx = NULL;
}

static void
PgsCheckIndexRel(Relation index, Relation heap, bool heapallindexed)
{
	PgsCheckState st;
	Snapshot	snapshot = InvalidSnapshot;
	void		(*checker) (PgsCheckState *st);
	char	   *amname = get_am_name(index->rd_rel->relam);

	if (index->rd_indam->ambuild == bscanbuild)
		checker = BscanCheckIndex;
	else if (index->rd_indam->ambuild == sblockbuild)
		checker = SblockCheckIndex;
	else
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("index \"%s\" is not a pgsieve index", RelationGetRelationName(index)),
				 errdetail("Its access method is \"%s\"; pgsieve_index_check verifies binary_scan, "
						   "multivec_fde and sparse_block indexes.", amname ? amname : "?")));
	if (RELATION_IS_OTHER_TEMP(index))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot access temporary tables of other sessions"),
				 errdetail("Index \"%s\" is associated with temporary relation.",
						   RelationGetRelationName(index))));
	if (!index->rd_index->indisvalid)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot check index \"%s\"", RelationGetRelationName(index)),
				 errdetail("Index is not valid."),
				 errhint("Drop it and create it again, or REINDEX it.")));
	if (index->rd_rel->relpersistence == RELPERSISTENCE_UNLOGGED && RecoveryInProgress())
	{
		ereport(NOTICE,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot verify unlogged index \"%s\" during recovery, skipping",
						RelationGetRelationName(index))));
		return;
	}

	memset(&st, 0, sizeof(st));
	st.index = index;
	st.heap = heap;
	st.amname = amname ? amname : "pgsieve";
	st.heapallindexed = heapallindexed;
	st.strategy = GetAccessStrategy(BAS_BULKREAD);

	if (heapallindexed)
	{
		/*
		 * Before the index is read: every row this snapshot sees then has its
		 * entry in what we read (see the file comment).  At REPEATABLE READ
		 * or above the transaction's snapshot may predate an index that is
		 * not yet safe to use for it (indcheckxmin), as amcheck refuses too.
		 */
		snapshot = RegisterSnapshot(GetTransactionSnapshot());
		if (IsolationUsesXactSnapshot() && index->rd_index->indcheckxmin &&
			!TransactionIdPrecedes(HeapTupleHeaderGetXmin(index->rd_indextuple->t_data), snapshot->xmin))
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("index \"%s\" cannot be verified using transaction snapshot",
							RelationGetRelationName(index))));
	}

	elog(DEBUG1, "verifying the structure of %s index \"%s\"", st.amname, RelationGetRelationName(index));
	checker(&st);
	if (heapallindexed)
	{
		PgsCheckHeap(&st, snapshot);
		UnregisterSnapshot(snapshot);
	}
	if (st.entries)
		pfree(st.entries);
	FreeAccessStrategy(st.strategy);
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(pgsieve_index_check);
Datum
pgsieve_index_check(PG_FUNCTION_ARGS)
{
	Oid			indrelid = PG_GETARG_OID(0);
	bool		heapallindexed = PG_GETARG_BOOL(1);
	Oid			heapid;
	Relation	heap = NULL;
	Relation	index;
	Oid			save_userid = InvalidOid;
	int			save_sec_context = -1;
	int			save_nestlevel = -1;

	/*
	 * Lock the table before the index.  If indrelid is no index, complain
	 * below with index_open's clearer message.
	 */
	heapid = IndexGetRelation(indrelid, true);
	if (OidIsValid(heapid))
	{
		heap = table_open(heapid, AccessShareLock);
		GetUserIdAndSecContext(&save_userid, &save_sec_context);
		SetUserIdAndSecContext(heap->rd_rel->relowner, save_sec_context | SECURITY_RESTRICTED_OPERATION);
		save_nestlevel = NewGUCNestLevel();
	}
	index = index_open(indrelid, AccessShareLock);
	/* the look-up above took no lock: the index may have been dropped and its OID reused */
	if (heap == NULL || heapid != IndexGetRelation(indrelid, false))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("could not open parent table of index \"%s\"", RelationGetRelationName(index))));

	PgsCheckIndexRel(index, heap, heapallindexed);

	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	/* nothing here sends invalidations, so the locks may go before commit (as amcheck's do) */
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
	PG_RETURN_VOID();
}
