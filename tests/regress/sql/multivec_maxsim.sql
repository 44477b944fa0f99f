-- maxsim(doc, query) = sum over query tokens of max over doc tokens of <q, d>; doc @# query = -maxsim

-- hand-computed values
-- q1 = (1,1): dots 1, 1 -> 1;  q2 = (2,0): dots 2, 0 -> 2;  total 3
SELECT maxsim('[[1,0],[0,1]]', '[[1,1],[2,0]]');
-- doc d1 = (1,2,3), d2 = (-1,0,2); q1 = (1,1,1): 6, 1 -> 6;  q2 = (0,0,-1): -3, -2 -> -2;
-- q3 = (2,-1,0.5): 1.5, -1 -> 1.5;  total 5.5 (a negative maximum counts: no clamping at 0)
SELECT maxsim('[[1,2,3],[-1,0,2]]', '[[1,1,1],[0,0,-1],[2,-1,0.5]]');
-- not symmetric: with the roles swapped, q1 = (1,2,3): 6, -3, 1.5 -> 6;  q2 = (-1,0,2): 1, -2, -1 -> 1;  total 7
SELECT maxsim('[[1,1,1],[0,0,-1],[2,-1,0.5]]', '[[1,2,3],[-1,0,2]]');
SELECT '[[1,2,3],[-1,0,2]]'::multivec @# '[[1,1,1],[0,0,-1],[2,-1,0.5]]' AS distance;
-- one query token and one doc token: the inner product, as pgvector's <#> negated
SELECT maxsim('[[1.5,-2,0.25]]', '[[4,0.5,-8]]'), -('[1.5,-2,0.25]'::vector <#> '[4,0.5,-8]');
-- duplicated doc tokens change nothing; duplicated query tokens count twice
SELECT maxsim('[[1,2,3],[1,2,3],[-1,0,2]]', '[[1,1,1]]'), maxsim('[[1,2,3],[-1,0,2]]', '[[1,1,1],[1,1,1]]');

-- every format on either side: float16 is exact for small integers; an int8 doc or query scores exactly like
-- its dequantized float32 copy
-- (int8 doc: q1 0.992126 + 2.007874 + 3 = 6, q2 -2, q3 1.984252 - 2.007874 + 1.5 = 1.476378: 5.476378;
--  int8 query: q3 becomes (2, -1.007874, 0.503937): 2 - 2.015748 + 1.511811 = 1.496063: 5.496063)
SELECT f, round(maxsim(multivec_convert('[[1,2,3],[-1,0,2]]', f), '[[1,1,1],[0,0,-1],[2,-1,0.5]]')::numeric, 6) AS doc_in_f,
	   round(maxsim('[[1,2,3],[-1,0,2]]', multivec_convert('[[1,1,1],[0,0,-1],[2,-1,0.5]]', f))::numeric, 6) AS query_in_f
FROM unnest(ARRAY['float32', 'float16', 'int8']) f;
SELECT maxsim(d, q) = maxsim(d::real[]::multivec, q) AS int8_doc_equals_dequantized,
	   maxsim(q, d) = maxsim(q, d::real[]::multivec) AS int8_query_equals_dequantized
FROM (SELECT multivec_convert('[[0.3,-1.7,2.2,0.01],[5,-0.5,0.25,1]]', 'int8') d,
			 '[[0.5,0.1,-0.3,0.9],[-1,2,0.5,0]]'::multivec q) s;

-- dimensions must match; NULL in, NULL out
SELECT maxsim('[[1,0]]', '[[1,1,1]]');
SELECT '[[1,0]]'::multivec @# '[[1,1,1]]';
SELECT maxsim(NULL, '[[1]]') IS NULL, ('[[1]]'::multivec @# NULL) IS NULL;

-- a SQL reference implementation over real[][], checked on random multivectors of every format
CREATE FUNCTION maxsim_ref(doc multivec, query multivec) RETURNS float8 LANGUAGE sql AS $$
	SELECT sum(best) FROM (
		SELECT max(dot) best FROM (
			SELECT i, j, sum(d[j][k]::float8 * q[i][k]::float8) dot
			FROM (SELECT doc::real[] d, query::real[] q) a,
				 generate_series(1, multivec_ntok(query)) i, generate_series(1, multivec_ntok(doc)) j,
				 generate_series(1, multivec_dims(doc)) k
			GROUP BY i, j) dots
		GROUP BY i) maxima
$$;
-- random multivector literal: ntok tokens of d dimensions (deterministic after setseed)
CREATE FUNCTION rmv(ntok int, d int) RETURNS multivec LANGUAGE sql AS $$
	SELECT ('[' || string_agg(rvec(d), ',') || ']')::multivec FROM generate_series(1, ntok)
$$;
SELECT setseed(0.5);
CREATE TABLE mvd (id int, f32 multivec(24), f16 multivec(24, float16), i8 multivec(24, int8));
INSERT INTO mvd SELECT i, m, m, m FROM (SELECT i, rmv(1 + (i * 7) % 40, 24) m FROM generate_series(1, 60) i) s;
CREATE TABLE mvq AS SELECT i AS qid, rmv(1 + (i * 5) % 33, 24) q FROM generate_series(1, 4) i;
SELECT count(*) AS pairs,
	   count(*) FILTER (WHERE abs(maxsim(f32, q) - maxsim_ref(f32, q)) > 1e-4) AS f32_mismatches,
	   count(*) FILTER (WHERE abs(maxsim(f16, q) - maxsim_ref(f16, q)) > 1e-4) AS f16_mismatches,
	   count(*) FILTER (WHERE abs(maxsim(i8, q) - maxsim_ref(i8, q)) > 1e-4) AS i8_mismatches,
	   count(*) FILTER (WHERE maxsim(f16, q) <> maxsim(f16::real[]::multivec, q)) AS f16_not_exact,
	   count(*) FILTER (WHERE maxsim(i8, q) <> maxsim(i8::real[]::multivec, q)) AS i8_not_exact,
	   count(*) FILTER (WHERE abs(maxsim(f32, q) - maxsim(f16, q)) > 0.01 * multivec_ntok(q)) AS f16_far,
	   count(*) FILTER (WHERE abs(maxsim(f32, q) - maxsim(i8, q)) > 0.01 * multivec_ntok(q)) AS i8_far
FROM mvd, mvq;

-- ORDER BY mv @# q LIMIT k is the ranking by maxsim, for every format
SELECT qid, f,
	   (SELECT array_agg(id) FROM (SELECT id FROM mvd ORDER BY
			CASE f WHEN 'f32' THEN f32 WHEN 'f16' THEN f16 ELSE i8 END @# q, id LIMIT 5) s) =
	   (SELECT array_agg(id) FROM (SELECT id FROM mvd ORDER BY
			maxsim(CASE f WHEN 'f32' THEN f32 WHEN 'f16' THEN f16 ELSE i8 END, q) DESC, id LIMIT 5) s) AS same_top5
FROM mvq, unnest(ARRAY['f32', 'f16', 'i8']) f ORDER BY qid, f;
SELECT id, round((f32 @# q)::numeric, 4) AS distance, round(maxsim(f32, q)::numeric, 4) AS maxsim
FROM mvd, mvq WHERE qid = 1 ORDER BY f32 @# q LIMIT 3;

-- inputs larger than one kernel call (more than 240 query tokens, doc split into pieces) give the same
-- maxima as scoring the pieces separately
CREATE TABLE mvl AS SELECT rmv(700, 128) d, rmv(300, 128) q;
SELECT abs(maxsim(d, q) - (SELECT sum(greatest(maxsim(d1, qi), maxsim(d2, qi)))
		FROM generate_series(1, 300) i,
			 LATERAL (SELECT (q::real[])[i:i][:]::multivec qi) t,
			 LATERAL (SELECT (d::real[])[1:350][:]::multivec d1, (d::real[])[351:700][:]::multivec d2) u))
	   < 1e-9 * abs(maxsim(d, q)) AS pieces_agree
FROM mvl;
DROP TABLE mvl;

-- long MaxSims are interruptible: 8192 x 8192 tokens of 4000 dimensions are 2.7e11 multiply-adds, seconds at
-- any speed; a 300 ms statement timeout must stop the kernel long before it could finish on its own (the
-- 131 MB value is built first, so only the kernel's own interrupt checks are timed)
CREATE TEMP TABLE mvbig AS SELECT array_fill(0.5::real, ARRAY[8192, 4000])::multivec m;
SET statement_timeout = '300ms';
DO $$
DECLARE
	t0 timestamptz := clock_timestamp();
BEGIN
	PERFORM maxsim(m, m) FROM mvbig;
	RAISE NOTICE 'maxsim ran to the end: not interrupted';
EXCEPTION WHEN query_canceled THEN
	-- no wall-clock bound here (the suite also runs under ASan/UBSan and on loaded machines): the latency is
	-- measured by bench/fuzz.py (BENCHMARKS.md "Cancel latency")
	RAISE NOTICE 'canceled: %', clock_timestamp() >= t0;
END $$;
RESET statement_timeout;

DROP TABLE mvd, mvq, mvbig;
DROP FUNCTION maxsim_ref(multivec, multivec), rmv(int, int);
