/*
 * mvfde.c — the multivec_fde index access method: MUVERA candidate
 * generation with exact MaxSim re-ranking, for `ORDER BY mv @# q LIMIT k`.
 *
 * multivec_fde runs on binary_scan's engine (ext/binary_scan): each
 * document's MUVERA fixed dimensional encoding (FDE) is computed at build or
 * insert time with the shared kernel (kernels/pgs_fde.c, the one the SQL
 * function muvera_fde and the Python client use), and stored as one bit per
 * FDE dimension (above the dimension's mean, learned at build).  A scan
 * encodes the query's FDE with the parameters persisted in the meta page,
 * gathers candidates by Hamming distance, narrows them by the asymmetric
 * score of the float query FDE against each code (FDE inner products
 * approximate MaxSim), re-ranks the best pgsieve.fde_rerank by the exact
 * MaxSim of the ORDER BY operator on the heap row, and returns rows in exact
 * MaxSim order — continuing with further candidates when a filter rejects
 * rows.  Inserts, VACUUM and WAL are binary_scan's.
 *
 * This file holds what is multivec-specific: the handler and reloptions
 * (the FDE parameters), the GUCs, and turning a multivec into its FDE.
 */
#include "postgres.h"

#include <math.h>

#include "access/amapi.h"
#include "access/genam.h"
#include "access/reloptions.h"
#include "utils/guc.h"

#include "binary_scan/bscan.h"
#include "multivec/multivec.h"
#include "pgs_fde.h"
#include "pgsieve.h"
#include "pgsieve_pages.h"

/* defaults: the MUVERA paper's main setting (R = 20, ksim = 5, d' = 16: 10,240 dimensions) */
#define MVFDE_DEFAULT_REPS		20
#define MVFDE_DEFAULT_KSIM		5
#define MVFDE_DEFAULT_DPROJ		16
#define MVFDE_DEFAULT_SEED		42
#define MVFDE_DEFAULT_RERANK	1000
#define MVFDE_DEFAULT_OVERSAMPLE 10

int			mvfde_rerank = MVFDE_DEFAULT_RERANK;
int			mvfde_oversample = MVFDE_DEFAULT_OVERSAMPLE;

static relopt_kind mvfde_relopt_kind;


void
MvfdeInit(void)
{
	mvfde_relopt_kind = add_reloption_kind();
	add_int_reloption(mvfde_relopt_kind, "reps", "MUVERA repetitions R",
					  MVFDE_DEFAULT_REPS, 1, PGS_FDE_MAX_REPS, AccessExclusiveLock);
	add_int_reloption(mvfde_relopt_kind, "ksim", "MUVERA SimHash bits (2^ksim partitions per repetition)",
					  MVFDE_DEFAULT_KSIM, 0, PGS_FDE_MAX_KSIM, AccessExclusiveLock);
	add_int_reloption(mvfde_relopt_kind, "dproj", "MUVERA inner projection dimensions (0: none)",
					  MVFDE_DEFAULT_DPROJ, 0, 4096, AccessExclusiveLock);
	add_int_reloption(mvfde_relopt_kind, "final_dim", "MUVERA final projection dimensions (0: none)",
					  0, 0, BSCAN_MAX_DIM, AccessExclusiveLock);
	add_int_reloption(mvfde_relopt_kind, "seed", "seed of the FDE's random projections",
					  MVFDE_DEFAULT_SEED, 0, PG_INT32_MAX, AccessExclusiveLock);
	add_enum_reloption(mvfde_relopt_kind, "quantizer",
					   "How FDE dimensions become bits: sign (x > 0) or mean (x > the dimension's mean)",
					   bscan_quantizer_values, BSCAN_QUANTIZER_MEAN,
					   "Valid values are \"sign\" and \"mean\".",
					   AccessExclusiveLock);
	add_bool_reloption(mvfde_relopt_kind, "store_tokens",
					   "Keep a copy of each document's tokens in the index, so the exact MaxSim re-rank "
					   "reads index pages instead of heap rows and their TOAST chunks",
					   true, AccessExclusiveLock);

	DefineCustomIntVariable("pgsieve.fde_rerank",
							"Rows a multivec_fde index re-ranks by exact MaxSim per batch.",
							"More gives higher recall; each costs one MaxSim (and one heap row without store_tokens).",
							&mvfde_rerank, MVFDE_DEFAULT_RERANK, BSCAN_MIN_RERANK, BSCAN_MAX_RERANK,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgsieve.fde_oversample",
							"FDE candidates a multivec_fde index gathers by Hamming distance per re-ranked row.",
							"fde_rerank x fde_oversample codes are gathered, then narrowed to fde_rerank by "
							"the asymmetric score of the query's FDE; 1 skips that stage.",
							&mvfde_oversample, MVFDE_DEFAULT_OVERSAMPLE, 1, BSCAN_MAX_OVERSAMPLE,
							PGC_USERSET, 0, NULL, NULL, NULL);
}

static bytea *
mvfdeoptions(Datum reloptions, bool validate)
{
	static const relopt_parse_elt tab[] = {
		{"quantizer", RELOPT_TYPE_ENUM, offsetof(BscanOptions, quantizer)},
		{"reps", RELOPT_TYPE_INT, offsetof(BscanOptions, reps)},
		{"ksim", RELOPT_TYPE_INT, offsetof(BscanOptions, ksim)},
		{"dproj", RELOPT_TYPE_INT, offsetof(BscanOptions, dproj)},
		{"final_dim", RELOPT_TYPE_INT, offsetof(BscanOptions, finalDim)},
		{"seed", RELOPT_TYPE_INT, offsetof(BscanOptions, seed)},
		{"store_tokens", RELOPT_TYPE_BOOL, offsetof(BscanOptions, storeTokens)},
	};

	return (bytea *) build_reloptions(reloptions, validate, mvfde_relopt_kind,
									  sizeof(BscanOptions), tab, lengthof(tab));
}

static void
mvfdecostestimate(PlannerInfo *root, IndexPath *path, double loop_count,
				  Cost *indexStartupCost, Cost *indexTotalCost,
				  Selectivity *indexSelectivity, double *indexCorrelation,
				  double *indexPages)
{
	double		scanPages = (double) path->indexinfo->pages;
	Relation	index = index_open(path->indexinfo->indexoid, NoLock);	/* the planner holds a lock */
	BscanInfo	info;

	/* with token pages the scan reads only the data pages (bscan.h) */
	BscanReadInfo(index, &info);
	if (info.p.storeTokens && info.p.capacity > 0)
		scanPages = 1 + info.p.thresholdPages + ceil(Max(path->indexinfo->tuples, 1) / info.p.capacity);
	index_close(index, NoLock);
	BscanCostEstimate(root, path, mvfde_rerank, mvfde_oversample, scanPages, indexStartupCost, indexTotalCost,
					  indexSelectivity, indexCorrelation, indexPages);
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_fde_handler);
Datum
multivec_fde_handler(PG_FUNCTION_ARGS)
{
	IndexAmRoutine *amroutine = PgsMakeOrderByAmRoutine();

	amroutine->amsupport = 1;
	amroutine->amusemaintenanceworkmem = false;
	amroutine->ambuild = bscanbuild;
	amroutine->ambuildempty = bscanbuildempty;
	amroutine->aminsert = bscaninsert;
	amroutine->ambulkdelete = bscanbulkdelete;
	amroutine->amvacuumcleanup = bscanvacuumcleanup;
	amroutine->amcostestimate = mvfdecostestimate;
	amroutine->amoptions = mvfdeoptions;
	amroutine->ambuildphasename = bscanbuildphasename;
	amroutine->amvalidate = bscanvalidate;
	amroutine->ambeginscan = bscanbeginscan;
	amroutine->amrescan = bscanrescan;
	amroutine->amgettuple = bscangettuple;
	amroutine->amendscan = bscanendscan;

	PG_RETURN_POINTER(amroutine);
}

/* support function 1 of multivec_maxsim_ops */
PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_fde_support);
Datum
multivec_fde_support(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(BSCAN_KIND_MULTIVEC);
}

/* The kernel's view of the persisted parameters. */
static PgsFdeParams
MvfdeKernelParams(const BscanParams *p, bool query)
{
	PgsFdeParams k;

	memset(&k, 0, sizeof(k));
	k.dim = p->tokenDim;
	k.reps = p->fdeReps;
	k.ksim = p->fdeKsim;
	k.dproj = p->fdeDproj;
	k.final_dim = p->fdeFinalDim;
	k.seed = p->fdeSeed;
	k.fill_empty = !query;		/* documents are filled, queries never (the paper's choice) */
	return k;
}

/* FDE length for tokens of p->tokenDim dimensions (validating the parameters). */
static int
MvfdeOutputDims(const BscanParams *p)
{
	PgsFdeParams k = MvfdeKernelParams(p, false);
	size_t		dims;

	PgsFdeReportError("multivec_fde", pgs_fde_check(&k, 0));
	dims = pgs_fde_output_dim(&k);
	if (dims > BSCAN_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("multivec_fde: the FDE would have %zu dimensions, more than the index's %d",
						dims, BSCAN_MAX_DIM),
				 errhint("Lower reps, ksim or dproj, or set final_dim.")));
	return (int) dims;
}

/*
 * The build's parameters: the FDE's from the reloptions, and the dimensions
 * when the column's typmod fixes the token dimensions.
 */
void
MvfdeInitParams(Relation index, BscanParams *p)
{
	BscanOptions *opts = (BscanOptions *) index->rd_options;
	int32		typmod = TupleDescAttr(RelationGetDescr(index), 0)->atttypmod;

	p->fdeReps = opts ? opts->reps : MVFDE_DEFAULT_REPS;
	p->fdeKsim = opts ? opts->ksim : MVFDE_DEFAULT_KSIM;
	p->fdeDproj = opts ? opts->dproj : MVFDE_DEFAULT_DPROJ;
	p->fdeFinalDim = opts ? opts->finalDim : 0;
	p->fdeSeed = (uint64) (opts ? opts->seed : MVFDE_DEFAULT_SEED);
	p->quantizer = opts ? opts->quantizer : BSCAN_QUANTIZER_MEAN;
	p->storeTokens = (opts ? opts->storeTokens : true) ? 1 : 0;
	if (typmod > 0 && MV_TYPMOD_DIM(typmod) > 0)
	{
		p->tokenDim = MV_TYPMOD_DIM(typmod);
		p->dims = MvfdeOutputDims(p);
		p->codeBytes = (p->dims + 7) / 8;
		p->capacity = BscanCapacity(p);
		if (p->capacity < 1)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("multivec_fde index cannot hold FDE codes of %d bits", p->dims),
					 errhint("Lower reps, ksim or dproj, or set final_dim.")));
	}
}

/*
 * The FDE dimensions of a multivec value.  The first value indexed fixes the
 * token dimensions; every later one, and every query, must match them.
 */
int
MvfdeValueDims(Datum value, BscanParams *p)
{
	MultiVec   *mv = DatumGetMultiVec(value);

	if (p->tokenDim == 0)
		p->tokenDim = mv->dim;
	else if (mv->dim != p->tokenDim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("multivec_fde index expects tokens of %d dimensions, got %d",
						p->tokenDim, mv->dim)));
	return MvfdeOutputDims(p);
}

/* A multivec's FDE: the query encoding (SUM) or the document's (AVERAGE, filled). */
void
MvfdeValueToFloats(Datum value, const BscanParams *p, bool query, float *out)
{
	MultiVec   *mv = DatumGetMultiVec(value);
	PgsFdeParams k;

	if (mv->dim != p->tokenDim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("multivec_fde index expects tokens of %d dimensions, got %d",
						p->tokenDim, mv->dim)));
	k = MvfdeKernelParams(p, query);
	PgsFdeEncode("multivec_fde", &k, query, MultiVecFloats(mv), mv->ntok, out);
}
