/*
 * bscanutils.c — shared helpers of binary_scan: catalog look-ups, the meta
 * page, and turning an indexed value into its binary code.
 */
#include "postgres.h"

#include <math.h>

#include "access/genam.h"
#include "utils/lsyscache.h"
#include "utils/varbit.h"

#include "bscan.h"
#include "pgs_kernels.h"
#include "pgvector_types.h"

/*
 * What the indexed column holds, from the opclass's support function 1
 * (binary_scan_vector_support and friends return a BSCAN_KIND_* code).
 */
int
BscanGetKind(Relation index)
{
	FmgrInfo   *proc = index_getprocinfo(index, 1, BSCAN_TYPEINFO_PROC);

	return DatumGetInt32(FunctionCall1(proc, PointerGetDatum(NULL)));
}

/*
 * The distance of the opclass, from the strategy number its ORDER BY
 * operator was given (one ordering operator per opclass).
 */
int
BscanGetMetric(Relation index)
{
	for (int s = BSCAN_L2_STRATEGY; s <= BSCAN_MAXSIM_STRATEGY; s++)
	{
		if (OidIsValid(get_opfamily_member(index->rd_opfamily[0],
										   index->rd_opcintype[0],
										   index->rd_opcintype[0], s)))
			return s;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
			 errmsg("binary_scan operator class of index \"%s\" has no ordering operator",
					RelationGetRelationName(index))));
	return 0;					/* keep compiler quiet */
}

int
BscanGetQuantizerOption(Relation index)
{
	BscanOptions *opts = (BscanOptions *) index->rd_options;

	return opts ? opts->quantizer : BSCAN_QUANTIZER_MEAN;
}

/*
 * Entries that fit in a data page: a code of p->codeBytes bytes, its heap
 * TID, and with token pages a BscanTokPtr (after up to 3 bytes of alignment).
 */
int
BscanCapacity(const BscanParams *p)
{
	Size		usable = BLCKSZ - BSCAN_CODES_OFFSET - MAXALIGN(sizeof(BscanPageOpaqueData));

	if (p->storeTokens)
		return (int) ((usable - (sizeof(uint32) - 1)) /
					  ((Size) p->codeBytes + sizeof(ItemPointerData) + sizeof(BscanTokPtr)));
	return (int) (usable / ((Size) p->codeBytes + sizeof(ItemPointerData)));
}

/*
 * Walking the pages that hold entries of one kind (BSCAN_PAGE_DATA or
 * BSCAN_PAGE_NULLS): every block after the statistics without token pages,
 * else the kind's chain (see bscan.h).  Callers read the page at each block
 * under a lock and pass it to BscanNextListed, which returns the next block
 * to visit or InvalidBlockNumber; in a chain the page must be of the kind
 * (steps, from 0, bounds the walk so a damaged chain cannot loop).
 */
BlockNumber
BscanFirstListed(const BscanParams *p, uint16 kind)
{
	if (!p->storeTokens)
		return 1 + p->thresholdPages;
	return kind == BSCAN_PAGE_DATA ? p->insertPage : p->nullPage;
}

BlockNumber
BscanNextListed(Relation index, const BscanParams *p, uint16 kind, BlockNumber blkno,
				Page page, BlockNumber nblocks, BlockNumber *steps)
{
	BlockNumber next;

	if (!p->storeTokens)
		return blkno + 1 < nblocks ? blkno + 1 : InvalidBlockNumber;
	if (PageIsNew(page) || BscanPageGetOpaque(page)->kind != kind)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("multivec_fde index \"%s\": block %u in the chain of %s pages is not one",
						RelationGetRelationName(index), blkno, kind == BSCAN_PAGE_DATA ? "data" : "null")));
	next = BscanPageGetOpaque(page)->next;
	if (BlockNumberIsValid(next) && (next >= nblocks || next <= p->thresholdPages || ++(*steps) >= nblocks))
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("multivec_fde index \"%s\": the chain of %s pages is broken at block %u",
						RelationGetRelationName(index), kind == BSCAN_PAGE_DATA ? "data" : "null", blkno)));
	return next;
}

/* pd_lower of a data page holding count entries: the end of its last array's used part */
Size
BscanDataPageLower(const BscanParams *p, int count)
{
	if (p->storeTokens)
		return BscanTokPtrsOffset(p->capacity, p->codeBytes) + (Size) count * sizeof(BscanTokPtr);
	return BscanTidsOffset(p->capacity, p->codeBytes) + (Size) count * sizeof(ItemPointerData);
}

void
BscanInitPage(Page page, uint16 kind)
{
	BscanPageOpaque opaque;

	PageInit(page, BLCKSZ, sizeof(BscanPageOpaqueData));
	opaque = BscanPageGetOpaque(page);
	opaque->kind = kind;
	opaque->count = 0;
	opaque->next = InvalidBlockNumber;
}

void
BscanWriteMetaPage(Page page, const BscanInfo *info)
{
	BscanMetaPage meta;

	BscanInitPage(page, BSCAN_PAGE_META);
	meta = BscanPageGetMeta(page);
	meta->magic = BSCAN_MAGIC;
	meta->version = BSCAN_VERSION;
	meta->p = info->p;
	((PageHeader) page)->pd_lower = ((char *) meta + sizeof(BscanMetaPageData)) - (char *) page;
}

/*
 * Read the meta page into *info (statistics: BscanCachedStats).  The meta
 * page is only share-locked for the copy: its fields other than insertPage,
 * nullPage and (once) dims never change after the build.
 */
void
BscanReadInfo(Relation index, BscanInfo *info)
{
	Buffer		buf = ReadBuffer(index, BSCAN_METAPAGE_BLKNO);
	BscanMetaPage meta;

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	meta = BscanPageGetMeta(BufferGetPage(buf));
	if (meta->magic != BSCAN_MAGIC)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" is not a binary_scan index",
						RelationGetRelationName(index))));
	if (meta->version < BSCAN_MIN_VERSION || meta->version > BSCAN_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("binary_scan index \"%s\" has version %u, expected %d; REINDEX it",
						RelationGetRelationName(index), meta->version, BSCAN_VERSION)));
	info->p = meta->p;
	if (meta->version < 3)
	{
		/* before token pages: storeTokens was a zero pad, nothing follows fdeSeed */
		info->p.storeTokens = 0;
		info->p.tokenPage = InvalidBlockNumber;
		info->p.tokenFree = 0;
	}
	info->thresholds = NULL;
	info->scales = NULL;
	UnlockReleaseBuffer(buf);
}

/* Read the 2 x dims statistics floats (thresholds, then scales) from their pages. */
static float *
BscanReadStats(Relation index, const BscanInfo *info)
{
	int			total = 2 * info->p.dims;
	int			done = 0;
	float	   *stats = palloc(sizeof(float) * total);

	for (BlockNumber b = 1; b <= info->p.thresholdPages && done < total; b++)
	{
		int			n = Min((int) BSCAN_THRESHOLDS_PER_PAGE, total - done);
		Buffer		buf = ReadBuffer(index, b);
		Page		page;

		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		if (BscanPageGetOpaque(page)->kind != BSCAN_PAGE_THRESHOLDS)
			ereport(ERROR,
					(errcode(ERRCODE_INDEX_CORRUPTED),
					 errmsg("binary_scan index \"%s\" has a damaged statistics page %u",
							RelationGetRelationName(index), b)));
		memcpy(stats + done, PageGetContents(page), sizeof(float) * n);
		UnlockReleaseBuffer(buf);
		done += n;
	}
	if (done != total)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("binary_scan index \"%s\" has %d of %d statistics",
						RelationGetRelationName(index), done, total)));
	return stats;
}

/*
 * Point info->thresholds and info->scales at the index's learned statistics
 * (NULL for sign quantization).  They never change after the build (REINDEX
 * makes a new relfilenode, hence a new relcache entry), so they are read once
 * per relcache entry and kept in rd_amcache for every insert and scan.
 */
void
BscanCachedStats(Relation index, BscanInfo *info)
{
	if (info->p.thresholdPages == 0 || info->p.dims == 0)
	{
		info->thresholds = NULL;
		info->scales = NULL;
		return;
	}
	if (index->rd_amcache == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(index->rd_indexcxt);

		index->rd_amcache = BscanReadStats(index, info);
		MemoryContextSwitchTo(old);
	}
	info->thresholds = (float *) index->rd_amcache;
	info->scales = info->thresholds + info->p.dims;
}

void
BscanCheckDims(int got, int expected)
{
	if (got != expected)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("binary_scan index expects %d dimensions, got %d", expected, got)));
}

/*
 * Number of dimensions (bits for bit) of an indexed value; for a multivec,
 * of its FDE (the first value fixes the token dimensions in *p).
 */
int
BscanValueDims(Datum value, BscanParams *p)
{
	int			dims;

	switch (p->kind)
	{
		case BSCAN_KIND_VECTOR:
			dims = DatumGetPgvVector(value)->dim;
			break;
		case BSCAN_KIND_HALFVEC:
			dims = DatumGetPgvHalfVector(value)->dim;
			break;
		case BSCAN_KIND_MULTIVEC:
			dims = MvfdeValueDims(value, p);
			break;
		default:
			dims = VARBITLEN(DatumGetVarBitP(value));
			break;
	}
	if (dims < 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("binary_scan index cannot index an empty %s",
						p->kind == BSCAN_KIND_BIT ? "bit string" : "vector")));
	if (dims > BSCAN_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s index supports at most %d dimensions, got %d",
						p->kind == BSCAN_KIND_MULTIVEC ? "multivec_fde" : "binary_scan",
						BSCAN_MAX_DIM, dims)));
	return dims;
}

/*
 * The floats a vector or halfvec value is coded from (normalized for
 * cosine), or a multivec's FDE (the query's or the document's encoding).
 * Returns false for a zero vector under cosine (its distance is undefined).
 */
bool
BscanValueToFloats(Datum value, const BscanParams *p, bool query, float *out)
{
	int			dims = p->dims;

	if (p->kind == BSCAN_KIND_MULTIVEC)
	{
		MvfdeValueToFloats(value, p, query, out);
		return true;
	}
	if (p->kind == BSCAN_KIND_VECTOR)
	{
		PgvVector  *v = DatumGetPgvVector(value);

		BscanCheckDims(v->dim, dims);
		memcpy(out, v->x, sizeof(float) * dims);
	}
	else
	{
		PgvHalfVector *v = DatumGetPgvHalfVector(value);

		BscanCheckDims(v->dim, dims);
		for (int i = 0; i < dims; i++)
			out[i] = pgs_f16_to_f32(v->x[i]);
	}

	if (p->metric == BSCAN_COSINE_STRATEGY)
	{
		double		norm = 0;

		for (int i = 0; i < dims; i++)
			norm += (double) out[i] * out[i];
		if (norm <= 0)
			return false;
		norm = sqrt(norm);
		for (int i = 0; i < dims; i++)
			out[i] = (float) (out[i] / norm);
	}
	return true;
}

/*
 * The binary code of an indexed value: the bits themselves for bit columns,
 * else x > threshold per dimension (after cosine normalization).  scratch
 * holds dims floats.
 */
void
BscanEncode(Datum value, const BscanInfo *info, uint8 *code, float *scratch)
{
	if (info->p.kind == BSCAN_KIND_BIT)
	{
		VarBit	   *v = DatumGetVarBitP(value);

		BscanCheckDims(VARBITLEN(v), info->p.dims);
		memcpy(code, VARBITS(v), info->p.codeBytes);
		return;
	}
	BscanValueToFloats(value, &info->p, false, scratch);
	pgs_quantize_f32(scratch, info->thresholds, info->p.dims, code);
}
