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
 *   3. the other blocks' documents, each scored once (a visited bitmap), get
 *      their exact inner product from the forward stream — the same float sum
 *      pgvector's <#> computes — and compete for the heap;
 *   4. every document of the unclustered tail is scored too.
 * Deleted (VACUUM-flagged) documents are skipped; visibility is the
 * executor's job.  When k reaches the number of documents, the round scores
 * every document, so a scan under a filter eventually returns every row.
 * Rows come in exact score order within a round.
 */
#include "postgres.h"

#include <math.h>

#include "access/relscan.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "pgsieve_pages.h"
#include "pgvector_types.h"
#include "sblock.h"

typedef struct SblockHit
{
	float		score;
	uint32		ordinal;
	ItemPointerData tid;
} SblockHit;

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
	int			ncut;
	int		   *cut;

	int64		k;				/* this round's k */
	uint8	   *returned;		/* bitmap over ordinals */
	uint8	   *visited;		/* bitmap over ordinals, per round */

	/* the round's top-k: a min-heap while ranking, then sorted best first */
	SblockHit  *heap;
	int			nheap;
	int			next;

	/* counters, reported at DEBUG1 when the scan ends */
	int64		nblocks;
	int64		nskipped;
	int64		nscored;

	IndexTuple	nullItup;
	SblockReader reader;		/* posting lists, directory, tail headers */
	SblockReader docReader;		/* document records: keeps its page pinned apart */
	char	   *docbuf;
	Size		docbufSize;
	char	   *listbuf;
	Size		listbufSize;
} SblockScanOpaqueData;

typedef SblockScanOpaqueData *SblockScanOpaque;

static void SblockDenseRelease(SblockScanOpaque so);

#define BitTest(bm, i)	(((bm)[(i) >> 3] >> ((i) & 7)) & 1)
#define BitSet(bm, i)	((bm)[(i) >> 3] |= (uint8) (1 << ((i) & 7)))

/* heap order: a is worse than b (lower score; ties: higher ordinal) */
static inline bool
HitWorse(const SblockHit *a, const SblockHit *b)
{
	if (a->score != b->score)
		return a->score < b->score;
	return a->ordinal > b->ordinal;
}

static void
HeapSiftDown(SblockHit *h, int n, int i)
{
	for (;;)
	{
		int			l = 2 * i + 1,
					r = l + 1,
					m = i;
		SblockHit	t;

		if (l < n && HitWorse(&h[l], &h[m]))
			m = l;
		if (r < n && HitWorse(&h[r], &h[m]))
			m = r;
		if (m == i)
			return;
		t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

static void
HeapPush(SblockScanOpaque so, const SblockHit *hit)
{
	SblockHit  *h = so->heap;

	if (so->nheap < so->k)
	{
		int			i = so->nheap++;

		h[i] = *hit;
		while (i > 0 && HitWorse(&h[i], &h[(i - 1) / 2]))
		{
			SblockHit	t = h[i];

			h[i] = h[(i - 1) / 2];
			h[(i - 1) / 2] = t;
			i = (i - 1) / 2;
		}
	}
	else if (HitWorse(&h[0], hit))
	{
		h[0] = *hit;
		HeapSiftDown(h, so->nheap, 0);
	}
}

static int
HitCmpBestFirst(const void *a, const void *b)
{
	const SblockHit *x = a;
	const SblockHit *y = b;

	if (HitWorse(x, y))
		return 1;
	if (HitWorse(y, x))
		return -1;
	return 0;
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
	if (dense_owner != NULL)
		return MemoryContextAllocZero(so->queryCtx, sizeof(float) * Max(dim, 1));
	if (dense_cap < dim)
	{
		if (dense_buf)
			pfree(dense_buf);
		dense_buf = MemoryContextAllocZero(TopMemoryContext, sizeof(float) * Max(dim, 1));
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
	so->started = true;
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
		so->qidx = palloc(sizeof(int32) * Max(q->nnz, 1));
		so->qval = palloc(sizeof(float) * Max(q->nnz, 1));
		memcpy(so->qidx, q->indices, sizeof(int32) * q->nnz);
		memcpy(so->qval, PGV_SPARSEVEC_VALUES(q), sizeof(float) * q->nnz);

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

		SblockReaderRead(&so->reader, &so->meta.directory, (uint64) mid * sizeof(SblockDirEntry),
						 entry, sizeof(SblockDirEntry));
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
 * Score one document record (if live and new) and offer it to the heap.
 * Most records lie within one page: those are scored in place, under the
 * page's share lock; a record that spans pages is copied out first.
 */
static void
SblockScoreDoc(SblockScanOpaque so, const SblockStream *s, uint64 offset)
{
	BlockNumber blkno = s->start + (BlockNumber) (offset / SBLOCK_PAGE_BYTES);
	int			pos = (int) (offset % SBLOCK_PAGE_BYTES);
	SblockReader *r = &so->docReader;
	const SblockDocHeader *hdr;
	SblockHit	hit;
	bool		live;
	bool		inPlace;

	hdr = (const SblockDocHeader *) (PageGetContents(SblockReaderLockPage(r, blkno)) + pos);
	live = !(hdr->flags & (SBLOCK_DOC_DELETED | SBLOCK_DOC_NULL)) && hdr->ordinal < so->total &&
		!BitTest(so->returned, hdr->ordinal) && hdr->nnz <= SBLOCK_MAX_NNZ;
	inPlace = pos + SBLOCK_DOC_HEADER_SIZE + (Size) hdr->nnz * 8 <= SBLOCK_PAGE_BYTES;
	if (!live)
		return;
	if (inPlace)
	{
		const int32 *idx = (const int32 *) ((const char *) hdr + SBLOCK_DOC_HEADER_SIZE);
		const float *val = (const float *) (idx + hdr->nnz);

		/* the page stays locked for the next document, often on the same page */
		hit.score = SblockDocScore(so, idx, val, hdr->nnz);
		hit.ordinal = hdr->ordinal;
		hit.tid = hdr->tid;
	}
	else
	{
		SblockDoc	d;

		SblockReaderUnlock(r);
		if (!SblockReadDoc(r, s, offset, &d, &so->docbufSize, &so->docbuf) || (d.flags & SBLOCK_DOC_NULL))
			return;
		hit.score = SblockDocScore(so, d.indices, d.values, d.nnz);
		hit.ordinal = d.ordinal;
		hit.tid = d.tid;
	}
	so->nscored++;
	HeapPush(so, &hit);
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

	for (uint32 i = 0; i < n; i++)
	{
		Page		page;

		if ((i & 63) == 0)
		{
			SblockReaderUnlock(&so->docReader);
			CHECK_FOR_INTERRUPTS();
		}
		offset = SblockDocAlign(offset);
		page = SblockReaderLockPage(&so->docReader, s->start + (BlockNumber) (offset / SBLOCK_PAGE_BYTES));
		memcpy(&hdr, PageGetContents(page) + offset % SBLOCK_PAGE_BYTES, SBLOCK_DOC_HEADER_SIZE);
		visit(so, s, offset, &hdr, arg);
		offset += SblockDocBytes(hdr.nnz);
	}
	SblockReaderUnlock(&so->docReader);
}

static void
SblockVisitScore(SblockScanOpaque so, const SblockStream *s, uint64 offset,
				 const SblockDocHeader *hdr, void *arg)
{
	if (!BitTest(so->returned, hdr->ordinal))
		SblockScoreDoc(so, s, offset);
}

/* Score every document of a stream of n records (tail, or all in the last round). */
static void
SblockScoreStream(SblockScanOpaque so, const SblockStream *s, uint32 n)
{
	SblockWalkStream(so, s, n, SblockVisitScore, NULL);
}

/*
 * The summary's dot product with the full query (dequantized values); like
 * SblockDot, a short query searches the summary instead of merging with it.
 */
static float
SblockSummaryDot(const SblockScanOpaque so, const SblockBlockHeader *bh, const uint32 *comps,
				 const uint8 *codes)
{
	float		dot = 0;
	int			n = (int) bh->ncomp;
	int			i = 0,
				j = 0;

	if (so->qdense)
	{
		for (i = 0; i < n; i++)
			dot += (bh->min + codes[i] * bh->step) * so->qdense[comps[i]];
		return dot;
	}
	if (so->qnnz * 8 < n)
	{
		for (j = 0; j < so->qnnz && i < n; j++)
		{
			uint32		key = (uint32) so->qidx[j];
			int			hi = n;

			while (i < hi)
			{
				int			mid = i + (hi - i) / 2;

				if (comps[mid] < key)
					i = mid + 1;
				else
					hi = mid;
			}
			if (i < n && comps[i] == key)
			{
				dot += (bh->min + codes[i] * bh->step) * so->qval[j];
				i++;
			}
		}
		return dot;
	}
	while (i < n && j < so->qnnz)
	{
		uint32		c = comps[i];
		uint32		qc = (uint32) so->qidx[j];

		if (c == qc)
			dot += (bh->min + codes[i++] * bh->step) * so->qval[j++];
		else if (c < qc)
			i++;
		else
			j++;
	}
	return dot;
}

/* a block of the list being visited: where it is and what its summary says */
typedef struct SblockBlockRef
{
	uint64		offset;
	uint32		ncomp;
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

/* Score the documents of one block not seen yet in this round. */
static void
SblockScoreBlock(SblockScanOpaque so, const SblockBlockRef *ref)
{
	const SblockStream *s = &so->meta.postings;
	Size		summaryBytes = sizeof(uint32) * ref->ncomp + TYPEALIGN(4, ref->ncomp);
	const SblockPosting *postings;

	SblockReaderRead(&so->reader, s, ref->offset + sizeof(SblockBlockHeader) + summaryBytes,
					 so->listbuf, sizeof(SblockPosting) * ref->ndocs);
	postings = (const SblockPosting *) so->listbuf;
	for (uint32 i = 0; i < ref->ndocs; i++)
	{
		uint32		ord = postings[i].ordinal;

		if (ord >= so->total || BitTest(so->visited, ord) || BitTest(so->returned, ord))
			continue;
		BitSet(so->visited, ord);
		SblockScoreDoc(so, &so->meta.forward, (uint64) postings[i].offset8 * 8);
	}
	SblockReaderUnlock(&so->docReader);
}

/*
 * Steps 2 and 3 for one posting list, read a block at a time (a skipped
 * block's postings are never read).  The first list of a round is visited
 * in descending summary score (Seismic's "sorted" mode): the heap fills with
 * good documents at once, so the skip test prunes more of every later list.
 */
static void
SblockVisitList(SblockScanOpaque so, const SblockDirEntry *entry, bool sorted)
{
	const SblockStream *s = &so->meta.postings;
	SblockListHeader lh;
	uint64		offset = entry->offset;
	uint64		end = entry->offset + entry->bytes;
	SblockBlockRef *refs = NULL;
	int			nrefs = 0;

	SblockReaderRead(&so->reader, s, offset, &lh, sizeof(lh));
	offset += sizeof(lh);
	if (sorted)
		refs = palloc(sizeof(SblockBlockRef) * Max(lh.nblocks, 1));

	for (uint32 b = 0; b < lh.nblocks && offset < end; b++)
	{
		SblockBlockHeader bh;
		SblockBlockRef ref;
		Size		summaryBytes;
		Size		need;

		CHECK_FOR_INTERRUPTS();
		SblockReaderRead(&so->reader, s, offset, &bh, sizeof(bh));
		summaryBytes = sizeof(uint32) * bh.ncomp + TYPEALIGN(4, bh.ncomp);
		need = Max(summaryBytes, sizeof(SblockPosting) * bh.ndocs);
		if (bh.ncomp > SBLOCK_MAX_NNZ * (Size) 64 || offset + SblockBlockBytes(bh.ncomp, bh.ndocs) > end)
			ereport(ERROR,
					(errcode(ERRCODE_INDEX_CORRUPTED),
					 errmsg("sparse_block index \"%s\" has a damaged posting list",
							RelationGetRelationName(so->reader.index))));
		if (so->listbufSize < need)
		{
			so->listbuf = so->listbuf ? repalloc_huge(so->listbuf, need)
				: MemoryContextAllocHuge(so->queryCtx, need);
			so->listbufSize = need;
		}
		so->nblocks++;
		ref.offset = offset;
		ref.ncomp = bh.ncomp;
		ref.ndocs = bh.ndocs;
		ref.dot = 0;
		offset += SblockBlockBytes(bh.ncomp, bh.ndocs);

		if (sorted || (so->nheap >= so->k && sblock_heap_factor > 0))
		{
			const uint32 *comps;

			SblockReaderRead(&so->reader, s, ref.offset + sizeof(bh), so->listbuf, summaryBytes);
			comps = (const uint32 *) so->listbuf;
			ref.dot = SblockSummaryDot(so, &bh, comps, (const uint8 *) (comps + bh.ncomp));
		}
		if (sorted)
		{
			refs[nrefs++] = ref;
			continue;
		}
		if (so->nheap >= so->k && sblock_heap_factor > 0 &&
			ref.dot < sblock_heap_factor * so->heap[0].score)
		{
			so->nskipped++;
			continue;
		}
		SblockScoreBlock(so, &ref);
	}

	if (sorted)
	{
		qsort(refs, nrefs, sizeof(SblockBlockRef), BlockRefDotDesc);
		for (int i = 0; i < nrefs; i++)
		{
			CHECK_FOR_INTERRUPTS();
			if (so->nheap >= so->k && sblock_heap_factor > 0 &&
				refs[i].dot < sblock_heap_factor * so->heap[0].score)
			{
				so->nskipped++;
				continue;
			}
			SblockScoreBlock(so, &refs[i]);
		}
		pfree(refs);
	}
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
	so->heap = palloc_extended(sizeof(SblockHit) * Max(so->k, 1), MCXT_ALLOC_HUGE);
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

	qsort(so->heap, so->nheap, sizeof(SblockHit), HitCmpBestFirst);
	for (int i = 0; i < so->nheap; i++)
		BitSet(so->returned, so->heap[i].ordinal);
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
		so->heap = repalloc_huge(so->heap, sizeof(SblockHit) * *cap);
	}
	so->heap[so->nheap].score = 0;
	so->heap[so->nheap].ordinal = hdr->ordinal;
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
	so->heap = MemoryContextAlloc(so->roundCtx, sizeof(SblockHit) * cap);
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
	SblockHit  *hit;

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

	elog(DEBUG1, "sparse_block scan of \"%s\": %lld blocks, %lld skipped, %lld documents scored",
		 RelationGetRelationName(scan->indexRelation), (long long) so->nblocks,
		 (long long) so->nskipped, (long long) so->nscored);
	SblockDenseRelease(so);
	SblockReaderEnd(&so->reader);
	SblockReaderEnd(&so->docReader);
	MemoryContextDelete(so->scanCtx);
	pfree(so);
	scan->opaque = NULL;
}
