/*
 * pgsieve_compat.h — every PostgreSQL-version guard in one place.
 *
 * pgsieve compiles against PostgreSQL 15 through 18.  Code elsewhere calls
 * the helpers below instead of testing PG_VERSION_NUM itself.
 */
#ifndef PGSIEVE_COMPAT_H
#define PGSIEVE_COMPAT_H

#include "postgres.h"

#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/rel.h"

#if PG_VERSION_NUM < 150000
#error "pgsieve requires PostgreSQL 15 or later"
#endif

#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

/*
 * Add a new, zero-filled, exclusively locked page at the end of a fork.
 * PG 16 replaced P_NEW with ExtendBufferedRel, which takes the relation
 * extension lock itself.
 */
static inline Buffer
PgsNewBuffer(Relation index, ForkNumber forkNum)
{
#if PG_VERSION_NUM >= 160000
	return ExtendBufferedRel(BMR_REL(index), forkNum, NULL, EB_LOCK_FIRST);
#else
	Buffer		buf;
	bool		unlock = !RELATION_IS_LOCAL(index);

	if (unlock)
		LockRelationForExtension(index, ExclusiveLock);
	buf = ReadBufferExtended(index, forkNum, P_NEW, RBM_NORMAL, NULL);
	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	if (unlock)
		UnlockRelationForExtension(index, ExclusiveLock);
	return buf;
#endif
}

/*
 * Extend the fork by up to n pages (a build's batch): pinned, zeroed and
 * unlocked buffers in bufs; returns how many.  PG 16 extends once for all
 * of them; before, one P_NEW read each.
 */
static inline int
PgsExtendBy(Relation index, ForkNumber forkNum, int n, Buffer *bufs)
{
#if PG_VERSION_NUM >= 160000
	uint32		extended = 0;

	ExtendBufferedRelBy(BMR_REL(index), forkNum, NULL, 0, n, bufs, &extended);
	return (int) extended;
#else
	bool		unlock = !RELATION_IS_LOCAL(index);

	if (unlock)
		LockRelationForExtension(index, ExclusiveLock);
	for (int i = 0; i < n; i++)
		bufs[i] = ReadBufferExtended(index, forkNum, P_NEW, RBM_NORMAL, NULL);
	if (unlock)
		UnlockRelationForExtension(index, ExclusiveLock);
	return n;
#endif
}

/* PG 18 gave vacuum_delay_point an is_analyze argument */
#if PG_VERSION_NUM >= 180000
#define PgsVacuumDelayPoint() vacuum_delay_point(false)
#else
#define PgsVacuumDelayPoint() vacuum_delay_point()
#endif

/*
 * Pin a page through the buffer that held it last time, skipping the buffer
 * mapping look-up when it still does (false: the caller must ReadBuffer).
 * PG 16 renamed RelFileNode to RelFileLocator.
 */
#if PG_VERSION_NUM >= 160000
#define PgsRelFileNumber(rel) ((rel)->rd_locator.relNumber)
#define PgsReadRecentBuffer(rel, blkno, recent) \
	ReadRecentBuffer((rel)->rd_locator, MAIN_FORKNUM, (blkno), (recent))
#else
typedef Oid RelFileNumber;
#define PgsRelFileNumber(rel) ((rel)->rd_node.relNode)
#define PgsReadRecentBuffer(rel, blkno, recent) \
	ReadRecentBuffer((rel)->rd_node, MAIN_FORKNUM, (blkno), (recent))
#endif

/* PG 16 renamed SetSingleFuncCall to InitMaterializedSRF */
#if PG_VERSION_NUM >= 160000
#define PgsInitMaterializedSRF(fcinfo, flags) InitMaterializedSRF(fcinfo, flags)
#else
#define PgsInitMaterializedSRF(fcinfo, flags) SetSingleFuncCall(fcinfo, flags)
#endif

/* PG 16 added the Datum conversions of ItemPointer to storage/itemptr.h */
#if PG_VERSION_NUM < 160000
#include "storage/itemptr.h"
#define DatumGetItemPointer(X) ((ItemPointer) DatumGetPointer(X))
#define ItemPointerGetDatum(X) PointerGetDatum(X)
#endif

/*
 * PG 16 made BufFileWrite's buffer const and added BufFileReadExact (which
 * raises an error on a short read); PG 15 returns the bytes read.
 */
#if PG_VERSION_NUM >= 160000
#define PgsBufFileWrite(file, ptr, size) BufFileWrite((file), (ptr), (size))
#define PgsBufFileReadExact(file, ptr, size) BufFileReadExact((file), (ptr), (size))
#else
#define PgsBufFileWrite(file, ptr, size) BufFileWrite((file), (void *) (ptr), (size))
#define PgsBufFileReadExact(file, ptr, size) \
	do { \
		size_t		pgs_want_ = (size); \
		if (BufFileRead((file), (ptr), pgs_want_) != pgs_want_) \
			ereport(ERROR, \
					(errcode_for_file_access(), \
					 errmsg("could not read from temporary file: read only part of %zu bytes", pgs_want_))); \
	} while (0)
#endif

#if PG_VERSION_NUM >= 180000
#define PGS_MODULE_MAGIC PG_MODULE_MAGIC_EXT(.name = "pgsieve", .version = "0.1.0")
#else
#define PGS_MODULE_MAGIC PG_MODULE_MAGIC
#endif

/*
 * Parallel index builds: PostgreSQL 17 lets an AM say it builds in parallel
 * (amcanbuildparallel) and then asks the planner itself, in index_build
 * (which also decides when a build must stay serial); before 17 the AM asks
 * plan_create_index_workers (optimizer/planner.h) on its own.
 */
#if PG_VERSION_NUM >= 170000
#define PgsSetAmCanBuildParallel(amroutine) ((amroutine)->amcanbuildparallel = true)
#define PgsIndexBuildWorkers(heap, index, indexInfo) ((indexInfo)->ii_ParallelWorkers)
#else
#define PgsSetAmCanBuildParallel(amroutine) ((void) (amroutine))
#define PgsIndexBuildWorkers(heap, index, indexInfo) \
	plan_create_index_workers(RelationGetRelid(heap), RelationGetRelid(index))
#endif

#endif							/* PGSIEVE_COMPAT_H */
