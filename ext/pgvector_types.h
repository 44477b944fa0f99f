/*
 * pgvector_types.h — the on-disk layouts of pgvector's types.
 *
 * pgsieve indexes pgvector's types but never links against pgvector: these
 * are pgvector's stable storage formats (vector.h, halfvec.h, sparsevec.h),
 * restated so the extension also builds where pgvector's headers are not
 * installed (e.g. Debian's PostgreSQL 15 packages).
 */
#ifndef PGVECTOR_TYPES_H
#define PGVECTOR_TYPES_H

#include "postgres.h"

#include "fmgr.h"

#define PGV_VECTOR_MAX_DIM 16000
#define PGV_HALFVEC_MAX_DIM 16000

typedef struct PgvVector
{
	int32		vl_len_;		/* varlena header */
	int16		dim;
	int16		unused;
	float		x[FLEXIBLE_ARRAY_MEMBER];
} PgvVector;

typedef struct PgvHalfVector
{
	int32		vl_len_;
	int16		dim;
	int16		unused;
	uint16		x[FLEXIBLE_ARRAY_MEMBER];	/* IEEE binary16 bit patterns */
} PgvHalfVector;

typedef struct PgvSparseVector
{
	int32		vl_len_;
	int32		dim;
	int32		nnz;
	int32		unused;
	int32		indices[FLEXIBLE_ARRAY_MEMBER];	/* then float values[nnz] */
} PgvSparseVector;

#define PGV_SPARSEVEC_VALUES(v) ((float *) ((v)->indices + (v)->nnz))

#define DatumGetPgvVector(d)	((PgvVector *) PG_DETOAST_DATUM(d))
#define DatumGetPgvHalfVector(d) ((PgvHalfVector *) PG_DETOAST_DATUM(d))
#define DatumGetPgvSparseVector(d) ((PgvSparseVector *) PG_DETOAST_DATUM(d))

#endif							/* PGVECTOR_TYPES_H */
