-- pgsieve_index_check(index, heapallindexed): passes on sound indexes of
-- every access method (after inserts, deletes, VACUUM); refuses what it
-- cannot check.  tests/test_crash.py proves it finds damaged pages.
SELECT setseed(0.7);
CREATE TABLE ck (id int PRIMARY KEY, v vector(8), sp sparsevec(50), mv multivec(3));
INSERT INTO ck SELECT i,
	CASE WHEN i % 9 = 0 THEN NULL ELSE rvec(8)::vector(8) END,
	CASE WHEN i % 7 = 0 THEN NULL ELSE ('{' || (1 + i % 20) || ':1.5,' || (25 + i % 25) || ':0.5}/50')::sparsevec END,
	CASE WHEN i % 5 = 0 THEN NULL ELSE ('[' || rvec(3) || ',' || rvec(3) || ']')::multivec(3) END
FROM generate_series(1, 500) i;
CREATE INDEX ck_bs ON ck USING binary_scan (v vector_cosine_ops);
CREATE INDEX ck_sp ON ck USING sparse_block (sp);
CREATE INDEX ck_mv ON ck USING multivec_fde (mv) WITH (reps = 2, ksim = 2, dproj = 4);
SELECT pgsieve_index_check('ck_bs'), pgsieve_index_check('ck_sp'), pgsieve_index_check('ck_mv');
SELECT pgsieve_index_check('ck_bs', true), pgsieve_index_check('ck_sp', true), pgsieve_index_check('ck_mv', true);
-- inserts (insert pages, sparse_block's tail), deletes, VACUUM
INSERT INTO ck SELECT i, rvec(8)::vector(8), ('{' || (1 + i % 50) || ':2}/50')::sparsevec,
	('[' || rvec(3) || ']')::multivec(3) FROM generate_series(501, 600) i;
DELETE FROM ck WHERE id % 4 = 0;
SELECT pgsieve_index_check('ck_bs', true), pgsieve_index_check('ck_sp', true), pgsieve_index_check('ck_mv', true);
VACUUM ck;
SELECT pgsieve_index_check('ck_bs', true), pgsieve_index_check('ck_sp', true), pgsieve_index_check('ck_mv', true);
-- what it refuses
SELECT pgsieve_index_check('ck_pkey');
SELECT pgsieve_index_check('ck');
-- EXECUTE is revoked from PUBLIC, as amcheck's functions are
SELECT has_function_privilege('public', 'pgsieve_index_check(regclass, boolean)', 'EXECUTE') AS public_may_run;
DROP TABLE ck;
