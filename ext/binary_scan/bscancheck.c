/*
 * bscancheck.c — pgsieve_index_check for binary_scan and multivec_fde
 * indexes (same pages; see bscan.h for the layout).
 *
 * Checks, in order:
 *   meta page   page kind, magic, version, pd_lower; the kind and metric
 *               agree with the operator class; quantizer; dims, codeBytes
 *               and capacity agree with each other and with the column's
 *               typmod; the number of statistics pages fits dims and the
 *               quantizer; insertPage / nullPage lie among the data pages;
 *               multivec_fde: the persisted FDE parameters are valid and
 *               give dims, other kinds keep them zero;
 *   statistics  blocks 1..T are statistics pages holding exactly 2 x dims
 *               finite floats (thresholds, then non-negative scales);
 *   data pages  every later block is a data page, a null page, or all zero
 *               (a relation extension a crash cut short); count within the
 *               page's capacity, pd_lower covering exactly the used TIDs
 *               (and token pointers), every TID a valid heap TID, no code
 *               bit set beyond dims; the meta page's insert page and null
 *               page have their kind;
 *   token pages (multivec_fde, store_tokens) pd_lower and the continuation
 *               link in range; every entry's stored value readable whole
 *               (its pages, links and length); the chains of data pages and
 *               of null pages (bscan.h) reach every page of their kind.
 * With heapallindexed every code (or NULL row) becomes an entry, and a heap
 * row's fingerprint is the code BscanEncode makes of its value today (and,
 * with store_tokens, the value's bytes, which the stored copy must equal).
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "miscadmin.h"

#include "bscan.h"
#include "multivec/multivec.h"
#include "pgs_fde.h"
#include "pgsieve_check.h"

#define BSCAN_CHECK_SEED	UINT64CONST(0x6273636e636f6465)

typedef struct BscanCheckAm
{
	BscanInfo	info;
	uint8	   *code;
	float	   *scratch;
} BscanCheckAm;

/* an entry's fingerprint: its code, and its stored value (NULL without store_tokens) */
static uint64
BscanCodeFingerprint(const uint8 *code, int codeBytes, const struct varlena *value)
{
	uint64		fp = hash_bytes_extended(code, codeBytes, BSCAN_CHECK_SEED);

	if (value)
		fp = hash_bytes_extended((const unsigned char *) value, VARSIZE(value), fp);
	return fp;
}

static bool
BscanHeapFingerprint(PgsCheckState *st, Datum value, bool isnull, uint64 *fp)
{
	BscanCheckAm *am = (BscanCheckAm *) st->amstate;
	BscanParams p = am->info.p;

	if (isnull)
	{
		*fp = PGS_CHECK_NULL_FP;
		return true;
	}
	if (am->info.p.dims == 0)
		return false;			/* the index has never held a value */
	value = PointerGetDatum(PG_DETOAST_DATUM(value));
	/* a copy of the parameters: for a multivec this may fix tokenDim */
	if (BscanValueDims(value, &p) != am->info.p.dims || p.tokenDim != am->info.p.tokenDim)
		return false;
	BscanEncode(value, &am->info, am->code, am->scratch);
	*fp = BscanCodeFingerprint(am->code, am->info.p.codeBytes,
							   am->info.p.storeTokens ? (struct varlena *) DatumGetPointer(value) : NULL);
	return true;
}

/* The meta page's parameters, against the catalog and against each other. */
static void
BscanCheckParams(PgsCheckState *st, const BscanParams *p, BlockNumber nblocks)
{
	Relation	index = st->index;
	int32		typmod = TupleDescAttr(RelationGetDescr(index), 0)->atttypmod;
	int			kind = BscanGetKind(index);
	int			metric = BscanGetMetric(index);

	if (p->kind != kind)
		PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "meta page says value kind %d, the operator class %d",
						p->kind, kind);
	if (p->metric != metric)
		PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "meta page says distance strategy %d, the operator class %d",
						p->metric, metric);
	if (p->quantizer != BSCAN_QUANTIZER_SIGN && p->quantizer != BSCAN_QUANTIZER_MEAN)
		PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "unknown quantizer %d", p->quantizer);
	if (kind == BSCAN_KIND_BIT && p->quantizer != BSCAN_QUANTIZER_SIGN)
		PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "a bit index must store its values as they are (sign quantizer)");

	if (p->dims < 0 || p->dims > BSCAN_MAX_DIM)
		PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "dims %d out of range", p->dims);
	if (p->dims == 0)
	{
		if (p->codeBytes != 0 || p->capacity != 0)
			PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "no dimensions yet, but code size %d and capacity %d",
							p->codeBytes, p->capacity);
	}
	else if (p->codeBytes != (p->dims + 7) / 8 || p->capacity != BscanCapacity(p) || p->capacity < 1)
		PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "%d dimensions, but code size %d and capacity %d",
						p->dims, p->codeBytes, p->capacity);

	if (kind == BSCAN_KIND_MULTIVEC)
	{
		PgsFdeParams k;

		if (typmod > 0 && MV_TYPMOD_DIM(typmod) > 0 && p->tokenDim != MV_TYPMOD_DIM(typmod))
			PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "token dimensions %d, the column's %d",
							p->tokenDim, MV_TYPMOD_DIM(typmod));
		if (p->tokenDim < 0 || (p->tokenDim == 0) != (p->dims == 0))
			PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "token dimensions %d with FDE dimensions %d",
							p->tokenDim, p->dims);
		memset(&k, 0, sizeof(k));
		k.dim = Max(p->tokenDim, 1);	/* validates the other parameters before the first value */
		k.reps = p->fdeReps;
		k.ksim = p->fdeKsim;
		k.dproj = p->fdeDproj;
		k.final_dim = p->fdeFinalDim;
		k.seed = p->fdeSeed;
		k.fill_empty = 1;
		if (p->fdeSeed > (uint64) PG_INT32_MAX || pgs_fde_check(&k, 0) != 0)
			PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO,
							"invalid FDE parameters (reps %d, ksim %d, dproj %d, final_dim %d, seed " UINT64_FORMAT ")",
							p->fdeReps, p->fdeKsim, p->fdeDproj, p->fdeFinalDim, p->fdeSeed);
		if (p->tokenDim > 0 && pgs_fde_output_dim(&k) != (size_t) p->dims)
			PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "FDE parameters give %zu dimensions, the meta page says %d",
							pgs_fde_output_dim(&k), p->dims);
		if (p->storeTokens != 0 && p->storeTokens != 1)
			PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "store_tokens flag is %d", p->storeTokens);
		if (BlockNumberIsValid(p->tokenPage) &&
			(!p->storeTokens || p->tokenPage <= p->thresholdPages || p->tokenPage >= nblocks ||
			 p->tokenFree > BSCAN_TOKENS_END))
			PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "token page %u (free from %u) out of place",
							p->tokenPage, p->tokenFree);
	}
	else
	{
		if (typmod > 0 && p->dims != typmod)
			PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "%d dimensions, the column's typmod %d", p->dims, typmod);
		if (p->tokenDim != 0 || p->fdeReps != 0 || p->fdeKsim != 0 || p->fdeDproj != 0 ||
			p->fdeFinalDim != 0 || p->fdeSeed != 0 || p->storeTokens != 0 || BlockNumberIsValid(p->tokenPage))
			PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "FDE parameters set on a %s index",
							kind == BSCAN_KIND_BIT ? "bit" : "vector");
	}

	if (p->quantizer == BSCAN_QUANTIZER_MEAN)
	{
		int64		floats = 2 * (int64) p->dims;
		int64		pages = (floats + BSCAN_THRESHOLDS_PER_PAGE - 1) / BSCAN_THRESHOLDS_PER_PAGE;

		if (p->dims == 0 || (int64) p->thresholdPages != pages)
			PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "mean quantizer over %d dimensions with %u statistics pages",
							p->dims, p->thresholdPages);
	}
	else if (p->thresholdPages != 0)
		PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "sign quantizer with %u statistics pages", p->thresholdPages);
	if ((int64) p->thresholdPages + 1 > (int64) nblocks)
		PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "%u statistics pages, but the index has %u blocks",
						p->thresholdPages, nblocks);

	if (BlockNumberIsValid(p->insertPage) && (p->insertPage <= p->thresholdPages || p->insertPage >= nblocks))
		PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "insert page %u is not a data page block (%u..%u)",
						p->insertPage, p->thresholdPages + 1, nblocks - 1);
	if (BlockNumberIsValid(p->nullPage) && (p->nullPage <= p->thresholdPages || p->nullPage >= nblocks))
		PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "null page %u is not a data page block (%u..%u)",
						p->nullPage, p->thresholdPages + 1, nblocks - 1);
}

/* Blocks 1..T: 2 x dims floats, thresholds then standard deviations. */
static void
BscanCheckStatistics(PgsCheckState *st, const BscanParams *p, Page page)
{
	int			total = 2 * p->dims;
	int			done = 0;

	for (BlockNumber b = 1; b <= p->thresholdPages; b++)
	{
		int			n = Min((int) BSCAN_THRESHOLDS_PER_PAGE, total - done);
		const float *x;

		if (!PgsCheckReadPage(st, b, page, sizeof(BscanPageOpaqueData)))
			PgsCheckCorrupt(st, b, "statistics page is all zero");
		if (BscanPageGetOpaque(page)->kind != BSCAN_PAGE_THRESHOLDS)
			PgsCheckCorrupt(st, b, "page of kind %u where a statistics page belongs",
							BscanPageGetOpaque(page)->kind);
		if (n <= 0 || ((PageHeader) page)->pd_lower != MAXALIGN(SizeOfPageHeaderData) + sizeof(float) * n)
			PgsCheckCorrupt(st, b, "statistics page holds %u bytes, expected %d floats",
							(unsigned) (((PageHeader) page)->pd_lower - MAXALIGN(SizeOfPageHeaderData)), n);
		x = (const float *) PageGetContents(page);
		for (int i = 0; i < n; i++)
		{
			bool		scale = done + i >= p->dims;

			if (isnan(x[i]) || isinf(x[i]) || (scale && x[i] < 0))
				PgsCheckCorrupt(st, b, "%s of dimension %d is %g", scale ? "scale" : "threshold",
								(done + i) % p->dims, x[i]);
		}
		done += n;
	}
}

void
BscanCheckIndex(PgsCheckState *st)
{
	Relation	index = st->index;
	Page		page = palloc(BLCKSZ);
	BscanMetaPageData meta;
	BscanParams *p = &meta.p;
	BlockNumber nblocks;
	uint32		ndata = 0,
				nnull = 0,
				ntoken = 0,
				nzero = 0;
	char	   *tokenBuf = NULL;
	Size		tokenBufSize = 0;
	BlockNumber tokenBlocks;		/* bounds token pointers; grows if inserts extend the index */
	int64		entries = 0,
				nullEntries = 0;
	uint8		padMask;

	if (RelationGetNumberOfBlocks(index) == 0)
		PgsCheckCorrupt(st, InvalidBlockNumber, "the relation has no blocks (no meta page)");
	if (!PgsCheckReadPage(st, BSCAN_METAPAGE_BLKNO, page, sizeof(BscanPageOpaqueData)))
		PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "meta page is all zero");
	if (BscanPageGetOpaque(page)->kind != BSCAN_PAGE_META)
		PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "page of kind %u where the meta page belongs",
						BscanPageGetOpaque(page)->kind);
	memcpy(&meta, BscanPageGetMeta(page), sizeof(meta));
	if (meta.magic != BSCAN_MAGIC)
		PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "meta page magic is 0x%08x, expected 0x%08x",
						meta.magic, BSCAN_MAGIC);
	if (meta.version < BSCAN_MIN_VERSION || meta.version > BSCAN_VERSION)
		PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "meta page version is %u, expected %d",
						meta.version, BSCAN_VERSION);
	if (meta.version < 3)
	{
		/* as BscanReadInfo reads it; its meta page ended at fdeSeed */
		p->storeTokens = 0;
		p->tokenPage = InvalidBlockNumber;
		p->tokenFree = 0;
	}
	else if (((PageHeader) page)->pd_lower != MAXALIGN(SizeOfPageHeaderData) + sizeof(BscanMetaPageData))
		PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "meta page pd_lower is %u",
						(unsigned) ((PageHeader) page)->pd_lower);

	/* after the meta page: a page an insert adds then lies below nblocks */
	nblocks = RelationGetNumberOfBlocks(index);
	tokenBlocks = nblocks;
	BscanCheckParams(st, p, nblocks);
	BscanCheckStatistics(st, p, page);

	padMask = (p->dims % 8) ? (uint8) (0xff >> (p->dims % 8)) : 0;
	for (BlockNumber blkno = p->thresholdPages + 1; blkno < nblocks; blkno++)
	{
		BscanPageOpaque opaque;
		ItemPointerData *tids;
		BscanTid   *dataTids;
		int			capacity;

		if (!PgsCheckReadPage(st, blkno, page, sizeof(BscanPageOpaqueData)))
		{
			/* a relation extension whose WAL record a crash cut off: unused */
			if (blkno == p->insertPage || blkno == p->nullPage)
				PgsCheckCorrupt(st, blkno, "the meta page's %s page is all zero",
								blkno == p->insertPage ? "insert" : "null");
			nzero++;
			continue;
		}
		opaque = BscanPageGetOpaque(page);
		if (opaque->kind == BSCAN_PAGE_DATA)
		{
			const uint8 *codes = BscanPageCodes(page);

			if (p->dims == 0)
				PgsCheckCorrupt(st, blkno, "data page in an index that has no dimensions yet");
			if (blkno == p->nullPage)
				PgsCheckCorrupt(st, blkno, "the meta page's null page is a data page");
			capacity = p->capacity;
			if (opaque->count > capacity)
				PgsCheckCorrupt(st, blkno, "data page holds %u entries, its capacity is %d", opaque->count, capacity);
			if (((PageHeader) page)->pd_lower != BscanDataPageLower(p, opaque->count))
				PgsCheckCorrupt(st, blkno, "data page pd_lower %u does not end its %u entries",
								(unsigned) ((PageHeader) page)->pd_lower, opaque->count);
			dataTids = BscanPageTids(page, capacity, p->codeBytes);
			for (int i = 0; i < opaque->count; i++)
			{
				const uint8 *code = codes + (Size) i * p->codeBytes;
				ItemPointerData tid = BscanTidGet(&dataTids[i]);	/* maybe misaligned */
				struct varlena *value = NULL;

				if (p->storeTokens)
				{
					/* its pages, links and length; raises index_corrupted if damaged */
					value = BscanTokenRead(index, BscanPageTokPtrs(page, capacity, p->codeBytes)[i], &tokenBlocks,
										   &tokenBuf, &tokenBufSize);
					if (p->tokenDim > 0 && DatumGetMultiVec(PointerGetDatum(value))->dim != p->tokenDim)
						PgsCheckCorrupt(st, blkno, "entry %d's stored value has %d-dimensional tokens, expected %d",
										i, DatumGetMultiVec(PointerGetDatum(value))->dim, p->tokenDim);
				}

				if (!PgsCheckTidIsValid(&tid))
					PgsCheckCorrupt(st, blkno, "entry %d has invalid heap TID (%u,%u)", i,
									ItemPointerGetBlockNumberNoCheck(&tid),
									ItemPointerGetOffsetNumberNoCheck(&tid));
				if (code[p->codeBytes - 1] & padMask)
					PgsCheckCorrupt(st, blkno, "entry %d has code bits set beyond its %d dimensions", i, p->dims);
				if (st->heapallindexed)
					PgsCheckAddEntry(st, &tid, blkno, i, BscanCodeFingerprint(code, p->codeBytes, value));
			}
			ndata++;
			entries += opaque->count;
		}
		else if (opaque->kind == BSCAN_PAGE_NULLS)
		{
			if (blkno == p->insertPage)
				PgsCheckCorrupt(st, blkno, "the meta page's insert page is a null page");
			if (opaque->count > BSCAN_NULLS_PER_PAGE)
				PgsCheckCorrupt(st, blkno, "null page holds %u entries, its capacity is %d",
								opaque->count, BSCAN_NULLS_PER_PAGE);
			if (((PageHeader) page)->pd_lower != BSCAN_CODES_OFFSET + (Size) opaque->count * sizeof(ItemPointerData))
				PgsCheckCorrupt(st, blkno, "null page pd_lower %u does not end its %u entries",
								(unsigned) ((PageHeader) page)->pd_lower, opaque->count);
			tids = BscanPageNullTids(page);
			for (int i = 0; i < opaque->count; i++)
			{
				if (!PgsCheckTidIsValid(&tids[i]))
					PgsCheckCorrupt(st, blkno, "NULL entry %d has invalid heap TID (%u,%u)", i,
									ItemPointerGetBlockNumberNoCheck(&tids[i]),
									ItemPointerGetOffsetNumberNoCheck(&tids[i]));
				if (st->heapallindexed)
					PgsCheckAddEntry(st, &tids[i], blkno, i, PGS_CHECK_NULL_FP);
			}
			nnull++;
			nullEntries += opaque->count;
		}
		else if (opaque->kind == BSCAN_PAGE_TOKENS && p->storeTokens)
		{
			/* values are checked through the entries that point to them */
			if (((PageHeader) page)->pd_lower < BSCAN_CODES_OFFSET ||
				((PageHeader) page)->pd_lower > BSCAN_TOKENS_END)
				PgsCheckCorrupt(st, blkno, "token page pd_lower %u out of range",
								(unsigned) ((PageHeader) page)->pd_lower);
			if (BlockNumberIsValid(opaque->next) &&
				(opaque->next <= p->thresholdPages || opaque->next >= nblocks || opaque->next == blkno))
				PgsCheckCorrupt(st, blkno, "token page continues on block %u", opaque->next);
			ntoken++;
		}
		else
			PgsCheckCorrupt(st, blkno, "page of kind %u among the data pages", opaque->kind);
	}
	if (p->storeTokens)
	{
		uint16		kinds[2] = {BSCAN_PAGE_DATA, BSCAN_PAGE_NULLS};
		uint32		counted[2] = {ndata, nnull};

		for (int k = 0; k < 2; k++)
		{
			uint32		walked = 0;
			BlockNumber steps = 0;

			for (BlockNumber b = BscanFirstListed(p, kinds[k]); BlockNumberIsValid(b);)
			{
				if (b >= nblocks || !PgsCheckReadPage(st, b, page, sizeof(BscanPageOpaqueData)))
					PgsCheckCorrupt(st, b, "the chain of %s pages reaches an empty or missing block",
									k == 0 ? "data" : "null");
				b = BscanNextListed(index, p, kinds[k], b, page, nblocks, &steps);
				walked++;
			}
			if (walked != counted[k])
				PgsCheckCorrupt(st, BSCAN_METAPAGE_BLKNO, "the chain of %s pages reaches %u of its %u pages",
								k == 0 ? "data" : "null", walked, counted[k]);
		}
	}
	pfree(page);

	ereport(DEBUG1,
			(errmsg_internal("%s index \"%s\": %u blocks (%u statistics, %u data, %u null, %u token, %u unused); "
							 INT64_FORMAT " entries, " INT64_FORMAT " NULL entries",
							 st->amname, RelationGetRelationName(index), nblocks, p->thresholdPages,
							 ndata, nnull, ntoken, nzero, entries, nullEntries)));

	if (st->heapallindexed)
	{
		BscanCheckAm *am = palloc0(sizeof(BscanCheckAm));

		am->info.p = *p;
		if (p->dims > 0)
		{
			BscanCachedStats(index, &am->info);
			am->code = palloc(p->codeBytes);
			am->scratch = palloc(sizeof(float) * p->dims);
		}
		st->amstate = am;
		st->fingerprint = BscanHeapFingerprint;
	}
}
