/*
 * sblock.h — the sparse_block index access method: a Seismic-style blocked
 * inverted index over pgvector's sparsevec, answering ORDER BY emb <#> q.
 *
 * The index is a set of byte streams laid over index pages:
 *   forward stream   every document: heap TID, flags, ordinal, nnz, indices,
 *                    values — what exact scores are computed from;
 *   compact stream   every document again, in half the bytes: 16-bit (or,
 *                    over 65,536 dimensions, 32-bit) indices and float16
 *                    values scaled by a power of two.  Postings point here:
 *                    a scan filters a block's documents on these records
 *                    (an estimate with a proven error bound) and reads the
 *                    forward record only of a document that may enter the
 *                    top-k — most do not, and the compact record is half
 *                    the cache lines;
 *   posting stream   per term, its statically pruned posting list cut into
 *                    blocks (clusters of similar documents), each with an
 *                    8-bit quantized alpha-mass summary (coordinate-wise max
 *                    of the block's documents) and its postings
 *                    (ordinal, compact record offset);
 *   directory        sorted (term, list offset, list bytes) entries;
 *   tail stream      documents inserted after the build, unclustered and
 *                    scored exhaustively by every scan; REINDEX clusters them.
 * Block 0 is the meta page.  The first five are written once by the build
 * (contiguous block ranges); the tail grows at the end of the relation.
 *
 * A stream page holds SBLOCK_PAGE_BYTES bytes of its stream in its contents;
 * a record may span pages, but a document's 16-byte header never does, so
 * VACUUM can flag a document by changing one page.
 */
#ifndef SBLOCK_H
#define SBLOCK_H

#include "postgres.h"

#include "access/amapi.h"
#include "access/generic_xlog.h"
#include "access/reloptions.h"
#include "nodes/execnodes.h"
#include "storage/bufpage.h"
#include "storage/dsm.h"
#include "storage/shm_toc.h"
#include "utils/relcache.h"

#include "pgsieve_compat.h"

#define SBLOCK_MAGIC			0x53424c31	/* "SBL1" */
#define SBLOCK_VERSION			3	/* 3: compact stream; 2: component-major summaries, padded forward stream */
#define SBLOCK_METAPAGE_BLKNO	0

#define SBLOCK_PAGE_META		1
#define SBLOCK_PAGE_STREAM		2

/* usable bytes of a stream page */
#define SBLOCK_PAGE_BYTES \
	((int) (BLCKSZ - MAXALIGN(SizeOfPageHeaderData) - MAXALIGN(sizeof(SblockPageOpaqueData))))

/* document flags */
#define SBLOCK_DOC_DELETED		0x01
#define SBLOCK_DOC_NULL			0x02	/* the row's value is NULL: returned last */
#define SBLOCK_DOC_PAD			0x04	/* no document: the next record starts on the next page */

/*
 * The build starts a record of at most this many bytes on a fresh page
 * rather than let it span two: a scan then scores it in place.
 */
#define SBLOCK_NOSPAN_BYTES		(SBLOCK_PAGE_BYTES / 4)

/* block ids in a list's summaries are 16-bit (Seismic's limit too) */
#define SBLOCK_MAX_BLOCKS		65535
#define SblockEntBlock(e)		((e) >> 8)
#define SblockEntCode(e)		((e) & 0xff)

/* queries over at most this many dimensions are scattered into a dense array */
#define SBLOCK_DENSE_QUERY_MAX_DIM	(1 << 21)

/* pgvector's sparsevec limits */
#define SBLOCK_MAX_NNZ			16000

/* reloption defaults (Seismic's) */
#define SBLOCK_DEFAULT_N_POSTINGS		3500
#define SBLOCK_DEFAULT_CENTROID_FRACTION 0.1
#define SBLOCK_DEFAULT_SUMMARY_ENERGY	0.4
#define SBLOCK_DEFAULT_MAX_FRACTION		1.5
#define SBLOCK_DEFAULT_MIN_CLUSTER_SIZE	2
#define SBLOCK_DEFAULT_DOC_CUT			15

/* CREATE INDEX progress subphases (pg_stat_progress_create_index.phase) */
#define SBLOCK_PHASE_LOAD		2
#define SBLOCK_PHASE_FORWARD	3
#define SBLOCK_PHASE_LISTS		4	/* tuples_total / tuples_done count posting lists */

/* GUC defaults */
#define SBLOCK_DEFAULT_QUERY_CUT		10
#define SBLOCK_DEFAULT_HEAP_FACTOR		0.8
#define SBLOCK_DEFAULT_TOP_K			10
#define SBLOCK_DEFAULT_CACHE_MB			128

typedef struct SblockPageOpaqueData
{
	uint16		kind;
	uint16		unused;
	uint32		unused2;
} SblockPageOpaqueData;

typedef SblockPageOpaqueData *SblockPageOpaque;

#define SblockPageGetOpaque(page) ((SblockPageOpaque) PageGetSpecialPointer(page))

/* a stream: a contiguous range of blocks (the tail's range is open-ended) */
typedef struct SblockStream
{
	BlockNumber start;
	uint64		bytes;
} SblockStream;

typedef struct SblockMetaPageData
{
	uint32		magic;
	uint32		version;
	int32		dim;			/* sparsevec dimensions, 0 until known */
	uint32		ndocs;			/* documents of the build (ordinals 0 .. ndocs-1) */
	uint32		nterms;			/* directory entries */
	uint32		tailDocs;		/* documents in the tail (ordinals ndocs ..) */
	SblockStream forward;
	SblockStream postings;
	SblockStream directory;
	SblockStream tail;			/* tail.start: first block after the build */
	/* build parameters, for the record */
	int32		nPostings;
	float4		centroidFraction;
	float4		summaryEnergy;
	float4		maxFraction;
	int32		minClusterSize;
	int32		docCut;
	SblockStream compact;		/* between forward and postings */
	int32		compactWide;	/* compact indices are uint32 (dim > 65,536), else uint16 */
	uint32		buildNonce;		/* random, nonzero, per build: names the build for local caches (0: none) */
} SblockMetaPageData;

typedef SblockMetaPageData *SblockMetaPage;

#define SblockPageGetMeta(page) ((SblockMetaPage) PageGetContents(page))

/* the fixed part of a document record in the forward and tail streams */
typedef struct SblockDocHeader
{
	ItemPointerData tid;
	uint8		flags;
	uint8		unused;
	uint32		ordinal;
	uint32		nnz;
	/* then int32 indices[nnz], float4 values[nnz] */
} SblockDocHeader;

#define SBLOCK_DOC_HEADER_SIZE	16
#define SblockDocBytes(nnz)		MAXALIGN(SBLOCK_DOC_HEADER_SIZE + (Size) (nnz) * 8)

/*
 * A document's record in the compact stream: this header, then its indices
 * (uint16, or uint32 when the meta page's compactWide is set) and its values
 * as IEEE float16 of value * 2^exp (exp puts the largest value just below
 * 2^15, so nothing overflows and few values are subnormal), padded to 8
 * bytes.  A record of at most SBLOCK_NOSPAN_BYTES never spans pages.  The
 * stream holds every build document in ordinal order; nothing modifies it
 * after the build (deletions are flagged in the forward record only).
 */
typedef struct SblockCompactHeader
{
	uint32		forward8;		/* the forward record's offset / 8 */
	uint16		nnz;
	int16		exp;
} SblockCompactHeader;

#define SBLOCK_COMPACT_HEADER_SIZE	8
#define SblockCompactBytes(nnz, wide) \
	MAXALIGN(SBLOCK_COMPACT_HEADER_SIZE + (Size) (nnz) * ((wide) ? 6 : 4))

/* a directory entry */
typedef struct SblockDirEntry
{
	uint32		term;
	uint32		bytes;			/* length of the list in the posting stream */
	uint64		offset;			/* where it starts */
} SblockDirEntry;

/*
 * Posting list layout (4-aligned throughout; a list starts 8-aligned).  The
 * block summaries are stored component-major, as Seismic stores them: a
 * query then scores every block of a list by visiting only the entries of
 * its own components, instead of reading every summary.
 *   SblockListHeader
 *   SblockBlockInfo  blocks[nblocks]      in centroid order
 *   uint32           comps[ncomps]        summary components (term ids), ascending
 *   uint32           compStart[ncomps+1]  each component's run of entries
 *   uint32           ent[nentries]        block << 8 | code, in block order within a run
 *   SblockPosting    postings[npostings]  block b's are [first, first + ndocs)
 * Block b's summary value for a component is min + code * step.
 */
typedef struct SblockListHeader
{
	uint32		nblocks;
	uint32		npostings;
	uint32		ncomps;
	uint32		nentries;
} SblockListHeader;

typedef struct SblockBlockInfo
{
	float4		min;
	float4		step;
	uint32		first;			/* its first posting */
	uint32		ndocs;
} SblockBlockInfo;

typedef struct SblockPosting
{
	uint32		ordinal;
	uint32		offset8;		/* the document's compact record: offset / 8 */
} SblockPosting;

/* where the parts of a list lie, relative to its start */
typedef struct SblockListLayout
{
	uint64		blocks;
	uint64		comps;
	uint64		compStart;
	uint64		ent;
	uint64		postings;
	uint64		end;
} SblockListLayout;

static inline void
SblockListLayoutOf(const SblockListHeader *h, SblockListLayout *l)
{
	l->blocks = sizeof(SblockListHeader);
	l->comps = l->blocks + sizeof(SblockBlockInfo) * (uint64) h->nblocks;
	l->compStart = l->comps + sizeof(uint32) * (uint64) h->ncomps;
	l->ent = l->compStart + sizeof(uint32) * ((uint64) h->ncomps + 1);
	l->postings = l->ent + sizeof(uint32) * (uint64) h->nentries;
	l->end = l->postings + sizeof(SblockPosting) * (uint64) h->npostings;
}

typedef struct SblockOptions
{
	int32		vl_len_;
	int			nPostings;
	double		centroidFraction;
	double		summaryEnergy;
	double		maxFraction;
	int			minClusterSize;
	int			docCut;
} SblockOptions;

/* a document in memory */
typedef struct SblockDoc
{
	ItemPointerData tid;
	uint8		flags;
	uint32		ordinal;
	int			nnz;
	int32	   *indices;
	float	   *values;
} SblockDoc;

/* GUCs */
extern int	sblock_query_cut;
extern double sblock_heap_factor;
extern int	sblock_top_k;
extern int	sblock_cache_mb;

/* sblock.c */
extern void SblockInit(void);

/* sblockscan.c */
extern void SblockAbortCleanup(void);

/* sblockutils.c: stream I/O */
typedef struct SblockWriter
{
	Relation	index;
	ForkNumber	forkNum;
	BlockNumber start;
	BlockNumber npages;
	uint64		bytes;			/* written so far */
	char	   *page;			/* local page being filled: the next of batch */
	char	   *batch;			/* PGS_APPEND_BATCH pages staged for PgsAppendPages */
	int			nbatch;			/* full pages in batch */
} SblockWriter;

typedef struct SblockReader
{
	Relation	index;
	Buffer		buf;			/* pinned page of the last read, or Invalid */
	BlockNumber blkno;
	bool		locked;			/* buf is share-locked (SblockReaderLockPage) */
	int			hintSlot;		/* buffer hints (sblockutils.c), or -1 */
	uint64		hintGen;
} SblockReader;

extern void SblockInitPage(Page page, uint16 kind);
extern void SblockWriterBegin(SblockWriter *w, Relation index, ForkNumber forkNum);
extern uint64 SblockWriterAlignDoc(SblockWriter *w, int nnz);
extern void SblockWriterWrite(SblockWriter *w, const void *data, Size len);
extern void SblockWriterPad(SblockWriter *w, Size align);
extern void SblockWriterEnd(SblockWriter *w, SblockStream *stream);
extern void SblockReaderInit(SblockReader *r, Relation index);
extern void SblockReaderRead(SblockReader *r, const SblockStream *s, uint64 offset, void *dst, Size len);
extern void SblockReaderEnd(SblockReader *r);
extern void SblockReaderUseHints(SblockReader *r, BlockNumber nblocks);
extern Page SblockReaderLockPage(SblockReader *r, BlockNumber blkno);
extern Page SblockReaderPinPage(SblockReader *r, BlockNumber blkno);
extern Buffer SblockReaderPinExtra(SblockReader *r, BlockNumber blkno);
extern void SblockReaderPrefetchPin(SblockReader *r, BlockNumber blkno);
extern const char *SblockReaderPeek(SblockReader *r, const SblockStream *s, uint64 offset, Size len,
									char *scratch);
extern void SblockReaderUnlock(SblockReader *r);
extern uint64 SblockDocAlign(uint64 offset);
extern uint64 SblockNextPage(uint64 offset);

extern void SblockReadMeta(Relation index, SblockMetaPageData *meta);
extern void SblockWriteMetaPage(Page page, const SblockMetaPageData *meta);
extern int	SblockCheckValue(Datum value, int dim, SblockDoc *doc);
extern float SblockDot(const int32 *ai, const float *ax, int an, const int32 *bi, const float *bx, int bn);
extern bool SblockReadDoc(SblockReader *r, const SblockStream *s, uint64 offset, SblockDoc *doc,
						  Size *bufsize, char **buf);
extern uint64 SblockCompactPlace(uint64 offset, Size bytes);
extern Size SblockCompactEncode(const int32 *indices, const float *values, int nnz, bool wide,
								uint32 forward8, char *out);

/* sblockcache.c: backend-local copies of compact streams */
typedef struct SblockCacheSlot SblockCacheSlot;
extern SblockCacheSlot *SblockCacheFor(Relation index, const SblockMetaPageData *meta, uint64 *gen);
extern bool SblockCacheValid(const SblockCacheSlot *slot, uint64 gen);
extern Page SblockCachePage(SblockCacheSlot *slot, SblockReader *r, BlockNumber blkno);

/* sblockbuild.c: a parallel build's worker (CreateParallelContext finds it by name) */
extern PGDLLEXPORT void SblockParallelBuildMain(dsm_segment *seg, shm_toc *toc);

/* the AM's callbacks */
extern IndexBuildResult *sblockbuild(Relation heap, Relation index, IndexInfo *indexInfo);
extern void sblockbuildempty(Relation index);
extern bool sblockinsert(Relation index, Datum *values, bool *isnull, ItemPointer heap_tid,
						 Relation heap, IndexUniqueCheck checkUnique,
						 bool indexUnchanged,
						 IndexInfo *indexInfo);
extern IndexBulkDeleteResult *sblockbulkdelete(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
											   IndexBulkDeleteCallback callback, void *callback_state);
extern IndexBulkDeleteResult *sblockvacuumcleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats);
extern IndexScanDesc sblockbeginscan(Relation index, int nkeys, int norderbys);
extern void sblockrescan(IndexScanDesc scan, ScanKey keys, int nkeys, ScanKey orderbys, int norderbys);
extern bool sblockgettuple(IndexScanDesc scan, ScanDirection dir);
extern void sblockendscan(IndexScanDesc scan);

#endif							/* SBLOCK_H */
