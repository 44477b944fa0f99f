-- binary_scan on halfvec, on bit (exact Hamming order without heap access),
-- and on an expression.
SELECT setseed(0.3);
CREATE TABLE h (id int, emb halfvec(40));
INSERT INTO h SELECT i, rvec(40)::halfvec FROM generate_series(1, 1500) i;
CREATE INDEX ON h USING binary_scan (emb halfvec_cosine_ops);
CREATE INDEX ON h USING binary_scan (emb halfvec_l2_ops);
CREATE INDEX ON h USING binary_scan (emb halfvec_ip_ops);
SET pgsieve.binary_rerank = 1500;
CREATE TABLE hq AS SELECT q, rvec(40) AS v FROM generate_series(1, 5) q;
SELECT op, count(*) FILTER (WHERE knn('h', 'emb', op, v, 30, true) = knn('h', 'emb', op, v, 30, false)) AS equal
FROM hq, unnest(ARRAY['<->', '<#>', '<=>']) op GROUP BY op ORDER BY op;

-- bit columns: Hamming order is exact at any re-rank setting
CREATE TABLE b (id int, code bit(100));
INSERT INTO b SELECT i, binary_quantize(rvec(100)::vector)::bit(100) FROM generate_series(1, 3000) i;
CREATE INDEX ON b USING binary_scan (code bit_hamming_ops);
SET pgsieve.binary_rerank = 10;
SELECT count(*) FILTER (WHERE knn('b', 'code', '<~>', binary_quantize(v::vector)::text, 40, true, output => 'dist')
						= knn('b', 'code', '<~>', binary_quantize(v::vector)::text, 40, false, output => 'dist')) AS equal
FROM (SELECT rvec(100) v FROM generate_series(1, 5)) s;
SELECT cardinality(knn('b', 'code', '<~>', repeat('1', 100), 5000, true)) AS all_rows;

-- an expression index: re-rank evaluates the expression on the heap row
CREATE TABLE e (id int, emb vector(16));
INSERT INTO e SELECT i, rvec(16)::vector FROM generate_series(1, 800) i;
CREATE INDEX ON e USING binary_scan ((emb::halfvec(16)) halfvec_l2_ops);
SET pgsieve.binary_rerank = 800;
SELECT knn('e', 'emb::halfvec(16)', '<->', v, 25, true) = knn('e', 'emb::halfvec(16)', '<->', v, 25, false) AS expr_equal
FROM (SELECT rvec(16) v) s;

-- the wrong operator for the opclass is not served by the index
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM b ORDER BY code <%> repeat('1', 100)::bit(100) LIMIT 3;
RESET enable_seqscan;
RESET pgsieve.binary_rerank;

-- unsupported column types and options
CREATE TABLE bad (id int, t text, s sparsevec(5), v vector(3));
CREATE INDEX ON bad USING binary_scan (t);
CREATE INDEX ON bad USING binary_scan (s);
CREATE INDEX ON bad USING binary_scan (v) WITH (quantizer = median);
CREATE INDEX ON bad USING binary_scan (v) WITH (lists = 3);
CREATE INDEX ON bad USING binary_scan (id, v);
SELECT amname, opcname, opcdefault FROM pg_opclass c JOIN pg_am a ON a.oid = c.opcmethod
WHERE amname = 'binary_scan' ORDER BY opcname;

DROP TABLE h, hq, b, e, bad;
