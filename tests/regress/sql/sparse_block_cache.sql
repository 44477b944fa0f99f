-- sparse_block scans estimate block documents from a backend-local copy of
-- the index's compact pages (pgsieve.sparse_cache_mb).  A copy must never
-- outlive the build it was copied from: after REINDEX, TRUNCATE or a rebuild
-- under the same name, a scan in the same session must read the new pages.
-- The values change so that stale estimates would reject the new top rows.
SET pgsieve.sparse_query_cut = 0;
SET pgsieve.sparse_heap_factor = 0;

CREATE TABLE spk (id int, emb sparsevec(500));
INSERT INTO spk SELECT i, ('{1:' || i || ',' || (2 + i % 400) || ':' || (i % 7 + 1) || '}/500')::sparsevec
FROM generate_series(1, 2000) i;
CREATE INDEX spk_idx ON spk USING sparse_block (emb);
SELECT knn('spk', 'emb', '<#>', '{1:1,9:0.5}/500', 10, true, output => 'dist')
	 = knn('spk', 'emb', '<#>', '{1:1,9:0.5}/500', 10, false, output => 'dist') AS built_equal;

-- REINDEX: the same index, the same layout, new values
UPDATE spk SET emb = ('{1:' || (2001 - id) || ',' || (2 + id % 400) || ':' || (id % 7 + 1) || '}/500')::sparsevec;
REINDEX INDEX spk_idx;
SELECT knn('spk', 'emb', '<#>', '{1:1,9:0.5}/500', 10, true, output => 'dist')
	 = knn('spk', 'emb', '<#>', '{1:1,9:0.5}/500', 10, false, output => 'dist') AS reindexed_equal;
SELECT knn('spk', 'emb', '<#>', '{1:1,9:0.5}/500', 10, true) AS reindexed_ids;

-- TRUNCATE (the rows go to the tail), then REINDEX again
TRUNCATE spk;
INSERT INTO spk SELECT i, ('{1:' || ((i * 37) % 2000 + 1) || ',' || (2 + i % 400) || ':' || (i % 7 + 1) || '}/500')::sparsevec
FROM generate_series(1, 2000) i;
SELECT knn('spk', 'emb', '<#>', '{1:1,9:0.5}/500', 10, true, output => 'dist')
	 = knn('spk', 'emb', '<#>', '{1:1,9:0.5}/500', 10, false, output => 'dist') AS truncated_equal;
REINDEX INDEX spk_idx;
SELECT knn('spk', 'emb', '<#>', '{1:1,9:0.5}/500', 10, true, output => 'dist')
	 = knn('spk', 'emb', '<#>', '{1:1,9:0.5}/500', 10, false, output => 'dist') AS truncated_reindexed_equal;

-- dropped and created again under the same name
DROP INDEX spk_idx;
UPDATE spk SET emb = ('{1:' || (id % 1000 + 1) || ',' || (2 + id % 400) || ':' || (id % 7 + 1) || '}/500')::sparsevec;
CREATE INDEX spk_idx ON spk USING sparse_block (emb);
SELECT knn('spk', 'emb', '<#>', '{1:1,9:0.5}/500', 10, true, output => 'dist')
	 = knn('spk', 'emb', '<#>', '{1:1,9:0.5}/500', 10, false, output => 'dist') AS recreated_equal;

-- without the copy (0) and with a limit the index does not fit in, the same answers
SET pgsieve.sparse_cache_mb = 0;
SELECT knn('spk', 'emb', '<#>', '{1:1,9:0.5}/500', 10, true, output => 'dist')
	 = knn('spk', 'emb', '<#>', '{1:1,9:0.5}/500', 10, false, output => 'dist') AS uncached_equal;
CREATE TABLE spk2 (id int, emb sparsevec(30000));
INSERT INTO spk2 SELECT i, (SELECT ('{' || string_agg(t || ':' || (1 + (t * i) % 13), ',') || '}/30000')
	FROM generate_series(1 + i % 50, 30000, 97 + i % 5) t)::sparsevec
FROM generate_series(1, 3000) i;
CREATE INDEX spk2_idx ON spk2 USING sparse_block (emb);
SET pgsieve.sparse_cache_mb = 1;
SELECT knn('spk2', 'emb', '<#>', '{100:1,5000:2,29000:1}/30000', 10, true, output => 'dist')
	 = knn('spk2', 'emb', '<#>', '{100:1,5000:2,29000:1}/30000', 10, false, output => 'dist') AS small_limit_equal;
RESET pgsieve.sparse_cache_mb;
SELECT knn('spk2', 'emb', '<#>', '{100:1,5000:2,29000:1}/30000', 10, true, output => 'dist')
	 = knn('spk2', 'emb', '<#>', '{100:1,5000:2,29000:1}/30000', 10, false, output => 'dist') AS cached_equal;
-- and the first index's copy, possibly evicted meanwhile, is still right
SELECT knn('spk', 'emb', '<#>', '{1:1,9:0.5}/500', 10, true, output => 'dist')
	 = knn('spk', 'emb', '<#>', '{1:1,9:0.5}/500', 10, false, output => 'dist') AS first_again_equal;

DROP TABLE spk, spk2;
RESET pgsieve.sparse_query_cut;
RESET pgsieve.sparse_heap_factor;
