-- binary_scan on vector: with re-rank covering every row the index order is
-- exactly the sequential scan's, for each distance.
SELECT setseed(0.2);
CREATE TABLE items (id int PRIMARY KEY, emb vector(24));
INSERT INTO items SELECT i, rvec(24)::vector FROM generate_series(1, 2000) i;
CREATE INDEX items_l2 ON items USING binary_scan (emb vector_l2_ops);
CREATE INDEX items_ip ON items USING binary_scan (emb vector_ip_ops);
CREATE INDEX items_cos ON items USING binary_scan (emb vector_cosine_ops) WITH (quantizer = sign);

SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY emb <-> '[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24]' LIMIT 5;
RESET enable_seqscan;

SET pgsieve.binary_rerank = 2000;
CREATE TABLE queries AS SELECT q, rvec(24) AS v FROM generate_series(1, 10) q;
SELECT op, count(*) FILTER (WHERE knn('items', 'emb', op, v, 50, true) = knn('items', 'emb', op, v, 50, false)) AS equal
FROM queries, unnest(ARRAY['<->', '<#>', '<=>']) op GROUP BY op ORDER BY op;
-- without the asymmetric narrowing stage too
SET pgsieve.binary_oversample = 1;
SELECT op, count(*) FILTER (WHERE knn('items', 'emb', op, v, 50, true) = knn('items', 'emb', op, v, 50, false)) AS equal_no_narrowing
FROM queries, unnest(ARRAY['<->', '<#>', '<=>']) op GROUP BY op ORDER BY op;
RESET pgsieve.binary_oversample;
SHOW pgsieve.binary_oversample;
-- all rows, in exact order
SELECT knn('items', 'emb', '<->', v, 3000, true) = knn('items', 'emb', '<->', v, 3000, false) AS all_rows_equal,
	   cardinality(knn('items', 'emb', '<->', v, 3000, true)) AS n
FROM queries WHERE q = 1;

-- a small re-rank is approximate but still returns k rows in exact order of their distance
SET pgsieve.binary_rerank = 20;
SELECT bool_and(cardinality(knn('items', 'emb', '<=>', v, 10, true)) = 10) FROM queries;
SET enable_seqscan = off;
SELECT bool_and(d >= lag) AS ordered FROM (
	SELECT emb <=> (SELECT v FROM queries WHERE q = 3)::vector AS d,
		   lag(emb <=> (SELECT v FROM queries WHERE q = 3)::vector, 1, '-Infinity'::float8)
			 OVER (ORDER BY emb <=> (SELECT v FROM queries WHERE q = 3)::vector) AS lag
	FROM items ORDER BY emb <=> (SELECT v FROM queries WHERE q = 3)::vector LIMIT 10) s;
RESET enable_seqscan;

-- recall at the default re-rank on this small table
RESET pgsieve.binary_rerank;
SELECT avg(cardinality(ARRAY(SELECT unnest(knn('items', 'emb', '<->', v, 10, true))
							 INTERSECT SELECT unnest(knn('items', 'emb', '<->', v, 10, false))))) >= 9 AS recall_ok
FROM queries;

-- a filter that rejects most rows: the scan continues past the first batch
-- (later batches grow), so LIMIT k still gets k rows, and every matching row
-- is reachable
SET pgsieve.binary_rerank = 5;
SELECT cardinality(knn('items', 'emb', '<->', v, 20, true, 'id % 50 = 0')) AS filtered_k,
	   cardinality(knn('items', 'emb', '<->', v, 100, true, 'id % 50 = 0')) AS filtered_all
FROM queries WHERE q = 2;
SET pgsieve.binary_rerank = 2000;
SELECT knn('items', 'emb', '<->', v, 20, true, 'id % 50 = 0') = knn('items', 'emb', '<->', v, 20, false, 'id % 50 = 0') AS filtered_equal
FROM queries WHERE q = 2;
RESET pgsieve.binary_rerank;

-- the GUC is settable per transaction
BEGIN;
SET LOCAL pgsieve.binary_rerank = 7;
SHOW pgsieve.binary_rerank;
COMMIT;
SHOW pgsieve.binary_rerank;
SET pgsieve.binary_rerank = 0;
SET pgsieve.binary_oversample = 0;

-- errors
SELECT id FROM items ORDER BY emb <-> '[1,2,3]' LIMIT 1;
SET enable_seqscan = off;
SELECT id FROM items ORDER BY emb <-> '[1,2,3]' LIMIT 1;
INSERT INTO items VALUES (5000, '[1,2,3]');
RESET enable_seqscan;

DROP TABLE items, queries;
