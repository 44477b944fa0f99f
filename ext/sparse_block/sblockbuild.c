/*
 * sblockbuild.c — building a sparse_block index (Seismic, SIGIR'24).
 *
 * 1. Load every document into memory (refusing to pass maintenance_work_mem)
 *    and write the forward and compact streams.
 * 2. Posting lists over dense term ids, in document order.
 * 3. Static pruning, Seismic's "global threshold" variant: keep the globally
 *    largest dim x n_postings entries, and at most n_postings x max_fraction
 *    per list.
 * 4. Blocking: per list, a shallow random k-means: centroid_fraction x len
 *    documents of the list are sampled as centroids; each document joins the
 *    centroid with the largest dot product between the document's doc_cut
 *    largest components and the centroid's full vector (computed through a
 *    small inverted index over the centroids); clusters of at most
 *    min_cluster_size documents are dissolved into the best survivor.
 * 5. Block summaries: the coordinate-wise max over the block's full document
 *    vectors, cut to the shortest prefix (by value) holding summary_energy of
 *    its mass, quantized to 8 bits with one min/step per summary.
 * 6. The posting stream, the term directory, and the meta page.
 *
 * Steps 3 to 5 are independent across lists and deterministic (each list's
 * random choices are seeded by its term), so when the planner grants
 * workers (plan_create_index_workers: max_parallel_maintenance_workers, the
 * table's size or parallel_workers) the leader and its workers share them
 * out (see "A parallel build" below); the index is the same either way.
 */
#include "postgres.h"

#include <math.h>
#include <sys/resource.h>

#include "access/parallel.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "commands/progress.h"
#include "common/pg_prng.h"
#include "pgstat.h"
#include "miscadmin.h"
#include "optimizer/optimizer.h"
#include "port/atomics.h"
#include "portability/instr_time.h"
#include "storage/buffile.h"
#include "storage/condition_variable.h"
#include "storage/sharedfileset.h"
#include "storage/shm_toc.h"
#include "utils/memutils.h"

#include "pgsieve_pages.h"
#include "sblock.h"

#if defined(__GNUC__) || defined(__clang__)
#define SblockBuildPrefetch(p) __builtin_prefetch(p)
#else
#define SblockBuildPrefetch(p) ((void) 0)
#endif

typedef struct SblockBuildState
{
	Relation	index;
	SblockMetaPageData meta;
	MemoryContext docsCtx;
	MemoryContext tmpCtx;
	SblockDoc  *docs;
	int			ndocs;
	int			capDocs;
	Size		memUsed;
	Size		memLimit;
	double		indtuples;
} SblockBuildState;

/* a component by dense term id */
typedef struct CompVal
{
	int32		comp;			/* dense term id */
	float		value;
} CompVal;

/* the build's posting lists: CSR over dense term ids */
typedef struct SblockLists
{
	int			nterms;			/* distinct terms */
	int32	   *terms;			/* dense id -> term id (ascending) */
	CompVal    *packed;			/* every document's components, dense ids, contiguous */
	int64	   *docStart;		/* per document: its first component in packed */
	int64	   *start;			/* per term: first posting, nterms + 1 entries */
	uint32	   *docOf;			/* posting -> ordinal */
	float	   *valOf;			/* posting -> value */
	CompVal    *top;			/* per document: its doc_cut largest components */
	int64	   *topStart;		/* per document: its first in top, ndocs + 1 entries */
} SblockLists;

static uint64
SplitMix64(uint64 *state)
{
	uint64		z = (*state += UINT64CONST(0x9E3779B97F4A7C15));

	z = (z ^ (z >> 30)) * UINT64CONST(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64CONST(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static void
SblockBuildCallback(Relation heap, ItemPointer tid, Datum *values, bool *isnull,
					bool tupleIsAlive, void *state)
{
	SblockBuildState *bs = (SblockBuildState *) state;
	MemoryContext old;
	SblockDoc	v;
	SblockDoc  *d;
	int			dim;

	old = MemoryContextSwitchTo(bs->tmpCtx);
	if (isnull[0])
	{
		/* kept as an empty record: a scan returns NULL rows last */
		v.nnz = 0;
		v.indices = NULL;
		v.values = NULL;
		v.flags = SBLOCK_DOC_NULL;
	}
	else
	{
		dim = SblockCheckValue(values[0], bs->meta.dim, &v);
		if (bs->meta.dim == 0)
			bs->meta.dim = dim;
	}

	MemoryContextSwitchTo(bs->docsCtx);
	if (bs->ndocs == bs->capDocs)
	{
		bs->capDocs = bs->capDocs ? bs->capDocs * 2 : 1024;
		bs->docs = bs->docs ? repalloc_huge(bs->docs, sizeof(SblockDoc) * bs->capDocs)
			: palloc_extended(sizeof(SblockDoc) * bs->capDocs, MCXT_ALLOC_HUGE);
	}
	if (bs->ndocs >= (int) (PG_UINT32_MAX / 2))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("sparse_block index supports at most %u documents", PG_UINT32_MAX / 2)));
	d = &bs->docs[bs->ndocs];
	d->tid = *tid;
	d->flags = v.flags;
	d->ordinal = bs->ndocs;
	d->nnz = v.nnz;
	d->indices = palloc(sizeof(int32) * Max(v.nnz, 1));
	d->values = palloc(sizeof(float) * Max(v.nnz, 1));
	if (v.nnz > 0)				/* an empty vector's arrays may be NULL: memcpy(NULL) is undefined */
	{
		memcpy(d->indices, v.indices, sizeof(int32) * v.nnz);
		memcpy(d->values, v.values, sizeof(float) * v.nnz);
	}
	bs->ndocs++;
	bs->indtuples += 1;

	/* the documents, their dense ids and their postings: ~20 bytes a component */
	bs->memUsed += sizeof(SblockDoc) + 64 + (Size) v.nnz * 20;
	if (bs->memUsed > bs->memLimit)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("sparse_block build needs more than maintenance_work_mem (%zu kB) after %d documents",
						bs->memLimit / 1024, bs->ndocs),
				 errhint("Raise maintenance_work_mem for this CREATE INDEX or REINDEX.")));
	MemoryContextSwitchTo(old);
	MemoryContextReset(bs->tmpCtx);
}

/* Write every document to the forward stream; returns their offsets. */
static uint64 *
SblockWriteForward(SblockBuildState *bs)
{
	SblockWriter w;
	uint64	   *offsets = palloc_extended(sizeof(uint64) * Max(bs->ndocs, 1), MCXT_ALLOC_HUGE);

	SblockWriterBegin(&w, bs->index, MAIN_FORKNUM);
	for (int i = 0; i < bs->ndocs; i++)
	{
		SblockDoc  *d = &bs->docs[i];
		SblockDocHeader hdr;

		CHECK_FOR_INTERRUPTS();
		memset(&hdr, 0, sizeof(hdr));
		hdr.tid = d->tid;
		hdr.flags = d->flags;
		hdr.ordinal = d->ordinal;
		hdr.nnz = d->nnz;
		offsets[i] = SblockWriterAlignDoc(&w, d->nnz);
		/* postings address a record by offset / 8 in a uint32 (SblockPosting.offset8) */
		if (offsets[i] / 8 > PG_UINT32_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("sparse_block forward stream exceeds 32 GB")));
		SblockWriterWrite(&w, &hdr, SBLOCK_DOC_HEADER_SIZE);
		SblockWriterWrite(&w, d->indices, sizeof(int32) * d->nnz);
		SblockWriterWrite(&w, d->values, sizeof(float) * d->nnz);
	}
	SblockWriterPad(&w, 8);
	SblockWriterEnd(&w, &bs->meta.forward);
	return offsets;
}

/*
 * Write every document's compact record (sblock.h), in ordinal order, after
 * the forward stream; returns their offsets, which the postings hold.
 */
static uint64 *
SblockWriteCompact(SblockBuildState *bs, const uint64 *forward)
{
	static const char zeros[SBLOCK_PAGE_BYTES];
	SblockWriter w;
	uint64	   *offsets = palloc_extended(sizeof(uint64) * Max(bs->ndocs, 1), MCXT_ALLOC_HUGE);
	bool		wide = bs->meta.dim > 65536;
	char	   *rec = palloc(SblockCompactBytes(SBLOCK_MAX_NNZ, true));

	bs->meta.compactWide = wide;
	SblockWriterBegin(&w, bs->index, MAIN_FORKNUM);
	for (int i = 0; i < bs->ndocs; i++)
	{
		SblockDoc  *d = &bs->docs[i];
		Size		bytes = SblockCompactBytes(d->nnz, wide);

		CHECK_FOR_INTERRUPTS();
		offsets[i] = SblockCompactPlace(w.bytes, bytes);
		if (offsets[i] / 8 > PG_UINT32_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("sparse_block compact stream exceeds 32 GB")));
		if (offsets[i] > w.bytes)
			SblockWriterWrite(&w, zeros, offsets[i] - w.bytes);
		(void) SblockCompactEncode(d->indices, d->values, d->nnz, wide, (uint32) (forward[i] / 8), rec);
		SblockWriterWrite(&w, rec, bytes);
	}
	SblockWriterEnd(&w, &bs->meta.compact);
	pfree(rec);
	return offsets;
}

static int
CmpInt32(const void *a, const void *b)
{
	int32		x = *(const int32 *) a;
	int32		y = *(const int32 *) b;

	return (x > y) - (x < y);
}

/*
 * Step 2, first half: dense term ids (L->nterms, L->terms) and the sizes of
 * the arrays SblockFillLists fills: *total components, *ntop of them among
 * the documents' doc_cut largest.  Vocabularies of up to
 * SBLOCK_DENSE_QUERY_MAX_DIM terms (every real one) are mapped through an
 * array indexed by term, which is returned; larger dimensions sort, and NULL
 * is returned (SblockFillLists then looks terms up by binary search).
 */
static int32 *
SblockBuildTerms(const SblockBuildState *bs, SblockLists *L, int docCut, int64 *total, int64 *ntop)
{
	int32	   *all;
	int32	   *map = NULL;
	int			n = 0;
	int			dim = bs->meta.dim;

	*total = 0;
	*ntop = 0;
	for (int i = 0; i < bs->ndocs; i++)
	{
		*total += bs->docs[i].nnz;
		*ntop += Min(bs->docs[i].nnz, docCut);
	}
	if (dim > 0 && dim <= SBLOCK_DENSE_QUERY_MAX_DIM)
	{
		map = palloc_extended(sizeof(int32) * dim, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
		for (int i = 0; i < bs->ndocs; i++)
			for (int c = 0; c < bs->docs[i].nnz; c++)
				map[bs->docs[i].indices[c]] = 1;
		for (int d = 0; d < dim; d++)
			n += map[d];
		all = palloc_extended(sizeof(int32) * Max(n, 1), MCXT_ALLOC_HUGE);
		n = 0;
		for (int d = 0; d < dim; d++)
			if (map[d])
			{
				map[d] = n;
				all[n++] = d;
			}
	}
	else
	{
		int64		k = 0;

		all = palloc_extended(sizeof(int32) * Max(*total, 1), MCXT_ALLOC_HUGE);
		for (int i = 0; i < bs->ndocs; i++)
		{
			memcpy(all + k, bs->docs[i].indices, sizeof(int32) * bs->docs[i].nnz);
			k += bs->docs[i].nnz;
		}
		qsort(all, k, sizeof(int32), CmpInt32);
		for (int64 i = 0; i < k; i++)
			if (n == 0 || all[n - 1] != all[i])
				all[n++] = all[i];
	}
	L->nterms = n;
	L->terms = all;
	return map;
}

/*
 * The arrays every participant of the build reads: where they live (local
 * memory, or a parallel build's DSM) is up to the caller, who sets them all.
 */
typedef enum SblockListArray
{
	SBLOCK_ARR_TERMS,
	SBLOCK_ARR_START,
	SBLOCK_ARR_PACKED,
	SBLOCK_ARR_DOCSTART,
	SBLOCK_ARR_DOCOF,
	SBLOCK_ARR_VALOF,
	SBLOCK_ARR_TOP,
	SBLOCK_ARR_TOPSTART,
	SBLOCK_NUM_ARRAYS
} SblockListArray;

/* their sizes in bytes, and where L keeps each */
static void
SblockListArrays(SblockLists *L, int ndocs, int64 total, int64 ntop, Size *sizes, void ***slots)
{
	sizes[SBLOCK_ARR_TERMS] = sizeof(int32) * Max(L->nterms, 1);
	sizes[SBLOCK_ARR_START] = sizeof(int64) * (L->nterms + 1);
	sizes[SBLOCK_ARR_PACKED] = sizeof(CompVal) * Max(total, 1);
	sizes[SBLOCK_ARR_DOCSTART] = sizeof(int64) * (ndocs + 1);
	sizes[SBLOCK_ARR_DOCOF] = sizeof(uint32) * Max(total, 1);
	sizes[SBLOCK_ARR_VALOF] = sizeof(float) * Max(total, 1);
	sizes[SBLOCK_ARR_TOP] = sizeof(CompVal) * Max(ntop, 1);
	sizes[SBLOCK_ARR_TOPSTART] = sizeof(int64) * (ndocs + 1);
	slots[SBLOCK_ARR_TERMS] = (void **) &L->terms;
	slots[SBLOCK_ARR_START] = (void **) &L->start;
	slots[SBLOCK_ARR_PACKED] = (void **) &L->packed;
	slots[SBLOCK_ARR_DOCSTART] = (void **) &L->docStart;
	slots[SBLOCK_ARR_DOCOF] = (void **) &L->docOf;
	slots[SBLOCK_ARR_VALOF] = (void **) &L->valOf;
	slots[SBLOCK_ARR_TOP] = (void **) &L->top;
	slots[SBLOCK_ARR_TOPSTART] = (void **) &L->topStart;
}

/* a serial build's arrays: local memory (the terms are there already) */
static void
SblockAllocLists(SblockLists *L, int ndocs, int64 total, int64 ntop)
{
	Size		sizes[SBLOCK_NUM_ARRAYS];
	void	  **slots[SBLOCK_NUM_ARRAYS];

	SblockListArrays(L, ndocs, total, ntop, sizes, slots);
	for (int a = 0; a < SBLOCK_NUM_ARRAYS; a++)
		if (a != SBLOCK_ARR_TERMS)
			*slots[a] = palloc_extended(sizes[a], MCXT_ALLOC_HUGE);
}

/*
 * Step 2, second half: the CSR posting lists over the dense term ids of
 * SblockBuildTerms (map), documents in ordinal order.
 */
static void
SblockFillLists(const SblockBuildState *bs, SblockLists *L, const int32 *map)
{
	int64		total = 0;
	int64	   *fill;
	int			n = L->nterms;

	memset(L->start, 0, sizeof(int64) * (n + 1));
	for (int i = 0; i < bs->ndocs; i++)
	{
		SblockDoc  *d = &bs->docs[i];

		L->docStart[i] = total;
		for (int c = 0; c < d->nnz; c++)
		{
			CompVal    *cv = &L->packed[total++];

			if (map)
				cv->comp = map[d->indices[c]];
			else
				cv->comp = (int32) ((int32 *) bsearch(&d->indices[c], L->terms, n, sizeof(int32), CmpInt32) - L->terms);
			cv->value = d->values[c];
			L->start[cv->comp + 1]++;
		}
	}
	L->docStart[bs->ndocs] = total;
	for (int t = 0; t < n; t++)
		L->start[t + 1] += L->start[t];

	fill = palloc_extended(sizeof(int64) * (n + 1), MCXT_ALLOC_HUGE);
	memcpy(fill, L->start, sizeof(int64) * (n + 1));
	for (int i = 0; i < bs->ndocs; i++)
	{
		SblockDoc  *d = &bs->docs[i];

		for (int c = 0; c < d->nnz; c++)
		{
			const CompVal *cv = &L->packed[L->docStart[i] + c];
			int64		p = fill[cv->comp]++;

			L->docOf[p] = (uint32) i;
			L->valOf[p] = cv->value;
		}
	}
	pfree(fill);
}

/* the k-th largest of n floats (k >= 1), by quickselect on a copy */
static float
KthLargest(const float *values, int64 n, int64 k)
{
	float	   *a = palloc_extended(sizeof(float) * n, MCXT_ALLOC_HUGE);
	int64		lo = 0,
				hi = n - 1;
	float		result;

	memcpy(a, values, sizeof(float) * n);
	k = k - 1;					/* index in descending order */
	while (lo < hi)
	{
		float		pivot = a[lo + (hi - lo) / 2];
		int64		i = lo,
					j = hi;

		while (i <= j)
		{
			while (a[i] > pivot)
				i++;
			while (a[j] < pivot)
				j--;
			if (i <= j)
			{
				float		t = a[i];

				a[i] = a[j];
				a[j] = t;
				i++;
				j--;
			}
		}
		if (k <= j)
			hi = j;
		else if (k >= i)
			lo = i;
		else
			break;
	}
	result = a[k];
	pfree(a);
	return result;
}

/*
 * Static pruning of list t (see the file comment); returns the kept
 * documents, ascending, in *docs.  Over the cap, the cap largest values are
 * kept (ties: lower ordinals first); the list is in ordinal order, so one
 * selection of the cap-th largest value and one filtering pass keep the
 * order without sorting.
 */
static int
SblockPruneList(const SblockLists *L, int t, float threshold, int cap, uint32 *docs)
{
	int64		s = L->start[t];
	int			len = (int) (L->start[t + 1] - s);
	int			n = 0;
	float	   *vals = palloc(sizeof(float) * Max(len, 1));
	float		kth;
	int			above = 0;
	int			ties;

	for (int i = 0; i < len; i++)
		if (L->valOf[s + i] >= threshold)
		{
			vals[n] = L->valOf[s + i];
			docs[n] = L->docOf[s + i];
			n++;
		}
	if (n <= cap)
	{
		pfree(vals);
		return n;
	}
	kth = KthLargest(vals, n, cap);
	for (int i = 0; i < n; i++)
		above += vals[i] > kth;
	ties = cap - above;			/* how many of the values equal to kth to keep */
	{
		int			m = 0;

		for (int i = 0; i < n; i++)
			if (vals[i] > kth || (vals[i] == kth && ties-- > 0))
				docs[m++] = docs[i];
		n = m;
	}
	pfree(vals);
	return n;
}

/* scratch shared by the per-list steps, sized once for the whole build */
typedef struct SblockScratch
{
	int32	   *termHead;		/* dense term -> its first centroid entry, or -1 */
	int32	   *termCount;		/* dense term -> centroids containing it */
	int32	   *touchedTerms;
	float	   *acc;			/* dense term -> running max (summaries) */
	int32	   *accTouched;
	float	   *score;			/* centroid -> dot product */
	int32	   *scoreTouched;
	int		   *assign;			/* position in list -> centroid */
	int		   *clusterSize;
	bool	   *alive;
	/* the list being written: its summaries' entries, block by block */
	CompVal    *summary;		/* one block's summary (nterms) */
	CompVal    *summaryTmp;		/* SblockAlphaPrefix's reordering of it (nterms) */
	CompVal    *summaryCross;	/* and its crossing bucket (nterms + 1) */
	double	   *bucketSum;		/* SblockAlphaPrefix's histogram, zero between calls */
	int32	   *bucketCount;
	SblockBlockInfo *binfo;		/* per block */
	int32	   *entComp;		/* dense term */
	uint8	   *entCode;
	uint16	   *entBlock;
	int64		nent;
	int64		entCap;
	int32	   *compCount;		/* dense term -> entries, then fill cursor */
	int32	   *compTouched;
	uint32	   *docs;			/* the list after pruning, ascending */
	uint32	   *blockDocs;		/* the list in block order */
	/* time spent, for DEBUG1 */
	struct rusage ru0;			/* CPU time used before the lists */
	instr_time	tPrune;
	instr_time	tCluster;
	instr_time	tWrite;
} SblockScratch;

/* the centroids' inverted index: per term, its (centroid, value) entries, contiguous */
typedef struct CentroidEntry
{
	int			centroid;
	float		value;
} CentroidEntry;

/*
 * A document's doc_cut largest components (dense ids; ties: earlier
 * components first), in component order.
 */
static void
SblockTopCut(const CompVal *dc, int nnz, int docCut, CompVal *out, int *nout)
{
	float	   *vals;
	float		kth;
	int			above = 0;
	int			ties;
	int			n = 0;

	if (nnz <= docCut)
	{
		memcpy(out, dc, sizeof(CompVal) * nnz);
		*nout = nnz;
		return;
	}
	vals = palloc(sizeof(float) * nnz);
	for (int c = 0; c < nnz; c++)
		vals[c] = dc[c].value;
	kth = KthLargest(vals, nnz, docCut);
	for (int c = 0; c < nnz; c++)
		above += dc[c].value > kth;
	ties = docCut - above;
	for (int c = 0; c < nnz; c++)
		if (dc[c].value > kth || (dc[c].value == kth && ties-- > 0))
			out[n++] = dc[c];
	*nout = n;
	pfree(vals);
}

/* Every document's doc_cut largest components, into L->top and L->topStart. */
static void
SblockFillTopCut(SblockLists *L, int ndocs, int docCut)
{
	int64		k = 0;

	for (int i = 0; i < ndocs; i++)
	{
		int			nnz = (int) (L->docStart[i + 1] - L->docStart[i]);
		int			nout;

		L->topStart[i] = k;
		SblockTopCut(&L->packed[L->docStart[i]], nnz, docCut, &L->top[k], &nout);
		k += nout;
	}
	L->topStart[ndocs] = k;
}

/*
 * The best centroid for document doc among those still alive: the largest
 * dot product of its top components with the centroids' full vectors.
 *
 * Terms found in most centroids (the list's own term, which is in all of
 * them, and stop-word-like terms) cost one step per centroid and barely
 * discriminate between them, so the first pass leaves out terms held by more
 * than a quarter of the centroids; a document that shares no other term with
 * any centroid is placed by a second pass over all its top components.
 */
static int
SblockBestCentroid(const SblockLists *L, SblockScratch *S,
				   const CentroidEntry *entries, uint32 doc, int nc, int firstAlive)
{
	int			maxChain = Max(8, nc / 4);
	int			best = -1;
	float		bestScore = 0;

	for (int pass = 0; pass < 2 && best < 0; pass++)
	{
		int			nt = 0;

		/* locals, not S's fields: see SblockSummarize */
		int32	   *touched = S->scoreTouched;
		float	   *score = S->score;

		for (int64 i = L->topStart[doc]; i < L->topStart[doc + 1]; i++)
		{
			int32		dt = L->top[i].comp;
			float		dv = L->top[i].value;
			int32		e0 = S->termHead[dt];
			int32		e1;

			if (e0 < 0 || (pass == 0 && S->termCount[dt] > maxChain))
				continue;
			e1 = e0 + S->termCount[dt];
			for (int32 e = e0; e < e1; e++)
			{
				int			j = entries[e].centroid;
				float		p = dv * entries[e].value;
				float		old = score[j];

				/*
				 * Branch-free touched list: values are non-negative, so a
				 * score is zero until the centroid's first non-zero product,
				 * when it joins (zero products add nothing).
				 */
				touched[nt] = j;
				nt += (old == 0) & (p > 0);
				score[j] = old + p;
			}
		}
		for (int i = 0; i < nt; i++)
		{
			int			j = S->scoreTouched[i];

			if (S->alive[j] &&
				(best < 0 || S->score[j] > bestScore || (S->score[j] == bestScore && j < best)))
			{
				best = j;
				bestScore = S->score[j];
			}
			S->score[j] = 0;
		}
	}
	return best >= 0 ? best : firstAlive;
}

/*
 * Random k-means over the n documents of a list: fills S->assign and
 * returns the number of centroids.
 */
static int
SblockClusterList(const SblockLists *L, SblockScratch *S,
				  const uint32 *docs, int n, int32 term, const SblockOptions *opts,
				  uint32 **centroidDocs)
{
	int			nc = Max(1, (int) Min((double) SBLOCK_MAX_BLOCKS, floor(opts->centroidFraction * n)));
	uint32	   *pool;
	uint64		rng = UINT64CONST(1142) ^ ((uint64) (uint32) term * UINT64CONST(0x9E3779B97F4A7C15));
	CentroidEntry *entries;
	int			nentries = 0;
	int			ntouched = 0;
	int			firstAlive = 0;

	nc = Min(nc, n);
	/* sample nc documents without replacement: a partial Fisher-Yates */
	pool = palloc(sizeof(uint32) * (Size) Max(n, 1));
	for (int i = 0; i < n; i++)
		pool[i] = docs[i];
	for (int i = 0; i < nc; i++)
	{
		int			j = i + (int) (SplitMix64(&rng) % (uint64) (n - i));
		uint32		t = pool[i];

		pool[i] = pool[j];
		pool[j] = t;
	}
	*centroidDocs = pool;

	if (nc == 1)
	{
		for (int i = 0; i < n; i++)
			S->assign[i] = 0;
		return 1;
	}

	/* the inverted index over the centroids' full vectors */
	{
		int64		total = 0;

		for (int j = 0; j < nc; j++)
			total += L->docStart[pool[j] + 1] - L->docStart[pool[j]];
		entries = palloc_extended(sizeof(CentroidEntry) * Max(total, 1), MCXT_ALLOC_HUGE);
	}
	/* count each term's entries, place the runs, then fill them (CSR) */
	for (int j = 0; j < nc; j++)
	{
		const CompVal *cv = &L->packed[L->docStart[pool[j]]];
		int			nnz = (int) (L->docStart[pool[j] + 1] - L->docStart[pool[j]]);

		for (int c = 0; c < nnz; c++)
		{
			int32		dt = cv[c].comp;

			if (S->termCount[dt]++ == 0)
				S->touchedTerms[ntouched++] = dt;
		}
		S->alive[j] = true;
		S->clusterSize[j] = 0;
	}
	for (int i = 0; i < ntouched; i++)
	{
		S->termHead[S->touchedTerms[i]] = nentries;	/* the fill cursor, for now */
		nentries += S->termCount[S->touchedTerms[i]];
	}
	for (int j = 0; j < nc; j++)
	{
		const CompVal *cv = &L->packed[L->docStart[pool[j]]];
		int			nnz = (int) (L->docStart[pool[j] + 1] - L->docStart[pool[j]]);

		for (int c = 0; c < nnz; c++)
		{
			CentroidEntry *e = &entries[S->termHead[cv[c].comp]++];

			e->centroid = j;
			e->value = cv[c].value;
		}
	}
	for (int i = 0; i < ntouched; i++)
		S->termHead[S->touchedTerms[i]] -= S->termCount[S->touchedTerms[i]];

	for (int i = 0; i < n; i++)
	{
		if (i + 2 < n)
			SblockBuildPrefetch(&L->top[L->topStart[docs[i + 2]]]);
		S->assign[i] = SblockBestCentroid(L, S, entries, docs[i], nc, 0);
		S->clusterSize[S->assign[i]]++;
	}

	/* dissolve small clusters into the best surviving centroid */
	{
		int			survivors = 0;

		for (int j = 0; j < nc; j++)
		{
			S->alive[j] = S->clusterSize[j] > opts->minClusterSize;
			if (S->alive[j])
			{
				if (survivors == 0)
					firstAlive = j;
				survivors++;
			}
		}
		if (survivors == 0)
		{
			for (int i = 0; i < n; i++)
				S->assign[i] = 0;
		}
		else if (survivors < nc)
		{
			for (int i = 0; i < n; i++)
				if (!S->alive[S->assign[i]])
					S->assign[i] = SblockBestCentroid(L, S, entries, docs[i], nc, firstAlive);
		}
	}

	for (int i = 0; i < ntouched; i++)
	{
		S->termHead[S->touchedTerms[i]] = -1;
		S->termCount[S->touchedTerms[i]] = 0;
	}
	pfree(entries);
	return nc;
}

/*
 * Equal values at the alpha-mass boundary are kept in a fixed pseudo-random
 * order of their components.  By id they would favour one end of the
 * vocabulary (WordPiece ids run roughly from frequent to rare terms): on
 * BM25 vectors, where ties are common, that cost recall at the defaults.
 */
static inline uint32
SblockTieKey(int32 comp)
{
	uint32		h = (uint32) comp * 0x9E3779B1u;

	return h ^ (h >> 15);
}

static inline int
CmpCompValDesc(const CompVal *x, const CompVal *y)
{
	uint32		hx,
				hy;

	if (x->value != y->value)
		return x->value > y->value ? -1 : 1;
	hx = SblockTieKey(x->comp);
	hy = SblockTieKey(y->comp);
	if (hx != hy)
		return (hx > hy) - (hx < hy);
	return (x->comp > y->comp) - (x->comp < y->comp);
}


#define ST_SORT sort_compval_desc
#define ST_ELEMENT_TYPE CompVal
#define ST_COMPARE(a, b) CmpCompValDesc(a, b)
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"


/*
 * A float's bits as an unsigned key with the same order (negative values
 * below positive ones; sparsevec has no NaN).
 */
#define SBLOCK_ALPHA_BUCKETS 4096
#define SBLOCK_ALPHA_SORT 32		/* a crossing bucket this small is sorted, not bucketed again */

static inline uint32
SblockFloatKey(float v)
{
	uint32		u;

	memcpy(&u, &v, sizeof(u));
	return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/*
 * One histogram step of SblockAlphaPrefix over cv[0 .. n), bucketed by the
 * key bits at shift selected by mask: returns the bucket where the running
 * sum from the top (starting at *run) reaches target, or the lowest one;
 * adds the sums and counts of the buckets above it to *run and *above.
 */
static uint32
SblockAlphaBucket(SblockScratch *S, const CompVal *cv, int n, int shift, uint32 mask, double target,
				  double *runp, int *abovep)
{
	double	   *bsum = S->bucketSum;
	int32	   *bcnt = S->bucketCount;
	uint32		lo = SBLOCK_ALPHA_BUCKETS - 1,
				hi = 0,
				cross;

	/* locals: through the pointers every step reloaded them (they may alias bsum) */
	double		run = *runp;
	int			above = *abovep;

	for (int i = 0; i < n; i++)
	{
		uint32		bk = (SblockFloatKey(cv[i].value) >> shift) & mask;

		bsum[bk] += cv[i].value;
		bcnt[bk]++;
		lo = Min(lo, bk);
		hi = Max(hi, bk);
	}
	/* empty buckets are skipped: the range can span thousands of them */
	for (cross = hi; cross > lo; cross--)
	{
		if (bcnt[cross] == 0)
			continue;
		if (run + bsum[cross] >= target)
			break;
		run += bsum[cross];
		above += bcnt[cross];
	}
	memset(bsum + lo, 0, sizeof(double) * (hi - lo + 1));
	memset(bcnt + lo, 0, sizeof(int32) * (hi - lo + 1));
	*runp = run;
	*abovep = above;
	return cross;
}

/*
 * Copy src[0 .. n) to dst as [the nabove elements whose bucket (key bits at
 * shift, under mask) is above c | those in bucket c], dropping the rest;
 * returns how many are in c.  Branch-free: every element is written both at
 * the end of the above run (overwritten until one belongs there) and to the
 * crossing scratch, since which bucket an element falls in is random and
 * branches on it mispredicted.
 */
static int
SblockAlphaSplit(const CompVal *src, int n, int shift, uint32 mask, uint32 c, CompVal *dst, int nabove,
				 CompVal *cross)
{
	int			na = 0,
				nc = 0;

	for (int i = 0; i < n; i++)
	{
		uint32		bk = (SblockFloatKey(src[i].value) >> shift) & mask;

		dst[na] = src[i];
		cross[nc] = src[i];
		na += bk > c;
		nc += bk == c;
	}
	Assert(na == nabove);
	memcpy(dst + nabove, cross, sizeof(CompVal) * nc);
	return nc;
}

/*
 * Move to the front of cv the shortest set of largest values whose sum
 * reaches target (the element crossing it included, at least one element;
 * ties in SblockTieKey order) and return its size.  A histogram over the
 * values' top 12 key bits (sign, exponent, 3 mantissa bits) finds the
 * bucket where the running sum from the top crosses target, a second one
 * over the next 8 bits narrows that bucket (unless it holds few values:
 * scanning the second histogram's empty buckets then costs more than
 * sorting them), and only what is left is sorted.  Any such bucketing keeps
 * the same values: whole buckets above the crossing one, then the largest
 * of the crossing bucket in sorted order.  (A weighted quickselect did the same with data-dependent
 * branches that mispredicted half the time: a quarter of the build.)
 */
static int
SblockAlphaPrefix(SblockScratch *S, CompVal *cv, int n, double target)
{
	CompVal    *tmp = S->summaryTmp;
	CompVal    *cross = S->summaryCross;
	double		run = 0;
	int			above = 0,
				ncross,
				keep;
	uint32		c1,
				c2;

	if (n == 0)
		return 0;
	/* level 1: cv -> tmp = [above c1 | in c1] */
	c1 = SblockAlphaBucket(S, cv, n, 20, SBLOCK_ALPHA_BUCKETS - 1, target, &run, &above);
	ncross = SblockAlphaSplit(cv, n, 20, SBLOCK_ALPHA_BUCKETS - 1, c1, tmp, above, cross);
	memcpy(cv, tmp, sizeof(CompVal) * (above + ncross));

	/* level 2 within c1, unless sorting it is cheaper: cv's tail = [above c2 | in c2] */
	if (ncross > SBLOCK_ALPHA_SORT)
	{
		int			above1 = above;

		c2 = SblockAlphaBucket(S, tmp + above1, ncross, 12, 0xFF, target, &run, &above);
		ncross = SblockAlphaSplit(tmp + above1, ncross, 12, 0xFF, c2, cv + above1, above - above1, cross);
	}
	sort_compval_desc(cv + above, ncross);
	keep = above;
	while (keep < above + ncross && (keep == 0 || run < target))
		run += cv[keep++].value;
	return keep;
}

/*
 * Summarize one block (its documents are blockDocs[0 .. ndocs)) as block
 * number b of the list: the coordinate-wise max of the documents' full
 * vectors, cut to the alpha-mass prefix and quantized to 8 bits, appended to
 * the list's entries (component, code, block); min and step go to info.
 */
static void
SblockSummarize(const SblockLists *L, SblockScratch *S, const uint32 *blockDocs, int ndocs,
				double energy, int b, SblockBlockInfo *info)
{
	int			nt = 0;
	CompVal    *cv;
	double		mass = 0;
	int			keep;
	float		min,
				max,
				step;

	/*
	 * Branch-free: values are non-negative and acc[] is zero outside the
	 * block being summarized, so a max needs no test, and a term joins the
	 * touched list when its accumulator is still zero.
	 */
	/*
	 * The scratch arrays in locals: built with -fno-strict-aliasing, the
	 * compiler otherwise reloads S's fields after every store of the loop.
	 */
	int32	   *touched = S->accTouched;
	float	   *acc = S->acc;

	for (int i = 0; i < ndocs; i++)
	{
		const CompVal *dc = &L->packed[L->docStart[blockDocs[i]]];
		const CompVal *dend = &L->packed[L->docStart[blockDocs[i] + 1]];

		/*
		 * The documents lie all over memory and this loop waited on their
		 * first cache lines: fetch the next ones' ahead.
		 */
		if (i + 4 < ndocs)
			SblockBuildPrefetch(&L->docStart[blockDocs[i + 4]]);
		if (i + 2 < ndocs)
		{
			/*
			 * All of the document two ahead: the hardware prefetcher
			 * ramps up too late for a record of a few hundred bytes, and
			 * the loads of this loop waited on every line after the first.
			 */
			const char *next = (const char *) &L->packed[L->docStart[blockDocs[i + 2]]];
			const char *nend = (const char *) &L->packed[L->docStart[blockDocs[i + 2] + 1]];

			for (; next < nend; next += 64)
				SblockBuildPrefetch(next);
		}

		for (; dc < dend; dc++)
		{
			int32		dt = dc->comp;
			float		old = acc[dt];

			/* a term joins at its first non-zero value (zeros add nothing) */
			touched[nt] = dt;
			nt += (old == 0) & (dc->value > 0);
			acc[dt] = Max(old, dc->value);
		}
	}
	cv = S->summary;
	for (int i = 0; i < nt; i++)
	{
		cv[i].comp = S->accTouched[i];
		cv[i].value = S->acc[S->accTouched[i]];
		mass += cv[i].value;
		S->acc[S->accTouched[i]] = 0;
	}

	/* the shortest prefix by value reaching energy x mass, the crossing one included */
	keep = SblockAlphaPrefix(S, cv, nt, energy * mass);

	min = max = keep > 0 ? cv[0].value : 0;
	for (int i = 1; i < keep; i++)
	{
		min = Min(min, cv[i].value);
		max = Max(max, cv[i].value);
	}
	step = (max - min) / 255.0f;
	info->min = min;
	info->step = step;

	if (S->nent + keep > S->entCap)
	{
		S->entCap = Max(S->entCap * 2, S->nent + keep);
		S->entComp = repalloc_huge(S->entComp, sizeof(int32) * S->entCap);
		S->entCode = repalloc_huge(S->entCode, sizeof(uint8) * S->entCap);
		S->entBlock = repalloc_huge(S->entBlock, sizeof(uint16) * S->entCap);
	}
	for (int i = 0; i < keep; i++)
	{
		S->entComp[S->nent] = cv[i].comp;
		/* step 0 (all equal) would divide by zero: every code is then 0 */
		S->entCode[S->nent] = step > 0 ? (uint8) Min(255.0f, rintf((cv[i].value - min) / step)) : 0;
		S->entBlock[S->nent] = (uint16) b;
		S->nent++;
	}
}

#define ST_SORT sort_int32_asc
#define ST_ELEMENT_TYPE int32
#define ST_COMPARE(a, b) ((*(a) > *(b)) - (*(a) < *(b)))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/* a growable byte buffer: the bytes of one list */
typedef struct SblockBytes
{
	char	   *data;
	Size		len;
	Size		cap;
} SblockBytes;

static void
SblockBytesReserve(SblockBytes *b, Size len)
{
	if (len > b->cap)
	{
		b->cap = Max(Max(b->cap * 2, len), 8192);
		b->data = b->data ? repalloc_huge(b->data, b->cap) : palloc_extended(b->cap, MCXT_ALLOC_HUGE);
	}
}

static void
SblockBytesAppend(SblockBytes *b, const void *data, Size len)
{
	SblockBytesReserve(b, b->len + len);
	if (len > 0)
		memcpy(b->data + b->len, data, len);
	b->len += len;
}

/*
 * Serialize a list (layout in sblock.h) into out: the summaries gathered by
 * SblockSummarize are turned component-major by a counting sort over the
 * components they use, which keeps each run in block order.
 */
static void
SblockWriteList(SblockBytes *out, const SblockLists *L, SblockScratch *S, const uint32 *blockDocs,
				int n, int nblocks, const uint64 *offsets)
{
	SblockListHeader lh;
	int			ncomps = 0;
	int64		pos = 0;
	uint32	   *words;
	uint32	   *ent;
	SblockPosting *post;

	for (int64 e = 0; e < S->nent; e++)
		if (S->compCount[S->entComp[e]]++ == 0)
			S->compTouched[ncomps++] = S->entComp[e];
	/*
	 * Dense ids are in term order, so ascending ids are ascending terms.  A
	 * list whose summaries use many components re-reads them in order from
	 * compCount (one pass over the vocabulary); a sort costs less only for a
	 * few.
	 */
	if ((int64) ncomps * 16 > L->nterms)
	{
		ncomps = 0;
		for (int32 c = 0; c < L->nterms; c++)
			if (S->compCount[c] > 0)
				S->compTouched[ncomps++] = c;
	}
	else
		sort_int32_asc(S->compTouched, ncomps);

	lh.nblocks = nblocks;
	lh.npostings = n;
	lh.ncomps = ncomps;
	lh.nentries = (uint32) S->nent;
	SblockBytesAppend(out, &lh, sizeof(lh));
	SblockBytesAppend(out, S->binfo, sizeof(SblockBlockInfo) * nblocks);

	/* comps, then compStart; compCount becomes each component's fill cursor */
	words = palloc(sizeof(uint32) * (ncomps + 1));
	for (int i = 0; i < ncomps; i++)
		words[i] = (uint32) L->terms[S->compTouched[i]];
	SblockBytesAppend(out, words, sizeof(uint32) * ncomps);
	for (int i = 0; i < ncomps; i++)
	{
		int32		c = S->compTouched[i];
		int32		count = S->compCount[c];

		words[i] = (uint32) pos;
		S->compCount[c] = (int32) pos;
		pos += count;
	}
	words[ncomps] = (uint32) pos;
	SblockBytesAppend(out, words, sizeof(uint32) * (ncomps + 1));
	pfree(words);

	ent = palloc_extended(sizeof(uint32) * Max(S->nent, 1), MCXT_ALLOC_HUGE);
	for (int64 e = 0; e < S->nent; e++)
		ent[S->compCount[S->entComp[e]]++] = ((uint32) S->entBlock[e] << 8) | S->entCode[e];
	for (int i = 0; i < ncomps; i++)
		S->compCount[S->compTouched[i]] = 0;
	SblockBytesAppend(out, ent, sizeof(uint32) * S->nent);
	pfree(ent);

	post = palloc(sizeof(SblockPosting) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		post[i].ordinal = blockDocs[i];
		post[i].offset8 = (uint32) (offsets[blockDocs[i]] / 8);
	}
	SblockBytesAppend(out, post, sizeof(SblockPosting) * n);
	pfree(post);
	S->nent = 0;
}

/*
 * What building one list needs besides the scratch, the same in every
 * participant of a (parallel) build.
 */
typedef struct SblockListJob
{
	const SblockLists *L;
	const uint64 *offsets;		/* compact record offset per ordinal */
	SblockOptions opts;
	float		threshold;		/* static pruning: the global threshold (-1: none) */
	int			cap;			/* and the most postings a list keeps */
	int			maxLen;			/* the longest list before pruning */
} SblockListJob;

static void
SblockPlanJob(SblockListJob *J, const SblockLists *L, const uint64 *offsets, const SblockOptions *opts,
			  int dim)
{
	int64		total = L->start[L->nterms];
	double		budget = (double) dim * opts->nPostings;

	J->L = L;
	J->offsets = offsets;
	J->opts = *opts;
	J->cap = (int) Min((double) INT_MAX, Max(1.0, floor(opts->nPostings * opts->maxFraction)));
	J->threshold = -1.0f;
	if ((double) total > budget)
		J->threshold = KthLargest(L->valOf, total, (int64) budget);
	J->maxLen = 0;
	for (int t = 0; t < L->nterms; t++)
		J->maxLen = Max(J->maxLen, (int) (L->start[t + 1] - L->start[t]));
}

/* bytes of a participant's scratch besides what is sized by the list (an estimate) */
#define SBLOCK_SCRATCH_TERM_BYTES	48
#define SBLOCK_SCRATCH_DOC_BYTES	48

static void
SblockScratchInit(SblockScratch *S, const SblockLists *L, int maxLen)
{
	int			nterms = Max(L->nterms, 1);

	memset(S, 0, sizeof(*S));
	S->termHead = palloc_extended(sizeof(int32) * nterms, MCXT_ALLOC_HUGE);
	S->termCount = palloc_extended(sizeof(int32) * nterms, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	for (int t = 0; t < L->nterms; t++)
		S->termHead[t] = -1;
	S->touchedTerms = palloc_extended(sizeof(int32) * nterms, MCXT_ALLOC_HUGE);
	S->acc = palloc_extended(sizeof(float) * nterms, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	S->accTouched = palloc_extended(sizeof(int32) * (nterms + 1), MCXT_ALLOC_HUGE);
	S->score = palloc0(sizeof(float) * Max(maxLen, 1));
	S->scoreTouched = palloc(sizeof(int32) * (Max(maxLen, 1) + 1));
	S->assign = palloc(sizeof(int) * Max(maxLen, 1));
	S->clusterSize = palloc(sizeof(int) * Max(maxLen, 1));
	S->alive = palloc(sizeof(bool) * Max(maxLen, 1));
	S->summary = palloc_extended(sizeof(CompVal) * nterms, MCXT_ALLOC_HUGE);
	S->summaryTmp = palloc_extended(sizeof(CompVal) * nterms, MCXT_ALLOC_HUGE);
	S->summaryCross = palloc_extended(sizeof(CompVal) * (nterms + 1), MCXT_ALLOC_HUGE);
	S->bucketSum = palloc0(sizeof(double) * SBLOCK_ALPHA_BUCKETS);
	S->bucketCount = palloc0(sizeof(int32) * SBLOCK_ALPHA_BUCKETS);
	S->binfo = palloc(sizeof(SblockBlockInfo) * Max(maxLen, 1));
	S->entCap = 1024;
	S->entComp = palloc(sizeof(int32) * S->entCap);
	S->entCode = palloc(sizeof(uint8) * S->entCap);
	S->entBlock = palloc(sizeof(uint16) * S->entCap);
	S->compCount = palloc_extended(sizeof(int32) * nterms, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	S->compTouched = palloc_extended(sizeof(int32) * nterms, MCXT_ALLOC_HUGE);
	S->docs = palloc(sizeof(uint32) * Max(maxLen, 1));
	S->blockDocs = palloc(sizeof(uint32) * Max(maxLen, 1));
	INSTR_TIME_SET_ZERO(S->tPrune);
	INSTR_TIME_SET_ZERO(S->tCluster);
	INSTR_TIME_SET_ZERO(S->tWrite);
	getrusage(RUSAGE_SELF, &S->ru0);
}

/*
 * Steps 3 to 5 for list t: prune it, cluster it into blocks, summarize them
 * and serialize the list into out (its previous contents dropped).  False
 * when pruning left the list empty (it is then not written).  Deterministic:
 * the same bytes whichever participant builds it.
 */
static bool
SblockBuildList(const SblockListJob *J, SblockScratch *S, int t, SblockBytes *out)
{
	const SblockLists *L = J->L;
	int			n;
	uint32	   *centroids;
	int			nc;
	int			pos = 0;
	int			nb = 0;
	instr_time	ta,
				tb;

	out->len = 0;
	INSTR_TIME_SET_CURRENT(ta);
	n = SblockPruneList(L, t, J->threshold, J->cap, S->docs);
	INSTR_TIME_SET_CURRENT(tb);
	INSTR_TIME_ACCUM_DIFF(S->tPrune, tb, ta);

	CHECK_FOR_INTERRUPTS();
	if (n == 0)
		return false;
	INSTR_TIME_SET_CURRENT(ta);
	nc = SblockClusterList(L, S, S->docs, n, L->terms[t], &J->opts, &centroids);
	INSTR_TIME_SET_CURRENT(tb);
	INSTR_TIME_ACCUM_DIFF(S->tCluster, tb, ta);

	/*
	 * Blocks are the non-empty clusters, in centroid order, documents
	 * ascending within a block: a counting sort by cluster (docs[] is
	 * ascending already).
	 */
	for (int j = 0; j < nc; j++)
		S->clusterSize[j] = 0;
	for (int i = 0; i < n; i++)
		S->clusterSize[S->assign[i]]++;
	for (int j = 0; j < nc; j++)
	{
		int			size = S->clusterSize[j];

		S->clusterSize[j] = pos;	/* now: where cluster j starts */
		pos += size;
	}
	for (int i = 0; i < n; i++)
		S->blockDocs[S->clusterSize[S->assign[i]]++] = S->docs[i];
	pos = 0;
	INSTR_TIME_SET_CURRENT(ta);
	for (int j = 0; j < nc; j++)
	{
		int			end = S->clusterSize[j];	/* now: where cluster j ends */

		if (end > pos)
		{
			S->binfo[nb].first = pos;
			S->binfo[nb].ndocs = end - pos;
			SblockSummarize(L, S, S->blockDocs + pos, end - pos, J->opts.summaryEnergy, nb, &S->binfo[nb]);
			nb++;
		}
		pos = end;
	}
	SblockWriteList(out, L, S, S->blockDocs, n, nb, J->offsets);
	INSTR_TIME_SET_CURRENT(tb);
	INSTR_TIME_ACCUM_DIFF(S->tWrite, tb, ta);
	pfree(centroids);

	if (out->len > PG_UINT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("sparse_block posting list of term %d exceeds 4 GB", L->terms[t])));
	return true;
}

/* Step 6, per list: append its bytes to the posting stream, 8-aligned, and note it in the directory. */
static void
SblockAppendList(SblockWriter *w, SblockDirEntry *dir, int *ndir, int32 term, const char *data, Size len)
{
	SblockWriterPad(w, 8);
	dir[*ndir].term = (uint32) term;
	dir[*ndir].offset = w->bytes;
	dir[*ndir].bytes = (uint32) len;
	(*ndir)++;
	SblockWriterWrite(w, data, len);
}

/* wall-clock time by step, and the CPU time of the whole (a shared machine's wall clock runs ahead of it) */
static void
SblockReportTimes(const SblockScratch *S, const char *who)
{
	struct rusage ru;
	double		cpu;

	getrusage(RUSAGE_SELF, &ru);
	cpu = (ru.ru_utime.tv_sec - S->ru0.ru_utime.tv_sec) + (ru.ru_stime.tv_sec - S->ru0.ru_stime.tv_sec) +
		((ru.ru_utime.tv_usec - S->ru0.ru_utime.tv_usec) + (ru.ru_stime.tv_usec - S->ru0.ru_stime.tv_usec)) / 1e6;
	elog(DEBUG1, "sparse_block build%s: pruning %.3f s, clustering %.3f s, blocks %.3f s; CPU %.3f s", who,
		 INSTR_TIME_GET_DOUBLE(S->tPrune), INSTR_TIME_GET_DOUBLE(S->tCluster), INSTR_TIME_GET_DOUBLE(S->tWrite), cpu);
}

/* how often (in lists) the lists phase reports progress */
#define SBLOCK_PROGRESS_LISTS	64

/* Steps 3 to 6 by this backend alone: every list in term order. */
static void
SblockSerialLists(const SblockListJob *J, SblockWriter *w, SblockDirEntry *dir, int *ndir)
{
	SblockScratch S;
	SblockBytes out = {0};

	SblockScratchInit(&S, J->L, J->maxLen);
	for (int t = 0; t < J->L->nterms; t++)
	{
		if (t % SBLOCK_PROGRESS_LISTS == 0)
			pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, t);
		if (SblockBuildList(J, &S, t, &out))
			SblockAppendList(w, dir, ndir, J->L->terms[t], out.data, out.len);
	}
	SblockReportTimes(&S, "");
}

/*
 * A parallel build (PostgreSQL's parallel infrastructure, as nbtree's and
 * pgvector's HNSW's): the leader loads the documents, writes the forward
 * stream and builds the lists in a DSM segment, as above; then the leader and
 * its workers take the lists in chunks of SBLOCK_CHUNK_TERMS terms from a
 * shared counter, and serialize each chunk's lists (with SblockBuildList, as
 * a serial build) into a temporary file of a SharedFileSet of its own: a
 * record (term index, bytes) and the list's bytes per term.  A finished chunk
 * is flagged done.  Between its own chunks, and after the last, the leader
 * appends the done chunks to the posting stream in term order, just as a
 * serial build writes them: the index has the same contents, and its pages
 * are written while the lists are still being built.  Workers never touch
 * the heap or the index.
 */
#define SBLOCK_CHUNK_TERMS		32

#define SBLOCK_SHM_KEY_SHARED	UINT64CONST(0xA5B10C0000000001)
#define SBLOCK_SHM_KEY_OFFSETS	UINT64CONST(0xA5B10C0000000002)
#define SBLOCK_SHM_KEY_DONE		UINT64CONST(0xA5B10C0000000003)
#define SBLOCK_SHM_KEY_ARRAY(a)	(UINT64CONST(0xA5B10C0000000100) + (uint64) (a))

typedef struct SblockParallelShared
{
	/* set before the workers start, read-only after */
	int			ndocs;
	int			nterms;
	int64		total;			/* components */
	int64		ntop;			/* entries of L->top */
	SblockOptions opts;
	float		threshold;
	int			cap;
	int			maxLen;
	uint32		nchunks;
	/* the next chunk to claim */
	pg_atomic_uint32 nextChunk;
	/* broadcast when a chunk is done */
	ConditionVariable chunkDone;
	SharedFileSet fileset;
	/* then, by their own keys: the SblockLists arrays, offsets[ndocs], done[nchunks] */
} SblockParallelShared;

/* a list's record in a chunk's file; its bytes follow */
typedef struct SblockListRecord
{
	int32		term;			/* dense term id */
	uint32		bytes;			/* 0: pruned away */
} SblockListRecord;

typedef struct SblockParallel
{
	ParallelContext *pcxt;
	SblockParallelShared *shared;
	uint64	   *offsets;		/* the compact record offsets, in the DSM */
	pg_atomic_uint32 *done;		/* per chunk: 1 when its file is complete */
} SblockParallel;

/* the leader's side of the posting stream: the chunks written so far */
typedef struct SblockMerge
{
	SblockParallel *P;
	const SblockListJob *J;
	SblockWriter *w;
	SblockDirEntry *dir;
	int		   *ndir;
	uint32		next;			/* the next chunk to write */
	SblockBytes buf;
	instr_time	tWait;
	instr_time	tWrite;
} SblockMerge;

static void
SblockChunkFile(uint32 chunk, char *name)
{
	snprintf(name, MAXPGPATH, "sblock%u", chunk);
}

/*
 * Append the done chunks, in order, to the posting stream; with wait, every
 * chunk left, waiting for those not done yet.
 */
static void
SblockMergeChunks(SblockMerge *M, bool wait)
{
	SblockParallelShared *shared = M->P->shared;
	instr_time	t0,
				t1;

	while (M->next < shared->nchunks)
	{
		uint32		c = M->next;
		int			end = (int) Min((int64) shared->nterms, ((int64) c + 1) * SBLOCK_CHUNK_TERMS);
		char		name[MAXPGPATH];
		BufFile    *file;

		CHECK_FOR_INTERRUPTS();
		if (pg_atomic_read_u32(&M->P->done[c]) == 0)
		{
			if (!wait)
				return;
			INSTR_TIME_SET_CURRENT(t0);
			ConditionVariablePrepareToSleep(&shared->chunkDone);
			while (pg_atomic_read_u32(&M->P->done[c]) == 0)
				ConditionVariableSleep(&shared->chunkDone, PG_WAIT_EXTENSION);
			ConditionVariableCancelSleep();
			INSTR_TIME_SET_CURRENT(t1);
			INSTR_TIME_ACCUM_DIFF(M->tWait, t1, t0);
		}
		pg_read_barrier();

		INSTR_TIME_SET_CURRENT(t0);
		if (c % Max(1, SBLOCK_PROGRESS_LISTS / SBLOCK_CHUNK_TERMS) == 0)
			pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, (int64) c * SBLOCK_CHUNK_TERMS);
		SblockChunkFile(c, name);
		file = BufFileOpenFileSet(&shared->fileset.fs, name, O_RDONLY, false);
		for (int t = (int) c * SBLOCK_CHUNK_TERMS; t < end; t++)
		{
			SblockListRecord rec;

			PgsBufFileReadExact(file, &rec, sizeof(rec));
			if (rec.term != t)
				elog(ERROR, "sparse_block parallel build: chunk %u holds list %d where %d belongs", c, rec.term, t);
			if (rec.bytes == 0)
				continue;
			SblockBytesReserve(&M->buf, rec.bytes);
			PgsBufFileReadExact(file, M->buf.data, rec.bytes);
			SblockAppendList(M->w, M->dir, M->ndir, M->J->L->terms[t], M->buf.data, rec.bytes);
		}
		BufFileClose(file);
		BufFileDeleteFileSet(&shared->fileset.fs, name, false);
		M->next++;
		INSTR_TIME_SET_CURRENT(t1);
		INSTR_TIME_ACCUM_DIFF(M->tWrite, t1, t0);
	}
}

/*
 * Build chunks of lists until none is left: the leader (participant 0, who
 * also writes the done chunks between its own: M) and every worker.
 */
static void
SblockParticipate(SblockParallelShared *shared, pg_atomic_uint32 *done, const SblockListJob *J,
				  int participant, SblockMerge *M)
{
	SblockScratch S;
	SblockBytes out = {0};
	char		who[32];

	SblockScratchInit(&S, J->L, J->maxLen);
	for (;;)
	{
		uint32		c = pg_atomic_fetch_add_u32(&shared->nextChunk, 1);
		int			end;
		char		name[MAXPGPATH];
		BufFile    *file;

		if (c >= shared->nchunks)
			break;
		SblockChunkFile(c, name);
		file = BufFileCreateFileSet(&shared->fileset.fs, name);
		end = (int) Min((int64) shared->nterms, ((int64) c + 1) * SBLOCK_CHUNK_TERMS);
		for (int t = (int) c * SBLOCK_CHUNK_TERMS; t < end; t++)
		{
			SblockListRecord rec;

			rec.term = t;
			rec.bytes = SblockBuildList(J, &S, t, &out) ? (uint32) out.len : 0;
			PgsBufFileWrite(file, &rec, sizeof(rec));
			if (rec.bytes > 0)
				PgsBufFileWrite(file, out.data, out.len);
		}
		BufFileExportFileSet(file);
		BufFileClose(file);
		/* a full barrier: the file is complete before anyone sees the flag */
		pg_atomic_exchange_u32(&done[c], 1);
		ConditionVariableBroadcast(&shared->chunkDone);
		if (M)
			SblockMergeChunks(M, false);
	}
	snprintf(who, sizeof(who), " (participant %d)", participant);
	SblockReportTimes(&S, who);
}

/*
 * Enter parallel mode and create the DSM segment for a build of these
 * lists (L->terms set, the rest sized by ndocs, total and ntop), pointing
 * L's arrays into it and copying the terms and the compact offsets there.
 * False (and nothing changed) when no segment could be had: build serially.
 */
static bool
SblockBeginParallel(SblockParallel *P, SblockLists *L, int ndocs, int64 total, int64 ntop,
					const uint64 *offsets, int nworkers)
{
	ParallelContext *pcxt;
	SblockParallelShared *shared;
	Size		sizes[SBLOCK_NUM_ARRAYS];
	void	  **slots[SBLOCK_NUM_ARRAYS];
	int32	   *terms = L->terms;
	uint32		nchunks = (uint32) ((L->nterms + SBLOCK_CHUNK_TERMS - 1) / SBLOCK_CHUNK_TERMS);

	SblockListArrays(L, ndocs, total, ntop, sizes, slots);
	EnterParallelMode();
	pcxt = CreateParallelContext("pgsieve", "SblockParallelBuildMain", nworkers);
	shm_toc_estimate_chunk(&pcxt->estimator, sizeof(SblockParallelShared));
	shm_toc_estimate_chunk(&pcxt->estimator, sizeof(uint64) * Max(ndocs, 1));
	shm_toc_estimate_chunk(&pcxt->estimator, sizeof(pg_atomic_uint32) * Max(nchunks, 1));
	for (int a = 0; a < SBLOCK_NUM_ARRAYS; a++)
		shm_toc_estimate_chunk(&pcxt->estimator, sizes[a]);
	shm_toc_estimate_keys(&pcxt->estimator, 3 + SBLOCK_NUM_ARRAYS);
	InitializeParallelDSM(pcxt);
	if (pcxt->seg == NULL)
	{
		DestroyParallelContext(pcxt);
		ExitParallelMode();
		return false;
	}

	shared = shm_toc_allocate(pcxt->toc, sizeof(SblockParallelShared));
	memset(shared, 0, sizeof(*shared));
	shared->ndocs = ndocs;
	shared->nterms = L->nterms;
	shared->total = total;
	shared->ntop = ntop;
	shared->nchunks = nchunks;
	pg_atomic_init_u32(&shared->nextChunk, 0);
	ConditionVariableInit(&shared->chunkDone);
	SharedFileSetInit(&shared->fileset, pcxt->seg);
	shm_toc_insert(pcxt->toc, SBLOCK_SHM_KEY_SHARED, shared);
	for (int a = 0; a < SBLOCK_NUM_ARRAYS; a++)
	{
		*slots[a] = shm_toc_allocate(pcxt->toc, sizes[a]);
		shm_toc_insert(pcxt->toc, SBLOCK_SHM_KEY_ARRAY(a), *slots[a]);
	}
	memcpy(L->terms, terms, sizeof(int32) * L->nterms);
	pfree(terms);
	P->offsets = shm_toc_allocate(pcxt->toc, sizeof(uint64) * Max(ndocs, 1));
	memcpy(P->offsets, offsets, sizeof(uint64) * ndocs);
	shm_toc_insert(pcxt->toc, SBLOCK_SHM_KEY_OFFSETS, P->offsets);
	P->done = shm_toc_allocate(pcxt->toc, sizeof(pg_atomic_uint32) * Max(nchunks, 1));
	for (uint32 c = 0; c < nchunks; c++)
		pg_atomic_init_u32(&P->done[c], 0);
	shm_toc_insert(pcxt->toc, SBLOCK_SHM_KEY_DONE, P->done);
	P->pcxt = pcxt;
	P->shared = shared;
	return true;
}

/*
 * Steps 3 to 6 with the workers: launch them, take part (writing the done
 * chunks between its own), then write the chunks left as they get done.
 */
static void
SblockParallelLists(SblockParallel *P, const SblockListJob *J, SblockWriter *w, SblockDirEntry *dir, int *ndir)
{
	SblockParallelShared *shared = P->shared;
	ParallelContext *pcxt = P->pcxt;
	SblockMerge M;

	shared->opts = J->opts;
	shared->threshold = J->threshold;
	shared->cap = J->cap;
	shared->maxLen = J->maxLen;
	LaunchParallelWorkers(pcxt);
	elog(DEBUG1, "sparse_block build: %d of %d parallel workers launched",
		 pcxt->nworkers_launched, pcxt->nworkers);
	if (pcxt->nworkers_launched == 0)
	{
		SblockSerialLists(J, w, dir, ndir);
		return;
	}

	memset(&M, 0, sizeof(M));
	M.P = P;
	M.J = J;
	M.w = w;
	M.dir = dir;
	M.ndir = ndir;
	INSTR_TIME_SET_ZERO(M.tWait);
	INSTR_TIME_SET_ZERO(M.tWrite);
	if (parallel_leader_participation)
		SblockParticipate(shared, P->done, J, 0, &M);
	SblockMergeChunks(&M, true);
	WaitForParallelWorkersToFinish(pcxt);
	elog(DEBUG1, "sparse_block build: the leader wrote the lists in %.3f s, waited %.3f s for the workers' last",
		 INSTR_TIME_GET_DOUBLE(M.tWrite), INSTR_TIME_GET_DOUBLE(M.tWait));
}

static void
SblockEndParallel(SblockParallel *P)
{
	DestroyParallelContext(P->pcxt);
	ExitParallelMode();
}

/* A parallel worker: build chunks of lists from the DSM. */
void
SblockParallelBuildMain(dsm_segment *seg, shm_toc *toc)
{
	SblockParallelShared *shared = shm_toc_lookup(toc, SBLOCK_SHM_KEY_SHARED, false);
	MemoryContext ctx = AllocSetContextCreate(CurrentMemoryContext, "sparse_block build worker",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(ctx);
	SblockLists L;
	SblockListJob J;
	Size		sizes[SBLOCK_NUM_ARRAYS];
	void	  **slots[SBLOCK_NUM_ARRAYS];

	memset(&L, 0, sizeof(L));
	L.nterms = shared->nterms;
	SblockListArrays(&L, shared->ndocs, shared->total, shared->ntop, sizes, slots);
	for (int a = 0; a < SBLOCK_NUM_ARRAYS; a++)
		*slots[a] = shm_toc_lookup(toc, SBLOCK_SHM_KEY_ARRAY(a), false);
	J.L = &L;
	J.offsets = shm_toc_lookup(toc, SBLOCK_SHM_KEY_OFFSETS, false);
	J.opts = shared->opts;
	J.threshold = shared->threshold;
	J.cap = shared->cap;
	J.maxLen = shared->maxLen;
	SharedFileSetAttach(&shared->fileset, seg);
	SblockParticipate(shared, shm_toc_lookup(toc, SBLOCK_SHM_KEY_DONE, false), &J, ParallelWorkerNumber + 1, NULL);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(ctx);
}

/*
 * Steps 3 to 6: prune, block, summarize and write every list (by this
 * backend, or with the workers of P when not NULL), then the directory.
 */
static void
SblockWritePostings(SblockBuildState *bs, const SblockLists *L, const uint64 *offsets,
					const SblockOptions *opts, SblockParallel *P)
{
	SblockListJob J;
	SblockWriter w;
	SblockWriter dw;
	/* directory entries are collected in memory (16 bytes a term), written after */
	SblockDirEntry *dir = palloc_extended(sizeof(SblockDirEntry) * Max(L->nterms, 1), MCXT_ALLOC_HUGE);
	int			ndir = 0;

	SblockPlanJob(&J, L, offsets, opts, bs->meta.dim);
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_TOTAL, L->nterms);
	SblockWriterBegin(&w, bs->index, MAIN_FORKNUM);
	if (P)
		SblockParallelLists(P, &J, &w, dir, &ndir);
	else
		SblockSerialLists(&J, &w, dir, &ndir);
	SblockWriterPad(&w, 8);
	SblockWriterEnd(&w, &bs->meta.postings);
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, L->nterms);
	if (P)
		SblockEndParallel(P);

	SblockWriterBegin(&dw, bs->index, MAIN_FORKNUM);
	SblockWriterWrite(&dw, dir, sizeof(SblockDirEntry) * ndir);
	SblockWriterEnd(&dw, &bs->meta.directory);
	bs->meta.nterms = ndir;
}

/*
 * Parallel workers for steps 3 to 5: what the planner grants a CREATE INDEX
 * on this table (max_parallel_maintenance_workers, the table's
 * parallel_workers), fewer if their scratch would take the build past
 * maintenance_work_mem.  The lists themselves go to the DSM segment instead
 * of local memory, so they count as before.
 */
static int
SblockPlanWorkers(const SblockBuildState *bs, Relation heap, Relation index, IndexInfo *indexInfo, int nterms)
{
	int			nworkers = PgsIndexBuildWorkers(heap, index, indexInfo);
	Size		perWorker = (Size) nterms * SBLOCK_SCRATCH_TERM_BYTES + (Size) bs->ndocs * SBLOCK_SCRATCH_DOC_BYTES;

	while (nworkers > 0 && bs->memUsed + (Size) nworkers * perWorker > bs->memLimit)
		nworkers--;
	return nworkers;
}

static void
SblockUpdateMeta(Relation index, const SblockMetaPageData *meta)
{
	Buffer		buf = ReadBuffer(index, SBLOCK_METAPAGE_BLKNO);
	GenericXLogState *state;

	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	state = GenericXLogStart(index);
	SblockWriteMetaPage(GenericXLogRegisterBuffer(state, buf, GENERIC_XLOG_FULL_IMAGE), meta);
	GenericXLogFinish(state);
	UnlockReleaseBuffer(buf);
}

static void
SblockInitMeta(SblockMetaPageData *meta, const SblockOptions *opts)
{
	memset(meta, 0, sizeof(*meta));
	meta->magic = SBLOCK_MAGIC;
	meta->version = SBLOCK_VERSION;
	meta->nPostings = opts->nPostings;
	meta->centroidFraction = (float4) opts->centroidFraction;
	meta->summaryEnergy = (float4) opts->summaryEnergy;
	meta->maxFraction = (float4) opts->maxFraction;
	meta->minClusterSize = opts->minClusterSize;
	meta->docCut = opts->docCut;
	meta->tail.start = 1;
}

static void
SblockGetOptions(Relation index, SblockOptions *opts)
{
	SblockOptions *o = (SblockOptions *) index->rd_options;

	if (o)
		*opts = *o;
	else
	{
		opts->nPostings = SBLOCK_DEFAULT_N_POSTINGS;
		opts->centroidFraction = SBLOCK_DEFAULT_CENTROID_FRACTION;
		opts->summaryEnergy = SBLOCK_DEFAULT_SUMMARY_ENERGY;
		opts->maxFraction = SBLOCK_DEFAULT_MAX_FRACTION;
		opts->minClusterSize = SBLOCK_DEFAULT_MIN_CLUSTER_SIZE;
		opts->docCut = SBLOCK_DEFAULT_DOC_CUT;
	}
}

IndexBuildResult *
sblockbuild(Relation heap, Relation index, IndexInfo *indexInfo)
{
	SblockBuildState bs;
	SblockOptions opts;
	IndexBuildResult *result;
	PGAlignedBlock metabuf;
	MemoryContext buildCtx;
	MemoryContext old;
	double		reltuples;
	int			nworkers;
	int32		typmod = TupleDescAttr(RelationGetDescr(index), 0)->atttypmod;

	if (RelationGetNumberOfBlocks(index) != 0)
		elog(ERROR, "index \"%s\" already contains data", RelationGetRelationName(index));

	SblockGetOptions(index, &opts);
	memset(&bs, 0, sizeof(bs));
	bs.index = index;
	SblockInitMeta(&bs.meta, &opts);
	bs.meta.dim = typmod > 0 ? typmod : 0;
	bs.memLimit = (Size) maintenance_work_mem * 1024;

	buildCtx = AllocSetContextCreate(CurrentMemoryContext, "sparse_block build", ALLOCSET_DEFAULT_SIZES);
	bs.docsCtx = buildCtx;
	bs.tmpCtx = AllocSetContextCreate(CurrentMemoryContext, "sparse_block build tuple", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(buildCtx);

	/* block 0: a placeholder meta page, rewritten at the end */
	SblockWriteMetaPage((Page) metabuf.data, &bs.meta);
	PgsAppendPage(index, MAIN_FORKNUM, (Page) metabuf.data);

	pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, SBLOCK_PHASE_LOAD);
	reltuples = table_index_build_scan(heap, index, indexInfo, true, true, SblockBuildCallback, &bs, NULL);

	if (bs.ndocs > 0)
	{
		SblockLists L;
		uint64	   *forward;
		uint64	   *offsets;	/* compact records, which the postings point to */
		int32	   *map;
		int64		total;
		int64		ntop;
		SblockParallel par;
		SblockParallel *P = NULL;
		instr_time	t0,
					t1,
					t2,
					t3;

		INSTR_TIME_SET_CURRENT(t0);
		pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, SBLOCK_PHASE_FORWARD);
		forward = SblockWriteForward(&bs);
		offsets = SblockWriteCompact(&bs, forward);
		pfree(forward);
		INSTR_TIME_SET_CURRENT(t1);
		pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, SBLOCK_PHASE_LISTS);
		map = SblockBuildTerms(&bs, &L, opts.docCut, &total, &ntop);
		nworkers = SblockPlanWorkers(&bs, heap, index, indexInfo, L.nterms);
		if (nworkers > 0 && SblockBeginParallel(&par, &L, bs.ndocs, total, ntop, offsets, nworkers))
			P = &par;
		else
			SblockAllocLists(&L, bs.ndocs, total, ntop);
		SblockFillLists(&bs, &L, map);
		if (map)
			pfree(map);
		SblockFillTopCut(&L, bs.ndocs, opts.docCut);
		INSTR_TIME_SET_CURRENT(t2);
		SblockWritePostings(&bs, &L, offsets, &opts, P);
		INSTR_TIME_SET_CURRENT(t3);
		INSTR_TIME_SUBTRACT(t3, t2);
		INSTR_TIME_SUBTRACT(t2, t1);
		INSTR_TIME_SUBTRACT(t1, t0);
		elog(DEBUG1, "sparse_block build of \"%s\": %d documents, %d terms; forward %.3f s, lists %.3f s, "
			 "pruning + blocks + summaries %.3f s",
			 RelationGetRelationName(index), bs.ndocs, L.nterms, INSTR_TIME_GET_DOUBLE(t1),
			 INSTR_TIME_GET_DOUBLE(t2), INSTR_TIME_GET_DOUBLE(t3));
	}
	bs.meta.ndocs = bs.ndocs;
	bs.meta.tail.start = RelationGetNumberOfBlocks(index);
	bs.meta.tail.bytes = 0;
	/* names this build's immutable pages for backends' local copies (sblockcache.c) */
	do
		bs.meta.buildNonce = pg_prng_uint32(&pg_global_prng_state);
	while (bs.meta.buildNonce == 0);
	SblockUpdateMeta(index, &bs.meta);

	MemoryContextSwitchTo(old);
	MemoryContextDelete(buildCtx);
	MemoryContextDelete(bs.tmpCtx);

	result = palloc(sizeof(IndexBuildResult));
	result->heap_tuples = reltuples;
	result->index_tuples = bs.indtuples;
	return result;
}

/* The init fork of an unlogged index: an empty meta page, WAL-logged. */
void
sblockbuildempty(Relation index)
{
	SblockOptions opts;
	SblockMetaPageData meta;
	PGAlignedBlock metabuf;
	int32		typmod = TupleDescAttr(RelationGetDescr(index), 0)->atttypmod;

	SblockGetOptions(index, &opts);
	SblockInitMeta(&meta, &opts);
	meta.dim = typmod > 0 ? typmod : 0;
	SblockWriteMetaPage((Page) metabuf.data, &meta);
	PgsWriteInitForkPage(index, (Page) metabuf.data);
}
