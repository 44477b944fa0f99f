/*
 * sblockutils.c — sparse_block's streams, meta page, document records and the
 * exact inner product.
 */
#include "postgres.h"

#include <math.h>

#include "storage/buf_internals.h"
#include "utils/memutils.h"

#include "pgs_kernels.h"
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
	w->batch = palloc(PGS_APPEND_BATCH * BLCKSZ);
	w->nbatch = 0;
	w->page = w->batch;
	SblockInitPage(w->page, SBLOCK_PAGE_STREAM);
}

/* write the staged pages; the stream's pages stay consecutive from w->start (the build alone extends the fork) */
static void
SblockWriterDrain(SblockWriter *w)
{
	PgsAppendPages(w->index, w->forkNum, w->batch, w->nbatch);
	w->nbatch = 0;
}

static void
SblockWriterFlush(SblockWriter *w)
{
	((PageHeader) w->page)->pd_lower = MAXALIGN(SizeOfPageHeaderData) + SBLOCK_PAGE_BYTES;
	w->npages++;
	if (++w->nbatch == PGS_APPEND_BATCH)
		SblockWriterDrain(w);
	w->page = w->batch + (Size) w->nbatch * BLCKSZ;
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

/* the start of the page after the one holding offset */
uint64
SblockNextPage(uint64 offset)
{
	return offset - offset % SBLOCK_PAGE_BYTES + SBLOCK_PAGE_BYTES;
}

/*
 * Align the writer for a record of nnz components and return its offset.
 * A small record that would span two pages starts on the next one instead,
 * behind a PAD header (readers walking the stream skip to the next page).
 */
uint64
SblockWriterAlignDoc(SblockWriter *w, int nnz)
{
	static const char zeros[SBLOCK_PAGE_BYTES];
	uint64		target = SblockDocAlign(w->bytes);
	Size		bytes = SblockDocBytes(nnz);
	Size		left = SBLOCK_PAGE_BYTES - target % SBLOCK_PAGE_BYTES;

	if (target > w->bytes)
		SblockWriterWrite(w, zeros, target - w->bytes);
	if (bytes > left && bytes <= SBLOCK_NOSPAN_BYTES)
	{
		SblockDocHeader pad;

		memset(&pad, 0, sizeof(pad));
		pad.flags = SBLOCK_DOC_PAD;
		SblockWriterWrite(w, &pad, SBLOCK_DOC_HEADER_SIZE);
		SblockWriterWrite(w, zeros, left - SBLOCK_DOC_HEADER_SIZE);
	}
	return w->bytes;
}

void
SblockWriterEnd(SblockWriter *w, SblockStream *stream)
{
	if (w->bytes % SBLOCK_PAGE_BYTES != 0)
		SblockWriterFlush(w);
	SblockWriterDrain(w);
	stream->start = w->start;
	stream->bytes = w->bytes;
	pfree(w->batch);
}

/* ---- reading streams ---- */

void
SblockReaderInit(SblockReader *r, Relation index)
{
	r->index = index;
	r->buf = InvalidBuffer;
	r->blkno = InvalidBlockNumber;
	r->locked = false;
	r->hintSlot = -1;
	r->hintGen = 0;
}

/*
 * Buffer hints.  A scan touches a thousand or so forward-stream pages, each
 * for one document, and the buffer mapping look-up of ReadBuffer (a shared
 * hash probe under a partition lock) cost more than scoring the document.
 * Each backend therefore remembers, per page of the build's streams, the
 * buffer that held it last; ReadRecentBuffer pins that buffer directly when
 * it still holds the page.  The memory is keyed by index and relfilenode (a
 * REINDEX starts over) and kept for a few indexes, least recently used out.
 */
#define SBLOCK_HINT_SLOTS 4

typedef struct SblockHintSlot
{
	Oid			relid;
	RelFileNumber relNumber;
	BlockNumber n;
	Buffer	   *bufs;
	uint64		used;
	uint64		gen;			/* readers check it: a slot may be reused under them */
} SblockHintSlot;

static SblockHintSlot hintSlots[SBLOCK_HINT_SLOTS];
static uint64 hintClock = 0;
static uint64 hintGens = 0;

void
SblockReaderUseHints(SblockReader *r, BlockNumber nblocks)
{
	Relation	index = r->index;
	SblockHintSlot *slot = NULL;

	r->hintSlot = -1;
	if (RelationUsesLocalBuffers(index) || nblocks == 0)
		return;
	for (int i = 0; i < SBLOCK_HINT_SLOTS; i++)
	{
		SblockHintSlot *h = &hintSlots[i];

		if (h->bufs != NULL && h->relid == RelationGetRelid(index) &&
			h->relNumber == PgsRelFileNumber(index))
		{
			slot = h;
			break;
		}
		if (slot == NULL || (slot->bufs != NULL && (h->bufs == NULL || h->used < slot->used)))
			slot = h;
	}
	if (slot->bufs == NULL || slot->relid != RelationGetRelid(index) ||
		slot->relNumber != PgsRelFileNumber(index) || slot->n < nblocks)
	{
		if (slot->bufs)
			pfree(slot->bufs);
		slot->gen = ++hintGens;
		/* InvalidBuffer is 0: a zeroed array knows nothing */
		slot->bufs = MemoryContextAllocExtended(TopMemoryContext, sizeof(Buffer) * (Size) nblocks,
												MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO | MCXT_ALLOC_NO_OOM);
		if (slot->bufs == NULL)
			return;
		slot->relid = RelationGetRelid(index);
		slot->relNumber = PgsRelFileNumber(index);
		slot->n = nblocks;
	}
	slot->used = ++hintClock;
	r->hintSlot = (int) (slot - hintSlots);
	r->hintGen = slot->gen;
}

/*
 * Pin page blkno.  A page pinned through its hint was checked when it was
 * first read into that buffer, so only a page ReadBuffer returned (*fresh)
 * needs SblockReaderCheck, which then makes it the hint.
 */
static Buffer
SblockReaderPin(SblockReader *r, BlockNumber blkno, bool *fresh)
{
	*fresh = true;
	if (r->hintSlot >= 0 && hintSlots[r->hintSlot].gen == r->hintGen &&
		blkno < hintSlots[r->hintSlot].n)
	{
		Buffer		hint = hintSlots[r->hintSlot].bufs[blkno];

		if (BufferIsValid(hint) && PgsReadRecentBuffer(r->index, blkno, hint))
		{
			*fresh = false;
			return hint;
		}
	}
	return ReadBuffer(r->index, blkno);
}

/*
 * Check a page just read (a stream page's kind is written once, when the
 * page is created, so no lock is needed to look at it) and remember its
 * buffer.  On failure the pin is dropped by the error's resource cleanup.
 */
static void
SblockReaderCheck(SblockReader *r, BlockNumber blkno, Buffer buf)
{
	Page		page = BufferGetPage(buf);

	if (PageIsNew(page) || SblockPageGetOpaque(page)->kind != SBLOCK_PAGE_STREAM)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("sparse_block index \"%s\" has a damaged stream page %u",
						RelationGetRelationName(r->index), blkno)));
	if (r->hintSlot >= 0 && hintSlots[r->hintSlot].gen == r->hintGen &&
		blkno < hintSlots[r->hintSlot].n)
		hintSlots[r->hintSlot].bufs[blkno] = buf;
}

/* Make blkno the reader's pinned page (unlocked). */
static void
SblockReaderSwitch(SblockReader *r, BlockNumber blkno)
{
	bool		fresh;

	SblockReaderUnlock(r);
	if (BufferIsValid(r->buf))
		ReleaseBuffer(r->buf);
	r->buf = InvalidBuffer;
	r->blkno = InvalidBlockNumber;
	r->buf = SblockReaderPin(r, blkno, &fresh);
	r->blkno = blkno;
	if (fresh)
		SblockReaderCheck(r, blkno, r->buf);
}

/*
 * Start fetching the buffer descriptor a coming SblockReaderPinExtra of
 * blkno will lock and pin: with shared_buffers in the gigabytes the
 * descriptor array is tens of megabytes, and that miss was the largest cost
 * of pinning a random page.  Only a hint: nothing is read or locked.
 */
void
SblockReaderPrefetchPin(SblockReader *r, BlockNumber blkno)
{
#if defined(__GNUC__) || defined(__clang__)
	if (r->hintSlot >= 0 && hintSlots[r->hintSlot].gen == r->hintGen &&
		blkno < hintSlots[r->hintSlot].n)
	{
		Buffer		hint = hintSlots[r->hintSlot].bufs[blkno];

		if (hint > 0)
			__builtin_prefetch(GetBufferDescriptor(hint - 1), 1);
	}
#endif
}

/*
 * Pin page blkno apart from the reader's own page (checked as the reader's
 * are), for a caller that holds several pages at once and releases them.
 */
Buffer
SblockReaderPinExtra(SblockReader *r, BlockNumber blkno)
{
	bool		fresh;
	Buffer		buf = SblockReaderPin(r, blkno, &fresh);

	if (fresh)
		SblockReaderCheck(r, blkno, buf);
	return buf;
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
	if (r->blkno != blkno)
		SblockReaderSwitch(r, blkno);
	if (!r->locked)
	{
		LockBuffer(r->buf, BUFFER_LOCK_SHARE);
		r->locked = true;
	}
	return BufferGetPage(r->buf);
}

/*
 * Pin page blkno without locking it: only for the posting and directory
 * streams, which the build writes before the index can be scanned and
 * nothing modifies afterwards (VACUUM flags documents in the forward and
 * tail streams only; REINDEX writes a new relfilenode), so there is no
 * writer to exclude.
 */
Page
SblockReaderPinPage(SblockReader *r, BlockNumber blkno)
{
	if (r->blkno != blkno)
		SblockReaderSwitch(r, blkno);
	return BufferGetPage(r->buf);
}

/*
 * len bytes at offset of an immutable stream: a pointer into the pinned page
 * when they lie on one page, else a copy in scratch (len bytes at least).
 * The pointer stays valid until the reader moves to another page.
 */
const char *
SblockReaderPeek(SblockReader *r, const SblockStream *s, uint64 offset, Size len, char *scratch)
{
	BlockNumber blkno = s->start + (BlockNumber) (offset / SBLOCK_PAGE_BYTES);
	int			pos = (int) (offset % SBLOCK_PAGE_BYTES);
	char	   *out = scratch;

	if (pos + len <= (Size) SBLOCK_PAGE_BYTES)
		return PageGetContents(SblockReaderPinPage(r, blkno)) + pos;
	while (len > 0)
	{
		Size		n;

		blkno = s->start + (BlockNumber) (offset / SBLOCK_PAGE_BYTES);
		pos = (int) (offset % SBLOCK_PAGE_BYTES);
		n = Min(len, (Size) (SBLOCK_PAGE_BYTES - pos));
		memcpy(out, PageGetContents(SblockReaderPinPage(r, blkno)) + pos, n);
		out += n;
		offset += n;
		len -= n;
	}
	return scratch;
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

/*
 * Where a compact record of bytes bytes goes after offset: 8-aligned, and on
 * the next page if a record small enough not to span would span (the bytes
 * skipped are zero).  The build places records with it and the checker
 * replays it.
 */
uint64
SblockCompactPlace(uint64 offset, Size bytes)
{
	uint64		aligned = TYPEALIGN(8, offset);
	uint64		left = SBLOCK_PAGE_BYTES - aligned % SBLOCK_PAGE_BYTES;

	if (bytes > left && bytes <= SBLOCK_NOSPAN_BYTES)
		aligned += left;
	return aligned;
}

/*
 * A document's compact record (sblock.h) into out, SblockCompactBytes(nnz,
 * wide) bytes, which it returns.  The values are non-negative and finite
 * (SblockCheckValue), scaled by 2^exp so the largest lies in [2^14, 2^15):
 * float16 keeps 11 significant bits of each, and only values 2^29 times
 * below the largest become subnormal.
 */
Size
SblockCompactEncode(const int32 *indices, const float *values, int nnz, bool wide,
					uint32 forward8, char *out)
{
	SblockCompactHeader hdr;
	Size		bytes = SblockCompactBytes(nnz, wide);
	char	   *p = out + SBLOCK_COMPACT_HEADER_SIZE;
	uint16	   *vals;
	float		max = 0;
	int			e = 0;

	for (int i = 0; i < nnz; i++)
		max = Max(max, values[i]);
	if (max > 0)
		(void) frexpf(max, &e); /* max < 2^e */
	hdr.forward8 = forward8;
	hdr.nnz = (uint16) nnz;
	hdr.exp = (int16) (max > 0 ? 15 - e : 0);
	memcpy(out, &hdr, SBLOCK_COMPACT_HEADER_SIZE);
	for (int i = 0; i < nnz; i++)
	{
		if (wide)
		{
			uint32		ix = (uint32) indices[i];

			memcpy(p + (Size) i * 4, &ix, 4);
		}
		else
		{
			uint16		ix = (uint16) indices[i];

			memcpy(p + (Size) i * 2, &ix, 2);
		}
	}
	vals = (uint16 *) (p + (Size) nnz * (wide ? 4 : 2));
	for (int i = 0; i < nnz; i++)
		vals[i] = pgs_f32_to_f16(ldexpf(values[i], hdr.exp));
	memset((char *) (vals + nnz), 0, out + bytes - (char *) (vals + nnz));
	return bytes;
}
