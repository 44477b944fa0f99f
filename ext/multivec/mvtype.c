/*
 * mvtype.c — the multivec type: text and binary I/O, the type modifier,
 * format conversion, casts from and to pgvector's vector[] / halfvec[] and
 * real[][], and accessors.
 *
 * Every way into the type (text input, binary receive, casts, conversion)
 * ends in the same checks: 1 <= ntok <= MV_MAX_TOKENS, 1 <= dim <= MV_MAX_DIM,
 * total size under 1 GB, all tokens of one dim, no NULL, NaN or infinity,
 * and the column's type modifier.  Errors name the type.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "libpq/pqformat.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "parser/scansup.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "multivec.h"
#include "pgs_kernels.h"
#include "pgs_maxsim.h"
#include "pgvector_types.h"

/* indexed by MultiVecFormat; also the names the type modifier accepts */
static const char *const format_names[MV_NFORMATS] = {"float32", "float16", "int8"};

/* the longest prefix of an input literal quoted in an error message */
#define MV_ERROR_LIT_LEN 64

const char *
MultiVecFormatName(int format)
{
	if (format < 0 || format >= MV_NFORMATS)
		return "unknown";
	return format_names[format];
}

/* format code of a name (case-insensitive), or -1 */
static int
ParseFormatName(const char *name)
{
	for (int f = 0; f < MV_NFORMATS; f++)
		if (pg_strcasecmp(name, format_names[f]) == 0)
			return f;
	return -1;
}

static int
FormatFromName(const char *name)
{
	int			format = ParseFormatName(name);

	if (format < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown multivec format \"%s\"", name),
				 errhint("The multivec formats are float32, float16 and int8.")));
	return format;
}

/*
 * The limits of the type.  Called before anything of that shape is
 * allocated, so no input can ask for an absurd allocation.
 */
void
MultiVecCheckShape(int64 ntok, int64 dim, int format)
{
	if (ntok < 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("multivec must have at least one token")));
	if (ntok > MV_MAX_TOKENS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("multivec cannot have more than %d tokens", MV_MAX_TOKENS)));
	if (dim < 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("multivec must have at least 1 dimension")));
	if (dim > MV_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("multivec cannot have more than %d dimensions", MV_MAX_DIM)));
	/* unreachable with today's limits (8192 x 16000 float32 is 500 MB), kept with them */
	if (MultiVecSize(format, ntok, dim) > (int64) MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("multivec of %lld tokens of %lld dimensions is too large (the limit is 1 GB)",
						(long long) ntok, (long long) dim)));
}

MultiVec *
NewMultiVec(int ntok, int dim, int format)
{
	MultiVec   *mv;
	Size		size;

	MultiVecCheckShape(ntok, dim, format);
	size = (Size) MultiVecSize(format, ntok, dim);
	mv = (MultiVec *) palloc0(size);
	SET_VARSIZE(mv, size);
	mv->ntok = ntok;
	mv->dim = (int16) dim;
	mv->format = (uint8) format;
	return mv;
}

/*
 * All ntok * dim values as float32, token-major: the value's own array for
 * float32, else a dequantized copy (exact for float16; code * scale for
 * int8, the same product the kernels compute).
 */
const float *
MultiVecFloats(MultiVec *mv)
{
	size_t		n = (size_t) mv->ntok * mv->dim;
	float	   *x;

	if (mv->format == MV_FLOAT32)
		return MV_F32(mv);
	x = palloc(sizeof(float) * n);
	if (mv->format == MV_FLOAT16)
	{
		const uint16 *h = MV_F16(mv);

		for (size_t i = 0; i < n; i++)
			x[i] = pgs_f16_to_f32(h[i]);
	}
	else
	{
		const int8 *c = MV_I8(mv);
		const float *scale = MV_SCALES(mv);

		for (int t = 0; t < mv->ntok; t++)
			for (int k = 0; k < mv->dim; k++)
				x[(size_t) t * mv->dim + k] = (float) c[(size_t) t * mv->dim + k] * scale[t];
	}
	return x;
}

static void
CheckFloat(float x)
{
	if (isnan(x))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("NaN not allowed in multivec")));
	if (isinf(x))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("infinite value not allowed in multivec")));
}

/* the same for an IEEE binary16 bit pattern (exponent all ones: Inf or NaN) */
static void
CheckHalf(uint16 h)
{
	if ((h & 0x7C00) == 0x7C00)
		CheckFloat(pgs_f16_to_f32(h));
}

/* float32 -> binary16, refusing values beyond float16's range (+-65504) */
static uint16
FloatToHalf(float x, const char *target)
{
	uint16		h = pgs_f32_to_f16(x);

	if ((h & 0x7C00) == 0x7C00)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("multivec value %g is out of range for %s", x, target)));
	return h;
}

/*
 * A value of the given format from ntok * dim float32s, each checked to be
 * finite.  int8 quantizes each token with the shared kernel, so the Python
 * client's pgsieve.kernels.quantize_i8 gives the same bytes.
 */
static MultiVec *
MultiVecFromFloats(const float *x, int ntok, int dim, int format)
{
	MultiVec   *mv = NewMultiVec(ntok, dim, format);

	for (int t = 0; t < ntok; t++)
	{
		const float *xt = x + (size_t) t * dim;

		CHECK_FOR_INTERRUPTS();
		for (int k = 0; k < dim; k++)
			CheckFloat(xt[k]);
		switch (format)
		{
			case MV_FLOAT32:
				memcpy(MV_F32(mv) + (size_t) t * dim, xt, sizeof(float) * dim);
				break;
			case MV_FLOAT16:
				for (int k = 0; k < dim; k++)
					MV_F16(mv)[(size_t) t * dim + k] = FloatToHalf(xt[k], "the float16 format");
				break;
			case MV_INT8:
				MV_SCALES(mv)[t] = pgs_quantize_i8_token(xt, dim, MV_I8(mv) + (size_t) t * dim);
				break;
		}
	}
	return mv;
}

/* mv in another format (mv itself when it already has that format) */
static MultiVec *
MultiVecConvert(MultiVec *mv, int format)
{
	if (mv->format == format)
		return mv;
	return MultiVecFromFloats(MultiVecFloats(mv), mv->ntok, mv->dim, format);
}

static void
CheckTypmodDim(int dim, int32 typmod)
{
	if (typmod >= 0 && dim != MV_TYPMOD_DIM(typmod))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("expected %d dimensions for multivec, not %d", MV_TYPMOD_DIM(typmod), dim)));
}

/* the format a type modifier asks for, or dflt when it names none */
static int
TypmodFormat(int32 typmod, int dflt)
{
	if (typmod < 0 || MV_TYPMOD_FORMAT(typmod) < 0)
		return dflt;
	return MV_TYPMOD_FORMAT(typmod);
}

/* check the dimensions against the type modifier and convert to its format */
static MultiVec *
MultiVecApplyTypmod(MultiVec *mv, int32 typmod)
{
	CheckTypmodDim(mv->dim, typmod);
	return MultiVecConvert(mv, TypmodFormat(typmod, mv->format));
}

/* floats -> a value for a column of type modifier typmod (float32 if it has no format) */
static MultiVec *
MultiVecForTypmod(const float *x, int ntok, int dim, int32 typmod)
{
	CheckTypmodDim(dim, typmod);
	return MultiVecFromFloats(x, ntok, dim, TypmodFormat(typmod, MV_FLOAT32));
}

/* ---- text I/O ---------------------------------------------------------- */

/* the start of a literal, for error messages: inputs can be megabytes long */
static char *
LiteralForMessage(const char *lit)
{
	size_t		len = strlen(lit);

	if (len <= MV_ERROR_LIT_LEN)
		return pstrdup(lit);
	return psprintf("%s...", pnstrdup(lit, pg_mbcliplen(lit, len, MV_ERROR_LIT_LEN)));
}

#define MV_SYNTAX_ERROR(lit, ...) \
	ereport(ERROR, \
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION), \
			 errmsg("invalid input syntax for type multivec: \"%s\"", LiteralForMessage(lit)), \
			 errdetail(__VA_ARGS__)))

static inline char *
SkipSpace(char *p)
{
	while (scanner_isspace(*p))
		p++;
	return p;
}

/* one number at *p (after optional white space), advancing *p past it */
static float
ParseFloat(char **p, const char *lit)
{
	char	   *start = SkipSpace(*p);
	char	   *end;
	float		x;

	if (*start == '\0' || *start == ',' || *start == ']' || *start == '[')
		MV_SYNTAX_ERROR(lit, "Expected a number.");
	errno = 0;
	x = strtof(start, &end);
	if (end == start)
		MV_SYNTAX_ERROR(lit, "Expected a number.");
	if (errno == ERANGE && isinf(x))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("\"%s\" is out of range for type multivec", pnstrdup(start, end - start))));
	CheckFloat(x);
	*p = end;
	return x;
}

/*
 * [[1,2,3],[4,5,6]]: tokens as bracketed lists of numbers, white space
 * anywhere between elements.  Values are collected as float32 and then
 * stored in the type modifier's format.
 */
PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_in);
Datum
multivec_in(PG_FUNCTION_ARGS)
{
	char	   *lit = PG_GETARG_CSTRING(0);
	int32		typmod = PG_GETARG_INT32(2);
	char	   *p = SkipSpace(lit);
	size_t		cap = 64;
	size_t		used = 0;
	float	   *x = palloc(sizeof(float) * cap);
	int			ntok = 0;
	int			dim = -1;

	if (*p != '[')
		MV_SYNTAX_ERROR(lit, "multivec must start with \"[\".");
	p = SkipSpace(p + 1);
	if (*p == ']')
		MultiVecCheckShape(0, 1, MV_FLOAT32);	/* "at least one token" */
	for (;;)
	{
		int			n = 0;

		p = SkipSpace(p);
		if (*p != '[')
			MV_SYNTAX_ERROR(lit, "Each multivec token must be a bracketed list of numbers, as in [[1,2],[3,4]].");
		if (ntok == MV_MAX_TOKENS)
			MultiVecCheckShape(ntok + 1, 1, MV_FLOAT32);	/* "too many tokens" */
		p = SkipSpace(p + 1);
		if (*p == ']')
			MultiVecCheckShape(1, 0, MV_FLOAT32);	/* "at least 1 dimension" */
		for (;;)
		{
			if (dim >= 0 && n == dim)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("multivec tokens must all have the same dimensions"),
						 errdetail("Token 1 has %d dimensions, token %d has more.", dim, ntok + 1)));
			if (n == MV_MAX_DIM)
				MultiVecCheckShape(1, n + 1, MV_FLOAT32);	/* "too many dimensions" */
			if (used == cap)
			{
				/* at most MV_MAX_TOKENS * MV_MAX_DIM floats (500 MB): the limits above hold it */
				cap = Min(cap * 2, (size_t) MV_MAX_TOKENS * MV_MAX_DIM);
				x = repalloc(x, sizeof(float) * cap);
			}
			x[used++] = ParseFloat(&p, lit);
			n++;
			p = SkipSpace(p);
			if (*p == ',')
				p++;
			else if (*p == ']')
				break;
			else
				MV_SYNTAX_ERROR(lit, "Expected \",\" or \"]\" after a number.");
		}
		if (dim < 0)
			dim = n;
		else if (n != dim)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("multivec tokens must all have the same dimensions"),
					 errdetail("Token 1 has %d dimensions, token %d has %d.", dim, ntok + 1, n)));
		ntok++;
		p = SkipSpace(p + 1);
		if (*p == ',')
			p++;
		else if (*p == ']')
			break;
		else
			MV_SYNTAX_ERROR(lit, "Expected \",\" or \"]\" after a token.");
		CHECK_FOR_INTERRUPTS();
	}
	p = SkipSpace(p + 1);
	if (*p != '\0')
		MV_SYNTAX_ERROR(lit, "Junk after closing right bracket.");

	PG_RETURN_MULTIVEC_P(MultiVecForTypmod(x, ntok, dim, typmod));
}

/* [[1,2],[3,4]] with PostgreSQL's shortest exact float formatting (as pgvector) */
PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_out);
Datum
multivec_out(PG_FUNCTION_ARGS)
{
	MultiVec   *mv = PG_GETARG_MULTIVEC_P(0);
	int64		maxlen = 3 + (int64) mv->ntok * (3 + (int64) mv->dim * (FLOAT_SHORTEST_DECIMAL_LEN + 1));
	const float *x;
	char	   *buf;
	char	   *ptr;

	if (maxlen > (int64) MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("multivec of %d tokens of %d dimensions is too large for text output",
						mv->ntok, mv->dim),
				 errhint("Use binary output, e.g. COPY ... TO ... WITH (FORMAT binary).")));
	x = MultiVecFloats(mv);
	buf = ptr = palloc(maxlen);
	*ptr++ = '[';
	for (int t = 0; t < mv->ntok; t++)
	{
		if (t > 0)
			*ptr++ = ',';
		*ptr++ = '[';
		for (int k = 0; k < mv->dim; k++)
		{
			if (k > 0)
				*ptr++ = ',';
			ptr += float_to_shortest_decimal_bufn(x[(size_t) t * mv->dim + k], ptr);
		}
		*ptr++ = ']';
		CHECK_FOR_INTERRUPTS();
	}
	*ptr++ = ']';
	*ptr = '\0';
	PG_RETURN_CSTRING(buf);
}

/* ---- type modifier ----------------------------------------------------- */

/* multivec(dim) or multivec(dim, format); format an identifier or a string */
PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_typmod_in);
Datum
multivec_typmod_in(PG_FUNCTION_ARGS)
{
	ArrayType  *ta = PG_GETARG_ARRAYTYPE_P(0);
	Datum	   *elems;
	int			n;
	char	   *s;
	char	   *end;
	long		dim;
	int			format = -1;

	if (ARR_NDIM(ta) != 1 || ARR_HASNULL(ta))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid type modifier for multivec")));
	deconstruct_array(ta, CSTRINGOID, -2, false, TYPALIGN_CHAR, &elems, NULL, &n);
	if (n < 1 || n > 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid type modifier for multivec"),
				 errhint("Use multivec(dim) or multivec(dim, format), format one of float32, float16, int8.")));
	s = DatumGetCString(elems[0]);
	errno = 0;
	dim = strtol(s, &end, 10);
	if (end == s || *end != '\0' || errno == ERANGE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid multivec dimensions \"%s\"", s),
				 errhint("Use multivec(dim) or multivec(dim, format), format one of float32, float16, int8.")));
	if (dim < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dimensions for type multivec must be at least 1")));
	if (dim > MV_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dimensions for type multivec cannot exceed %d", MV_MAX_DIM)));
	if (n == 2)
		format = FormatFromName(DatumGetCString(elems[1]));
	PG_RETURN_INT32(MV_MAKE_TYPMOD(dim, format));
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_typmod_out);
Datum
multivec_typmod_out(PG_FUNCTION_ARGS)
{
	int32		typmod = PG_GETARG_INT32(0);

	if (typmod < 0)
		PG_RETURN_CSTRING(pstrdup(""));
	if (MV_TYPMOD_FORMAT(typmod) < 0)
		PG_RETURN_CSTRING(psprintf("(%d)", MV_TYPMOD_DIM(typmod)));
	PG_RETURN_CSTRING(psprintf("(%d,%s)", MV_TYPMOD_DIM(typmod),
							   MultiVecFormatName(MV_TYPMOD_FORMAT(typmod))));
}

/* multivec(multivec, int4, bool): the length-coercion cast a typmod'ed column applies */
PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_typmod_cast);
Datum
multivec_typmod_cast(PG_FUNCTION_ARGS)
{
	PG_RETURN_MULTIVEC_P(MultiVecApplyTypmod(PG_GETARG_MULTIVEC_P(0), PG_GETARG_INT32(1)));
}

/* ---- binary I/O -------------------------------------------------------- */

/*
 * Wire format (network byte order): int32 ntok, int16 dim, int16 format
 * (0 float32, 1 float16, 2 int8); for int8, ntok float4 scales; then
 * ntok * dim elements: float4, uint16 binary16 bits or int8 codes.
 */
#define MV_WIRE_HEADER 8

PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_recv);
Datum
multivec_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int32		typmod = PG_GETARG_INT32(2);
	int			remaining = buf->len - buf->cursor;
	int32		ntok;
	int16		dim;
	int16		format;
	int64		need;
	MultiVec   *mv;

	if (remaining < MV_WIRE_HEADER)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid binary data for multivec: %d bytes, shorter than the %d-byte header",
						remaining, MV_WIRE_HEADER)));
	ntok = (int32) pq_getmsgint(buf, 4);
	dim = (int16) pq_getmsgint(buf, 2);
	format = (int16) pq_getmsgint(buf, 2);
	if (format < 0 || format >= MV_NFORMATS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid multivec format code %d in binary data", format),
				 errdetail("The format codes are 0 (float32), 1 (float16) and 2 (int8).")));
	MultiVecCheckShape(ntok, dim, format);
	need = MultiVecSize(format, ntok, dim) - MV_HEADER_SIZE;
	if (buf->len - buf->cursor != need)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid binary data for multivec: %d tokens of %d dimensions in %s need %lld bytes after the header, got %d",
						ntok, dim, MultiVecFormatName(format), (long long) need,
						buf->len - buf->cursor)));

	mv = NewMultiVec(ntok, dim, format);
	if (format == MV_INT8)
	{
		for (int t = 0; t < ntok; t++)
		{
			float		s = pq_getmsgfloat4(buf);

			if (!isfinite(s) || s < 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
						 errmsg("multivec int8 scales must be finite and non-negative")));
			MV_SCALES(mv)[t] = s == 0 ? 0.0f : s;	/* no -0 */
		}
	}
	for (int t = 0; t < ntok; t++)
	{
		size_t		off = (size_t) t * dim;

		CHECK_FOR_INTERRUPTS();
		switch (format)
		{
			case MV_FLOAT32:
				for (int k = 0; k < dim; k++)
				{
					float		x = pq_getmsgfloat4(buf);

					CheckFloat(x);
					MV_F32(mv)[off + k] = x;
				}
				break;
			case MV_FLOAT16:
				for (int k = 0; k < dim; k++)
				{
					uint16		h = (uint16) pq_getmsgint(buf, 2);

					CheckHalf(h);
					MV_F16(mv)[off + k] = h;
				}
				break;
			case MV_INT8:
				pq_copymsgbytes(buf, (char *) (MV_I8(mv) + off), dim);
				for (int k = 0; k < dim; k++)
					if (MV_I8(mv)[off + k] == -128)
						ereport(ERROR,
								(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
								 errmsg("multivec int8 codes must be between -127 and 127")));
				break;
		}
	}
	PG_RETURN_MULTIVEC_P(MultiVecApplyTypmod(mv, typmod));
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_send);
Datum
multivec_send(PG_FUNCTION_ARGS)
{
	MultiVec   *mv = PG_GETARG_MULTIVEC_P(0);
	size_t		n = (size_t) mv->ntok * mv->dim;
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendint32(&buf, mv->ntok);
	pq_sendint16(&buf, mv->dim);
	pq_sendint16(&buf, mv->format);
	switch (mv->format)
	{
		case MV_FLOAT32:
			for (size_t i = 0; i < n; i++)
				pq_sendfloat4(&buf, MV_F32(mv)[i]);
			break;
		case MV_FLOAT16:
			for (size_t i = 0; i < n; i++)
				pq_sendint16(&buf, MV_F16(mv)[i]);
			break;
		case MV_INT8:
			for (int t = 0; t < mv->ntok; t++)
				pq_sendfloat4(&buf, MV_SCALES(mv)[t]);
			pq_sendbytes(&buf, (const char *) MV_I8(mv), n);
			break;
		default:
			elog(ERROR, "corrupt multivec: format code %d", mv->format);
	}
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* ---- accessors and conversion ------------------------------------------ */

/* the fixed header only: detoasts (or decompresses) just its first bytes */
static MultiVec *
GetHeader(FunctionCallInfo fcinfo)
{
	return (MultiVec *) PG_DETOAST_DATUM_SLICE(PG_GETARG_DATUM(0), 0,
											   MV_HEADER_SIZE - VARHDRSZ);
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_ntok);
Datum
multivec_ntok(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(GetHeader(fcinfo)->ntok);
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_dims);
Datum
multivec_dims(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(GetHeader(fcinfo)->dim);
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_format);
Datum
multivec_format(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(MultiVecFormatName(GetHeader(fcinfo)->format)));
}

PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_convert);
Datum
multivec_convert(PG_FUNCTION_ARGS)
{
	MultiVec   *mv = PG_GETARG_MULTIVEC_P(0);
	int			format = FormatFromName(text_to_cstring(PG_GETARG_TEXT_PP(1)));

	PG_RETURN_MULTIVEC_P(MultiVecConvert(mv, format));
}

/* ---- casts from arrays ------------------------------------------------- */

/*
 * The elements of a one-dimensional array of tokens (vector[] or halfvec[]),
 * rejecting empty, multi-dimensional and NULL-containing arrays.
 */
static Datum *
TokenArrayElements(ArrayType *arr, const char *what, int *ntok)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;

	if (ARR_NDIM(arr) == 0)
		MultiVecCheckShape(0, 1, MV_FLOAT32);	/* "at least one token" */
	if (ARR_NDIM(arr) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("a %s cast to multivec must be one-dimensional, one element per token", what)));
	if (array_contains_nulls(arr))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("multivec tokens cannot be NULL")));
	MultiVecCheckShape(ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr)), 1, MV_FLOAT32);
	get_typlenbyvalalign(ARR_ELEMTYPE(arr), &typlen, &typbyval, &typalign);
	deconstruct_array(arr, ARR_ELEMTYPE(arr), typlen, typbyval, typalign, &elems, NULL, ntok);
	return elems;
}

static void
TokenDimsMismatch(int dim, int t, int tdim)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_EXCEPTION),
			 errmsg("multivec tokens must all have the same dimensions"),
			 errdetail("Token 1 has %d dimensions, token %d has %d.", dim, t + 1, tdim)));
}

/* vector[] -> multivec (float32, or the type modifier's format) */
PGDLLEXPORT PG_FUNCTION_INFO_V1(vector_array_to_multivec);
Datum
vector_array_to_multivec(PG_FUNCTION_ARGS)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
	int32		typmod = PG_GETARG_INT32(1);
	int			ntok;
	Datum	   *elems = TokenArrayElements(arr, "vector[]", &ntok);
	int			dim = DatumGetPgvVector(elems[0])->dim;
	float	   *x;

	MultiVecCheckShape(ntok, dim, MV_FLOAT32);
	x = palloc(sizeof(float) * (size_t) ntok * dim);
	for (int t = 0; t < ntok; t++)
	{
		PgvVector  *v = DatumGetPgvVector(elems[t]);

		if (v->dim != dim)
			TokenDimsMismatch(dim, t, v->dim);
		memcpy(x + (size_t) t * dim, v->x, sizeof(float) * dim);
	}
	PG_RETURN_MULTIVEC_P(MultiVecForTypmod(x, ntok, dim, typmod));
}

/* halfvec[] -> multivec: float16, bit for bit (or the type modifier's format) */
PGDLLEXPORT PG_FUNCTION_INFO_V1(halfvec_array_to_multivec);
Datum
halfvec_array_to_multivec(PG_FUNCTION_ARGS)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
	int32		typmod = PG_GETARG_INT32(1);
	int			ntok;
	Datum	   *elems = TokenArrayElements(arr, "halfvec[]", &ntok);
	int			dim = DatumGetPgvHalfVector(elems[0])->dim;
	MultiVec   *mv;

	CheckTypmodDim(dim, typmod);
	mv = NewMultiVec(ntok, dim, MV_FLOAT16);
	for (int t = 0; t < ntok; t++)
	{
		PgvHalfVector *v = DatumGetPgvHalfVector(elems[t]);

		if (v->dim != dim)
			TokenDimsMismatch(dim, t, v->dim);
		for (int k = 0; k < dim; k++)
			CheckHalf(v->x[k]);
		memcpy(MV_F16(mv) + (size_t) t * dim, v->x, sizeof(uint16) * dim);
	}
	PG_RETURN_MULTIVEC_P(MultiVecApplyTypmod(mv, typmod));
}

/* real[][] (one row per token) -> multivec */
PGDLLEXPORT PG_FUNCTION_INFO_V1(array_to_multivec);
Datum
array_to_multivec(PG_FUNCTION_ARGS)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
	int32		typmod = PG_GETARG_INT32(1);

	if (ARR_NDIM(arr) == 0)
		MultiVecCheckShape(0, 1, MV_FLOAT32);	/* "at least one token" */
	if (ARR_NDIM(arr) != 2)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("a real[] cast to multivec must be two-dimensional, one row per token")));
	if (ARR_ELEMTYPE(arr) != FLOAT4OID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("an array cast to multivec must be real[]")));
	if (array_contains_nulls(arr))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("multivec elements cannot be NULL")));
	PG_RETURN_MULTIVEC_P(MultiVecForTypmod((const float *) ARR_DATA_PTR(arr),
										   ARR_DIMS(arr)[0], ARR_DIMS(arr)[1], typmod));
}

/* ---- casts to arrays --------------------------------------------------- */

/* element type of the calling function's array result (pgvector's vector or halfvec) */
typedef struct ElemTypeInfo
{
	Oid			elemtype;
	int16		typlen;
	bool		typbyval;
	char		typalign;
} ElemTypeInfo;

/*
 * pgvector's type OIDs are not fixed; the SQL declaration of the cast
 * function (RETURNS vector[] / halfvec[]) names them, so read them from
 * pg_proc once per call site.
 */
static ElemTypeInfo *
ResultElemType(FunctionCallInfo fcinfo)
{
	ElemTypeInfo *info = (ElemTypeInfo *) fcinfo->flinfo->fn_extra;

	if (info == NULL)
	{
		Oid			rettype = get_func_rettype(fcinfo->flinfo->fn_oid);

		info = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(ElemTypeInfo));
		info->elemtype = get_element_type(rettype);
		if (!OidIsValid(info->elemtype))
			elog(ERROR, "multivec cast function must return an array, not type %u", rettype);
		get_typlenbyvalalign(info->elemtype, &info->typlen, &info->typbyval, &info->typalign);
		fcinfo->flinfo->fn_extra = info;
	}
	return info;
}

/* multivec -> vector[] (one vector per token; dequantized values) */
PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_to_vector_array);
Datum
multivec_to_vector_array(PG_FUNCTION_ARGS)
{
	MultiVec   *mv = PG_GETARG_MULTIVEC_P(0);
	ElemTypeInfo *info = ResultElemType(fcinfo);
	const float *x = MultiVecFloats(mv);
	Datum	   *elems = palloc(sizeof(Datum) * mv->ntok);
	Size		size = offsetof(PgvVector, x) + sizeof(float) * mv->dim;

	for (int t = 0; t < mv->ntok; t++)
	{
		PgvVector  *v = palloc0(size);

		SET_VARSIZE(v, size);
		v->dim = mv->dim;
		memcpy(v->x, x + (size_t) t * mv->dim, sizeof(float) * mv->dim);
		elems[t] = PointerGetDatum(v);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, mv->ntok, info->elemtype, info->typlen,
										  info->typbyval, info->typalign));
}

/* multivec -> halfvec[] (float16 bit for bit; other formats rounded, range-checked) */
PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_to_halfvec_array);
Datum
multivec_to_halfvec_array(PG_FUNCTION_ARGS)
{
	MultiVec   *mv = PG_GETARG_MULTIVEC_P(0);
	ElemTypeInfo *info = ResultElemType(fcinfo);
	const float *x = mv->format == MV_FLOAT16 ? NULL : MultiVecFloats(mv);
	Datum	   *elems = palloc(sizeof(Datum) * mv->ntok);
	Size		size = offsetof(PgvHalfVector, x) + sizeof(uint16) * mv->dim;

	for (int t = 0; t < mv->ntok; t++)
	{
		PgvHalfVector *v = palloc0(size);
		size_t		off = (size_t) t * mv->dim;

		SET_VARSIZE(v, size);
		v->dim = mv->dim;
		if (x == NULL)
			memcpy(v->x, MV_F16(mv) + off, sizeof(uint16) * mv->dim);
		else
			for (int k = 0; k < mv->dim; k++)
				v->x[k] = FloatToHalf(x[off + k], "halfvec");
		elems[t] = PointerGetDatum(v);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, mv->ntok, info->elemtype, info->typlen,
										  info->typbyval, info->typalign));
}

/*
 * multivec -> real[][] (ntok rows of dim).  Built directly rather than
 * through construct_md_array, whose Datum array would need 8 bytes per
 * element.
 */
PGDLLEXPORT PG_FUNCTION_INFO_V1(multivec_to_float4_array);
Datum
multivec_to_float4_array(PG_FUNCTION_ARGS)
{
	MultiVec   *mv = PG_GETARG_MULTIVEC_P(0);
	const float *x = MultiVecFloats(mv);
	size_t		n = (size_t) mv->ntok * mv->dim;
	Size		size = ARR_OVERHEAD_NONULLS(2) + sizeof(float) * n;
	ArrayType  *result;

	if (size > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("multivec of %d tokens of %d dimensions is too large for real[]",
						mv->ntok, mv->dim)));
	result = (ArrayType *) palloc0(size);
	SET_VARSIZE(result, size);
	result->ndim = 2;
	result->dataoffset = 0;
	result->elemtype = FLOAT4OID;
	ARR_DIMS(result)[0] = mv->ntok;
	ARR_DIMS(result)[1] = mv->dim;
	ARR_LBOUND(result)[0] = 1;
	ARR_LBOUND(result)[1] = 1;
	memcpy(ARR_DATA_PTR(result), x, sizeof(float) * n);
	PG_RETURN_ARRAYTYPE_P(result);
}
