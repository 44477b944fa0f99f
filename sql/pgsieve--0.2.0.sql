-- pgsieve 0.2.0 — binary vectors (binary_scan), learned sparse (sparse_block), multivectors (multivec, MUVERA, multivec_fde).
-- Secure-script rules: no OR REPLACE / IF NOT EXISTS; pgvector's types and
-- operators resolve through the schemas CREATE EXTENSION puts on the path.
-- Every C function states its volatility and parallel safety (access method
-- handlers as core's: VOLATILE STRICT PARALLEL SAFE; opclass support
-- functions return a constant: IMMUTABLE); SQL or PL functions, if any, need
-- SET search_path = pg_catalog, pg_temp.  tests/test_sql_script_lint.py checks.

\echo Use "CREATE EXTENSION pgsieve" to load this file. \quit

-- ---------------------------------------------------------------------------
-- kernels
-- ---------------------------------------------------------------------------

CREATE FUNCTION pgsieve_kernel_level() RETURNS text
	AS 'MODULE_PATHNAME', 'pgsieve_kernel_level' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION pgsieve_kernel_level() IS
	'SIMD level the shared kernels dispatched to on this CPU: scalar, popcnt, avx2 or avx512';

-- ---------------------------------------------------------------------------
-- bit functions (pgvector owns the <~> and <%> operators on bit)
-- ---------------------------------------------------------------------------

CREATE FUNCTION hamming(bit, bit) RETURNS integer
	AS 'MODULE_PATHNAME', 'pgsieve_hamming' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION hamming(bit, bit) IS 'Hamming distance of two bit strings of equal length (SIMD)';

CREATE FUNCTION jaccard(bit, bit) RETURNS float8
	AS 'MODULE_PATHNAME', 'pgsieve_jaccard' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION jaccard(bit, bit) IS 'Jaccard distance of two bit strings of equal length (SIMD)';

CREATE FUNCTION bit_quantize(vector) RETURNS bit
	AS 'MODULE_PATHNAME', 'pgsieve_bit_quantize_vector' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION bit_quantize(halfvec) RETURNS bit
	AS 'MODULE_PATHNAME', 'pgsieve_bit_quantize_halfvec' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION bit_quantize(vector, real[]) RETURNS bit
	AS 'MODULE_PATHNAME', 'pgsieve_bit_quantize_vector_t' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION bit_quantize(halfvec, real[]) RETURNS bit
	AS 'MODULE_PATHNAME', 'pgsieve_bit_quantize_halfvec_t' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION bit_quantize(vector) IS 'Sign quantization: bit i = x_i > 0 (numpy packbits order, as pgvector binary_quantize)';
COMMENT ON FUNCTION bit_quantize(vector, real[]) IS 'Threshold quantization: bit i = x_i > t_i';

CREATE FUNCTION bit_thresholds_accum(float8[], vector) RETURNS float8[]
	AS 'MODULE_PATHNAME', 'pgsieve_bit_thresholds_accum' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION bit_thresholds_accum(float8[], halfvec) RETURNS float8[]
	AS 'MODULE_PATHNAME', 'pgsieve_bit_thresholds_accum_half' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION bit_thresholds_combine(float8[], float8[]) RETURNS float8[]
	AS 'MODULE_PATHNAME', 'pgsieve_bit_thresholds_combine' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION bit_thresholds_final(float8[]) RETURNS real[]
	AS 'MODULE_PATHNAME', 'pgsieve_bit_thresholds_final' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE AGGREGATE bit_thresholds(vector) (
	SFUNC = bit_thresholds_accum, STYPE = float8[], FINALFUNC = bit_thresholds_final,
	COMBINEFUNC = bit_thresholds_combine, INITCOND = '{0}', PARALLEL = SAFE);
CREATE AGGREGATE bit_thresholds(halfvec) (
	SFUNC = bit_thresholds_accum, STYPE = float8[], FINALFUNC = bit_thresholds_final,
	COMBINEFUNC = bit_thresholds_combine, INITCOND = '{0}', PARALLEL = SAFE);
COMMENT ON AGGREGATE bit_thresholds(vector) IS 'Per-dimension means, the thresholds of mean binary quantization';

CREATE FUNCTION bit_ip(vector, bit) RETURNS float8
	AS 'MODULE_PATHNAME', 'pgsieve_bit_ip_vector' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION bit_ip(halfvec, bit) RETURNS float8
	AS 'MODULE_PATHNAME', 'pgsieve_bit_ip_halfvec' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION bit_ip(vector, bit) IS 'Asymmetric score of a float query against a binary code: sum q_i * (2 b_i - 1)';

-- ---------------------------------------------------------------------------
-- binary_scan index access method
-- ---------------------------------------------------------------------------

CREATE FUNCTION binary_scan_handler(internal) RETURNS index_am_handler
	AS 'MODULE_PATHNAME', 'binary_scan_handler' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
CREATE ACCESS METHOD binary_scan TYPE INDEX HANDLER binary_scan_handler;
COMMENT ON ACCESS METHOD binary_scan IS
	'SIMD Hamming scan over packed binary codes, exact re-rank of the best candidates, rows in exact distance order';

CREATE FUNCTION binary_scan_vector_support(internal) RETURNS internal
	AS 'MODULE_PATHNAME', 'binary_scan_vector_support' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION binary_scan_halfvec_support(internal) RETURNS internal
	AS 'MODULE_PATHNAME', 'binary_scan_halfvec_support' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION binary_scan_bit_support(internal) RETURNS internal
	AS 'MODULE_PATHNAME', 'binary_scan_bit_support' LANGUAGE C IMMUTABLE PARALLEL SAFE;

-- strategy numbers name the distance: 1 L2, 2 negative inner product, 3 cosine, 4 Hamming
CREATE OPERATOR CLASS vector_l2_ops DEFAULT FOR TYPE vector USING binary_scan AS
	OPERATOR 1 <-> (vector, vector) FOR ORDER BY float_ops,
	FUNCTION 1 binary_scan_vector_support(internal);
CREATE OPERATOR CLASS vector_ip_ops FOR TYPE vector USING binary_scan AS
	OPERATOR 2 <#> (vector, vector) FOR ORDER BY float_ops,
	FUNCTION 1 binary_scan_vector_support(internal);
CREATE OPERATOR CLASS vector_cosine_ops FOR TYPE vector USING binary_scan AS
	OPERATOR 3 <=> (vector, vector) FOR ORDER BY float_ops,
	FUNCTION 1 binary_scan_vector_support(internal);

CREATE OPERATOR CLASS halfvec_l2_ops DEFAULT FOR TYPE halfvec USING binary_scan AS
	OPERATOR 1 <-> (halfvec, halfvec) FOR ORDER BY float_ops,
	FUNCTION 1 binary_scan_halfvec_support(internal);
CREATE OPERATOR CLASS halfvec_ip_ops FOR TYPE halfvec USING binary_scan AS
	OPERATOR 2 <#> (halfvec, halfvec) FOR ORDER BY float_ops,
	FUNCTION 1 binary_scan_halfvec_support(internal);
CREATE OPERATOR CLASS halfvec_cosine_ops FOR TYPE halfvec USING binary_scan AS
	OPERATOR 3 <=> (halfvec, halfvec) FOR ORDER BY float_ops,
	FUNCTION 1 binary_scan_halfvec_support(internal);

CREATE OPERATOR CLASS bit_hamming_ops DEFAULT FOR TYPE bit USING binary_scan AS
	OPERATOR 4 <~> (bit, bit) FOR ORDER BY float_ops,
	FUNCTION 1 binary_scan_bit_support(internal);

-- ---------------------------------------------------------------------------
-- sparse_block index access method (Seismic) over pgvector's sparsevec
-- ---------------------------------------------------------------------------

CREATE FUNCTION sparse_block_handler(internal) RETURNS index_am_handler
	AS 'MODULE_PATHNAME', 'sparse_block_handler' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
CREATE ACCESS METHOD sparse_block TYPE INDEX HANDLER sparse_block_handler;
COMMENT ON ACCESS METHOD sparse_block IS
	'Seismic-style blocked inverted index for learned sparse (SPLADE) and BM25 vectors, ORDER BY emb <#> q';

CREATE OPERATOR CLASS sparsevec_ip_ops DEFAULT FOR TYPE sparsevec USING sparse_block AS
	OPERATOR 1 <#> (sparsevec, sparsevec) FOR ORDER BY float_ops;

-- ---------------------------------------------------------------------------
-- multivec: multivector (late interaction) type and MaxSim
-- ---------------------------------------------------------------------------

CREATE TYPE multivec;

CREATE FUNCTION multivec_in(cstring, oid, integer) RETURNS multivec
	AS 'MODULE_PATHNAME', 'multivec_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION multivec_out(multivec) RETURNS cstring
	AS 'MODULE_PATHNAME', 'multivec_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION multivec_typmod_in(cstring[]) RETURNS integer
	AS 'MODULE_PATHNAME', 'multivec_typmod_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION multivec_typmod_out(integer) RETURNS cstring
	AS 'MODULE_PATHNAME', 'multivec_typmod_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION multivec_recv(internal, oid, integer) RETURNS multivec
	AS 'MODULE_PATHNAME', 'multivec_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION multivec_send(multivec) RETURNS bytea
	AS 'MODULE_PATHNAME', 'multivec_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE multivec (
	INPUT = multivec_in,
	OUTPUT = multivec_out,
	TYPMOD_IN = multivec_typmod_in,
	TYPMOD_OUT = multivec_typmod_out,
	RECEIVE = multivec_recv,
	SEND = multivec_send,
	STORAGE = external,
	ALIGNMENT = int4
);
COMMENT ON TYPE multivec IS
	'Multivector: 1-8192 tokens of 1-16000 dimensions, stored as float32, float16 or int8 with a scale per token; multivec(dim [, format])';

-- length coercion: a multivec(dim [, format]) column checks dim and converts the format
CREATE FUNCTION multivec(multivec, integer, boolean) RETURNS multivec
	AS 'MODULE_PATHNAME', 'multivec_typmod_cast' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE CAST (multivec AS multivec) WITH FUNCTION multivec(multivec, integer, boolean) AS IMPLICIT;

CREATE FUNCTION multivec_ntok(multivec) RETURNS integer
	AS 'MODULE_PATHNAME', 'multivec_ntok' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION multivec_dims(multivec) RETURNS integer
	AS 'MODULE_PATHNAME', 'multivec_dims' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION multivec_format(multivec) RETURNS text
	AS 'MODULE_PATHNAME', 'multivec_format' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION multivec_convert(multivec, text) RETURNS multivec
	AS 'MODULE_PATHNAME', 'multivec_convert' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION multivec_ntok(multivec) IS 'Number of tokens';
COMMENT ON FUNCTION multivec_dims(multivec) IS 'Dimensions of each token';
COMMENT ON FUNCTION multivec_format(multivec) IS 'Storage format: float32, float16 or int8';
COMMENT ON FUNCTION multivec_convert(multivec, text) IS
	'The same tokens in another format (float32, float16, or int8: scale = max|x|/127 per token, code = round(x/scale))';

-- casts from and to pgvector's types (pgvector's layouts read directly, never its functions)
CREATE FUNCTION vector_array_to_multivec(vector[], integer, boolean) RETURNS multivec
	AS 'MODULE_PATHNAME', 'vector_array_to_multivec' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION halfvec_array_to_multivec(halfvec[], integer, boolean) RETURNS multivec
	AS 'MODULE_PATHNAME', 'halfvec_array_to_multivec' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION array_to_multivec(real[], integer, boolean) RETURNS multivec
	AS 'MODULE_PATHNAME', 'array_to_multivec' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION multivec_to_vector_array(multivec) RETURNS vector[]
	AS 'MODULE_PATHNAME', 'multivec_to_vector_array' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION multivec_to_halfvec_array(multivec) RETURNS halfvec[]
	AS 'MODULE_PATHNAME', 'multivec_to_halfvec_array' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION multivec_to_float4_array(multivec) RETURNS real[]
	AS 'MODULE_PATHNAME', 'multivec_to_float4_array' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE CAST (vector[] AS multivec) WITH FUNCTION vector_array_to_multivec(vector[], integer, boolean) AS ASSIGNMENT;
CREATE CAST (halfvec[] AS multivec) WITH FUNCTION halfvec_array_to_multivec(halfvec[], integer, boolean) AS ASSIGNMENT;
CREATE CAST (real[] AS multivec) WITH FUNCTION array_to_multivec(real[], integer, boolean) AS ASSIGNMENT;
CREATE CAST (multivec AS vector[]) WITH FUNCTION multivec_to_vector_array(multivec) AS ASSIGNMENT;
CREATE CAST (multivec AS halfvec[]) WITH FUNCTION multivec_to_halfvec_array(multivec) AS ASSIGNMENT;
CREATE CAST (multivec AS real[]) WITH FUNCTION multivec_to_float4_array(multivec) AS ASSIGNMENT;

-- MaxSim and its distance operator
CREATE FUNCTION maxsim(multivec, multivec) RETURNS float8
	AS 'MODULE_PATHNAME', 'multivec_maxsim' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION maxsim(multivec, multivec) IS
	'maxsim(doc, query): sum over query tokens of the max over doc tokens of the inner product (ColBERT late interaction)';
CREATE FUNCTION maxsim_distance(multivec, multivec) RETURNS float8
	AS 'MODULE_PATHNAME', 'multivec_maxsim_distance' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION maxsim_distance(multivec, multivec) IS 'Negative MaxSim, the distance behind doc @# query';

CREATE OPERATOR @# (
	LEFTARG = multivec, RIGHTARG = multivec, PROCEDURE = maxsim_distance
);
COMMENT ON OPERATOR @# (multivec, multivec) IS 'doc @# query = -maxsim(doc, query): ORDER BY doc @# query LIMIT k ranks by MaxSim';

-- MUVERA FDE: fixed dimensional encodings of token sets (pgsieve FDE spec v1,
-- ext/kernels/pgs_fde.c).  <FDE(query), FDE(doc)> approximates MaxSim.
-- Not STRICT: fill_empty's default NULL means "true for documents, false for
-- queries"; NULL tokens give NULL, a NULL in another argument is an error.
-- ---------------------------------------------------------------------------

CREATE FUNCTION muvera_fde(tokens real[], is_query boolean, reps integer DEFAULT 20,
						   ksim integer DEFAULT 5, dproj integer DEFAULT 16, seed bigint DEFAULT 42,
						   fill_empty boolean DEFAULT NULL, final_dim integer DEFAULT 0) RETURNS vector
	AS 'MODULE_PATHNAME', 'pgsieve_muvera_fde_real' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION muvera_fde(tokens vector[], is_query boolean, reps integer DEFAULT 20,
						   ksim integer DEFAULT 5, dproj integer DEFAULT 16, seed bigint DEFAULT 42,
						   fill_empty boolean DEFAULT NULL, final_dim integer DEFAULT 0) RETURNS vector
	AS 'MODULE_PATHNAME', 'pgsieve_muvera_fde_vector' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION muvera_fde(real[], boolean, integer, integer, integer, bigint, boolean, integer) IS
	'MUVERA fixed dimensional encoding of a token matrix (ntok x dim real[]): query = SUM, document = AVERAGE per SimHash partition';
COMMENT ON FUNCTION muvera_fde(vector[], boolean, integer, integer, integer, bigint, boolean, integer) IS
	'MUVERA fixed dimensional encoding of an array of token vectors: query = SUM, document = AVERAGE per SimHash partition';

-- ---------------------------------------------------------------------------
-- end of MUVERA FDE
-- ---------------------------------------------------------------------------

-- ---------------------------------------------------------------------------
-- multivec_fde index access method: MUVERA FDE candidates, exact MaxSim order
-- ---------------------------------------------------------------------------
CREATE FUNCTION muvera_fde(tokens multivec, is_query boolean, reps integer DEFAULT 20,
		ksim integer DEFAULT 5, dproj integer DEFAULT 16, seed bigint DEFAULT 42,
		fill_empty boolean DEFAULT NULL, final_dim integer DEFAULT 0) RETURNS vector
	AS 'MODULE_PATHNAME', 'pgsieve_muvera_fde_multivec' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION muvera_fde(multivec, boolean, integer, integer, integer, bigint, boolean, integer) IS
	'MUVERA fixed dimensional encoding of a multivec (query: sum per partition; document: average, filled)';

CREATE FUNCTION multivec_fde_handler(internal) RETURNS index_am_handler
	AS 'MODULE_PATHNAME', 'multivec_fde_handler' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
CREATE ACCESS METHOD multivec_fde TYPE INDEX HANDLER multivec_fde_handler;
COMMENT ON ACCESS METHOD multivec_fde IS
	'multivector index: MUVERA FDE codes gather candidates, exact MaxSim (@#) re-ranks them';

CREATE FUNCTION multivec_fde_support(internal) RETURNS internal
	AS 'MODULE_PATHNAME', 'multivec_fde_support' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OPERATOR CLASS multivec_maxsim_ops DEFAULT FOR TYPE multivec USING multivec_fde AS
	OPERATOR 5 @# (multivec, multivec) FOR ORDER BY pg_catalog.float_ops,
	FUNCTION 1 multivec_fde_support(internal);

-- MaxSim re-ranking of a first stage's candidates, with candidate pruning
-- (alpha) and early exit (beta); rows are fetched lazily by TID
CREATE FUNCTION maxsim_rerank(tbl regclass, col name, tids tid[], scores float8[], query multivec,
		k integer, alpha float8 DEFAULT NULL, beta integer DEFAULT NULL)
	RETURNS TABLE (tid tid, score float8)
	AS 'MODULE_PATHNAME', 'pgsieve_maxsim_rerank' LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 10;
COMMENT ON FUNCTION maxsim_rerank(regclass, name, tid[], float8[], multivec, integer, float8, integer) IS
	'top k of first-stage candidates (tids in descending first-stage score order) by exact MaxSim against query; alpha: candidate pruning, beta: early exit';

-- ---------------------------------------------------------------------------
-- index verification (amcheck-style): pgsieve_index_check
-- ---------------------------------------------------------------------------

-- Raises ERRCODE_INDEX_CORRUPTED (XX002) at the first violation, naming the
-- index and the block; returns nothing when the index is sound.  Takes
-- AccessShareLock on the table and the index, like amcheck's bt_index_check.
-- VOLATILE: it reads the current state of relations under a fresh snapshot.
CREATE FUNCTION pgsieve_index_check(index regclass, heapallindexed boolean DEFAULT false) RETURNS void
	AS 'MODULE_PATHNAME', 'pgsieve_index_check' LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION pgsieve_index_check(regclass, boolean) IS
	'Verify a binary_scan, multivec_fde or sparse_block index (pages, counts, streams, posting lists); with heapallindexed, also that every row visible to a new snapshot has exactly its entry';
-- like amcheck: superusers only until they grant it (it reads every row of the table)
REVOKE ALL ON FUNCTION pgsieve_index_check(regclass, boolean) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- end of index verification
-- ---------------------------------------------------------------------------
