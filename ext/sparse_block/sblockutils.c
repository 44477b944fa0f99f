/*
 * sblockutils.c — sparse_block's streams, meta page, document records and the
 * exact inner product.
 */
#include "postgres.h"

#include <math.h>

#include "sblock.h"
#include "pgsieve_pages.h"
#include "pgvector_types.h"

void
SblockInitPage(Page page, uint16 kind)
{
	SblockPageOpaque opaque;

	PageInit(page, BLCKSZ, sizeof(SblockPageOpaqueData));
	opaque = SblockPageGetOpaque(page);
	opaque->kind = kind;
	opaque->unused = 0;
	opaque->unused2 = 0;
}

/* ---- writing a stream during the build ---- */

void
SblockWriterBegin(SblockWriter *w, Relation index, ForkNumber forkNum)
{
	w->index = index;
	w->forkNum = forkNum;
	w->start = RelationGetNumberOfBlocksInFork(index, forkNum);
	w->npages = 0;
	w->bytes = 0;
	w->page = palloc(BLCKSZ);
	SblockInitPage(w->page, SBLOCK_PAGE_STREAM);
}

static void
SblockWriterFlush(SblockWriter *w)
{
	((PageHeader) w->page)->pd_lower = MAXALIGN(SizeOfPageHeaderData) + SBLOCK_PAGE_BYTES;
	PgsAppendPage(w->index, w->forkNum, w->page);
	w->npages++;
	SblockInitPage(w->page, SBLOCK_PAGE_STREAM);
}

void
SblockWriterWrite(SblockWriter *w, const void *data, Size len)
{
	const char *src = data;

	while (len > 0)
	{
		int			pos = (int) (w->bytes % SBLOCK_PAGE_BYTES);
		Size		n = Min(len, (Size) (SBLOCK_PAGE_BYTES - pos));

		memcpy(PageGetContents(w->page) + pos, src, n);
		w->bytes += n;
		src += n;
		len -= n;
		if (w->bytes % SBLOCK_PAGE_BYTES == 0)
			SblockWriterFlush(w);
	}
}

/* zero bytes up to the next multiple of align */
void
SblockWriterPad(SblockWriter *w, Size align)
{
	static const char zeros[SBLOCK_PAGE_BYTES];
	Size		pad = (Size) (TYPEALIGN(align, w->bytes) - w->bytes);

	if (pad > 0)
		SblockWriterWrite(w, zeros, pad);
}

/*
 * Where the next document record may start: 8-aligned, and on the next page
 * if its header would straddle a page boundary.
 */
uint64
SblockDocAlign(uint64 offset)
{
	uint64		aligned = TYPEALIGN(8, offset);
	uint64		left = SBLOCK_PAGE_BYTES - aligned % SBLOCK_PAGE_BYTES;

	if (left < SBLOCK_DOC_HEADER_SIZE)
		aligned += left;
	return aligned;
}

uint64
SblockWriterAlignDoc(SblockWriter *w)
{
	uint64		target = SblockDocAlign(w->bytes);

	if (target > w->bytes)
	{
		static const char zeros[SBLOCK_PAGE_BYTES];

		SblockWriterWrite(w, zeros, target - w->bytes);
	}
	return w->bytes;
}

void
SblockWriterEnd(SblockWriter *w, SblockStream *stream)
{
	if (w->bytes % SBLOCK_PAGE_BYTES != 0)
		SblockWriterFlush(w);
	stream->start = w->start;
	stream->bytes = w->bytes;
	pfree(w->page);
}

/* ---- reading streams ---- */

void
SblockReaderInit(SblockReader *r, Relation index)
{
	r->index = index;
	r->buf = InvalidBuffer;
	r->blkno = InvalidBlockNumber;
	r->locked = false;
}

/*
 * Pin and share-lock page blkno of the relation, keeping the lock across
 * calls for the same page: documents read one after another from one page
 * (exhaustive rounds, the tail) then cost one lock, not one each.  The lock
 * must be dropped (SblockReaderUnlock) before anything else waits.
 */
Page
SblockReaderLockPage(SblockReader *r, BlockNumber blkno)
{
	Page		page;

	if (r->blkno != blkno)
	{
		SblockReaderUnlock(r);
		if (BufferIsValid(r->buf))
			ReleaseBuffer(r->buf);
		r->buf = ReadBuffer(r->index, blkno);
		r->blkno = blkno;
	}
	if (!r->locked)
	{
		LockBuffer(r->buf, BUFFER_LOCK_SHARE);
		r->locked = true;
	}
	page = BufferGetPage(r->buf);
	if (PageIsNew(page) || SblockPageGetOpaque(page)->kind != SBLOCK_PAGE_STREAM)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("sparse_block index \"%s\" has a damaged stream page %u",
						RelationGetRelationName(r->index), blkno)));
	return page;
}

void
SblockReaderUnlock(SblockReader *r)
{
	if (r->locked)
	{
		LockBuffer(r->buf, BUFFER_LOCK_UNLOCK);
		r->locked = false;
	}
}

/*
 * Copy len bytes at offset of a stream.  The reader keeps the last page
 * pinned, so reads that stay on one page (documents of one block usually do)
 * skip the buffer mapping look-up; each copy happens under a share lock.
 */
void
SblockReaderRead(SblockReader *r, const SblockStream *s, uint64 offset, void *dst, Size len)
{
	char	   *out = dst;

	while (len > 0)
	{
		BlockNumber blkno = s->start + (BlockNumber) (offset / SBLOCK_PAGE_BYTES);
		int			pos = (int) (offset % SBLOCK_PAGE_BYTES);
		Size		n = Min(len, (Size) (SBLOCK_PAGE_BYTES - pos));
		Page		page = SblockReaderLockPage(r, blkno);

		memcpy(out, PageGetContents(page) + pos, n);
		SblockReaderUnlock(r);
		out += n;
		offset += n;
		len -= n;
	}
}

void
SblockReaderEnd(SblockReader *r)
{
	SblockReaderUnlock(r);
	if (BufferIsValid(r->buf))
		ReleaseBuffer(r->buf);
	r->buf = InvalidBuffer;
	r->blkno = InvalidBlockNumber;
}

/*
 * Read the document record at offset into doc; its arrays point into *buf,
 * grown as needed.  Returns false if the document is flagged deleted.
 */
bool
SblockReadDoc(SblockReader *r, const SblockStream *s, uint64 offset, SblockDoc *doc,
			  Size *bufsize, char **buf)
{
	SblockDocHeader hdr;
	Size		need;

	SblockReaderRead(r, s, offset, &hdr, SBLOCK_DOC_HEADER_SIZE);
	if (hdr.nnz > SBLOCK_MAX_NNZ)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("sparse_block index \"%s\" has a damaged document record",
						RelationGetRelationName(r->index))));
	doc->tid = hdr.tid;
	doc->flags = hdr.flags;
	doc->ordinal = hdr.ordinal;
	doc->nnz = (int) hdr.nnz;
	need = Max((Size) hdr.nnz * 8, 8);
	if (*bufsize < need)
	{
		*buf = *buf ? repalloc(*buf, need) : palloc(need);
		*bufsize = need;
	}
	if (hdr.nnz > 0)
		SblockReaderRead(r, s, offset + SBLOCK_DOC_HEADER_SIZE, *buf, (Size) hdr.nnz * 8);
	doc->indices = (int32 *) *buf;
	doc->values = (float *) (*buf + (Size) hdr.nnz * 4);
	return (hdr.flags & SBLOCK_DOC_DELETED) == 0;
}

/* ---- meta page ---- */

void
SblockWriteMetaPage(Page page, const SblockMetaPageData *meta)
{
	SblockInitPage(page, SBLOCK_PAGE_META);
	memcpy(SblockPageGetMeta(page), meta, sizeof(SblockMetaPageData));
	((PageHeader) page)->pd_lower =
		((char *) SblockPageGetMeta(page) + sizeof(SblockMetaPageData)) - (char *) page;
}

void
SblockReadMeta(Relation index, SblockMetaPageData *meta)
{
	Buffer		buf = ReadBuffer(index, SBLOCK_METAPAGE_BLKNO);

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	memcpy(meta, SblockPageGetMeta(BufferGetPage(buf)), sizeof(SblockMetaPageData));
	UnlockReleaseBuffer(buf);
	if (meta->magic != SBLOCK_MAGIC || meta->version != SBLOCK_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" is not a sparse_block index of version %d; REINDEX it",
						RelationGetRelationName(index), SBLOCK_VERSION)));
}

/* ---- values ---- */

/*
 * Check an indexed (or query) sparsevec, point doc at its arrays and return
 * its dimensions.  dim 0 accepts any dimensions.  Seismic's pruning and block summaries assume
 * non-negative weights (as SPLADE's and BM25's are), so others are refused.
 */
int
SblockCheckValue(Datum value, int dim, SblockDoc *doc)
{
	PgvSparseVector *v = DatumGetPgvSparseVector(value);
	float	   *x = PGV_SPARSEVEC_VALUES(v);

	if (dim != 0 && v->dim != dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("sparse_block index expects sparsevec of %d dimensions, got %d", dim, v->dim)));
	if (v->nnz < 0 || v->nnz > SBLOCK_MAX_NNZ)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("sparse_block index got a sparsevec with %d non-zero elements", v->nnz)));
	for (int i = 0; i < v->nnz; i++)
	{
		if (!(x[i] >= 0) || isinf(x[i]))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("sparse_block index requires finite non-negative sparsevec values, got %g", x[i]),
					 errhint("Learned sparse (SPLADE) and BM25 weights are non-negative.")));
	}
	doc->nnz = v->nnz;
	doc->indices = v->indices;
	doc->values = x;
	doc->flags = 0;
	return v->dim;
}

/* first position in a[lo, n) whose value is >= key (a ascending) */
static inline int
LowerBound(const int32 *a, int lo, int n, int32 key)
{
	int			hi = n;

	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (a[mid] < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Inner product of two sparse vectors with ascending indices, accumulated in
 * float in ascending index order — the same sum pgvector's <#> computes, so
 * index and sequential scans order rows identically.  When b (the query) is
 * much shorter than a, each of its indices is searched for in a instead of
 * merging; the matches, and so the sum, come in the same order.
 */
float
SblockDot(const int32 *ai, const float *ax, int an, const int32 *bi, const float *bx, int bn)
{
	float		dot = 0;
	int			i = 0,
				j = 0;

	if (bn * 8 < an)
	{
		for (j = 0; j < bn && i < an; j++)
		{
			i = LowerBound(ai, i, an, bi[j]);
			if (i < an && ai[i] == bi[j])
				dot += ax[i++] * bx[j];
		}
		return dot;
	}
	while (i < an && j < bn)
	{
		if (ai[i] == bi[j])
			dot += ax[i++] * bx[j++];
		else if (ai[i] < bi[j])
			i++;
		else
			j++;
	}
	return dot;
}
