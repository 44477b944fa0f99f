/*
 * sblock.c — sparse_block's handler, reloptions, GUCs and cost estimate.
 */
#include "postgres.h"

#include <float.h>

#include "access/amapi.h"
#include "access/reloptions.h"
#include "access/xact.h"
#include "commands/progress.h"
#include "commands/vacuum.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "utils/guc.h"
#include "utils/selfuncs.h"

#include "sblock.h"
#include "pgsieve_pages.h"

int			sblock_query_cut = SBLOCK_DEFAULT_QUERY_CUT;
double		sblock_heap_factor = SBLOCK_DEFAULT_HEAP_FACTOR;
int			sblock_top_k = SBLOCK_DEFAULT_TOP_K;

static relopt_kind sblock_relopt_kind;

/* a scan that died in an error leaves the backend's dense query array dirty */
static void
SblockXactCallback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		SblockAbortCleanup();
}

void
SblockInit(void)
{
	RegisterXactCallback(SblockXactCallback, NULL);
	sblock_relopt_kind = add_reloption_kind();
	add_int_reloption(sblock_relopt_kind, "n_postings",
					  "Average posting-list length kept by static pruning (Seismic's n_postings)",
					  SBLOCK_DEFAULT_N_POSTINGS, 1, INT_MAX, AccessExclusiveLock);
	add_real_reloption(sblock_relopt_kind, "centroid_fraction",
					   "Blocks per posting as a fraction of the list length",
					   SBLOCK_DEFAULT_CENTROID_FRACTION, 0.0001, 1.0, AccessExclusiveLock);
	add_real_reloption(sblock_relopt_kind, "summary_energy",
					   "Fraction of a block summary's mass kept (alpha)",
					   SBLOCK_DEFAULT_SUMMARY_ENERGY, 0.01, 1.0, AccessExclusiveLock);
	add_real_reloption(sblock_relopt_kind, "max_fraction",
					   "A posting list holds at most n_postings x max_fraction entries",
					   SBLOCK_DEFAULT_MAX_FRACTION, 0.01, 1e9, AccessExclusiveLock);
	add_int_reloption(sblock_relopt_kind, "min_cluster_size",
					  "Clusters of at most this many documents are dissolved",
					  SBLOCK_DEFAULT_MIN_CLUSTER_SIZE, 0, INT_MAX, AccessExclusiveLock);
	add_int_reloption(sblock_relopt_kind, "doc_cut",
					  "Components of a document used to assign it to a cluster",
					  SBLOCK_DEFAULT_DOC_CUT, 1, SBLOCK_MAX_NNZ, AccessExclusiveLock);

	DefineCustomIntVariable("pgsieve.sparse_query_cut",
							"Query terms whose posting lists a sparse_block scan visits (0: all).",
							NULL, &sblock_query_cut, SBLOCK_DEFAULT_QUERY_CUT, 0, SBLOCK_MAX_NNZ,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("pgsieve.sparse_heap_factor",
							 "A block is skipped when its summary score is below heap_factor x the k-th best score (0: never skip).",
							 NULL, &sblock_heap_factor, SBLOCK_DEFAULT_HEAP_FACTOR, 0.0, 100.0,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgsieve.sparse_top_k",
							"Rows a sparse_block scan ranks per round (the k of its internal top-k).",
							"Set it to the query's LIMIT; if more rows are wanted, later rounds double it.",
							&sblock_top_k, SBLOCK_DEFAULT_TOP_K, 1, 1000000,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgsieve.sparse_cache_mb",
							"Memory per backend for local copies of sparse_block indexes' compact pages (0: none).",
							"Scans then estimate documents from plain memory instead of pinning shared buffers; "
							"only pages a scan touched are copied, and an index too large for it is read "
							"through shared buffers.",
							&sblock_cache_mb, SBLOCK_DEFAULT_CACHE_MB, 0, INT_MAX / 2,
							PGC_USERSET, GUC_UNIT_MB, NULL, NULL, NULL);
}

static bytea *
sblockoptions(Datum reloptions, bool validate)
{
	static const relopt_parse_elt tab[] = {
		{"n_postings", RELOPT_TYPE_INT, offsetof(SblockOptions, nPostings)},
		{"centroid_fraction", RELOPT_TYPE_REAL, offsetof(SblockOptions, centroidFraction)},
		{"summary_energy", RELOPT_TYPE_REAL, offsetof(SblockOptions, summaryEnergy)},
		{"max_fraction", RELOPT_TYPE_REAL, offsetof(SblockOptions, maxFraction)},
		{"min_cluster_size", RELOPT_TYPE_INT, offsetof(SblockOptions, minClusterSize)},
		{"doc_cut", RELOPT_TYPE_INT, offsetof(SblockOptions, docCut)},
	};

	return (bytea *) build_reloptions(reloptions, validate, sblock_relopt_kind,
									  sizeof(SblockOptions), tab, lengthof(tab));
}

/*
 * Cost: a scan reads a few posting lists and scores the documents of the
 * blocks it does not skip, plus the unclustered tail; call it a small
 * fraction of the table, all of it before the first row.
 */
static void
sblockcostestimate(PlannerInfo *root, IndexPath *path, double loop_count,
				   Cost *indexStartupCost, Cost *indexTotalCost,
				   Selectivity *indexSelectivity, double *indexCorrelation,
				   double *indexPages)
{
	IndexOptInfo *index = path->indexinfo;
	double		tuples = Max(index->tuples, 1);
	double		pages = Max(index->pages, 1);
	double		visited = Min(tuples, 2000 + tuples * 0.02);

	if (PgsCostWithoutOrderBy(path, indexStartupCost, indexTotalCost, indexSelectivity,
							  indexCorrelation, indexPages))
		return;
	*indexStartupCost = visited * (cpu_index_tuple_cost + 10 * cpu_operator_cost) +
		Min(pages, visited) * random_page_cost * 0.1;
	*indexTotalCost = *indexStartupCost + tuples * cpu_index_tuple_cost * 0.01;
	*indexSelectivity = 1.0;
	*indexCorrelation = 0;
	*indexPages = Min(pages, visited);
}

static char *
sblockbuildphasename(int64 phasenum)
{
	switch (phasenum)
	{
		case PROGRESS_CREATEIDX_SUBPHASE_INITIALIZE:
			return "initializing";
		case SBLOCK_PHASE_LOAD:
			return "loading tuples";
		case SBLOCK_PHASE_FORWARD:
			return "writing forward index";
		case SBLOCK_PHASE_LISTS:
			return "pruning, clustering and summarizing posting lists";
		default:
			return NULL;
	}
}

static bool
sblockvalidate(Oid opclassoid)
{
	return true;
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(sparse_block_handler);
Datum
sparse_block_handler(PG_FUNCTION_ARGS)
{
	IndexAmRoutine *amroutine = PgsMakeOrderByAmRoutine();

	amroutine->amsupport = 0;
	amroutine->amusemaintenanceworkmem = true;
	PgsSetAmCanBuildParallel(amroutine);	/* the build launches workers (sblockbuild.c) */
	amroutine->ambuild = sblockbuild;
	amroutine->ambuildempty = sblockbuildempty;
	amroutine->aminsert = sblockinsert;
	amroutine->ambulkdelete = sblockbulkdelete;
	amroutine->amvacuumcleanup = sblockvacuumcleanup;
	amroutine->amcostestimate = sblockcostestimate;
	amroutine->amoptions = sblockoptions;
	amroutine->ambuildphasename = sblockbuildphasename;
	amroutine->amvalidate = sblockvalidate;
	amroutine->ambeginscan = sblockbeginscan;
	amroutine->amrescan = sblockrescan;
	amroutine->amgettuple = sblockgettuple;
	amroutine->amendscan = sblockendscan;

	PG_RETURN_POINTER(amroutine);
}
