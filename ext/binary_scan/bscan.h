/*
 * bscan.h — the binary_scan index access method.
 *
 * binary_scan keeps one packed binary code per heap row, densely in index
 * pages.  A scan quantizes the query the same way, computes the Hamming
 * distance to every code with the shared SIMD kernels, keeps the best
 * pgsieve.binary_rerank candidates, re-ranks them by the exact distance of
 * the ORDER BY operator evaluated on the heap row, and returns rows in exact
 * order.  If the executor wants more rows (a filter rejected some), the next,
 * larger batch of candidates is gathered and re-ranked, so a scan never stops
 * at k.
 *
 * On `bit` columns (bit_hamming_ops) the stored code *is* the value, so the
 * Hamming order is already exact and no heap access is needed.
 *
 * Page layout
 *   block 0                 meta page (BscanMetaPageData)
 *   blocks 1 .. T           per-dimension statistics learned at build: dims
 *                           thresholds (means) then dims scales (standard
 *                           deviations), float4; T = 0 for sign quantization
 *   blocks T+1 ..           data pages and null pages, in no particular order
 *
 * Rows whose value is NULL are kept too (TIDs only, on null pages), because
 * the index can answer a scan without ORDER BY, and an ORDER BY scan returns
 * them last, after every row with a distance, as ORDER BY ... ASC does.
 *
 * A data page stores its entries as parallel arrays so the Hamming kernel
 * runs over contiguous codes:
 *   [codes: capacity x codeBytes][tids: capacity x ItemPointerData]
 *   [token pointers: capacity x BscanTokPtr, multivec_fde with store_tokens] ... special
 * pd_lower covers the last array's used part, so GenericXLog sees every byte
 * that can change.
 *
 * multivec_fde keeps, by default (reloption store_tokens), a copy of each
 * document's multivec value in token pages, so its exact MaxSim re-rank reads
 * index pages instead of the heap row and its TOAST chunks (bscantokens.c).
 */
#ifndef BSCAN_H
#define BSCAN_H

#include "postgres.h"

#include "access/amapi.h"
#include "access/generic_xlog.h"
#include "access/reloptions.h"
#include "nodes/execnodes.h"
#include "nodes/pathnodes.h"
#include "storage/bufpage.h"
#include "utils/relcache.h"

#include "pgsieve_compat.h"

#define BSCAN_MAGIC				0x42534331	/* "BSC1" */
#define BSCAN_VERSION			3	/* 2: MUVERA parameters; 3: token pages */
#define BSCAN_MIN_VERSION		2	/* version 2 indexes read as "no token pages" */
#define BSCAN_METAPAGE_BLKNO	0

/* page kinds, in the special space */
#define BSCAN_PAGE_META			1
#define BSCAN_PAGE_THRESHOLDS	2
#define BSCAN_PAGE_DATA			3
#define BSCAN_PAGE_NULLS		4	/* heap TIDs of rows whose value is NULL */
#define BSCAN_PAGE_TOKENS		5	/* multivec_fde: documents' multivec values */

/*
 * With token pages (store_tokens), which are most of the index, a scan must
 * not read every block to find the few data pages: the data pages, and the
 * null pages, each form a chain from the newest (the meta page's insertPage
 * / nullPage) through each page's opaque `next` to the oldest.  Indexes
 * without token pages are scanned block by block as before.
 */

/* what the indexed column holds (support function 1 tells) */
#define BSCAN_KIND_VECTOR		1
#define BSCAN_KIND_HALFVEC		2
#define BSCAN_KIND_BIT			3
#define BSCAN_KIND_MULTIVEC		4	/* multivec, coded through its MUVERA FDE (multivec_fde) */

/* distance, from the ORDER BY operator's strategy number in the opclass */
#define BSCAN_L2_STRATEGY		1
#define BSCAN_IP_STRATEGY		2
#define BSCAN_COSINE_STRATEGY	3
#define BSCAN_HAMMING_STRATEGY	4
#define BSCAN_MAXSIM_STRATEGY	5	/* multivec @# multivec: negated MaxSim */

/* quantizer reloption */
#define BSCAN_QUANTIZER_SIGN	0
#define BSCAN_QUANTIZER_MEAN	1

/* rows re-ranked exactly from the heap per batch: GUC pgsieve.binary_rerank */
#define BSCAN_DEFAULT_RERANK	200
#define BSCAN_MIN_RERANK		1
#define BSCAN_MAX_RERANK		1000000

/* Hamming candidates per re-ranked row, narrowed by asymmetric scores */
#define BSCAN_DEFAULT_OVERSAMPLE 10
#define BSCAN_MAX_OVERSAMPLE	1000

/* the largest number of dimensions (bits for bit columns) an index takes */
#define BSCAN_MAX_DIM			64000

/* CREATE INDEX progress subphases */
#define BSCAN_PHASE_STATISTICS	2
#define BSCAN_PHASE_QUANTIZE	3

/* support function numbers */
#define BSCAN_TYPEINFO_PROC		1

typedef struct BscanPageOpaqueData
{
	uint16		kind;			/* BSCAN_PAGE_* */
	uint16		count;			/* entries in use on a data page; values starting on a token page */
	uint32		next;			/* token page: where the value at its end continues;
								 * data / null page (store_tokens): the previous one */
} BscanPageOpaqueData;

typedef BscanPageOpaqueData *BscanPageOpaque;

#define BscanPageGetOpaque(page) ((BscanPageOpaque) PageGetSpecialPointer(page))

/* what the meta page records about the index (after its magic and version) */
typedef struct BscanParams
{
	int32		kind;			/* BSCAN_KIND_* */
	int32		metric;			/* BSCAN_*_STRATEGY */
	int32		quantizer;		/* BSCAN_QUANTIZER_*, as in effect */
	int32		dims;			/* 0 until the first value is seen */
	int32		codeBytes;		/* (dims + 7) / 8 */
	int32		capacity;		/* entries per data page */
	BlockNumber thresholdPages; /* number of statistics pages after block 0 */
	BlockNumber insertPage;		/* data page that receives inserts */
	BlockNumber nullPage;		/* null page that receives inserts */
	/* multivec_fde: the FDE the codes quantize (0 elsewhere) */
	int32		tokenDim;		/* token dimensions, 0 until the first value */
	int32		fdeReps;
	int32		fdeKsim;
	int32		fdeDproj;
	int32		fdeFinalDim;
	int32		storeTokens;	/* 1: data entries point to the value in token pages */
	uint64		fdeSeed;
	/* token pages (store_tokens): where the next value is appended */
	BlockNumber tokenPage;		/* InvalidBlockNumber: none yet */
	uint32		tokenFree;		/* first free byte on it */
} BscanParams;

typedef struct BscanMetaPageData
{
	uint32		magic;
	uint32		version;
	BscanParams p;
} BscanMetaPageData;

typedef BscanMetaPageData *BscanMetaPage;

#define BscanPageGetMeta(page) ((BscanMetaPage) PageGetContents(page))

/* byte offsets of the two arrays of a data page */
#define BSCAN_CODES_OFFSET		MAXALIGN(SizeOfPageHeaderData)
#define BscanTidsOffset(capacity, codeBytes) \
	(BSCAN_CODES_OFFSET + (Size) (capacity) * (codeBytes))
#define BscanPageCodes(page)	((uint8 *) (page) + BSCAN_CODES_OFFSET)
/*
 * The TID array follows capacity * codeBytes bytes of codes, so it can start at
 * an odd offset: ItemPointerData requires 2-byte alignment (UBSan reports the
 * misaligned accesses), so the array is read and written bytewise through
 * BscanTid and BscanTidGet / BscanTidPut. The on-disk layout is unchanged.
 */
typedef struct BscanTid
{
	uint8		b[sizeof(ItemPointerData)];
} BscanTid;

#define BscanPageTids(page, capacity, codeBytes) \
	((BscanTid *) ((char *) (page) + BscanTidsOffset(capacity, codeBytes)))

static inline ItemPointerData
BscanTidGet(const BscanTid *t)
{
	ItemPointerData tid;

	memcpy(&tid, t->b, sizeof(tid));
	return tid;
}

static inline void
BscanTidPut(BscanTid *t, const ItemPointerData *tid)
{
	memcpy(t->b, tid, sizeof(*tid));
}

/* where a document's value starts in the token pages */
typedef struct BscanTokPtr
{
	BlockNumber blkno;
	uint32		offset;			/* byte offset on that page, MAXALIGNed */
} BscanTokPtr;

#define BscanTokPtrsOffset(capacity, codeBytes) \
	TYPEALIGN(sizeof(uint32), BscanTidsOffset(capacity, codeBytes) + (Size) (capacity) * sizeof(ItemPointerData))
#define BscanPageTokPtrs(page, capacity, codeBytes) \
	((BscanTokPtr *) ((char *) (page) + BscanTokPtrsOffset(capacity, codeBytes)))

/* the byte range of a token page that holds values */
#define BSCAN_TOKENS_END		(BLCKSZ - MAXALIGN(sizeof(BscanPageOpaqueData)))

/* heap TIDs per null page (stored where a data page keeps its codes) */
#define BSCAN_NULLS_PER_PAGE \
	((int) ((BLCKSZ - BSCAN_CODES_OFFSET - MAXALIGN(sizeof(BscanPageOpaqueData))) / sizeof(ItemPointerData)))
#define BscanPageNullTids(page)	((ItemPointerData *) BscanPageCodes(page))

/* floats per statistics page */
#define BSCAN_THRESHOLDS_PER_PAGE \
	((BLCKSZ - MAXALIGN(SizeOfPageHeaderData) - MAXALIGN(sizeof(BscanPageOpaqueData))) / sizeof(float))

typedef struct BscanOptions
{
	int32		vl_len_;		/* varlena header */
	int			quantizer;
	/* multivec_fde only */
	int			reps;
	int			ksim;
	int			dproj;
	int			finalDim;
	int			seed;
	bool		storeTokens;
} BscanOptions;

/* The index's description: the meta page's parameters and the learned statistics. */
typedef struct BscanInfo
{
	BscanParams p;
	float	   *thresholds;		/* dims floats, or NULL for sign */
	float	   *scales;			/* dims floats after thresholds, or NULL */
} BscanInfo;

/* GUCs */
extern int	bscan_rerank;
extern int	bscan_oversample;
extern int	mvfde_rerank;
extern int	mvfde_oversample;

/* bscan.c */
extern relopt_enum_elt_def bscan_quantizer_values[];
extern void BscanInit(void);
extern void BscanCostEstimate(PlannerInfo *root, IndexPath *path, int rerank, int oversample, double scanPages,
							  Cost *indexStartupCost, Cost *indexTotalCost,
							  Selectivity *indexSelectivity, double *indexCorrelation,
							  double *indexPages);
extern char *bscanbuildphasename(int64 phasenum);
extern bool bscanvalidate(Oid opclassoid);

/* ../multivec_fde/mvfde.c: the multivec kind */
extern void MvfdeInit(void);
extern void MvfdeInitParams(Relation index, BscanParams *p);
extern int	MvfdeValueDims(Datum value, BscanParams *p);
extern void MvfdeValueToFloats(Datum value, const BscanParams *p, bool query, float *out);

/* bscanutils.c */
extern int	BscanGetKind(Relation index);
extern int	BscanGetMetric(Relation index);
extern int	BscanGetQuantizerOption(Relation index);
extern int	BscanCapacity(const BscanParams *p);
extern BlockNumber BscanFirstListed(const BscanParams *p, uint16 kind);
extern BlockNumber BscanNextListed(Relation index, const BscanParams *p, uint16 kind, BlockNumber blkno,
								   Page page, BlockNumber nblocks, BlockNumber *steps);
extern Size BscanDataPageLower(const BscanParams *p, int count);
extern void BscanInitPage(Page page, uint16 kind);
extern void BscanReadInfo(Relation index, BscanInfo *info);
extern void BscanCachedStats(Relation index, BscanInfo *info);
extern void BscanWriteMetaPage(Page page, const BscanInfo *info);
extern int	BscanValueDims(Datum value, BscanParams *p);
extern bool BscanValueToFloats(Datum value, const BscanParams *p, bool query, float *out);
extern int	BscanRerank(int kind);
extern int	BscanOversample(int kind);
extern void BscanEncode(Datum value, const BscanInfo *info, uint8 *code, float *scratch);
extern void BscanCheckDims(int got, int expected);

/* bscantokens.c */
extern void BscanTokenWrite(Relation index, BscanParams *p, Datum value, BscanTokPtr *ptr);
extern struct varlena *BscanTokenRead(Relation index, BscanTokPtr ptr, BlockNumber *nblocks,
									  char **buf, Size *bufSize);

/*
 * Where a backend last found the index's pages (recent[blkno], InvalidBuffer
 * when unknown; nrecent entries): a page still in that buffer is pinned
 * without a buffer-mapping lookup.
 */
typedef struct BscanRecentBuffers
{
	Buffer	   *recent;
	BlockNumber nrecent;
} BscanRecentBuffers;

extern Buffer BscanReadBufferRecent(Relation index, BlockNumber blkno, BscanRecentBuffers *rb);
extern struct varlena *BscanTokenReadRecent(Relation index, BscanTokPtr ptr, BlockNumber *nblocks,
											char **buf, Size *bufSize, BscanRecentBuffers *rb);

/* bscantokmap.c: a heap row's value in a multivec_fde index's token pages */
typedef struct BscanTokenMapData *BscanTokenMap;
extern int	bscan_token_map_mb;
extern void BscanTokenMapInit(void);
extern BscanTokenMap BscanTokenMapOpen(Relation index);
extern struct varlena *BscanTokenMapRead(BscanTokenMap map, Relation index, const ItemPointerData *tid,
										 char **buf, Size *bufSize);

/* the AM's callbacks */
extern IndexBuildResult *bscanbuild(Relation heap, Relation index, IndexInfo *indexInfo);
extern void bscanbuildempty(Relation index);
extern bool bscaninsert(Relation index, Datum *values, bool *isnull, ItemPointer heap_tid,
						Relation heap, IndexUniqueCheck checkUnique,
						bool indexUnchanged,
						IndexInfo *indexInfo);
extern IndexBulkDeleteResult *bscanbulkdelete(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
											  IndexBulkDeleteCallback callback, void *callback_state);
extern IndexBulkDeleteResult *bscanvacuumcleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats);
extern IndexScanDesc bscanbeginscan(Relation index, int nkeys, int norderbys);
extern void bscanrescan(IndexScanDesc scan, ScanKey keys, int nkeys, ScanKey orderbys, int norderbys);
extern bool bscangettuple(IndexScanDesc scan, ScanDirection dir);
extern void bscanendscan(IndexScanDesc scan);

#endif							/* BSCAN_H */
