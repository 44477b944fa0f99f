/*
 * sblockscan.c — scanning a sparse_block index (Seismic's query algorithm).
 *
 * A scan works in rounds, each ranking the best k documents not returned
 * yet (k = pgsieve.sparse_top_k, doubled every round):
 *   1. the query_cut largest query components are visited, largest first;
 *   2. for each, its posting list is read from the directory; every block's
 *      summary is scored against the *full* query, and once the top-k heap
 *      is full a block whose summary score is below heap_factor x the heap's
 *      minimum is skipped;
 *   3. the other blocks' documents, each scored once (a visited bitmap), are
 *      estimated from their compact records; those that may enter the heap
 *      get their exact inner product from the forward stream — the same
 *      float sum pgvector's <#> computes — and compete for the heap;
 *   4. every document of the unclustered tail is scored too.
 * Deleted (VACUUM-flagged) documents are skipped; visibility is the
 * executor's job.  When k reaches the number of documents, the round scores
 * every document, so a scan under a filter eventually returns every row.
 * Rows come in exact score order within a round.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "access/relscan.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "pgs_kernels.h"
#include "pgsieve_pages.h"
#include "pgsieve_topk.h"
#include "pgvector_types.h"
#include "sblock.h"


typedef struct SblockScanOpaqueData
{
	MemoryContext scanCtx;		/* lives as long as the scan */
	MemoryContext queryCtx;		/* reset per rescan */
	MemoryContext roundCtx;		/* reset per round */

	bool		started;
	bool		done;
	bool		nullsDone;		/* the rows whose value is NULL were returned */
	bool		haveQuery;
	SblockMetaPageData meta;
	uint32		total;			/* documents: ndocs + tailDocs at scan start */

	/* the query, and its components in visiting order */
	int			qnnz;
	int32	   *qidx;
	float	   *qval;
	float	   *qdense;			/* the query scattered over its dimensions, or NULL */
	float		qL1;			/* sum of |query values| */
	uint32	   *matchPos;		/* SblockListDots' scratch: qnnz entries each */
	float	   *matchQv;
	int			qdim;			/* the query's dimensions (qdense's length) */
	int			ncut;
	int		   *cut;

	int64		k;				/* this round's k */
	uint8	   *returned;		/* bitmap over ordinals */
	uint8	   *visited;		/* bitmap over ordinals, per round */

	/* the round's top-k: a min-heap while ranking, then sorted best first */
	PgsHit  *heap;
	int64		nheap;
	int64		next;

	/* counters, reported at DEBUG1 when the scan ends */
	int64		nblocks;
	int64		nskipped;
	int64		nestimated;		/* block documents estimated from compact records */
	int64		npages;			/* compact pages they were read from, each time the page changed */
	BlockNumber lastPage;
	int64		nscored;		/* documents scored exactly */
	int64		nsummary;		/* summary components scored */

	IndexTuple	nullItup;
	SblockReader reader;		/* posting lists, directory, tail headers */
	SblockReader docReader;		/* document records: keeps its page pinned apart */
	SblockCacheSlot *cache;		/* local copy of the compact pages (sblockcache.c), or NULL */
	uint64		cacheGen;
	char	   *docbuf;
	Size		docbufSize;
	char	   *listbuf;
	Size		listbufSize;
} SblockScanOpaqueData;

typedef SblockScanOpaqueData *SblockScanOpaque;

static void SblockDenseRelease(SblockScanOpaque so);

#define BitTest(bm, i)	(((bm)[(i) >> 3] >> ((i) & 7)) & 1)
#define BitSet(bm, i)	((bm)[(i) >> 3] |= (uint8) (1 << ((i) & 7)))

/* Offer a hit to the round's top-k. */
static inline void
HeapPush(SblockScanOpaque so, const PgsHit *hit)
{
	(void) PgsTopKPush(so->heap, &so->nheap, so->k, hit);
}

IndexScanDesc
sblockbeginscan(Relation index, int nkeys, int norderbys)
{
	IndexScanDesc scan = RelationGetIndexScan(index, nkeys, norderbys);
	SblockScanOpaque so = palloc0(sizeof(SblockScanOpaqueData));

	so->scanCtx = AllocSetContextCreate(CurrentMemoryContext, "sparse_block scan", ALLOCSET_DEFAULT_SIZES);
	so->queryCtx = AllocSetContextCreate(so->scanCtx, "sparse_block query", ALLOCSET_DEFAULT_SIZES);
	so->roundCtx = AllocSetContextCreate(so->scanCtx, "sparse_block round", ALLOCSET_DEFAULT_SIZES);
	SblockReaderInit(&so->reader, index);
	SblockReaderInit(&so->docReader, index);
	PgsInitOrderByScan(scan, norderbys);
	scan->opaque = so;
	return scan;
}

void
sblockrescan(IndexScanDesc scan, ScanKey keys, int nkeys, ScanKey orderbys, int norderbys)
{
	SblockScanOpaque so = (SblockScanOpaque) scan->opaque;

	PgsRescanKeys(scan, keys, orderbys);
	SblockDenseRelease(so);
	so->started = false;
	so->done = false;
	so->nullsDone = false;
	so->nheap = 0;
	so->next = 0;
	SblockReaderEnd(&so->reader);
	SblockReaderEnd(&so->docReader);
	MemoryContextReset(so->roundCtx);
	MemoryContextReset(so->queryCtx);
	so->docbuf = NULL;
	so->docbufSize = 0;
	so->listbuf = NULL;
	so->listbufSize = 0;
}

/*
 * The dense query array.  Zeroing (and faulting in) a vocabulary-sized array
 * for every scan cost more than the scan itself on short queries, so each
 * backend keeps one, zero outside a scan: a scan scatters its query in and
 * clears exactly those entries when it ends.  A second scan open at the same
 * time (two index scans in one query) gets a private array.  If a scan dies
 * in an error, the transaction-abort callback zeroes the array.
 */
static float *dense_buf = NULL;
static int	dense_cap = 0;
static void *dense_owner = NULL;

static float *
SblockDenseAcquire(SblockScanOpaque so, int dim)
{
	/*
	 * At least 65,536 entries: a 16-bit compact index then always lands
	 * inside the array (on a zero past dim), even in a damaged record.
	 */
	dim = Max(dim, 65536);
	if (dense_owner != NULL)
		return MemoryContextAllocZero(so->queryCtx, sizeof(float) * dim);
	if (dense_cap < dim)
	{
		if (dense_buf)
			pfree(dense_buf);
		dense_buf = MemoryContextAllocZero(TopMemoryContext, sizeof(float) * dim);
		dense_cap = dim;
	}
	dense_owner = so;
	return dense_buf;
}

/* Give the array back clean (a private one just goes with queryCtx). */
static void
SblockDenseRelease(SblockScanOpaque so)
{
	if (so->qdense == NULL || so->qdense != dense_buf || dense_owner != so)
		return;
	for (int i = 0; i < so->qnnz; i++)
		dense_buf[so->qidx[i]] = 0;
	dense_owner = NULL;
	so->qdense = NULL;
}

void
SblockAbortCleanup(void)
{
	if (dense_owner != NULL && dense_buf != NULL)
		memset(dense_buf, 0, sizeof(float) * dense_cap);
	dense_owner = NULL;
}

static int
CmpCutDesc(const void *a, const void *b, void *arg)
{
	const float *val = arg;
	int			x = *(const int *) a;
	int			y = *(const int *) b;

	if (val[x] != val[y])
		return val[x] > val[y] ? -1 : 1;
	return (x > y) - (x < y);
}

static void
SblockStartScan(IndexScanDesc scan)
{
	SblockScanOpaque so = (SblockScanOpaque) scan->opaque;
	ScanKey		ob = scan->numberOfOrderBys > 0 ? &scan->orderByData[0] : NULL;
	MemoryContext old = MemoryContextSwitchTo(so->queryCtx);

	SblockReadMeta(scan->indexRelation, &so->meta);
	/* the build's pages (everything before the tail) are fixed for the index's life */
	SblockReaderUseHints(&so->reader, so->meta.tail.start);
	SblockReaderUseHints(&so->docReader, so->meta.tail.start);
	so->cache = SblockCacheFor(scan->indexRelation, &so->meta, &so->cacheGen);
	so->started = true;
	pgstat_count_index_scan(scan->indexRelation);	/* pg_stat_user_indexes.idx_scan */
	so->total = so->meta.ndocs + so->meta.tailDocs;
	so->done = so->total == 0;
	so->haveQuery = ob != NULL && !(ob->sk_flags & SK_ISNULL);
	so->k = sblock_top_k;
	so->returned = palloc_extended(so->total / 8 + 1, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	so->qnnz = 0;
	/* room for the largest document, so reads never reallocate */
	so->docbufSize = (Size) SBLOCK_MAX_NNZ * 8;
	so->docbuf = palloc(so->docbufSize);

	if (so->haveQuery && !so->done)
	{
		PgvSparseVector *q = DatumGetPgvSparseVector(ob->sk_argument);
		int			qcut = sblock_query_cut > 0 ? sblock_query_cut : q->nnz;

		if (so->meta.dim != 0 && q->dim != so->meta.dim)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("sparse_block index expects sparsevec of %d dimensions, got %d",
							so->meta.dim, q->dim)));
		so->qnnz = q->nnz;
		so->qdim = q->dim;
		so->qidx = palloc(sizeof(int32) * Max(q->nnz, 1));
		so->qval = palloc(sizeof(float) * Max(q->nnz, 1));
		memcpy(so->qidx, q->indices, sizeof(int32) * q->nnz);
		memcpy(so->qval, PGV_SPARSEVEC_VALUES(q), sizeof(float) * q->nnz);
		so->matchPos = palloc(sizeof(uint32) * Max(q->nnz, 1));
		so->matchQv = palloc(sizeof(float) * Max(q->nnz, 1));
		so->qL1 = 0;
		for (int i = 0; i < q->nnz; i++)
			so->qL1 += fabsf(so->qval[i]);

		/*
		 * Scattered over a dense array (vocabularies are tens of thousands of
		 * terms), a document's score is one look-up per component, no merge.
		 */
		so->qdense = NULL;
		if (q->dim <= SBLOCK_DENSE_QUERY_MAX_DIM)
		{
			so->qdense = SblockDenseAcquire(so, q->dim);
			for (int i = 0; i < q->nnz; i++)
				so->qdense[q->indices[i]] = so->qval[i];
		}

		/* query_cut: the largest components, visited largest first */
		so->cut = palloc(sizeof(int) * Max(q->nnz, 1));
		for (int i = 0; i < q->nnz; i++)
			so->cut[i] = i;
		qsort_arg(so->cut, q->nnz, sizeof(int), CmpCutDesc, so->qval);
		so->ncut = 0;
		for (int i = 0; i < Min(qcut, q->nnz); i++)
			if (so->qval[so->cut[i]] > 0)
				so->cut[so->ncut++] = so->cut[i];
	}
	MemoryContextSwitchTo(old);
}

/* Binary search of the term directory; false if the term has no list. */
static bool
SblockFindList(SblockScanOpaque so, uint32 term, SblockDirEntry *entry)
{
	int64		lo = 0,
				hi = (int64) so->meta.nterms - 1;

	while (lo <= hi)
	{
		int64		mid = lo + (hi - lo) / 2;
		char		scratch[sizeof(SblockDirEntry)];

		memcpy(entry, SblockReaderPeek(&so->reader, &so->meta.directory, (uint64) mid * sizeof(SblockDirEntry),
									   sizeof(SblockDirEntry), scratch),
			   sizeof(SblockDirEntry));
		if (entry->term == term)
			return true;
		if (entry->term < term)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return false;
}

/*
 * A document's score.  With the dense query, the products of non-matching
 * components are exact zeros, so the sum equals SblockDot's (and pgvector's):
 * the same products added in the same ascending order.
 */
static inline float
SblockDocScore(const SblockScanOpaque so, const int32 *idx, const float *val, int nnz)
{
	if (!so->haveQuery)
		return 0;
	if (so->qdense)
	{
		float		dot = 0;

		for (int i = 0; i < nnz; i++)
			dot += val[i] * so->qdense[idx[i]];
		return dot;
	}
	return SblockDot(idx, val, nnz, so->qidx, so->qval, so->qnnz);
}

/*
 * Could a document beat the heap's worst entry?  The exact score is one
 * dependent chain of float additions (three cycles each); most scored
 * documents cannot enter the heap, so they are first summed by the shared
 * kernel in whatever order is fastest (SIMD gathers).  Both sums add the
 * same rounded products, each within n*u*sum|p| (u = 2^-24, n terms, to
 * first order) of the true sum, so they differ by at most 2*n*u*sum|p|; the
 * bound below doubles that margin.  Only a document within the bound of the
 * heap's minimum gets the exact sum.
 */
static inline bool
SblockDocMayEnter(const SblockScanOpaque so, const int32 *idx, const float *val, int nnz)
{
	float		sum,
				mag,
				bound;

	if (so->qdense == NULL || so->nheap < so->k)
		return true;
	pgs_sparse_dense_est(idx, val, (size_t) nnz, so->qdense, &sum, &mag);
	bound = 4.0f * (float) (nnz + 4) * 5.97e-8f * mag + FLT_MIN;
	return sum + bound >= so->heap[0].score;
}

/*
 * SblockDocMayEnter over a compact record (sblock.h) lying on one page.  Its
 * values a' = float16(v * 2^exp) differ from the exact scaled values a by
 * at most 2^-11 (1 + 2^-10) |a'| (normal float16) or 2^-24 (subnormal, and
 * the float rounding of the scaling), so the estimate differs from the true
 * scaled dot product by at most about 2^-11 mag + 2^-24 sum|q|, plus each
 * summation's rounding (n u mag, as in SblockDocMayEnter).  The bound
 * doubles all of it.  An overflow (inf or NaN) lets the document through.
 */
static inline bool
SblockCompactMayEnter(const SblockScanOpaque so, const char *rec)
{
	const SblockCompactHeader *h = (const SblockCompactHeader *) rec;
	const char *idx = rec + SBLOCK_COMPACT_HEADER_SIZE;
	const uint16 *val = (const uint16 *) (idx + (Size) h->nnz * (so->meta.compactWide ? 4 : 2));
	float		sum,
				mag,
				bound;

	if (so->qdense == NULL || so->nheap < so->k)
		return true;
	pgs_sparse_dense_est_h(idx, so->meta.compactWide, val, h->nnz, so->qdense, &sum, &mag);
	bound = (9.8e-4f + 4.0f * (float) (h->nnz + 4) * 5.97e-8f) * mag + 1.2e-7f * so->qL1;
	return !(ldexpf(sum + bound, -h->exp) + FLT_MIN < so->heap[0].score);
}

/*
 * Score the document record at offset of stream s (if live and not returned)
 * and offer it to the heap; with filter, only if SblockDocMayEnter says it
 * may enter.  page is the record's page, share-locked by the caller; a
 * record that spans pages is copied out through the document reader (after
 * the lock is dropped: *locked tells the caller).
 */
static void
SblockScoreRecord(SblockScanOpaque so, const SblockStream *s, uint64 offset, Page page,
				  Buffer buf, bool *locked, bool filter)
{
	int			pos = (int) (offset % SBLOCK_PAGE_BYTES);
	const SblockDocHeader *hdr = (const SblockDocHeader *) (PageGetContents(page) + pos);
	PgsHit	hit;

	if ((hdr->flags & (SBLOCK_DOC_DELETED | SBLOCK_DOC_NULL)) || hdr->ordinal >= so->total ||
		BitTest(so->returned, hdr->ordinal) || hdr->nnz > SBLOCK_MAX_NNZ)
		return;
	so->nscored++;
	if (pos + SBLOCK_DOC_HEADER_SIZE + (Size) hdr->nnz * 8 <= SBLOCK_PAGE_BYTES)
	{
		const int32 *idx = (const int32 *) ((const char *) hdr + SBLOCK_DOC_HEADER_SIZE);
		const float *val = (const float *) (idx + hdr->nnz);

		if (filter && !SblockDocMayEnter(so, idx, val, hdr->nnz))
			return;
		hit.score = SblockDocScore(so, idx, val, hdr->nnz);
		hit.key = hdr->ordinal;
		hit.tid = hdr->tid;
	}
	else
	{
		SblockDoc	d;

		if (BufferIsValid(buf))
			LockBuffer(buf, BUFFER_LOCK_UNLOCK);
		else
			SblockReaderUnlock(&so->docReader);
		*locked = false;
		if (!SblockReadDoc(&so->docReader, s, offset, &d, &so->docbufSize, &so->docbuf) ||
			(d.flags & SBLOCK_DOC_NULL))
			return;
		hit.score = SblockDocScore(so, d.indices, d.values, d.nnz);
		hit.key = d.ordinal;
		hit.tid = d.tid;
	}
	HeapPush(so, &hit);
}

/* Score one record through the document reader (see SblockScoreRecord). */
static void
SblockScoreDoc(SblockScanOpaque so, const SblockStream *s, uint64 offset, bool filter)
{
	BlockNumber blkno = s->start + (BlockNumber) (offset / SBLOCK_PAGE_BYTES);
	bool		locked = true;

	/* the page stays locked for the next record, often on the same page */
	SblockScoreRecord(so, s, offset, SblockReaderLockPage(&so->docReader, blkno), InvalidBuffer,
					  &locked, filter);
}

/*
 * Call visit for the header of each of the n records of stream s, in order.
 * Headers are read in place through the document reader, whose page lock
 * carries over to the next record on the same page; it is dropped every 64
 * records so that a cancel request is served promptly.
 */
static void
SblockWalkStream(SblockScanOpaque so, const SblockStream *s, uint32 n,
				 void (*visit) (SblockScanOpaque so, const SblockStream *s, uint64 offset,
								const SblockDocHeader *hdr, void *arg),
				 void *arg)
{
	uint64		offset = 0;
	SblockDocHeader hdr;

	for (uint32 i = 0; i < n;)
	{
		Page		page;

		if ((i & 63) == 0)
		{
			SblockReaderUnlock(&so->docReader);
			CHECK_FOR_INTERRUPTS();
		}
		offset = SblockDocAlign(offset);
		if (offset >= s->bytes)
			ereport(ERROR,
					(errcode(ERRCODE_INDEX_CORRUPTED),
					 errmsg("sparse_block index \"%s\" has fewer documents than its meta page says",
							RelationGetRelationName(so->docReader.index))));
		page = SblockReaderLockPage(&so->docReader, s->start + (BlockNumber) (offset / SBLOCK_PAGE_BYTES));
		memcpy(&hdr, PageGetContents(page) + offset % SBLOCK_PAGE_BYTES, SBLOCK_DOC_HEADER_SIZE);
		if (hdr.flags & SBLOCK_DOC_PAD)
		{
			offset = SblockNextPage(offset);
			continue;
		}
		visit(so, s, offset, &hdr, arg);
		offset += SblockDocBytes(hdr.nnz);
		i++;
	}
	SblockReaderUnlock(&so->docReader);
}

static void
SblockVisitScore(SblockScanOpaque so, const SblockStream *s, uint64 offset,
				 const SblockDocHeader *hdr, void *arg)
{
	if (!BitTest(so->returned, hdr->ordinal))
		SblockScoreDoc(so, s, offset, true);
}

/* Score every document of a stream of n records (tail, or all in the last round). */
static void
SblockScoreStream(SblockScanOpaque so, const SblockStream *s, uint32 n)
{
	SblockWalkStream(so, s, n, SblockVisitScore, NULL);
}

/* so->listbuf holds at least need bytes */
static void
SblockListBuf(SblockScanOpaque so, Size need)
{
	if (so->listbufSize < need)
	{
		so->listbuf = so->listbuf ? repalloc_huge(so->listbuf, need)
			: MemoryContextAllocHuge(so->queryCtx, need);
		so->listbufSize = need;
	}
}

static void
SblockListCorrupted(SblockScanOpaque so)
{
	ereport(ERROR,
			(errcode(ERRCODE_INDEX_CORRUPTED),
			 errmsg("sparse_block index \"%s\" has a damaged posting list",
					RelationGetRelationName(so->reader.index))));
}

/* the 4-byte word at offset of the posting stream (words never span pages) */
static inline uint32
SblockListWord(SblockScanOpaque so, uint64 offset)
{
	const SblockStream *s = &so->meta.postings;
	Page		page = SblockReaderPinPage(&so->reader, s->start + (BlockNumber) (offset / SBLOCK_PAGE_BYTES));

	return *(const uint32 *) (PageGetContents(page) + offset % SBLOCK_PAGE_BYTES);
}

/*
 * The list's summary components that are query components, with their query
 * values, in component order: a galloping search of the (ascending)
 * component array for each query component, both ascending.  Each probe is
 * a likely cache miss, so this suits lists with many components per query
 * component; SblockMatchLinear suits the others.
 */
static int
SblockMatchGallop(SblockScanOpaque so, uint64 base, const SblockListHeader *lh,
				  const SblockListLayout *lay, uint32 *pos, float *qv)
{
	int64		lo = 0;
	int			n = 0;

	for (int j = 0; j < so->qnnz && lo < lh->ncomps; j++)
	{
		uint32		qc = (uint32) so->qidx[j];
		int64		step = 1,
					hi;

		if (so->qval[j] == 0)
			continue;
		/* gallop to a range [lo, hi) holding qc if the list has it */
		hi = lo;
		while (hi < lh->ncomps && SblockListWord(so, base + lay->comps + 4 * (uint64) hi) < qc)
		{
			lo = hi + 1;
			hi += step;
			step *= 2;
		}
		hi = Min(hi + 1, (int64) lh->ncomps);
		while (lo < hi)
		{
			int64		mid = lo + (hi - lo) / 2;

			if (SblockListWord(so, base + lay->comps + 4 * (uint64) mid) < qc)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo >= lh->ncomps || SblockListWord(so, base + lay->comps + 4 * (uint64) lo) != qc)
			continue;
		pos[n] = (uint32) lo;
		qv[n] = so->qval[j];
		n++;
		lo++;
	}
	return n;
}

/*
 * SblockMatchGallop by one sequential pass over the component array, each
 * component looked up in the dense query: no dependent cache misses, and the
 * hardware prefetcher streams the array.  Components are strictly ascending
 * in a sound list, so at most qnnz match.
 */
static int
SblockMatchLinear(SblockScanOpaque so, uint64 base, const SblockListHeader *lh,
				  const SblockListLayout *lay, uint32 *pos, float *qv)
{
	const SblockStream *s = &so->meta.postings;
	uint64		off = base + lay->comps;
	int			n = 0;

	for (uint32 k = 0; k < lh->ncomps;)
	{
		uint32		len = Min(lh->ncomps - k, (uint32) ((SBLOCK_PAGE_BYTES - off % SBLOCK_PAGE_BYTES) / 4));
		const uint32 *w = (const uint32 *)
			(PageGetContents(SblockReaderPinPage(&so->reader, s->start + (BlockNumber) (off / SBLOCK_PAGE_BYTES))) +
			 off % SBLOCK_PAGE_BYTES);

		for (uint32 i = 0; i < len; i++)
		{
			float		q;

			if (w[i] >= (uint32) so->qdim)
				SblockListCorrupted(so);
			q = so->qdense[w[i]];
			if (q != 0)
			{
				if (n == so->qnnz)
					SblockListCorrupted(so);
				pos[n] = k + i;
				qv[n] = q;
				n++;
			}
		}
		k += len;
		off += 4 * (uint64) len;
	}
	return n;
}

/*
 * Step 3, every block at once: the summaries' dot products with the full
 * query, from the list's component-major entries.  For each query
 * component found among the list's components, its run of (block, code)
 * entries adds q to qsum[block] and code * q to csum[block]; block b's
 * estimate is then min_b * qsum[b] + step_b * csum[b].
 */
static void
SblockListDots(SblockScanOpaque so, uint64 base, const SblockListHeader *lh,
			   const SblockListLayout *lay, float *qsum, float *csum)
{
	const SblockStream *s = &so->meta.postings;
	uint32	   *pos = so->matchPos;
	float	   *qvs = so->matchQv;
	int			nmatch;

	/* a probe costs a cache miss, a linear step a fraction of one */
	if (so->qdense != NULL && (uint64) lh->ncomps <= (uint64) so->qnnz * 64)
		nmatch = SblockMatchLinear(so, base, lh, lay, pos, qvs);
	else
		nmatch = SblockMatchGallop(so, base, lh, lay, pos, qvs);

	for (int m = 0; m < nmatch; m++)
	{
		float		qv = qvs[m];
		uint32		es = SblockListWord(so, base + lay->compStart + 4 * (uint64) pos[m]);
		uint32		ee = SblockListWord(so, base + lay->compStart + 4 * (uint64) pos[m] + 4);

		if (ee < es || ee > lh->nentries)
			SblockListCorrupted(so);
		while (es < ee)
		{
			uint64		off = base + lay->ent + 4 * (uint64) es;
			uint32		n = Min(ee - es, (uint32) ((SBLOCK_PAGE_BYTES - off % SBLOCK_PAGE_BYTES) / 4));
			const uint32 *ent = (const uint32 *)
				(PageGetContents(SblockReaderPinPage(&so->reader, s->start + (BlockNumber) (off / SBLOCK_PAGE_BYTES))) +
				 off % SBLOCK_PAGE_BYTES);

			for (uint32 i = 0; i < n; i++)
			{
				uint32		b = SblockEntBlock(ent[i]);

				if (b >= lh->nblocks)
					SblockListCorrupted(so);
				qsum[b] += qv;
				csum[b] += (float) SblockEntCode(ent[i]) * qv;
			}
			es += n;
		}
	}
}

/* a block of the list being visited: where its postings are and its estimate */
typedef struct SblockBlockRef
{
	uint64		postings;		/* stream offset of its first posting */
	uint32		ndocs;
	float		dot;
} SblockBlockRef;

static int
BlockRefDotDesc(const void *a, const void *b)
{
	float		x = ((const SblockBlockRef *) a)->dot;
	float		y = ((const SblockBlockRef *) b)->dot;

	return (x < y) - (x > y);
}

#if defined(__GNUC__) || defined(__clang__)
#define SblockPrefetch(p) __builtin_prefetch(p)
#else
#define SblockPrefetch(p) ((void) 0)
#endif

#define SBLOCK_BATCH 6			/* with the two readers' pins, within PostgreSQL's 8 fast pin slots */

/*
 * Score a batch of a block's documents, given their compact records.  The
 * records lie on unrelated pages, each a cache miss away (and so is each
 * page's buffer descriptor): the descriptors are prefetched, then every page
 * is pinned and the start of every record prefetched, so that the misses
 * overlap (as Seismic prefetches a block's documents).  Then each record is
 * estimated in place (the compact stream is immutable: a pin is enough) and
 * only a document that may enter the heap is read from the forward stream,
 * where the deleted flag and the exact score are.
 */
static void
SblockScoreBatch(SblockScanOpaque so, const uint64 *offsets, int n)
{
	const SblockStream *s = &so->meta.compact;
	Buffer		bufs[SBLOCK_BATCH];
	const char *recs[SBLOCK_BATCH];
	bool		wide = so->meta.compactWide != 0;
	bool		cached = SblockCacheValid(so->cache, so->cacheGen);

	if (!cached)
		for (int j = 0; j < n; j++)
			SblockReaderPrefetchPin(&so->docReader, s->start + (BlockNumber) (offsets[j] / SBLOCK_PAGE_BYTES));
	/* on an error (a damaged page) the resource owner releases the pins */
	for (int j = 0; j < n; j++)
	{
		BlockNumber blkno = s->start + (BlockNumber) (offsets[j] / SBLOCK_PAGE_BYTES);
		Page		page;

		so->npages += blkno != so->lastPage;
		so->lastPage = blkno;
		if (cached)
		{
			bufs[j] = InvalidBuffer;
			page = SblockCachePage(so->cache, &so->docReader, blkno);
		}
		else
		{
			bufs[j] = SblockReaderPinExtra(&so->docReader, blkno);
			page = BufferGetPage(bufs[j]);
		}
		recs[j] = PageGetContents(page) + offsets[j] % SBLOCK_PAGE_BYTES;
		SblockPrefetch(recs[j]);
		SblockPrefetch(recs[j] + 64);
	}
	for (int j = 0; j < n; j++)
	{
		int			pos = (int) (offsets[j] % SBLOCK_PAGE_BYTES);
		const char *rec = recs[j];
		const SblockCompactHeader *h = (const SblockCompactHeader *) rec;
		bool		onePage = pos + SblockCompactBytes(h->nnz, wide) <= (Size) SBLOCK_PAGE_BYTES;
		uint32		forward8 = h->forward8;

		/* the next record's header has arrived by now: fetch all of it */
		if (j + 1 < n)
		{
			int			npos = (int) (offsets[j + 1] % SBLOCK_PAGE_BYTES);
			const char *next = recs[j + 1];
			Size		len = Min(SblockCompactBytes(((const SblockCompactHeader *) next)->nnz, wide),
								  (Size) (SBLOCK_PAGE_BYTES - npos));

			for (Size l = 128; l < len; l += 64)
				SblockPrefetch(next + l);
		}
		if ((uint64) forward8 * 8 + SBLOCK_DOC_HEADER_SIZE > so->meta.forward.bytes)
			ereport(ERROR,
					(errcode(ERRCODE_INDEX_CORRUPTED),
					 errmsg("sparse_block index \"%s\" has a damaged compact record",
							RelationGetRelationName(so->reader.index))));
		/* a record spanning pages (over SBLOCK_NOSPAN_BYTES) goes straight to the exact score */
		if (!onePage || SblockCompactMayEnter(so, rec))
			SblockScoreDoc(so, &so->meta.forward, (uint64) forward8 * 8, false);
		if (BufferIsValid(bufs[j]))
			ReleaseBuffer(bufs[j]);
	}
}

/* Score the documents of one block not seen yet in this round. */
static void
SblockScoreBlock(SblockScanOpaque so, const SblockBlockRef *ref)
{
	const SblockPosting *postings;
	uint64		batch[SBLOCK_BATCH];
	int			nbatch = 0;

	/* in place on the posting page, which so->reader keeps pinned meanwhile */
	SblockListBuf(so, sizeof(SblockPosting) * Max(ref->ndocs, 1));
	postings = (const SblockPosting *)
		SblockReaderPeek(&so->reader, &so->meta.postings, ref->postings,
						 sizeof(SblockPosting) * ref->ndocs, so->listbuf);
	for (uint32 i = 0; i < ref->ndocs; i++)
	{
		uint32		ord = postings[i].ordinal;

		if (ord >= so->total || BitTest(so->visited, ord) || BitTest(so->returned, ord))
			continue;
		if ((uint64) postings[i].offset8 * 8 + SBLOCK_COMPACT_HEADER_SIZE > so->meta.compact.bytes)
			SblockListCorrupted(so);
		BitSet(so->visited, ord);
		so->nestimated++;
		batch[nbatch++] = (uint64) postings[i].offset8 * 8;
		if (nbatch == SBLOCK_BATCH)
		{
			SblockScoreBatch(so, batch, nbatch);
			nbatch = 0;
		}
	}
	if (nbatch > 0)
		SblockScoreBatch(so, batch, nbatch);
	SblockReaderUnlock(&so->docReader);
}

/*
 * Steps 2 and 3 for one posting list: every block's estimate first (from
 * the component-major summaries), then the blocks in order, each skipped
 * when the heap is full and its estimate is below heap_factor x the heap's
 * minimum (a skipped block's postings are never read).  The first list of a
 * round is visited in descending estimate (Seismic's "sorted" mode): the
 * heap fills with good documents at once, so the skip test prunes more of
 * every later list.
 */
static void
SblockVisitList(SblockScanOpaque so, const SblockDirEntry *entry, bool sorted)
{
	const SblockStream *s = &so->meta.postings;
	SblockListHeader lh;
	SblockListLayout lay;
	uint64		base = entry->offset;
	char		hscratch[sizeof(SblockListHeader)];
	float	   *qsum;
	float	   *csum;
	SblockBlockRef *refs;

	memcpy(&lh, SblockReaderPeek(&so->reader, s, base, sizeof(lh), hscratch), sizeof(lh));
	SblockListLayoutOf(&lh, &lay);
	if (lh.nblocks > SBLOCK_MAX_BLOCKS || lay.end > entry->bytes || base + lay.end > s->bytes)
		SblockListCorrupted(so);
	if (lh.nblocks == 0)
		return;

	qsum = palloc0(sizeof(float) * lh.nblocks);
	csum = palloc0(sizeof(float) * lh.nblocks);
	refs = palloc(sizeof(SblockBlockRef) * lh.nblocks);
	SblockListDots(so, base, &lh, &lay, qsum, csum);
	for (uint32 b = 0; b < lh.nblocks; b++)
	{
		char		iscratch[sizeof(SblockBlockInfo)];
		SblockBlockInfo info;

		memcpy(&info, SblockReaderPeek(&so->reader, s, base + lay.blocks + sizeof(SblockBlockInfo) * (uint64) b,
									   sizeof(info), iscratch), sizeof(info));
		if ((uint64) info.first + info.ndocs > lh.npostings)
			SblockListCorrupted(so);
		refs[b].postings = base + lay.postings + sizeof(SblockPosting) * (uint64) info.first;
		refs[b].ndocs = info.ndocs;
		refs[b].dot = info.min * qsum[b] + info.step * csum[b];
	}
	so->nblocks += lh.nblocks;
	so->nsummary += lh.nentries;
	if (sorted)
		qsort(refs, lh.nblocks, sizeof(SblockBlockRef), BlockRefDotDesc);

	for (uint32 b = 0; b < lh.nblocks; b++)
	{
		CHECK_FOR_INTERRUPTS();
		if (so->nheap >= so->k && sblock_heap_factor > 0 &&
			refs[b].dot < sblock_heap_factor * so->heap[0].score)
		{
			so->nskipped++;
			continue;
		}
		SblockScoreBlock(so, &refs[b]);
	}
	pfree(refs);
	pfree(qsum);
	pfree(csum);
}

/* One round: fill so->heap with the best k unreturned documents, best first. */
static bool
SblockRound(IndexScanDesc scan)
{
	SblockScanOpaque so = (SblockScanOpaque) scan->opaque;
	MemoryContext old;
	bool		exhaustive;

	MemoryContextReset(so->roundCtx);
	old = MemoryContextSwitchTo(so->roundCtx);
	so->nheap = 0;
	so->next = 0;
	exhaustive = !so->haveQuery || so->k >= so->total || so->ncut == 0;
	if (exhaustive)
		so->k = so->total;
	so->heap = palloc_extended(sizeof(PgsHit) * Max(so->k, 1), MCXT_ALLOC_HUGE);
	so->visited = palloc_extended(so->total / 8 + 1, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);

	if (exhaustive)
		SblockScoreStream(so, &so->meta.forward, so->meta.ndocs);
	else
	{
		for (int i = 0; i < so->ncut; i++)
		{
			SblockDirEntry entry;

			if (SblockFindList(so, (uint32) so->qidx[so->cut[i]], &entry))
				SblockVisitList(so, &entry, i == 0);
		}
	}
	SblockScoreStream(so, &so->meta.tail, so->meta.tailDocs);
	MemoryContextSwitchTo(old);

	qsort(so->heap, so->nheap, sizeof(PgsHit), PgsHitCmpBestFirst);
	for (int i = 0; i < so->nheap; i++)
		BitSet(so->returned, so->heap[i].key);
	if (exhaustive)
		so->done = true;
	else
		so->k = Min(so->k * 2, (int64) so->total);
	return so->nheap > 0;
}

/* Append a live NULL-flagged record to the heap array (arg: its capacity). */
static void
SblockVisitNull(SblockScanOpaque so, const SblockStream *s, uint64 offset,
				const SblockDocHeader *hdr, void *arg)
{
	int		   *cap = (int *) arg;

	if (!(hdr->flags & SBLOCK_DOC_NULL) || (hdr->flags & SBLOCK_DOC_DELETED))
		return;
	if (so->nheap == *cap)
	{
		*cap *= 2;
		so->heap = repalloc_huge(so->heap, sizeof(PgsHit) * *cap);
	}
	so->heap[so->nheap].score = 0;
	so->heap[so->nheap].key = hdr->ordinal;
	so->heap[so->nheap].tid = hdr->tid;
	so->nheap++;
}

/* After every round: the rows whose value is NULL, last (as ORDER BY ... ASC sorts them). */
static void
SblockNullRound(IndexScanDesc scan)
{
	SblockScanOpaque so = (SblockScanOpaque) scan->opaque;
	int			cap = 64;

	MemoryContextReset(so->roundCtx);
	so->heap = MemoryContextAlloc(so->roundCtx, sizeof(PgsHit) * cap);
	so->nheap = 0;
	so->next = 0;
	SblockWalkStream(so, &so->meta.forward, so->meta.ndocs, SblockVisitNull, &cap);
	SblockWalkStream(so, &so->meta.tail, so->meta.tailDocs, SblockVisitNull, &cap);
	so->nullsDone = true;
}

bool
sblockgettuple(IndexScanDesc scan, ScanDirection dir)
{
	SblockScanOpaque so = (SblockScanOpaque) scan->opaque;
	PgsHit  *hit;

	if (!so->started)
		SblockStartScan(scan);

	while (so->next >= so->nheap)
	{
		if (so->done)
		{
			if (so->nullsDone)
				return false;
			SblockNullRound(scan);
			continue;
		}
		SblockRound(scan);
	}

	hit = &so->heap[so->next++];
	if (so->nullsDone)
	{
		/* a NULL row: no distance */
		scan->xs_heaptid = hit->tid;
		scan->xs_recheck = false;
		scan->xs_recheckorderby = false;
		scan->xs_orderbynulls[0] = true;
		if (scan->xs_want_itup)
			PgsSetNullIndexTuple(scan, &so->nullItup, so->scanCtx);
		return true;
	}
	scan->xs_heaptid = hit->tid;
	scan->xs_recheck = false;
	scan->xs_recheckorderby = false;
	scan->xs_orderbyvals[0] = Float8GetDatum((double) -hit->score);
	scan->xs_orderbynulls[0] = !so->haveQuery;
	if (scan->xs_want_itup)
		PgsSetNullIndexTuple(scan, &so->nullItup, so->scanCtx);
	return true;
}

void
sblockendscan(IndexScanDesc scan)
{
	SblockScanOpaque so = (SblockScanOpaque) scan->opaque;

	elog(DEBUG1, "sparse_block scan of \"%s\": %lld blocks (%lld summary components), %lld skipped, "
		 "%lld documents estimated (%lld page changes), %lld documents scored",
		 RelationGetRelationName(scan->indexRelation), (long long) so->nblocks, (long long) so->nsummary,
		 (long long) so->nskipped, (long long) so->nestimated, (long long) so->npages, (long long) so->nscored);
	SblockDenseRelease(so);
	SblockReaderEnd(&so->reader);
	SblockReaderEnd(&so->docReader);
	MemoryContextDelete(so->scanCtx);
	pfree(so);
	scan->opaque = NULL;
}
