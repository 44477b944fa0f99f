-- multivec_fde: MUVERA FDE codes gather candidates, exact MaxSim re-ranks them
SELECT setseed(0.31);
-- documents of 3..10 tokens of 16 dimensions (values rounded: deterministic text)
CREATE FUNCTION rmv(ntok int, d int) RETURNS text LANGUAGE sql AS $$
	SELECT '[' || string_agg(rvec(d), ',') || ']' FROM generate_series(1, ntok)
$$;
CREATE TABLE mvd (id int PRIMARY KEY, mv multivec(16));
INSERT INTO mvd SELECT i, rmv(3 + i % 8, 16)::multivec FROM generate_series(1, 1500) i;
INSERT INTO mvd VALUES (0, NULL);
CREATE TABLE mvq (q int, v text);
INSERT INTO mvq SELECT i, rmv(4, 16) FROM generate_series(1, 5) i;

-- bad parameters and types
CREATE INDEX ON mvd USING multivec_fde (mv) WITH (ksim = 16);
CREATE INDEX ON mvd USING multivec_fde (mv) WITH (reps = 4000, ksim = 10, dproj = 64);
CREATE TABLE mvbad (v vector(3));
CREATE INDEX ON mvbad USING multivec_fde (v);
DROP TABLE mvbad;

CREATE INDEX mvd_fde ON mvd USING multivec_fde (mv) WITH (reps = 10, ksim = 3, dproj = 8);

-- re-ranking every row: exactly the sequential scan's order (distances compared: no ties expected)
SET pgsieve.fde_rerank = 2000;
SELECT q, knn('mvd', 'mv', '@#', v, 20, true, output => 'dist') = knn('mvd', 'mv', '@#', v, 20, false, output => 'dist') AS dist_equal,
	   knn('mvd', 'mv', '@#', v, 20, true) = knn('mvd', 'mv', '@#', v, 20, false) AS ids_equal
FROM mvq ORDER BY q;
-- every row, the NULL last; and under a filter (continuation past k)
SELECT cardinality(knn('mvd', 'mv', '@#', v, 5000, true)) AS all_rows,
	   (knn('mvd', 'mv', '@#', v, 5000, true))[1501] AS last_is_null_row,
	   knn('mvd', 'mv', '@#', v, 30, true, 'id % 7 = 0') = knn('mvd', 'mv', '@#', v, 30, false, 'id % 7 = 0') AS filtered_equal
FROM mvq WHERE q = 1;

-- defaults: approximate candidates (recall is measured on real data by the
-- multivector bench; random tokens have no structure to find), exact order
-- within each batch; LIMIT k gets k rows
RESET pgsieve.fde_rerank;
SELECT bool_and(cardinality(knn('mvd', 'mv', '@#', v, 100, true)) = 100) AS k_rows,
	   bool_and((SELECT array_agg(x ORDER BY x::float8) FROM unnest(knn('mvd', 'mv', '@#', v, 100, true, output => 'dist')) x)
				= knn('mvd', 'mv', '@#', v, 100, true, output => 'dist')) AS exact_order_in_batch
FROM mvq;
SET pgsieve.fde_rerank = 5;
SET pgsieve.fde_oversample = 1;
SELECT bool_and(cardinality(knn('mvd', 'mv', '@#', v, 50, true)) = 50) AS small_batches_continue FROM mvq;
RESET pgsieve.fde_rerank;
RESET pgsieve.fde_oversample;

-- inserts are searchable at once; deleted rows never come back
INSERT INTO mvd SELECT 5000, v::multivec FROM mvq WHERE q = 2;
SELECT (knn('mvd', 'mv', '@#', v, 1, true))[1] AS inserted_found FROM mvq WHERE q = 2;
DELETE FROM mvd WHERE id = 5000;
VACUUM mvd;
SELECT '5000' <> ALL (knn('mvd', 'mv', '@#', v, 10, true)) AS deleted_gone FROM mvq WHERE q = 2;

-- a query of other dimensions; the FDE SQL function agrees with the index's input
SET enable_seqscan = off;
SELECT id FROM mvd ORDER BY mv @# '[[1,2,3]]' LIMIT 1;
RESET enable_seqscan;
SELECT muvera_fde(v::multivec, true, 10, 3, 8) = muvera_fde(v::multivec::real[], true, 10, 3, 8) AS same_fde,
	   vector_dims(muvera_fde(v::multivec, false, 10, 3, 8)) AS fde_dims
FROM mvq WHERE q = 1;

-- an index built on an empty table without typmod learns the dimensions from the first insert
CREATE TABLE mve (id int, mv multivec);
CREATE INDEX mve_fde ON mve USING multivec_fde (mv) WITH (reps = 4, ksim = 2, dproj = 4);
INSERT INTO mve SELECT id, mv FROM mvd WHERE id BETWEEN 1 AND 50;
SET enable_seqscan = off;
SELECT knn('mve', 'mv', '@#', v, 5, true) = knn('mve', 'mv', '@#', v, 5, false) AS empty_build_ok FROM mvq WHERE q = 3;
INSERT INTO mve VALUES (99, '[[1,2]]');
RESET enable_seqscan;

-- store_tokens (the default): each value is kept in the index's token pages and re-ranked from there
-- (no heap row read); values from one token to many pages, inserts after the build, delete + VACUUM
CREATE TABLE mvl (id int PRIMARY KEY, mv multivec(48));
INSERT INTO mvl SELECT i, rmv(1 + (i * 37) % 90, 48)::multivec FROM generate_series(1, 120) i;
CREATE TABLE mvlq (q int, v text);
INSERT INTO mvlq SELECT i, rmv(3, 48) FROM generate_series(1, 3) i;
CREATE INDEX ON mvl USING multivec_fde (mv) WITH (store_tokens = maybe);
CREATE INDEX mvl_tok ON mvl USING multivec_fde (mv) WITH (reps = 4, ksim = 2, dproj = 4);
INSERT INTO mvl SELECT i, rmv(1 + (i * 53) % 120, 48)::multivec FROM generate_series(121, 160) i;
DELETE FROM mvl WHERE id % 5 = 0;
VACUUM mvl;
INSERT INTO mvl SELECT i, rmv(60, 48)::multivec FROM generate_series(161, 170) i;
UPDATE mvl SET id = id + 1000 WHERE id BETWEEN 161 AND 163;
-- the same table indexed without the copy (re-ranked from the heap): same rows, same distances
CREATE TABLE mvl2 AS SELECT * FROM mvl;
CREATE INDEX mvl2_heap ON mvl2 USING multivec_fde (mv) WITH (reps = 4, ksim = 2, dproj = 4, store_tokens = false);
SET pgsieve.fde_rerank = 2000;
SELECT q, knn('mvl', 'mv', '@#', v, 200, true, output => 'dist') = knn('mvl', 'mv', '@#', v, 200, false, output => 'dist') AS tokens_exact,
	   knn('mvl', 'mv', '@#', v, 200, true, output => 'dist') = knn('mvl2', 'mv', '@#', v, 200, true, output => 'dist') AS same_as_heap,
	   cardinality(knn('mvl', 'mv', '@#', v, 200, true)) AS live_rows
FROM mvlq ORDER BY q;
RESET pgsieve.fde_rerank;
SELECT pgsieve_index_check('mvl_tok', true) AS tokens_check, pgsieve_index_check('mvl2_heap', true) AS heap_check,
	   pg_relation_size('mvl_tok') > 4 * pg_relation_size('mvl2_heap') AS values_stored;
DROP TABLE mvl, mvl2, mvlq;

-- REINDEX, and the unlogged (init fork) variant
REINDEX INDEX mvd_fde;
SET pgsieve.fde_rerank = 2000;
SELECT knn('mvd', 'mv', '@#', v, 5, true) = knn('mvd', 'mv', '@#', v, 5, false) AS reindex_ok FROM mvq WHERE q = 4;
CREATE UNLOGGED TABLE mvu (id int, mv multivec(16));
CREATE INDEX ON mvu USING multivec_fde (mv);
INSERT INTO mvu SELECT id, mv FROM mvd WHERE id BETWEEN 1 AND 20;
SELECT cardinality(knn('mvu', 'mv', '@#', v, 100, true)) AS unlogged_rows FROM mvq WHERE q = 5;
RESET pgsieve.fde_rerank;
DROP TABLE mvu, mve, mvd, mvq;
DROP FUNCTION rmv(int, int);
