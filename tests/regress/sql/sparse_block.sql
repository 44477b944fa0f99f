-- sparse_block: Seismic-style blocked inverted index over sparsevec (<#>)
SELECT setseed(0.5);
CREATE TABLE sp (id int, emb sparsevec(2000));
-- skewed term frequencies, 3..60 non-zeros, non-negative weights
INSERT INTO sp SELECT i, (SELECT ('{' || string_agg(t || ':' || round((random() * 3 + 0.01)::numeric, 3), ',') || '}/2000')
	FROM (SELECT DISTINCT (1 + floor(2000 * power(random(), 2)))::int AS t
		  FROM generate_series(1, 3 + (i % 58))) x)::sparsevec
FROM generate_series(1, 3000) i;
INSERT INTO sp VALUES (3001, NULL), (3002, '{}/2000');
CREATE TABLE spq AS SELECT row_number() OVER (ORDER BY id) AS q, emb::text AS v FROM sp WHERE id IN (7, 100, 555, 1234, 2999);

-- with pruning disabled and an exhaustive search the index equals the sequential scan
CREATE INDEX sp_exact ON sp USING sparse_block (emb) WITH (n_postings = 100000, max_fraction = 100);
SET pgsieve.sparse_query_cut = 0;
SET pgsieve.sparse_heap_factor = 0;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM sp ORDER BY emb <#> '{1:1}/2000' LIMIT 5;
RESET enable_seqscan;
SELECT q, knn('sp', 'emb', '<#>', v, 50, true, output => 'dist') = knn('sp', 'emb', '<#>', v, 50, false, output => 'dist') AS dist_equal,
	   knn('sp', 'emb', '<#>', v, 50, true) = knn('sp', 'emb', '<#>', v, 50, false) AS ids_equal
FROM spq ORDER BY q;
-- every row (those sharing no term with the query score 0 and come after the
-- others, NULLs last), and under a filter
SELECT cardinality(knn('sp', 'emb', '<#>', v, 5000, true)) AS all_rows,
	   knn('sp', 'emb', '<#>', v, 5000, true, output => 'dist')
		 = knn('sp', 'emb', '<#>', v, 5000, false, output => 'dist') AS all_equal,
	   knn('sp', 'emb', '<#>', v, 30, true, 'id % 7 = 0', 'dist')
		 = knn('sp', 'emb', '<#>', v, 30, false, 'id % 7 = 0', 'dist') AS filtered_equal
FROM spq WHERE q = 1;
DROP INDEX sp_exact;

-- defaults: approximate, but each round is in exact order and LIMIT k gets k rows
RESET pgsieve.sparse_query_cut;
RESET pgsieve.sparse_heap_factor;
CREATE INDEX sp_idx ON sp USING sparse_block (emb);
SELECT avg(cardinality(ARRAY(SELECT unnest(knn('sp', 'emb', '<#>', v, 10, true))
							 INTERSECT SELECT unnest(knn('sp', 'emb', '<#>', v, 10, false))))) >= 8 AS recall_ok,
	   bool_and(cardinality(knn('sp', 'emb', '<#>', v, 100, true)) = 100) AS k_rows
FROM spq;
SHOW pgsieve.sparse_query_cut;
SHOW pgsieve.sparse_heap_factor;
SHOW pgsieve.sparse_top_k;

-- inserts after the build land in the tail and are found at once
SET pgsieve.sparse_query_cut = 0;
SET pgsieve.sparse_heap_factor = 0;
INSERT INTO sp VALUES (4000, '{5:100,6:100}/2000');
INSERT INTO sp SELECT 4000 + i, ('{' || (1 + i) || ':' || i || '}/2000')::sparsevec FROM generate_series(1, 200) i;
SELECT knn('sp', 'emb', '<#>', '{5:1,6:1}/2000', 1, true) AS tail_found;
-- a document with more than 1,000 non-zeros (pgvector's HNSW limit)
INSERT INTO sp SELECT 5000, ('{' || string_agg(t || ':50', ',') || '}/2000')::sparsevec FROM generate_series(1, 1500) t;
SELECT knn('sp', 'emb', '<#>', '{1400:1,1450:1,1499:1}/2000', 1, true) AS big_doc_found;
SELECT q, knn('sp', 'emb', '<#>', v, 40, true, output => 'dist') = knn('sp', 'emb', '<#>', v, 40, false, output => 'dist') AS equal_with_tail
FROM spq ORDER BY q;

-- delete + vacuum: dead rows never come back
DELETE FROM sp WHERE id % 4 = 0 OR id = 4000;
SELECT knn('sp', 'emb', '<#>', '{5:1,6:1}/2000', 1, true) AS after_delete;
VACUUM sp;
SELECT q, knn('sp', 'emb', '<#>', v, 40, true, output => 'dist') = knn('sp', 'emb', '<#>', v, 40, false, output => 'dist') AS equal_after_vacuum
FROM spq ORDER BY q;
SELECT cardinality(knn('sp', 'emb', '<#>', '{1:1}/2000', 100000, true)) = (SELECT count(*) FROM sp) AS all_live_rows;

-- REINDEX folds the tail into the posting lists
REINDEX INDEX sp_idx;
SELECT q, knn('sp', 'emb', '<#>', v, 40, true, output => 'dist') = knn('sp', 'emb', '<#>', v, 40, false, output => 'dist') AS equal_after_reindex
FROM spq ORDER BY q;
SET enable_seqscan = off;
SELECT count(*) FROM sp;
RESET enable_seqscan;
RESET pgsieve.sparse_query_cut;
RESET pgsieve.sparse_heap_factor;

-- two scans open at once, and a scan that dies in an error, leave later scans exact
SET pgsieve.sparse_query_cut = 0;
SET pgsieve.sparse_heap_factor = 0;
CREATE TABLE two_scans (side int, d float8);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT d FROM (
	(SELECT emb <#> (SELECT v FROM spq WHERE q = 1)::sparsevec AS d FROM sp ORDER BY 1 LIMIT 20)
	UNION ALL
	(SELECT emb <#> (SELECT v FROM spq WHERE q = 2)::sparsevec FROM sp ORDER BY 1 LIMIT 20)) s;
INSERT INTO two_scans
	(SELECT 1, emb <#> (SELECT v FROM spq WHERE q = 1)::sparsevec FROM sp ORDER BY 2 LIMIT 20)
	UNION ALL
	(SELECT 2, emb <#> (SELECT v FROM spq WHERE q = 2)::sparsevec FROM sp ORDER BY 2 LIMIT 20);
RESET enable_seqscan;
SET enable_indexscan = off;
SELECT side, array_agg(d ORDER BY d) = (SELECT array_agg(d) FROM (SELECT emb <#> v::sparsevec AS d FROM sp
		ORDER BY 1 LIMIT 20) x) AS equal_to_seqscan
FROM two_scans JOIN spq ON q = side GROUP BY side, v ORDER BY side;
RESET enable_indexscan;
SET enable_seqscan = off;
SELECT id FROM sp WHERE 1 / (id - id) = 0 ORDER BY emb <#> (SELECT v FROM spq WHERE q = 3)::sparsevec LIMIT 5;
RESET enable_seqscan;
SELECT q, knn('sp', 'emb', '<#>', v, 40, true, output => 'dist') = knn('sp', 'emb', '<#>', v, 40, false, output => 'dist') AS equal_after_error
FROM spq ORDER BY q;
DROP TABLE two_scans;
RESET pgsieve.sparse_query_cut;
RESET pgsieve.sparse_heap_factor;

-- empty tables, unlogged tables, NULL queries
CREATE TABLE sp2 (id int, emb sparsevec);
CREATE INDEX ON sp2 USING sparse_block (emb);
SELECT knn('sp2', 'emb', '<#>', '{1:1}/5', 3, true) AS empty;
INSERT INTO sp2 VALUES (1, '{1:1,2:2}/5'), (2, '{3:1}/5'), (3, NULL);
SELECT knn('sp2', 'emb', '<#>', '{2:1}/5', 3, true) AS after_insert;
INSERT INTO sp2 VALUES (4, '{1:1}/6');
SET enable_seqscan = off;
SELECT count(*) FROM (SELECT id FROM sp2 ORDER BY emb <#> NULL LIMIT 10) s;
SELECT id FROM sp2 ORDER BY emb <#> '{1:1}/6' LIMIT 1;
RESET enable_seqscan;
CREATE UNLOGGED TABLE sp3 (id int, emb sparsevec(10));
INSERT INTO sp3 VALUES (1, '{1:1}/10'), (2, '{1:2}/10');
CREATE INDEX ON sp3 USING sparse_block (emb);
SELECT knn('sp3', 'emb', '<#>', '{1:1}/10', 2, true) AS unlogged;

-- bad input and options
INSERT INTO sp2 VALUES (5, '{1:-1}/5');
CREATE TABLE sp4 (id int, emb sparsevec(5), v vector(3));
INSERT INTO sp4 VALUES (1, '{1:-0.5}/5');
CREATE INDEX ON sp4 USING sparse_block (emb);
CREATE INDEX ON sp4 USING sparse_block (v);
CREATE INDEX ON sp4 USING sparse_block (emb) WITH (summary_energy = 0);
CREATE INDEX ON sp4 USING sparse_block (emb) WITH (centroid_fraction = 2);
SET pgsieve.sparse_heap_factor = -1;
SET pgsieve.sparse_top_k = 0;

DROP TABLE sp, spq, sp2, sp3, sp4;
