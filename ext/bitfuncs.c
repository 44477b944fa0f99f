/*
 * bitfuncs.c — SQL functions over core `bit` and binary quantization.
 *
 * pgvector already owns the operators <~> and <%> on bit; these are
 * separately named functions built on the shared SIMD kernels:
 *   hamming(bit, bit)           integer Hamming distance
 *   jaccard(bit, bit)           Jaccard distance (pgvector's definition)
 *   bit_quantize(vector|halfvec [, real[]])   binary quantization, sign or
 *                               per-dimension thresholds (numpy packbits order)
 *   bit_thresholds(vector|halfvec)            aggregate: per-dimension means
 *   bit_ip(vector|halfvec, bit) asymmetric inner product of a float query with
 *                               a code in +-1 form
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/varbit.h"

#include "pgs_kernels.h"
#include "pgsieve.h"
#include "pgvector_types.h"

/* a bit string of nbits bits, zero-filled */
static VarBit *
NewVarBit(int nbits)
{
	int			len = VARBITTOTALLEN(nbits);
	VarBit	   *result = (VarBit *) palloc0(len);

	SET_VARSIZE(result, len);
	VARBITLEN(result) = nbits;
	return result;
}

static void
CheckSameBitLength(VarBit *a, VarBit *b, const char *fn)
{
	if (VARBITLEN(a) != VARBITLEN(b))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s: bit strings of different lengths %d and %d", fn,
						VARBITLEN(a), VARBITLEN(b))));
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(pgsieve_hamming);
Datum
pgsieve_hamming(PG_FUNCTION_ARGS)
{
	VarBit	   *a = PG_GETARG_VARBIT_P(0);
	VarBit	   *b = PG_GETARG_VARBIT_P(1);

	CheckSameBitLength(a, b, "hamming");
	PG_RETURN_INT32((int32) pgs_hamming(VARBITS(a), VARBITS(b), VARBITBYTES(a)));
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(pgsieve_jaccard);
Datum
pgsieve_jaccard(PG_FUNCTION_ARGS)
{
	VarBit	   *a = PG_GETARG_VARBIT_P(0);
	VarBit	   *b = PG_GETARG_VARBIT_P(1);
	uint64_t	and_count;
	uint64_t	or_count;

	CheckSameBitLength(a, b, "jaccard");
	pgs_and_or_count(VARBITS(a), VARBITS(b), VARBITBYTES(a), &and_count, &or_count);
	/* pgvector's convention: no common bit (including two empty sets) is distance 1 */
	if (and_count == 0)
		PG_RETURN_FLOAT8(1.0);
	PG_RETURN_FLOAT8(1.0 - (double) and_count / (double) or_count);
}

/* A real[] of per-dimension thresholds, checked against the vector's dims. */
static float *
GetThresholds(ArrayType *arr, int dim)
{
	int			n;
	float	   *t;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("bit_quantize thresholds must be a one-dimensional real[]")));
	if (ARR_ELEMTYPE(arr) != FLOAT4OID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("bit_quantize thresholds must be real[]")));
	if (ARR_HASNULL(arr) && array_contains_nulls(arr))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("bit_quantize thresholds cannot contain NULLs")));
	n = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	if (n != dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("bit_quantize: %d thresholds for a vector of %d dimensions", n, dim)));
	t = (float *) ARR_DATA_PTR(arr);
	for (int i = 0; i < n; i++)
		if (!isfinite(t[i]))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("bit_quantize thresholds must be finite")));
	return t;
}

static Datum
QuantizeVector(PgvVector *v, const float *t)
{
	VarBit	   *result;

	if (v->dim < 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("bit_quantize: vector must have at least 1 dimension")));
	result = NewVarBit(v->dim);
	pgs_quantize_f32(v->x, t, v->dim, VARBITS(result));
	PG_RETURN_VARBIT_P(result);
}

static Datum
QuantizeHalfvec(PgvHalfVector *v, const float *t)
{
	VarBit	   *result;

	if (v->dim < 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("bit_quantize: halfvec must have at least 1 dimension")));
	result = NewVarBit(v->dim);
	pgs_quantize_f16(v->x, t, v->dim, VARBITS(result));
	PG_RETURN_VARBIT_P(result);
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(pgsieve_bit_quantize_vector);
Datum
pgsieve_bit_quantize_vector(PG_FUNCTION_ARGS)
{
	return QuantizeVector(DatumGetPgvVector(PG_GETARG_DATUM(0)), NULL);
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(pgsieve_bit_quantize_vector_t);
Datum
pgsieve_bit_quantize_vector_t(PG_FUNCTION_ARGS)
{
	PgvVector  *v = DatumGetPgvVector(PG_GETARG_DATUM(0));

	return QuantizeVector(v, GetThresholds(PG_GETARG_ARRAYTYPE_P(1), v->dim));
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(pgsieve_bit_quantize_halfvec);
Datum
pgsieve_bit_quantize_halfvec(PG_FUNCTION_ARGS)
{
	return QuantizeHalfvec(DatumGetPgvHalfVector(PG_GETARG_DATUM(0)), NULL);
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(pgsieve_bit_quantize_halfvec_t);
Datum
pgsieve_bit_quantize_halfvec_t(PG_FUNCTION_ARGS)
{
	PgvHalfVector *v = DatumGetPgvHalfVector(PG_GETARG_DATUM(0));

	return QuantizeHalfvec(v, GetThresholds(PG_GETARG_ARRAYTYPE_P(1), v->dim));
}

/* ---- bit_thresholds aggregate: state float8[] = {count, sum_1 .. sum_d} ---- */

static ArrayType *
MakeFloat8Array(const double *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * n);

	for (int i = 0; i < n; i++)
		d[i] = Float8GetDatum(values[i]);
	return construct_array(d, n, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

/* The state's values (count first); n is the array length. */
static double *
StateValues(ArrayType *state, int *n)
{
	if (ARR_NDIM(state) != 1 || ARR_HASNULL(state) || ARR_ELEMTYPE(state) != FLOAT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("bit_thresholds: malformed aggregate state")));
	*n = ARR_DIMS(state)[0];
	return (double *) ARR_DATA_PTR(state);
}

/* Add one vector's floats to the state (creating it on the first row). */
static Datum
AccumFloats(ArrayType *state, const float *x, const uint16 *h, int dim)
{
	int			n;
	double	   *s = StateValues(state, &n);
	double	   *next;

	if (dim < 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("bit_thresholds: vector must have at least 1 dimension")));
	if (s[0] != 0 && n != dim + 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("bit_thresholds: different vector dimensions %d and %d", n - 1, dim)));
	next = palloc0(sizeof(double) * (dim + 1));
	if (s[0] != 0)
		memcpy(next, s, sizeof(double) * (dim + 1));
	next[0] += 1;
	for (int i = 0; i < dim; i++)
		next[i + 1] += x ? x[i] : pgs_f16_to_f32(h[i]);
	PG_RETURN_ARRAYTYPE_P(MakeFloat8Array(next, dim + 1));
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(pgsieve_bit_thresholds_accum);
Datum
pgsieve_bit_thresholds_accum(PG_FUNCTION_ARGS)
{
	PgvVector  *v = DatumGetPgvVector(PG_GETARG_DATUM(1));

	return AccumFloats(PG_GETARG_ARRAYTYPE_P(0), v->x, NULL, v->dim);
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(pgsieve_bit_thresholds_accum_half);
Datum
pgsieve_bit_thresholds_accum_half(PG_FUNCTION_ARGS)
{
	PgvHalfVector *v = DatumGetPgvHalfVector(PG_GETARG_DATUM(1));

	return AccumFloats(PG_GETARG_ARRAYTYPE_P(0), NULL, v->x, v->dim);
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(pgsieve_bit_thresholds_combine);
Datum
pgsieve_bit_thresholds_combine(PG_FUNCTION_ARGS)
{
	int			na,
				nb;
	double	   *a = StateValues(PG_GETARG_ARRAYTYPE_P(0), &na);
	double	   *b = StateValues(PG_GETARG_ARRAYTYPE_P(1), &nb);
	double	   *sum;

	if (a[0] == 0)
		PG_RETURN_ARRAYTYPE_P(PG_GETARG_ARRAYTYPE_P_COPY(1));
	if (b[0] == 0)
		PG_RETURN_ARRAYTYPE_P(PG_GETARG_ARRAYTYPE_P_COPY(0));
	if (na != nb)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("bit_thresholds: different vector dimensions %d and %d", na - 1, nb - 1)));
	sum = palloc(sizeof(double) * na);
	for (int i = 0; i < na; i++)
		sum[i] = a[i] + b[i];
	PG_RETURN_ARRAYTYPE_P(MakeFloat8Array(sum, na));
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(pgsieve_bit_thresholds_final);
Datum
pgsieve_bit_thresholds_final(PG_FUNCTION_ARGS)
{
	int			n;
	double	   *s = StateValues(PG_GETARG_ARRAYTYPE_P(0), &n);
	Datum	   *d;

	if (s[0] == 0)
		PG_RETURN_NULL();
	d = palloc(sizeof(Datum) * (n - 1));
	for (int i = 1; i < n; i++)
		d[i - 1] = Float4GetDatum((float) (s[i] / s[0]));
	PG_RETURN_ARRAYTYPE_P(construct_array(d, n - 1, FLOAT4OID, sizeof(float4), true, TYPALIGN_INT));
}

/* ---- asymmetric scoring: float query against a +-1 code ---- */

static void
CheckBitsForVector(VarBit *b, int dim)
{
	if (VARBITLEN(b) != dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("bit_ip: bit length %d does not match vector dimensions %d",
						VARBITLEN(b), dim)));
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(pgsieve_bit_ip_vector);
Datum
pgsieve_bit_ip_vector(PG_FUNCTION_ARGS)
{
	PgvVector  *q = DatumGetPgvVector(PG_GETARG_DATUM(0));
	VarBit	   *b = PG_GETARG_VARBIT_P(1);

	CheckBitsForVector(b, q->dim);
	PG_RETURN_FLOAT8(pgs_dot_bits(q->x, VARBITS(b), q->dim));
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(pgsieve_bit_ip_halfvec);
Datum
pgsieve_bit_ip_halfvec(PG_FUNCTION_ARGS)
{
	PgvHalfVector *q = DatumGetPgvHalfVector(PG_GETARG_DATUM(0));
	VarBit	   *b = PG_GETARG_VARBIT_P(1);
	float	   *x;

	CheckBitsForVector(b, q->dim);
	x = palloc(sizeof(float) * q->dim);
	for (int i = 0; i < q->dim; i++)
		x[i] = pgs_f16_to_f32(q->x[i]);
	PG_RETURN_FLOAT8(pgs_dot_bits(x, VARBITS(b), q->dim));
}
