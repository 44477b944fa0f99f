-- maxsim_rerank's screen (pgsieve.maxsim_screen): int8 candidates are first
-- bounded with integer arithmetic and only those that can reach the top k are
-- scored exactly.  The result must be the same rows and the same scores as
-- without it, in every situation the re-rank meets: near-ties and exact ties
-- (first-stage order breaks them), rows deleted but not yet vacuumed (the
-- index's token copy still has them), HOT versions, NULLs, documents stored
-- as float32 next to int8 ones, queries too long to screen.  'on' screens on
-- any CPU (the scalar reference where there is no fast path), so this runs
-- the same everywhere; the estimates are the same bits on every path.
SELECT setseed(0.77);
CREATE TABLE rsc (id int PRIMARY KEY, s float8, mv multivec(48, int8)) WITH (fillfactor = 60);
CREATE TEMP TABLE rsrc AS SELECT i AS id, ARRAY(SELECT rvec(48) FROM generate_series(1, 2 + i % 23 + i * 0)) AS toks
FROM generate_series(1, 240) i;
-- exact duplicates of rows 1-20 (ties: the earlier candidate wins) and near-duplicates of
-- rows 21-60 (the first element of the first token moved a hair: scores a few 1e-4 apart or equal)
INSERT INTO rsrc SELECT 300 + id, toks FROM rsrc WHERE id <= 20;
INSERT INTO rsrc SELECT 400 + id, ('[' || (split_part(substr(toks[1], 2), ',', 1)::float8 + 0.004)::text || ',' ||
	substr(toks[1], strpos(toks[1], ',') + 1)) || toks[2:] FROM rsrc WHERE id BETWEEN 21 AND 60;
INSERT INTO rsc SELECT id, 0, ('[' || array_to_string(toks, ',') || ']')::multivec(48, int8) FROM rsrc;
INSERT INTO rsc VALUES (500, 0, NULL);
CREATE TABLE rsq (n int, v multivec);
INSERT INTO rsq SELECT n, ('[' || (SELECT string_agg(rvec(48), ',') FROM generate_series(1, n)) || ']')::multivec
FROM unnest(ARRAY[1, 4, 9, 16, 17, 32, 33]) n;

-- candidates: every row in a fixed shuffled first-stage order (scores descending), as the TIDs
-- were when rsc_snap() last ran (so rows deleted since then are candidates too, as a caller
-- holding TIDs from an earlier statement would pass them)
CREATE TABLE rsc_cand (ord int, t tid);
CREATE FUNCTION rsc_snap() RETURNS void LANGUAGE sql AS $$
	DELETE FROM rsc_cand;
	INSERT INTO rsc_cand SELECT row_number() OVER (ORDER BY (id * 7919) % 1013, id), ctid FROM rsc;
$$;
SELECT rsc_snap();
-- maxsim_rerank of the candidates as 'tid:score' text, with the screen on or off
CREATE FUNCTION rsc_run(nq int, k int, screen text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
	PERFORM set_config('pgsieve.maxsim_screen', screen, true);
	SELECT string_agg(x.tid::text || ':' || x.score::text, ',' ORDER BY ord) INTO r
	FROM (SELECT tid, score, row_number() OVER () AS ord FROM maxsim_rerank('rsc', 'mv',
		ARRAY(SELECT t FROM rsc_cand ORDER BY ord), ARRAY(SELECT (1000 - ord)::float8 FROM rsc_cand ORDER BY ord),
		(SELECT v FROM rsq WHERE n = nq), k)) x;
	RETURN r;
END $$;
-- the same from SQL: the candidates still visible and not NULL by maxsim(), ties by first-stage order
CREATE FUNCTION rsc_exact(nq int, k int) RETURNS text LANGUAGE sql AS $$
	SELECT string_agg(ctid::text || ':' || m::text, ',' ORDER BY m DESC, ord) FROM (
		SELECT r.ctid, maxsim(r.mv, (SELECT v FROM rsq WHERE n = nq)) AS m, c.ord FROM rsc r JOIN rsc_cand c ON c.t = r.ctid
		WHERE r.mv IS NOT NULL ORDER BY m DESC, c.ord LIMIT k) t
$$;
-- every query (1 to 33 tokens) x k in (1, 3, 10, 40)
CREATE FUNCTION rsc_check() RETURNS TABLE (runs bigint, same_as_unscreened bool, exact bool) LANGUAGE sql AS $$
	SELECT count(*), bool_and(rsc_run(q.n, k.k, 'on') = rsc_run(q.n, k.k, 'off')),
		   bool_and(rsc_run(q.n, k.k, 'on') = rsc_exact(q.n, k.k))
	FROM rsq q CROSS JOIN unnest(ARRAY[1, 3, 10, 40]) k(k)
$$;

-- from the table (no index)
SELECT * FROM rsc_check();

-- from a multivec_fde index's token copy
CREATE INDEX rsc_fde ON rsc USING multivec_fde (mv);
SELECT * FROM rsc_check();

-- the best rows for every query deleted but not vacuumed: their tokens are still in the
-- index's copy, and the screen must not let them set the bar
DELETE FROM rsc WHERE id IN (SELECT id FROM rsc r, rsq q WHERE r.mv IS NOT NULL
	ORDER BY maxsim(r.mv, q.v) DESC LIMIT 25);
SELECT * FROM rsc_check();
-- HOT updates (a column the index does not cover): versions with no entry, read from the table
UPDATE rsc SET s = 1 WHERE id % 5 = 0;
SELECT rsc_snap();
SELECT * FROM rsc_check();

-- float32 documents among int8 ones (an untyped column): those are scored exactly, unscreened
CREATE TABLE rsm (id int PRIMARY KEY, mv multivec(48));
INSERT INTO rsm SELECT id, CASE WHEN id % 3 = 0 THEN multivec_convert(mv, 'float32') ELSE mv END FROM rsc;
SET pgsieve.maxsim_screen = on;
CREATE TEMP TABLE rsm_on AS SELECT * FROM maxsim_rerank('rsm', 'mv', ARRAY(SELECT ctid FROM rsm ORDER BY id),
	ARRAY(SELECT (1000 - id)::float8 FROM rsm ORDER BY id), (SELECT v FROM rsq WHERE n = 9), 15);
SET pgsieve.maxsim_screen = off;
CREATE TEMP TABLE rsm_off AS SELECT * FROM maxsim_rerank('rsm', 'mv', ARRAY(SELECT ctid FROM rsm ORDER BY id),
	ARRAY(SELECT (1000 - id)::float8 FROM rsm ORDER BY id), (SELECT v FROM rsq WHERE n = 9), 15);
RESET pgsieve.maxsim_screen;
SELECT count(*) AS rows, (SELECT count(*) FROM (TABLE rsm_on EXCEPT TABLE rsm_off) d) AS differ,
	   count(*) FILTER (WHERE multivec_format(m.mv) = 'float32') > 0 AS has_float32
FROM rsm_on o JOIN rsm m ON m.ctid = o.tid;

-- a candidate whose bound is wide (one huge token, far from every query token: W, and so the
-- bound, scale with the largest token scale) but whose score is the best: its lower bound is
-- below everyone's, yet its upper bound keeps it for the exact pass
CREATE TABLE rsw (id int, mv multivec(8, int8));
INSERT INTO rsw SELECT i, ('[' || rvec(8) || ',' || rvec(8) || ']')::multivec(8, int8) FROM generate_series(1, 30) i;
INSERT INTO rsw VALUES (99, '[[-0.5,0.3,0.2,-0.1,0.4,0.1,0,0.2],[-0.5,-0.2,0.1,0.3,0,-0.4,0.2,0.1],[100000,0,0,0,0,0,0,0]]');
CREATE TABLE rswq (v multivec);
INSERT INTO rswq VALUES ('[[-0.5,0.3,0.2,-0.1,0.4,0.1,0,0.2],[-0.5,-0.2,0.1,0.3,0,-0.4,0.2,0.1]]');
SET pgsieve.maxsim_screen = on;
SELECT k, (SELECT array_agg(w.id ORDER BY x.score DESC) FROM maxsim_rerank('rsw', 'mv', ARRAY(SELECT ctid FROM rsw ORDER BY id),
		ARRAY(SELECT (100 - id)::float8 FROM rsw ORDER BY id), (SELECT v FROM rswq), k) x JOIN rsw w ON w.ctid = x.tid) =
	(SELECT array_agg(id) FROM (SELECT id FROM rsw ORDER BY maxsim(mv, (SELECT v FROM rswq)) DESC, id LIMIT k) t) AS exact,
	(SELECT id FROM rsw ORDER BY maxsim(mv, (SELECT v FROM rswq)) DESC LIMIT 1) AS best
FROM unnest(ARRAY[1, 2, 5]) k;
RESET pgsieve.maxsim_screen;

-- the DEBUG1 line: how many candidates the screen let through to the exact MaxSim
SET pgsieve.maxsim_screen = on;
SET client_min_messages = debug1;
SELECT count(*) FROM maxsim_rerank('rsc', 'mv', ARRAY(SELECT ctid FROM rsc ORDER BY id),
	ARRAY(SELECT (1000 - id)::float8 FROM rsc ORDER BY id), (SELECT v FROM rsq WHERE n = 16), 5);
RESET client_min_messages;
RESET pgsieve.maxsim_screen;
SHOW pgsieve.maxsim_screen;
SET pgsieve.maxsim_screen = sometimes;
DROP TABLE rsc, rsq, rsm, rsrc, rsc_cand, rsw, rswq;
DROP FUNCTION rsc_run, rsc_exact, rsc_check, rsc_snap;
