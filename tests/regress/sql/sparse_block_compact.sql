-- sparse_block's compact records: a scan estimates each block document from
-- float16 values (scaled per document by a power of two) and 16-bit (or,
-- over 65,536 dimensions, 32-bit) indices, and scores exactly only those
-- whose estimate, within its error bound, may enter the top-k.  Whatever the
-- values' range, an exhaustive scan must equal the sequential scan.
SELECT setseed(0.25);
SET pgsieve.sparse_query_cut = 0;
SET pgsieve.sparse_heap_factor = 0;

-- values over forty orders of magnitude, within one document and across
-- documents, and documents one float apart
CREATE TABLE spc (id int, emb sparsevec(3000));
INSERT INTO spc SELECT i, (SELECT ('{' || string_agg(t || ':' || (power(10, floor(random() * 41) - 20) * (1 + random()))::real, ',') || '}/3000')
	FROM (SELECT DISTINCT (1 + floor(3000 * power(random(), 2)))::int AS t
		  FROM generate_series(1, 2 + (i % 40))) x)::sparsevec
FROM generate_series(1, 1500) i;
-- near-ties: the same vector scaled by 1, 1 + 2^-23, 1 + 2^-22
INSERT INTO spc SELECT 2000 + k * 100 + i, (SELECT ('{' || string_agg(t || ':' || (0.5 + t / 3000.0)::real * (1 + k * 2^(-23))::real, ',') || '}/3000')
	FROM generate_series(1 + i, 3000, 97) t)::sparsevec
FROM generate_series(0, 2) k, generate_series(1, 20) i;
CREATE INDEX spc_idx ON spc USING sparse_block (emb) WITH (n_postings = 100000, max_fraction = 100);
CREATE TABLE spcq (q int, v text);
INSERT INTO spcq SELECT 1, emb::text FROM spc WHERE id = 7;
INSERT INTO spcq SELECT 2, emb::text FROM spc WHERE id = 2105;
-- mixed signs and magnitudes in the query
INSERT INTO spcq SELECT 3, (SELECT ('{' || string_agg(t || ':' || ((random() - 0.3) * power(10, floor(random() * 9) - 4))::real, ',') || '}/3000')
	FROM (SELECT DISTINCT (1 + floor(3000 * power(random(), 2)))::int AS t FROM generate_series(1, 60)) x);
INSERT INTO spcq SELECT 4, (SELECT ('{' || string_agg(t || ':1', ',') || '}/3000') FROM generate_series(1, 3000, 97) t);
SELECT q, knn('spc', 'emb', '<#>', v, 60, true, output => 'dist') = knn('spc', 'emb', '<#>', v, 60, false, output => 'dist') AS dist_equal
FROM spcq ORDER BY q;
SELECT pgsieve_index_check('spc_idx', true);

-- over 65,536 dimensions the compact indices are 32-bit
CREATE TABLE spw (id int, emb sparsevec(200000));
INSERT INTO spw SELECT i, (SELECT ('{' || string_agg(t || ':' || (random() * 2 + 0.01)::real, ',') || '}/200000')
	FROM (SELECT DISTINCT (1 + floor(200000 * power(random(), 3)))::int AS t
		  FROM generate_series(1, 3 + (i % 50))) x)::sparsevec
FROM generate_series(1, 1500) i;
CREATE INDEX spw_idx ON spw USING sparse_block (emb) WITH (n_postings = 100000, max_fraction = 100);
CREATE TABLE spwq AS SELECT row_number() OVER (ORDER BY id) AS q, emb::text AS v FROM spw WHERE id IN (3, 444, 1499);
-- (rows sharing no term with the query tie at 0, in no set order: distances are compared)
SELECT q, knn('spw', 'emb', '<#>', v, 50, true, output => 'dist') = knn('spw', 'emb', '<#>', v, 50, false, output => 'dist') AS dist_equal
FROM spwq ORDER BY q;
SELECT pgsieve_index_check('spw_idx', true);
-- a term above 65,535 is found through the index
SELECT knn('spw', 'emb', '<#>', '{199999:1,150000:1,70000:1}/200000', 5, true, output => 'dist')
	 = knn('spw', 'emb', '<#>', '{199999:1,150000:1,70000:1}/200000', 5, false, output => 'dist') AS high_terms_equal;

RESET pgsieve.sparse_query_cut;
RESET pgsieve.sparse_heap_factor;
DROP TABLE spc, spcq, spw, spwq;
