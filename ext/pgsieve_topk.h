/*
 * pgsieve_topk.h — a bounded top-k of scored heap rows, shared by the scans
 * and functions that rank candidates (sparse_block's rounds, maxsim_rerank).
 *
 * A min-heap of at most k hits whose root is the worst kept; ties on score
 * go to the lower key (an ordinal, or a first-stage position), so results
 * are deterministic.  Sorting the kept hits with PgsHitCmpBestFirst gives
 * them best first.
 */
#ifndef PGSIEVE_TOPK_H
#define PGSIEVE_TOPK_H

#include "postgres.h"

#include "storage/itemptr.h"

typedef struct PgsHit
{
	float8		score;			/* higher is better */
	uint32		key;			/* tie-breaker: lower is better */
	ItemPointerData tid;
} PgsHit;

/* a ranks below b */
static inline bool
PgsHitWorse(const PgsHit *a, const PgsHit *b)
{
	if (a->score != b->score)
		return a->score < b->score;
	return a->key > b->key;
}

static inline void
PgsTopKSiftDown(PgsHit *h, int n, int i)
{
	for (;;)
	{
		int			l = 2 * i + 1,
					r = l + 1,
					m = i;
		PgsHit		t;

		if (l < n && PgsHitWorse(&h[l], &h[m]))
			m = l;
		if (r < n && PgsHitWorse(&h[r], &h[m]))
			m = r;
		if (m == i)
			return;
		t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

/* Offer hit to the top-k h of *n hits (room for k); true if it was kept. */
static inline bool
PgsTopKPush(PgsHit *h, int64 *n, int64 k, const PgsHit *hit)
{
	if (*n < k)
	{
		int64		i = (*n)++;

		h[i] = *hit;
		while (i > 0 && PgsHitWorse(&h[i], &h[(i - 1) / 2]))
		{
			PgsHit		t = h[i];

			h[i] = h[(i - 1) / 2];
			h[(i - 1) / 2] = t;
			i = (i - 1) / 2;
		}
		return true;
	}
	if (!PgsHitWorse(&h[0], hit))
		return false;
	h[0] = *hit;
	PgsTopKSiftDown(h, (int) *n, 0);
	return true;
}

/* qsort comparator: best first */
static inline int
PgsHitCmpBestFirst(const void *a, const void *b)
{
	const PgsHit *x = a;
	const PgsHit *y = b;

	if (PgsHitWorse(x, y))
		return 1;
	if (PgsHitWorse(y, x))
		return -1;
	return 0;
}

#endif							/* PGSIEVE_TOPK_H */
