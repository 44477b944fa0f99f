-- maxsim_rerank: MaxSim re-ranking of first-stage candidates, with candidate
-- pruning (alpha) and early exit (beta)
SELECT setseed(0.57);
CREATE TABLE rr (id int PRIMARY KEY, s float8, mv multivec(8));
INSERT INTO rr SELECT i, 100 - i, ('[' || rvec(8) || ',' || rvec(8) || ',' || rvec(8) || ']')::multivec
FROM generate_series(1, 60) i;
INSERT INTO rr VALUES (61, 39, NULL);
CREATE TABLE rq (v multivec);
INSERT INTO rq SELECT ('[' || rvec(8) || ',' || rvec(8) || ']')::multivec;

-- every candidate scored: the exact top-k by MaxSim among them
CREATE FUNCTION rr_run(ids int[], k int, alpha float8 DEFAULT NULL, beta int DEFAULT NULL)
RETURNS int[] LANGUAGE sql AS $$
	SELECT array_agg(r.id ORDER BY x.score DESC, r.s DESC)
	FROM maxsim_rerank('rr', 'mv',
		ARRAY(SELECT ctid FROM rr WHERE id = ANY(ids) ORDER BY s DESC),
		ARRAY(SELECT s FROM rr WHERE id = ANY(ids) ORDER BY s DESC),
		(SELECT v FROM rq), k, alpha, beta) x JOIN rr r ON r.ctid = x.tid
$$;
CREATE FUNCTION rr_exact(ids int[], k int) RETURNS int[] LANGUAGE sql AS $$
	SELECT array_agg(id) FROM (SELECT id FROM rr WHERE id = ANY(ids) AND mv IS NOT NULL
		ORDER BY maxsim(mv, (SELECT v FROM rq)) DESC, s DESC LIMIT k) t
$$;
SELECT rr_run(ARRAY(SELECT generate_series(1, 61)), 5) = rr_exact(ARRAY(SELECT generate_series(1, 61)), 5) AS all_exact,
	   cardinality(rr_run(ARRAY(SELECT generate_series(1, 61)), 100)) AS all_rows_but_null;
-- scores are the exact MaxSim
SELECT bool_and(abs(x.score - maxsim(r.mv, (SELECT v FROM rq))) < 1e-12) AS scores_exact
FROM maxsim_rerank('rr', 'mv', ARRAY(SELECT ctid FROM rr ORDER BY s DESC), ARRAY(SELECT s FROM rr ORDER BY s DESC),
	(SELECT v FROM rq), 10) x JOIN rr r ON r.ctid = x.tid;

-- CP: with k = 5 the bar is 0.8 x s(5th) = 0.8 x 95 = 76: candidates 1..24 stay
SELECT rr_run(ARRAY(SELECT generate_series(1, 61)), 5, 0.2) = rr_exact(ARRAY(SELECT generate_series(1, 24)), 5) AS cp_prefix,
	   rr_run(ARRAY(SELECT generate_series(1, 61)), 5, 0.0) = rr_exact(ARRAY(SELECT generate_series(1, 5)), 5) AS cp_zero_keeps_k;

-- EE: first-stage order equal to MaxSim order: after the first k nothing enters, beta = 1 stops at once
UPDATE rr SET s = maxsim(mv, (SELECT v FROM rq)) WHERE mv IS NOT NULL;
SELECT rr_run(ARRAY(SELECT generate_series(1, 60)), 5, NULL, 1) = rr_exact(ARRAY(SELECT generate_series(1, 60)), 5) AS ee_exact_when_ordered;
-- the best candidate placed last in first-stage order: beta = 2 stops before it, no EE finds it
CREATE TEMP TABLE best AS SELECT (rr_exact(ARRAY(SELECT generate_series(1, 60)), 1))[1] AS id;
UPDATE rr SET s = (SELECT min(s) FROM rr) - 1 WHERE id = (SELECT id FROM best);
SELECT (SELECT id FROM best) = ANY(rr_run(ARRAY(SELECT generate_series(1, 60)), 5, NULL, 2)) AS ee_found_late_best,
	   (rr_run(ARRAY(SELECT generate_series(1, 60)), 5))[1] = (SELECT id FROM best) AS no_ee_found_it;

-- rows deleted (invisible) are skipped
DELETE FROM rr WHERE id = (SELECT id FROM best);
SELECT (SELECT id FROM best) = ANY(rr_run(ARRAY(SELECT generate_series(1, 61)), 5)) AS deleted_skipped;

-- errors
SELECT * FROM maxsim_rerank('rr', 'mv', '{"(0,1)"}', '{1,2}', (SELECT v FROM rq), 5);
SELECT * FROM maxsim_rerank('rr', 'mv', '{"(0,1)","(0,2)"}', '{1,2}', (SELECT v FROM rq), 5);
SELECT * FROM maxsim_rerank('rr', 'mv', '{"(0,1)",NULL}', '{2,1}', (SELECT v FROM rq), 5);
SELECT * FROM maxsim_rerank('rr', 'mv', '{"(0,1)"}', '{1}', (SELECT v FROM rq), 0);
SELECT * FROM maxsim_rerank('rr', 'mv', '{"(0,1)"}', '{1}', (SELECT v FROM rq), 5, 1.5);
SELECT * FROM maxsim_rerank('rr', 'mv', '{"(0,1)"}', '{1}', (SELECT v FROM rq), 5, NULL, 0);
SELECT * FROM maxsim_rerank('rr', 's', '{"(0,1)"}', '{1}', (SELECT v FROM rq), 5);
SELECT * FROM maxsim_rerank('rr', 'nope', '{"(0,1)"}', '{1}', (SELECT v FROM rq), 5);
SELECT * FROM maxsim_rerank('rr_pkey', 'mv', '{"(0,1)"}', '{1}', (SELECT v FROM rq), 5);
SELECT * FROM maxsim_rerank('rr', 'mv', ARRAY(SELECT ctid FROM rr WHERE id = 1), '{1}', '[[1,2]]', 5);
-- TIDs past the table's end or its pages' items are not rows: skipped
SELECT count(*) FROM maxsim_rerank('rr', 'mv', '{"(9999,1)","(0,999)"}', '{2,1}', (SELECT v FROM rq), 5);

-- the one-statement pipeline: sparse_block gather -> MaxSim re-rank
CREATE TABLE rp (id int PRIMARY KEY, sv sparsevec(50), mv multivec(8));
INSERT INTO rp SELECT id, ('{' || (1 + id % 25) || ':1,' || (26 + (id * 7) % 25) || ':0.5}/50')::sparsevec, mv
FROM rr WHERE mv IS NOT NULL;
CREATE INDEX ON rp USING sparse_block (sv);
SET enable_seqscan = off;
WITH c AS (SELECT ctid, -(sv <#> '{2:1,30:1}/50') AS s FROM rp ORDER BY sv <#> '{2:1,30:1}/50' LIMIT 20)
SELECT count(*) = 5 AS pipeline_k,
	   bool_and(r.score = maxsim(p.mv, (SELECT v FROM rq))) AS pipeline_exact
FROM maxsim_rerank('rp', 'mv', ARRAY(SELECT ctid FROM c ORDER BY s DESC), ARRAY(SELECT s FROM c ORDER BY s DESC),
	(SELECT v FROM rq), 5, 0.03, 3) r JOIN rp p ON p.ctid = r.tid;
RESET enable_seqscan;
DROP TABLE rp, rr, rq;
DROP FUNCTION rr_run(int[], int, float8, int);
DROP FUNCTION rr_exact(int[], int);

-- candidates stored out of line (read into one reused buffer), compressed, and inline, mixed sizes:
-- scores equal maxsim() on every storage
CREATE TABLE rrt (id int PRIMARY KEY, mv multivec(8));
CREATE TABLE rqt (v multivec);
INSERT INTO rqt SELECT ('[' || rvec(8) || ',' || rvec(8) || ',' || rvec(8) || ']')::multivec;
INSERT INTO rrt SELECT i, ('[' || (SELECT string_agg(rvec(8), ',') FROM generate_series(1, CASE i % 3
	WHEN 0 THEN 2 WHEN 1 THEN 400 ELSE 90 END + i * 0)) || ']')::multivec FROM generate_series(1, 30) i;
-- compressible: one token repeated
INSERT INTO rrt SELECT i, ('[' || (SELECT string_agg(t.v, ',') FROM (SELECT rvec(8) AS v) t, generate_series(1, 500)) || ']')::multivec
FROM generate_series(31, 36) i;
CREATE FUNCTION rrt_check(k int) RETURNS TABLE (rows bigint, exact bool, compressed bigint, large_uncompressed bigint)
LANGUAGE sql AS $$
	SELECT count(*), bool_and(x.score = maxsim(r.mv, (SELECT v FROM rqt))),
		   count(*) FILTER (WHERE pg_column_compression(r.mv) IS NOT NULL),
		   count(*) FILTER (WHERE pg_column_compression(r.mv) IS NULL AND pg_column_size(r.mv) > 2000)
	FROM maxsim_rerank('rrt', 'mv', ARRAY(SELECT ctid FROM rrt ORDER BY id), ARRAY(SELECT 0::float8 FROM rrt),
		(SELECT v FROM rqt), k) x JOIN rrt r ON r.ctid = x.tid
$$;
SELECT * FROM rrt_check(100);
ALTER TABLE rrt ALTER COLUMN mv SET STORAGE extended;
UPDATE rrt SET mv = multivec_convert(mv, 'float32');
SELECT * FROM rrt_check(100);
ALTER TABLE rrt ALTER COLUMN mv SET STORAGE main;
UPDATE rrt SET mv = multivec_convert(mv, 'float32');
SELECT * FROM rrt_check(100);
DROP TABLE rrt, rqt;
DROP FUNCTION rrt_check(int);
