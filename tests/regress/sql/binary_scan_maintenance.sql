-- NULLs, empty tables, inserts after the build, DELETE + VACUUM, TRUNCATE,
-- REINDEX, a column without typmod, unlogged tables.
SELECT setseed(0.4);
SET pgsieve.binary_rerank = 100000;

-- empty table, then inserts: searchable at once
CREATE TABLE m (id int, emb vector);
CREATE INDEX m_idx ON m USING binary_scan (emb vector_l2_ops);
SELECT knn('m', 'emb', '<->', '[1,2,3]', 5, true) AS empty;
INSERT INTO m VALUES (1, '[1,2,3]'), (2, '[3,2,1]'), (3, NULL), (4, '[1,1,1]');
SELECT knn('m', 'emb', '<->', '[1,2,3]', 5, true) AS after_insert;
-- a column without typmod: the first value fixed the dimensions
INSERT INTO m VALUES (5, '[1,2]');
-- ORDER BY distance to NULL returns every indexed row (order unspecified)
SET enable_seqscan = off;
SELECT count(*) FROM (SELECT id FROM m ORDER BY emb <-> NULL LIMIT 10) s;
-- and a plain scan (no ORDER BY) with sequential scans disabled returns every row
SELECT count(*) FROM m;
RESET enable_seqscan;

-- bulk inserts after the build spill onto new pages; every row stays reachable
INSERT INTO m SELECT i, rvec(3)::vector FROM generate_series(6, 3000) i;
SELECT cardinality(knn('m', 'emb', '<->', '[0,0,0]', 10000, true)) AS indexed_rows,
	   knn('m', 'emb', '<->', '[0.1,0.2,0.3]', 60, true) = knn('m', 'emb', '<->', '[0.1,0.2,0.3]', 60, false) AS equal;

-- delete + vacuum: dead rows are gone from the index, the rest still found
DELETE FROM m WHERE id % 3 = 0;
SELECT knn('m', 'emb', '<->', '[0.1,0.2,0.3]', 60, true) = knn('m', 'emb', '<->', '[0.1,0.2,0.3]', 60, false) AS equal_before_vacuum;
VACUUM m;
SELECT cardinality(knn('m', 'emb', '<->', '[0,0,0]', 10000, true)) AS indexed_rows_after_vacuum;
SELECT knn('m', 'emb', '<->', '[0.1,0.2,0.3]', 60, true) = knn('m', 'emb', '<->', '[0.1,0.2,0.3]', 60, false) AS equal_after_vacuum;
INSERT INTO m SELECT i, rvec(3)::vector FROM generate_series(3001, 3500) i;
SELECT knn('m', 'emb', '<->', '[0.1,0.2,0.3]', 60, true) = knn('m', 'emb', '<->', '[0.1,0.2,0.3]', 60, false) AS equal_after_reinsert;

-- updates: the new version is found, the old one is not
UPDATE m SET emb = '[100,100,100]' WHERE id = 1;
SELECT knn('m', 'emb', '<->', '[100,100,100]', 2, true) AS updated;

-- REINDEX re-learns thresholds and keeps results
REINDEX INDEX m_idx;
SELECT knn('m', 'emb', '<->', '[0.1,0.2,0.3]', 60, true) = knn('m', 'emb', '<->', '[0.1,0.2,0.3]', 60, false) AS equal_after_reindex;

-- TRUNCATE empties the index
TRUNCATE m;
SELECT knn('m', 'emb', '<->', '[1,2,3]', 5, true) AS after_truncate;
INSERT INTO m VALUES (1, '[1,2,3,4]');
SELECT knn('m', 'emb', '<->', '[1,2,3,4]', 5, true) AS after_truncate_insert;

-- rolled-back inserts are never returned
BEGIN;
INSERT INTO m VALUES (2, '[1,2,3,4]');
ROLLBACK;
SELECT knn('m', 'emb', '<->', '[1,2,3,4]', 5, true) AS after_rollback;

-- unlogged tables (the index gets an init fork)
CREATE UNLOGGED TABLE u (id int, emb vector(4));
INSERT INTO u SELECT i, rvec(4)::vector FROM generate_series(1, 300) i;
CREATE INDEX ON u USING binary_scan (emb vector_cosine_ops);
SELECT knn('u', 'emb', '<=>', '[1,0,0,0]', 20, true) = knn('u', 'emb', '<=>', '[1,0,0,0]', 20, false) AS unlogged_equal;

-- index size stays bounded after delete-all + vacuum + reinsert
CREATE TABLE s (id int, emb vector(8));
INSERT INTO s SELECT i, rvec(8)::vector FROM generate_series(1, 2000) i;
CREATE INDEX s_idx ON s USING binary_scan (emb);
SELECT pg_relation_size('s_idx') / 8192 AS pages_after_build;
DELETE FROM s;
VACUUM s;
SELECT knn('s', 'emb', '<->', '[0,0,0,0,0,0,0,0]', 5, true) AS after_delete_all;

DROP TABLE m, u, s;
RESET pgsieve.binary_rerank;
