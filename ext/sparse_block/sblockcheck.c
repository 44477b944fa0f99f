/*
 * sblockcheck.c — pgsieve_index_check for sparse_block indexes (layout in
 * sblock.h).
 *
 * Checks, in order:
 *   meta page   page kind, magic, version, pd_lower; dim agrees with the
 *               column's typmod; document counts in range; the build's
 *               streams (forward, compact, postings, directory) lie back to back
 *               from block 1 up to the tail's first block, the directory
 *               holds nterms entries, the tail ends within the relation;
 *   pages       every block of the build's streams and of the tail is a
 *               stream page with a full pd_lower; blocks past the tail's end
 *               (an insert a crash cut short) are stream pages or all zero;
 *   forward     the build's ndocs records are walkable (8-aligned, headers
 *               never straddling a page, PAD records only in the forward
 *               stream, a small record never spanning pages): ordinals
 *               0..ndocs-1 in order, known flags, NULL records empty, nnz
 *               within pgvector's limit, the record within the stream, a
 *               valid heap TID, indices ascending and below dim, values
 *               finite and non-negative; the stream ends with the last one;
 *   compact     (during the forward walk) one record per build document, in
 *               ordinal order, placed as the build places them
 *               (SblockCompactPlace), each exactly
 *               the encoding of its forward record (SblockCompactEncode:
 *               its offset, nnz, exponent, indices, float16 values and
 *               padding); the stream ends with the last one;
 *   directory   terms strictly ascending (and below dim), each list 8-aligned
 *               right after the previous one, within the posting stream,
 *               which ends with the last list;
 *   lists       header counts consistent and SblockListLayoutOf(header)
 *               ending exactly at the list's length; blocks tile the
 *               postings in order; summary min/step finite and
 *               non-negative; components strictly ascending (below dim),
 *               their runs tiling the entries, block ids in a run
 *               ascending and below nblocks; every posting's ordinal is a
 *               build document, listed once per list, ascending within its
 *               block, its offset that document's compact record, and the document
 *               holds the list's term;
 *   tail        tailDocs records with ordinals ndocs.. in order (as the
 *               forward records, without PAD or page rules), ending exactly
 *               at the meta page's tail length.
 * With heapallindexed every record not flagged deleted becomes an entry
 * whose fingerprint covers its indices and values (or its NULL flag).
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "miscadmin.h"

#include "pgsieve_check.h"
#include "pgvector_types.h"
#include "sblock.h"

#define SBLOCK_CHECK_SEED	UINT64CONST(0x73626c6b646f6373)

typedef struct SblockCheck
{
	PgsCheckState *st;
	SblockMetaPageData meta;
	BlockNumber nblocks;
	SblockReader reader;
	/* per build document (ordinal), from the forward walk */
	uint64	   *docOffset;
	uint64	   *docCompact;		/* its compact record, checked with its forward record */
	uint64		compactEnd;		/* where the compact records placed so far end */
	char	   *want;			/* compact record scratch: the expected encoding, the stored one */
	char	   *got;
	uint16	   *docNnz;
	uint32	   *docList;		/* last list (1-based) that posted it */
	/* scratch */
	char	   *buf;
	Size		bufsize;
	/* totals for the DEBUG1 report */
	int64		live;
	int64		deleted;
	int64		nulls;
	int64		pads;
	int64		postings;
	int64		blocks;
} SblockCheck;

static uint64
StreamPages(uint64 bytes)
{
	return (bytes + SBLOCK_PAGE_BYTES - 1) / SBLOCK_PAGE_BYTES;
}

static BlockNumber
StreamBlock(const SblockStream *s, uint64 offset)
{
	return s->start + (BlockNumber) (offset / SBLOCK_PAGE_BYTES);
}

static uint64
SblockPayloadFingerprint(const char *payload, uint32 nnz)
{
	return hash_bytes_extended((const unsigned char *) payload, (int) (nnz * 8), SBLOCK_CHECK_SEED ^ nnz);
}

static bool
SblockHeapFingerprint(PgsCheckState *st, Datum value, bool isnull, uint64 *fp)
{
	SblockCheck *c = (SblockCheck *) st->amstate;
	PgvSparseVector *v;
	SblockDoc	doc;

	if (isnull)
	{
		*fp = PGS_CHECK_NULL_FP;
		return true;
	}
	v = DatumGetPgvSparseVector(value);
	if (c->meta.dim != 0 && v->dim != c->meta.dim)
		return false;
	SblockCheckValue(PointerGetDatum(v), 0, &doc);
	/* indices then values, contiguous in a sparsevec as in a record */
	*fp = SblockPayloadFingerprint((const char *) v->indices, (uint32) v->nnz);
	return true;
}

static void
SblockCheckBuf(SblockCheck *c, Size need)
{
	need = Max(need, 64);
	if (c->bufsize < need)
	{
		c->buf = c->buf ? repalloc_huge(c->buf, need) : MemoryContextAllocHuge(CurrentMemoryContext, need);
		c->bufsize = need;
	}
}

static void
SblockCheckMeta(SblockCheck *c, Page page)
{
	PgsCheckState *st = c->st;
	SblockMetaPageData *m = &c->meta;
	int32		typmod = TupleDescAttr(RelationGetDescr(st->index), 0)->atttypmod;
	uint64		fpages,
				cpages,
				ppages,
				dpages;

	if (RelationGetNumberOfBlocks(st->index) == 0)
		PgsCheckCorrupt(st, InvalidBlockNumber, "the relation has no blocks (no meta page)");
	if (!PgsCheckReadPage(st, SBLOCK_METAPAGE_BLKNO, page, sizeof(SblockPageOpaqueData)))
		PgsCheckCorrupt(st, SBLOCK_METAPAGE_BLKNO, "meta page is all zero");
	if (SblockPageGetOpaque(page)->kind != SBLOCK_PAGE_META)
		PgsCheckCorrupt(st, SBLOCK_METAPAGE_BLKNO, "page of kind %u where the meta page belongs",
						SblockPageGetOpaque(page)->kind);
	memcpy(m, SblockPageGetMeta(page), sizeof(*m));
	if (m->magic != SBLOCK_MAGIC)
		PgsCheckCorrupt(st, SBLOCK_METAPAGE_BLKNO, "meta page magic is 0x%08x, expected 0x%08x",
						m->magic, SBLOCK_MAGIC);
	if (m->version != SBLOCK_VERSION)
		PgsCheckCorrupt(st, SBLOCK_METAPAGE_BLKNO, "meta page version is %u, expected %d",
						m->version, SBLOCK_VERSION);
	if (((PageHeader) page)->pd_lower != MAXALIGN(SizeOfPageHeaderData) + sizeof(SblockMetaPageData))
		PgsCheckCorrupt(st, SBLOCK_METAPAGE_BLKNO, "meta page pd_lower is %u",
						(unsigned) ((PageHeader) page)->pd_lower);
	/* after the meta page: the tail pages it counts then lie below nblocks */
	c->nblocks = RelationGetNumberOfBlocks(st->index);

	if (m->dim < 0 || (typmod > 0 && m->dim != typmod))
		PgsCheckCorrupt(st, SBLOCK_METAPAGE_BLKNO, "dim %d, the column's typmod %d", m->dim, typmod);
	if (m->ndocs > PG_UINT32_MAX / 2 || m->tailDocs > PG_UINT32_MAX - m->ndocs)
		PgsCheckCorrupt(st, SBLOCK_METAPAGE_BLKNO, "document counts out of range (%u built, %u in the tail)",
						m->ndocs, m->tailDocs);

	fpages = StreamPages(m->forward.bytes);
	cpages = StreamPages(m->compact.bytes);
	ppages = StreamPages(m->postings.bytes);
	dpages = StreamPages(m->directory.bytes);
	if (m->ndocs == 0)
	{
		if (m->forward.bytes != 0 || m->compact.bytes != 0 || m->postings.bytes != 0 ||
			m->directory.bytes != 0 || m->nterms != 0 || m->tail.start != 1)
			PgsCheckCorrupt(st, SBLOCK_METAPAGE_BLKNO,
							"no documents were built, but the build's streams are not empty or the tail starts at block %u",
							m->tail.start);
	}
	else if (m->forward.start != 1 || m->forward.bytes == 0 || m->compact.bytes == 0 ||
			 (uint64) m->compact.start != m->forward.start + fpages ||
			 (uint64) m->postings.start != m->compact.start + cpages ||
			 (uint64) m->directory.start != m->postings.start + ppages ||
			 (uint64) m->tail.start != m->directory.start + dpages)
		PgsCheckCorrupt(st, SBLOCK_METAPAGE_BLKNO,
						"the build's streams do not lie back to back: forward %u (" UINT64_FORMAT " bytes), "
						"compact %u (" UINT64_FORMAT " bytes), postings %u (" UINT64_FORMAT " bytes), "
						"directory %u (" UINT64_FORMAT " bytes), tail %u",
						m->forward.start, m->forward.bytes, m->compact.start, m->compact.bytes,
						m->postings.start, m->postings.bytes, m->directory.start, m->directory.bytes, m->tail.start);
	if (m->compactWide != (m->dim > 65536))
		PgsCheckCorrupt(st, SBLOCK_METAPAGE_BLKNO, "compact indices are %s for %d dimensions",
						m->compactWide ? "32-bit" : "16-bit", m->dim);
	if (m->directory.bytes != (uint64) m->nterms * sizeof(SblockDirEntry))
		PgsCheckCorrupt(st, SBLOCK_METAPAGE_BLKNO, "directory of " UINT64_FORMAT " bytes for %u terms",
						m->directory.bytes, m->nterms);
	if ((uint64) m->tail.start + StreamPages(m->tail.bytes) > c->nblocks)
		PgsCheckCorrupt(st, SBLOCK_METAPAGE_BLKNO,
						"tail of " UINT64_FORMAT " bytes from block %u passes the relation's end (%u blocks)",
						m->tail.bytes, m->tail.start, c->nblocks);
	if ((m->tailDocs == 0) != (m->tail.bytes == 0))
		PgsCheckCorrupt(st, SBLOCK_METAPAGE_BLKNO, "tail of %u documents in " UINT64_FORMAT " bytes",
						m->tailDocs, m->tail.bytes);
}

/* Every block's page: stream pages up to the tail's end, stream or zero after. */
static void
SblockCheckPages(SblockCheck *c, Page page)
{
	PgsCheckState *st = c->st;
	BlockNumber used = c->meta.tail.start + (BlockNumber) StreamPages(c->meta.tail.bytes);

	for (BlockNumber blkno = 1; blkno < c->nblocks; blkno++)
	{
		if (!PgsCheckReadPage(st, blkno, page, sizeof(SblockPageOpaqueData)))
		{
			if (blkno < used)
				PgsCheckCorrupt(st, blkno, "%s page is all zero", blkno < c->meta.tail.start ? "stream" : "tail");
			continue;
		}
		if (SblockPageGetOpaque(page)->kind != SBLOCK_PAGE_STREAM)
			PgsCheckCorrupt(st, blkno, "page of kind %u where a stream page belongs",
							SblockPageGetOpaque(page)->kind);
		if (((PageHeader) page)->pd_lower != MAXALIGN(SizeOfPageHeaderData) + SBLOCK_PAGE_BYTES)
			PgsCheckCorrupt(st, blkno, "stream page pd_lower is %u", (unsigned) ((PageHeader) page)->pd_lower);
	}
}

/*
 * Build document ordinal's compact record, checked while its forward record
 * (indices, values) is at hand: placed where the build places it after the
 * previous one, and exactly what SblockCompactEncode makes of the forward
 * record.
 */
static void
SblockCheckCompactRecord(SblockCheck *c, uint32 ordinal, uint64 forwardOffset, const int32 *indices,
						 const float *values, uint32 nnz)
{
	const SblockStream *s = &c->meta.compact;
	bool		wide = c->meta.compactWide != 0;
	Size		bytes = SblockCompactBytes(nnz, wide);
	uint64		offset = SblockCompactPlace(c->compactEnd, bytes);

	if (offset + bytes > s->bytes)
		PgsCheckCorrupt(c->st, StreamBlock(s, offset), "the compact stream ends after %u of its %u records",
						ordinal, c->meta.ndocs);
	SblockCompactEncode(indices, values, (int) nnz, wide, (uint32) (forwardOffset / 8), c->want);
	SblockReaderRead(&c->reader, s, offset, c->got, bytes);
	if (memcmp(c->want, c->got, bytes) != 0)
		PgsCheckCorrupt(c->st, StreamBlock(s, offset), "compact record of document %u (byte " UINT64_FORMAT
						") does not encode its forward record", ordinal, offset);
	c->docCompact[ordinal] = offset;
	c->compactEnd = offset + bytes;
}

/* Walk the n records of the forward stream (forward) or the tail. */
static void
SblockCheckRecords(SblockCheck *c, const SblockStream *s, uint32 n, bool forward)
{
	PgsCheckState *st = c->st;
	const char *what = forward ? "forward stream" : "tail";
	uint32		first = forward ? 0 : c->meta.ndocs;
	uint64		offset = 0;

	for (uint32 i = 0; i < n;)
	{
		SblockDocHeader hdr;
		BlockNumber blkno;
		uint64		end;
		const int32 *indices;
		const float *values;

		if ((i & 255) == 0)
			CHECK_FOR_INTERRUPTS();
		offset = SblockDocAlign(offset);
		blkno = StreamBlock(s, offset);
		if (offset + SBLOCK_DOC_HEADER_SIZE > s->bytes)
			PgsCheckCorrupt(st, blkno, "the %s ends after %u of its %u records", what, i, n);
		SblockReaderRead(&c->reader, s, offset, &hdr, SBLOCK_DOC_HEADER_SIZE);
		if (hdr.flags & SBLOCK_DOC_PAD)
		{
			if (!forward || hdr.flags != SBLOCK_DOC_PAD || hdr.nnz != 0 || hdr.ordinal != 0)
				PgsCheckCorrupt(st, blkno, "bad PAD record at byte %d of the page (flags 0x%02x) in the %s",
								(int) (offset % SBLOCK_PAGE_BYTES), hdr.flags, what);
			c->pads++;
			offset = SblockNextPage(offset);
			continue;
		}
		if (hdr.flags & ~(SBLOCK_DOC_DELETED | SBLOCK_DOC_NULL))
			PgsCheckCorrupt(st, blkno, "record %u of the %s has unknown flags 0x%02x", first + i, what, hdr.flags);
		if (hdr.ordinal != first + i)
			PgsCheckCorrupt(st, blkno, "record %u of the %s has ordinal %u", first + i, what, hdr.ordinal);
		if (hdr.nnz > SBLOCK_MAX_NNZ || ((hdr.flags & SBLOCK_DOC_NULL) && hdr.nnz != 0))
			PgsCheckCorrupt(st, blkno, "record %u has %u non-zeros%s", hdr.ordinal, hdr.nnz,
							(hdr.flags & SBLOCK_DOC_NULL) ? " but is a NULL row" : "");
		end = offset + SBLOCK_DOC_HEADER_SIZE + (uint64) hdr.nnz * 8;
		if (end > s->bytes)
			PgsCheckCorrupt(st, blkno, "record %u ends past the %s's " UINT64_FORMAT " bytes",
							hdr.ordinal, what, s->bytes);
		if (forward && SblockDocBytes(hdr.nnz) <= SBLOCK_NOSPAN_BYTES &&
			offset / SBLOCK_PAGE_BYTES != (end - 1) / SBLOCK_PAGE_BYTES)
			PgsCheckCorrupt(st, blkno, "record %u of %zu bytes spans two pages", hdr.ordinal,
							(Size) SblockDocBytes(hdr.nnz));
		if (!PgsCheckTidIsValid(&hdr.tid))
			PgsCheckCorrupt(st, blkno, "record %u has invalid heap TID (%u,%u)", hdr.ordinal,
							ItemPointerGetBlockNumberNoCheck(&hdr.tid), ItemPointerGetOffsetNumberNoCheck(&hdr.tid));

		SblockCheckBuf(c, (Size) hdr.nnz * 8);
		if (hdr.nnz > 0)
			SblockReaderRead(&c->reader, s, offset + SBLOCK_DOC_HEADER_SIZE, c->buf, (Size) hdr.nnz * 8);
		indices = (const int32 *) c->buf;
		values = (const float *) (c->buf + (Size) hdr.nnz * 4);
		for (uint32 j = 0; j < hdr.nnz; j++)
		{
			if (indices[j] < 0 || (c->meta.dim > 0 && indices[j] >= c->meta.dim) ||
				(j > 0 && indices[j] <= indices[j - 1]))
				PgsCheckCorrupt(st, blkno, "record %u: index %d at position %u is out of order or range",
								hdr.ordinal, indices[j], j);
			if (!(values[j] >= 0) || isinf(values[j]))
				PgsCheckCorrupt(st, blkno, "record %u: value %g at position %u is not finite and non-negative",
								hdr.ordinal, values[j], j);
		}

		if (forward)
		{
			c->docOffset[i] = offset;
			c->docNnz[i] = (uint16) hdr.nnz;
			SblockCheckCompactRecord(c, i, offset, indices, values, hdr.nnz);
		}
		if (hdr.flags & SBLOCK_DOC_DELETED)
			c->deleted++;
		else
		{
			c->live++;
			if (hdr.flags & SBLOCK_DOC_NULL)
				c->nulls++;
			if (st->heapallindexed)
				PgsCheckAddEntry(st, &hdr.tid, blkno, hdr.ordinal,
								 (hdr.flags & SBLOCK_DOC_NULL) ? PGS_CHECK_NULL_FP :
								 SblockPayloadFingerprint(c->buf, hdr.nnz));
		}
		offset = end;
		i++;
	}
	if ((n == 0 && s->bytes != 0) || (n > 0 && offset != s->bytes))
		PgsCheckCorrupt(st, StreamBlock(s, offset), "the %s has " UINT64_FORMAT " bytes, its records end at " UINT64_FORMAT,
						what, s->bytes, offset);
	if (forward && c->compactEnd != c->meta.compact.bytes)
		PgsCheckCorrupt(st, StreamBlock(&c->meta.compact, c->compactEnd), "the compact stream has " UINT64_FORMAT
						" bytes, its records end at " UINT64_FORMAT, c->meta.compact.bytes, c->compactEnd);
}

/* Does the build document at ordinal hold component term? */
static bool
SblockCheckDocHasTerm(SblockCheck *c, uint32 ordinal, uint32 term)
{
	uint32		nnz = c->docNnz[ordinal];
	const int32 *indices;
	uint32		lo = 0,
				hi = nnz;

	if (nnz == 0)
		return false;
	SblockCheckBuf(c, (Size) nnz * 4);
	SblockReaderRead(&c->reader, &c->meta.forward, c->docOffset[ordinal] + SBLOCK_DOC_HEADER_SIZE,
					 c->buf, (Size) nnz * 4);
	indices = (const int32 *) c->buf;
	while (lo < hi)
	{
		uint32		mid = lo + (hi - lo) / 2;

		if ((uint32) indices[mid] < term)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < nnz && (uint32) indices[lo] == term;
}

/* One posting list (directory entry number e) read into list. */
static void
SblockCheckList(SblockCheck *c, const SblockDirEntry *d, uint32 e, const char *list)
{
	PgsCheckState *st = c->st;
	const SblockListHeader *h = (const SblockListHeader *) list;
	SblockListLayout l;
	const SblockBlockInfo *blocks;
	const uint32 *comps;
	const uint32 *compStart;
	const uint32 *ent;
	const SblockPosting *post;
	BlockNumber blkno = StreamBlock(&c->meta.postings, d->offset);
	uint32		pos = 0;

	if (h->nblocks < 1 || h->nblocks > SBLOCK_MAX_BLOCKS || h->npostings < h->nblocks ||
		h->npostings > c->meta.ndocs)
		PgsCheckCorrupt(st, blkno, "list of term %u has %u blocks and %u postings (%u documents built)",
						d->term, h->nblocks, h->npostings, c->meta.ndocs);
	SblockListLayoutOf(h, &l);
	if (l.end != d->bytes)
		PgsCheckCorrupt(st, blkno, "list of term %u: its layout ends at byte " UINT64_FORMAT ", the directory says %u",
						d->term, l.end, d->bytes);
	blocks = (const SblockBlockInfo *) (list + l.blocks);
	comps = (const uint32 *) (list + l.comps);
	compStart = (const uint32 *) (list + l.compStart);
	ent = (const uint32 *) (list + l.ent);
	post = (const SblockPosting *) (list + l.postings);

	for (uint32 b = 0; b < h->nblocks; b++)
	{
		if (blocks[b].first != pos || blocks[b].ndocs < 1 || blocks[b].ndocs > h->npostings - pos)
			PgsCheckCorrupt(st, blkno, "list of term %u: block %u has postings [%u, +%u), expected to start at %u",
							d->term, b, blocks[b].first, blocks[b].ndocs, pos);
		if (!(blocks[b].min >= 0) || isinf(blocks[b].min) || !(blocks[b].step >= 0) || isinf(blocks[b].step))
			PgsCheckCorrupt(st, blkno, "list of term %u: block %u has summary min %g, step %g",
							d->term, b, blocks[b].min, blocks[b].step);
		pos += blocks[b].ndocs;
	}
	if (pos != h->npostings)
		PgsCheckCorrupt(st, blkno, "list of term %u: its blocks hold %u of its %u postings", d->term, pos, h->npostings);

	if (compStart[0] != 0 || compStart[h->ncomps] != h->nentries)
		PgsCheckCorrupt(st, blkno, "list of term %u: summary runs cover [%u, %u) of %u entries",
						d->term, compStart[0], compStart[h->ncomps], h->nentries);
	for (uint32 k = 0; k < h->ncomps; k++)
	{
		if ((k > 0 && comps[k] <= comps[k - 1]) || (c->meta.dim > 0 && comps[k] >= (uint32) c->meta.dim))
			PgsCheckCorrupt(st, blkno, "list of term %u: summary component %u (%u) is out of order or range",
							d->term, k, comps[k]);
		if (compStart[k + 1] <= compStart[k] || compStart[k + 1] > h->nentries)
			PgsCheckCorrupt(st, blkno, "list of term %u: summary run of component %u is empty, reversed or too long",
							d->term, comps[k]);
		for (uint32 x = compStart[k]; x < compStart[k + 1]; x++)
		{
			uint32		block = SblockEntBlock(ent[x]);

			if (block >= h->nblocks || (x > compStart[k] && block <= SblockEntBlock(ent[x - 1])))
				PgsCheckCorrupt(st, blkno, "list of term %u: summary entry %u names block %u (of %u) out of order",
								d->term, x, block, h->nblocks);
		}
	}

	for (uint32 b = 0; b < h->nblocks; b++)
	{
		CHECK_FOR_INTERRUPTS();
		for (uint32 i = blocks[b].first; i < blocks[b].first + blocks[b].ndocs; i++)
		{
			uint32		ord = post[i].ordinal;

			if (ord >= c->meta.ndocs)
				PgsCheckCorrupt(st, blkno, "list of term %u: posting %u names document %u of %u",
								d->term, i, ord, c->meta.ndocs);
			if (i > blocks[b].first && ord <= post[i - 1].ordinal)
				PgsCheckCorrupt(st, blkno, "list of term %u: postings of block %u are not in ordinal order",
								d->term, b);
			if (c->docList[ord] == e + 1)
				PgsCheckCorrupt(st, blkno, "list of term %u posts document %u twice", d->term, ord);
			c->docList[ord] = e + 1;
			if ((uint64) post[i].offset8 * 8 != c->docCompact[ord])
				PgsCheckCorrupt(st, blkno, "list of term %u: posting of document %u points at byte " UINT64_FORMAT
								" of the compact stream, its record is at " UINT64_FORMAT,
								d->term, ord, (uint64) post[i].offset8 * 8, c->docCompact[ord]);
			if (!SblockCheckDocHasTerm(c, ord, d->term))
				PgsCheckCorrupt(st, blkno, "list of term %u posts document %u, which lacks the term", d->term, ord);
		}
	}
	c->postings += h->npostings;
	c->blocks += h->nblocks;
}

static void
SblockCheckLists(SblockCheck *c)
{
	PgsCheckState *st = c->st;
	SblockMetaPageData *m = &c->meta;
	SblockDirEntry *dir;
	uint64		end = 0;
	char	   *list = NULL;
	Size		listSize = 0;

	if (m->nterms == 0)
	{
		if (m->postings.bytes != 0)
			PgsCheckCorrupt(st, m->postings.start, "posting stream of " UINT64_FORMAT " bytes without terms",
							m->postings.bytes);
		return;
	}
	dir = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(SblockDirEntry) * (Size) m->nterms);
	SblockReaderRead(&c->reader, &m->directory, 0, dir, sizeof(SblockDirEntry) * (Size) m->nterms);
	for (uint32 e = 0; e < m->nterms; e++)
	{
		const SblockDirEntry *d = &dir[e];
		BlockNumber blkno = StreamBlock(&m->directory, (uint64) e * sizeof(SblockDirEntry));

		CHECK_FOR_INTERRUPTS();
		if ((e > 0 && d->term <= dir[e - 1].term) || (m->dim > 0 && d->term >= (uint32) m->dim))
			PgsCheckCorrupt(st, blkno, "directory entry %u: term %u is out of order or range", e, d->term);
		if (d->offset != TYPEALIGN(8, end) || d->bytes < sizeof(SblockListHeader) ||
			d->offset + d->bytes > m->postings.bytes)
			PgsCheckCorrupt(st, blkno, "directory entry %u: list of term %u at byte " UINT64_FORMAT " (%u bytes); "
							"the previous list ends at " UINT64_FORMAT ", the posting stream at " UINT64_FORMAT,
							e, d->term, d->offset, d->bytes, end, m->postings.bytes);
		if (listSize < d->bytes)
		{
			listSize = Max((Size) d->bytes, 2 * listSize);
			list = list ? repalloc_huge(list, listSize) : MemoryContextAllocHuge(CurrentMemoryContext, listSize);
		}
		SblockReaderRead(&c->reader, &m->postings, d->offset, list, d->bytes);
		SblockCheckList(c, d, e, list);
		end = d->offset + d->bytes;
	}
	if (m->postings.bytes != TYPEALIGN(8, end))
		PgsCheckCorrupt(st, StreamBlock(&m->postings, end), "posting stream has " UINT64_FORMAT
						" bytes, its last list ends at " UINT64_FORMAT, m->postings.bytes, end);
	if (list)
		pfree(list);
	pfree(dir);
}

void
SblockCheckIndex(PgsCheckState *st)
{
	SblockCheck *c = palloc0(sizeof(SblockCheck));
	Page		page = palloc(BLCKSZ);
	Size		n;

	c->st = st;
	SblockCheckMeta(c, page);
	SblockCheckPages(c, page);
	pfree(page);

	n = Max((Size) c->meta.ndocs, 1);
	c->docOffset = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(uint64) * n);
	c->docCompact = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(uint64) * n);
	c->want = palloc(SblockCompactBytes(SBLOCK_MAX_NNZ, true));
	c->got = palloc(SblockCompactBytes(SBLOCK_MAX_NNZ, true));
	c->docNnz = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(uint16) * n);
	c->docList = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(uint32) * n);
	memset(c->docList, 0, sizeof(uint32) * n);

	SblockReaderInit(&c->reader, st->index);
	SblockCheckRecords(c, &c->meta.forward, c->meta.ndocs, true);
	SblockCheckLists(c);
	SblockCheckRecords(c, &c->meta.tail, c->meta.tailDocs, false);
	SblockReaderEnd(&c->reader);

	ereport(DEBUG1,
			(errmsg_internal("%s index \"%s\": %u blocks; %u documents built and %u in the tail: "
							 INT64_FORMAT " live (" INT64_FORMAT " NULL), " INT64_FORMAT " flagged deleted, "
							 INT64_FORMAT " PAD records; %u terms, " INT64_FORMAT " postings in " INT64_FORMAT " blocks",
							 st->amname, RelationGetRelationName(st->index), c->nblocks, c->meta.ndocs,
							 c->meta.tailDocs, c->live, c->nulls, c->deleted, c->pads, c->meta.nterms,
							 c->postings, c->blocks)));

	pfree(c->docOffset);
	pfree(c->docCompact);
	pfree(c->want);
	pfree(c->got);
	pfree(c->docNnz);
	pfree(c->docList);
	c->docOffset = NULL;
	c->docCompact = NULL;
	c->docNnz = NULL;
	c->docList = NULL;
	if (st->heapallindexed)
	{
		st->amstate = c;
		st->fingerprint = SblockHeapFingerprint;
	}
}
