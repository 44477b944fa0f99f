/*
 * bscan.c — binary_scan's handler, reloptions, GUCs, cost estimate and
 * opclass support functions.
 */
#include "postgres.h"

#include <float.h>

#include "access/amapi.h"
#include "access/reloptions.h"
#include "commands/progress.h"
#include "commands/vacuum.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "utils/guc.h"
#include "utils/selfuncs.h"

#include "bscan.h"
#include "pgsieve_pages.h"

int			bscan_rerank = BSCAN_DEFAULT_RERANK;
int			bscan_oversample = BSCAN_DEFAULT_OVERSAMPLE;

static relopt_kind bscan_relopt_kind;

/* the quantizer reloption's values (multivec_fde has the same reloption) */
relopt_enum_elt_def bscan_quantizer_values[] = {
	{"sign", BSCAN_QUANTIZER_SIGN},
	{"mean", BSCAN_QUANTIZER_MEAN},
	{(const char *) NULL}
};

void
BscanInit(void)
{
	bscan_relopt_kind = add_reloption_kind();
	add_enum_reloption(bscan_relopt_kind, "quantizer",
					   "How vectors become bits: sign (x > 0) or mean (x > per-dimension mean learned at build)",
					   bscan_quantizer_values, BSCAN_QUANTIZER_MEAN,
					   "Valid values are \"sign\" and \"mean\".",
					   AccessExclusiveLock);

	DefineCustomIntVariable("pgsieve.binary_rerank",
							"Rows a binary_scan index re-ranks by exact distance per batch.",
							"Think of it as rerank multiplier times LIMIT; more gives higher recall.",
							&bscan_rerank, BSCAN_DEFAULT_RERANK, BSCAN_MIN_RERANK, BSCAN_MAX_RERANK,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgsieve.binary_oversample",
							"Hamming candidates a binary_scan index gathers per re-ranked row.",
							"binary_rerank x binary_oversample codes are gathered by Hamming distance, then "
							"narrowed to binary_rerank by the asymmetric score of the float query against "
							"each code; 1 skips the asymmetric stage.",
							&bscan_oversample, BSCAN_DEFAULT_OVERSAMPLE, 1, BSCAN_MAX_OVERSAMPLE,
							PGC_USERSET, 0, NULL, NULL, NULL);
}

static bytea *
bscanoptions(Datum reloptions, bool validate)
{
	static const relopt_parse_elt tab[] = {
		{"quantizer", RELOPT_TYPE_ENUM, offsetof(BscanOptions, quantizer)},
	};

	return (bytea *) build_reloptions(reloptions, validate, bscan_relopt_kind,
									  sizeof(BscanOptions), tab, lengthof(tab));
}

/*
 * Cost: a scan reads every page of codes (scanPages: every index page, or
 * for multivec_fde with token pages only its data pages) and computes one
 * Hamming distance per row before it returns its first row (so it is all
 * startup cost), scores the gathered candidates asymmetrically, then fetches
 * rerank rows (heap rows, or stored values) to re-rank them.
 */
void
BscanCostEstimate(PlannerInfo *root, IndexPath *path, int rerank, int oversample, double scanPages,
				  Cost *indexStartupCost, Cost *indexTotalCost,
				  Selectivity *indexSelectivity, double *indexCorrelation,
				  double *indexPages)
{
	IndexOptInfo *index = path->indexinfo;
	double		tuples = Max(index->tuples, 1);
	double		pages = Max(Min(scanPages, (double) index->pages), 1);
	double		reranked = Min(rerank, tuples);
	double		gathered = Min((double) rerank * oversample, tuples);

	if (PgsCostWithoutOrderBy(path, indexStartupCost, indexTotalCost, indexSelectivity,
							  indexCorrelation, indexPages))
		return;

	*indexStartupCost = pages * seq_page_cost +
		tuples * cpu_operator_cost +
		gathered * cpu_operator_cost * 4 +
		reranked * (cpu_tuple_cost + cpu_operator_cost + 0.25 * random_page_cost);
	*indexTotalCost = *indexStartupCost + tuples * cpu_index_tuple_cost * 0.01;
	*indexSelectivity = 1.0;
	*indexCorrelation = 0;
	*indexPages = pages;
}

static void
bscancostestimate(PlannerInfo *root, IndexPath *path, double loop_count,
				  Cost *indexStartupCost, Cost *indexTotalCost,
				  Selectivity *indexSelectivity, double *indexCorrelation,
				  double *indexPages)
{
	BscanCostEstimate(root, path, bscan_rerank, bscan_oversample, (double) path->indexinfo->pages,
					  indexStartupCost, indexTotalCost,
					  indexSelectivity, indexCorrelation, indexPages);
}

/* the re-rank and oversampling settings that apply to an index of this kind */
int
BscanRerank(int kind)
{
	return kind == BSCAN_KIND_MULTIVEC ? mvfde_rerank : bscan_rerank;
}

int
BscanOversample(int kind)
{
	return kind == BSCAN_KIND_MULTIVEC ? mvfde_oversample : bscan_oversample;
}

char *
bscanbuildphasename(int64 phasenum)
{
	switch (phasenum)
	{
		case PROGRESS_CREATEIDX_SUBPHASE_INITIALIZE:
			return "initializing";
		case BSCAN_PHASE_STATISTICS:
			return "learning quantization statistics";
		case BSCAN_PHASE_QUANTIZE:
			return "quantizing tuples";
		default:
			return NULL;
	}
}

bool
bscanvalidate(Oid opclassoid)
{
	return true;
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(binary_scan_handler);
Datum
binary_scan_handler(PG_FUNCTION_ARGS)
{
	IndexAmRoutine *amroutine = PgsMakeOrderByAmRoutine();

	amroutine->amsupport = 1;
	amroutine->amusemaintenanceworkmem = false;
	amroutine->ambuild = bscanbuild;
	amroutine->ambuildempty = bscanbuildempty;
	amroutine->aminsert = bscaninsert;
	amroutine->ambulkdelete = bscanbulkdelete;
	amroutine->amvacuumcleanup = bscanvacuumcleanup;
	amroutine->amcostestimate = bscancostestimate;
	amroutine->amoptions = bscanoptions;
	amroutine->ambuildphasename = bscanbuildphasename;
	amroutine->amvalidate = bscanvalidate;
	amroutine->ambeginscan = bscanbeginscan;
	amroutine->amrescan = bscanrescan;
	amroutine->amgettuple = bscangettuple;
	amroutine->amendscan = bscanendscan;

	PG_RETURN_POINTER(amroutine);
}

/* support function 1 of each opclass: which kind of value is indexed */
PGDLLEXPORT PG_FUNCTION_INFO_V1(binary_scan_vector_support);
Datum
binary_scan_vector_support(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(BSCAN_KIND_VECTOR);
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(binary_scan_halfvec_support);
Datum
binary_scan_halfvec_support(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(BSCAN_KIND_HALFVEC);
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(binary_scan_bit_support);
Datum
binary_scan_bit_support(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(BSCAN_KIND_BIT);
}
