-- muvera_fde: MUVERA fixed dimensional encodings (pgsieve FDE spec v1).
-- The bytes are checked against an independent reference and golden vectors in tests/test_fde.py; here:
-- shapes, the SUM / AVERAGE semantics, overloads, NULLs and errors.

-- length: reps * 2^ksim * (dproj, or the token dimensions when dproj = 0), or final_dim
SELECT vector_dims(muvera_fde('{{1,2,3},{4,5,6}}'::real[], true)) AS default_dims,
	   vector_dims(muvera_fde('{{1,2,3},{4,5,6}}'::real[], false, reps => 2, ksim => 3, dproj => 0)) AS identity_dims,
	   vector_dims(muvera_fde('{{1,2,3}}'::real[], false, final_dim => 100)) AS final_dims;

-- one partition (ksim 0) and no projection: a query is the SUM of its tokens (once per repetition),
-- a document their AVERAGE
SELECT muvera_fde('{{1,2,3},{4,5,6}}'::real[], true, reps => 2, ksim => 0, dproj => 0) AS query_sum;
SELECT muvera_fde('{{1,2,3},{4,6,8}}'::real[], false, reps => 1, ksim => 0, dproj => 0) AS doc_average;

-- the encoding depends only on the tokens and the parameters
SELECT muvera_fde(ARRAY['[1,2,3]', '[4,5,6]']::vector[], false) = muvera_fde('{{1,2,3},{4,5,6}}'::real[], false)
	AS vector_array_equals_real_matrix,
	   muvera_fde('{{1,2,3},{4,5,6}}'::real[], false, seed => 1) <> muvera_fde('{{1,2,3},{4,5,6}}'::real[], false, seed => 2)
	AS seed_matters;

-- fill_empty: NULL (the default) means true for documents and false for queries
SELECT muvera_fde('{{1,2},{2,3}}'::real[], false, reps => 3, ksim => 2, dproj => 0)
	 = muvera_fde('{{1,2},{2,3}}'::real[], false, reps => 3, ksim => 2, dproj => 0, fill_empty => true) AS doc_default_fills,
	   muvera_fde('{{1,2},{2,3}}'::real[], true, reps => 3, ksim => 2, dproj => 0)
	 = muvera_fde('{{1,2},{2,3}}'::real[], true, reps => 3, ksim => 2, dproj => 0, fill_empty => false) AS query_default_is_unfilled;

-- NULL tokens give NULL; other NULL arguments are errors
SELECT muvera_fde(NULL::real[], true) IS NULL AS null_tokens;
SELECT muvera_fde('{{1,2}}'::real[], NULL);
SELECT muvera_fde('{{1,2}}'::real[], true, ksim => NULL);

-- the usual pipeline: FDE inner products gather candidates (pgvector's <#> is the negative inner product)
CREATE TABLE fde_docs AS
	SELECT i, muvera_fde((SELECT array_agg(ARRAY[sin(i * 7 + t * 3), cos(i * 5 + t), sin(i + t * 11), cos(i * 3 + t * 2)]::real[])
						  FROM generate_series(1, 6) t), false, reps => 10, ksim => 3, dproj => 4) AS fde
	FROM generate_series(1, 50) i;
SELECT i FROM fde_docs
ORDER BY fde <#> muvera_fde((SELECT array_agg(ARRAY[sin(17 * 7 + t * 3), cos(17 * 5 + t), sin(17 + t * 11), cos(17 * 3 + t * 2)]::real[])
							 FROM generate_series(1, 6) t), true, reps => 10, ksim => 3, dproj => 4)
LIMIT 1;

-- errors
SELECT muvera_fde('{{1,2},{3,4}}'::real[], true, fill_empty => true);
SELECT muvera_fde('{{1,2},{3,4}}'::real[], true, ksim => 16);
SELECT muvera_fde('{1,2,3}'::real[], true);
SELECT muvera_fde('{{1,2},{3,NaN}}'::real[], true);
SELECT muvera_fde(ARRAY['[1,2]', '[1,2,3]']::vector[], true);
SELECT muvera_fde('{{1,2}}'::real[], false, dproj => 0, ksim => 7, reps => 100);
DROP TABLE fde_docs;
