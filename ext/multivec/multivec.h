/*
 * multivec.h — the multivector type: ntok tokens of dim elements each.
 *
 * On disk (a varlena, STORAGE external — out of line, never compressed: float
 * tokens do not compress, and pglz would try on every insert — ALIGNMENT int4):
 *
 *   int32  vl_len_;   varlena header
 *   int32  ntok;      1 .. MV_MAX_TOKENS
 *   int16  dim;       1 .. MV_MAX_DIM
 *   uint8  format;    MultiVecFormat
 *   uint8  unused;    zero
 *   then, for MV_INT8 only, float4 scale[ntok]
 *   then ntok * dim elements, token-major: float4, uint16 (IEEE binary16
 *   bit patterns) or int8 codes (value = code * scale[token], |code| <= 127)
 *
 * The header is 12 bytes, so float32 elements and int8 scales are 4-byte
 * aligned.  The format codes are also the binary wire format's codes.
 */
#ifndef MULTIVEC_H
#define MULTIVEC_H

#include "postgres.h"

#include "fmgr.h"

#include "pgsieve_compat.h"

#define MV_MAX_TOKENS	8192
#define MV_MAX_DIM		16000	/* pgvector's vector limit */

typedef enum MultiVecFormat
{
	MV_FLOAT32 = 0,
	MV_FLOAT16 = 1,
	MV_INT8 = 2
} MultiVecFormat;

#define MV_NFORMATS 3

typedef struct MultiVec
{
	int32		vl_len_;		/* varlena header (do not touch directly!) */
	int32		ntok;
	int16		dim;
	uint8		format;
	uint8		unused;
	char		data[FLEXIBLE_ARRAY_MEMBER];
} MultiVec;

#define MV_HEADER_SIZE offsetof(MultiVec, data)

/* element arrays of each format (valid only for a value of that format) */
#define MV_F32(mv)		((float *) (mv)->data)
#define MV_F16(mv)		((uint16 *) (mv)->data)
#define MV_SCALES(mv)	((float *) (mv)->data)
#define MV_I8(mv)		((int8 *) ((mv)->data + sizeof(float) * (mv)->ntok))

#define DatumGetMultiVec(d)			((MultiVec *) PG_DETOAST_DATUM(d))
#define PG_GETARG_MULTIVEC_P(n)		DatumGetMultiVec(PG_GETARG_DATUM(n))
#define PG_RETURN_MULTIVEC_P(mv)	PG_RETURN_POINTER(mv)

/*
 * Type modifier: dim in the low 16 bits, (format + 1) above them, 0 there
 * meaning "any format": multivec(128) = 128, multivec(128, int8) = 128 | 3 << 16.
 */
#define MV_TYPMOD_DIM(t)	((int) ((t) & 0xFFFF))
#define MV_TYPMOD_FORMAT(t) ((int) ((t) >> 16) - 1)
#define MV_MAKE_TYPMOD(dim, fmt) ((int32) (dim) | ((int32) ((fmt) + 1) << 16))

/* bytes of one element of a format */
static inline int
MultiVecElemSize(int format)
{
	return format == MV_FLOAT32 ? 4 : format == MV_FLOAT16 ? 2 : 1;
}

/* total varlena size of a value, in 64-bit arithmetic so it cannot overflow */
static inline int64
MultiVecSize(int format, int64 ntok, int64 dim)
{
	int64		size = MV_HEADER_SIZE + ntok * dim * MultiVecElemSize(format);

	if (format == MV_INT8)
		size += ntok * (int64) sizeof(float);
	return size;
}

/* scratch memory for MaxSim, reusable across calls (see MultiVecMaxSimFloats) */
typedef struct MaxSimCache
{
	MemoryContext mcxt;			/* where scratch and qmax live */
	int			dim;			/* scratch fits tokens of up to dim dimensions */
	void	   *scratch;
	int			nq;				/* qmax has room for nq query tokens */
	float	   *qmax;
} MaxSimCache;

/* mvtype.c */
extern const char *MultiVecFormatName(int format);
extern void MultiVecCheckShape(int64 ntok, int64 dim, int format);
extern MultiVec *NewMultiVec(int ntok, int dim, int format);
extern const float *MultiVecFloats(MultiVec *mv);

/* mvmaxsim.c */
extern double MultiVecMaxSimFloats(MultiVec *doc, const float *query, int nq, int dim,
								   MaxSimCache *cache);
extern double MultiVecMaxSim(MultiVec *doc, MultiVec *query, MaxSimCache *cache);

/* mvrerank.c */
extern void MultiVecRerankInit(void);

#endif							/* MULTIVEC_H */
