/*
 * pgsieve_pages.h — helpers shared by the access methods: pages, scans, the
 * handler's common part.
 */
#ifndef PGSIEVE_PAGES_H
#define PGSIEVE_PAGES_H

#include "postgres.h"

#include "storage/bufpage.h"
#include "utils/rel.h"

#include "access/amapi.h"
#include "access/genam.h"
#include "access/relscan.h"

/*
 * For index-only scans that need no column (the planner picks them for
 * SELECT count(*) when sequential scans are disabled): hand the executor an
 * all-NULL index tuple, built once into *cache in ctx.
 */
extern void PgsSetNullIndexTuple(IndexScanDesc scan, IndexTuple *cache, MemoryContext ctx);

/*
 * An IndexAmRoutine with what every pgsieve access method shares: one key
 * column, no operator strategies, scans only by ORDER BY distance operator,
 * no bitmap, backward, unique, parallel or index-only scans.  The caller
 * fills in its support count and callbacks.
 */
extern IndexAmRoutine *PgsMakeOrderByAmRoutine(void);

/* Allocate the ORDER BY values an ordering scan reports to the executor. */
extern void PgsInitOrderByScan(IndexScanDesc scan, int norderbys);

/* amrescan's common part: keep the new scan keys and ORDER BY keys */
extern void PgsRescanKeys(IndexScanDesc scan, ScanKey keys, ScanKey orderbys);

/*
 * amcostestimate's common part: an ordering-only index is useless to a path
 * without ORDER BY distance; returns true (costs set prohibitive) then.
 */
struct IndexPath;
extern bool PgsCostWithoutOrderBy(struct IndexPath *path, Cost *indexStartupCost, Cost *indexTotalCost,
								  Selectivity *indexSelectivity, double *indexCorrelation,
								  double *indexPages);

/* Write a page image as block 0 of the init fork (unlogged indexes), WAL-logged. */
extern void PgsWriteInitForkPage(Relation index, Page image);

/* Append a page image at the end of a fork, WAL-logged as a full image. */
extern BlockNumber PgsAppendPage(Relation index, ForkNumber forkNum, Page image);

/* pages a build stages before PgsAppendPages writes them (256 kB) */
#define PGS_APPEND_BATCH 32
extern void PgsAppendPages(Relation index, ForkNumber forkNum, const char *images, int count);

#endif							/* PGSIEVE_PAGES_H */
