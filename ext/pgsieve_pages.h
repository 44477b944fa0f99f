/*
 * pgsieve_pages.h — page helpers shared by the access methods.
 */
#ifndef PGSIEVE_PAGES_H
#define PGSIEVE_PAGES_H

#include "postgres.h"

#include "storage/bufpage.h"
#include "utils/rel.h"

#include "access/genam.h"
#include "access/relscan.h"

/*
 * For index-only scans that need no column (the planner picks them for
 * SELECT count(*) when sequential scans are disabled): hand the executor an
 * all-NULL index tuple, built once into *cache in ctx.
 */
extern void PgsSetNullIndexTuple(IndexScanDesc scan, IndexTuple *cache, MemoryContext ctx);

/* Append a page image at the end of a fork, WAL-logged as a full image. */
extern BlockNumber PgsAppendPage(Relation index, ForkNumber forkNum, Page image);

#endif							/* PGSIEVE_PAGES_H */
