-- maxsim_rerank reads candidates' tokens from a multivec_fde index's copy
-- (binary_scan/bscantokmap.c) when one covers the column, and from the table
-- for rows the index has no entry for.  Every score must equal maxsim() on
-- the table's value, whichever source it came from; the DEBUG1 line says
-- how many candidates each source gave.
SELECT setseed(0.31);
CREATE TABLE rtk (id int PRIMARY KEY, s float8, mv multivec(16)) WITH (fillfactor = 50);
INSERT INTO rtk SELECT i, 0, ('[' || (SELECT string_agg(rvec(16), ',') FROM generate_series(1, 5 + i % 30 + i * 0)) || ']')::multivec
FROM generate_series(1, 80) i;
INSERT INTO rtk VALUES (81, 0, NULL);
CREATE TABLE rtq (v multivec);
INSERT INTO rtq SELECT ('[' || rvec(16) || ',' || rvec(16) || ',' || rvec(16) || ']')::multivec;
-- the default FDE (10,240-bit codes): a few entries per data page, so the map spans pages
CREATE INDEX rtk_fde ON rtk USING multivec_fde (mv);

CREATE FUNCTION rtk_check() RETURNS TABLE (scored bigint, exact bool) LANGUAGE sql AS $$
	SELECT count(*), bool_and(x.score = maxsim(r.mv, (SELECT v FROM rtq)))
	FROM maxsim_rerank('rtk', 'mv', ARRAY(SELECT ctid FROM rtk ORDER BY id), ARRAY(SELECT 0::float8 FROM rtk),
		(SELECT v FROM rtq), 1000) x JOIN rtk r ON r.ctid = x.tid
$$;

-- every non-NULL row from the index's copy
SET client_min_messages = debug1;
SELECT * FROM rtk_check();
-- the map off: every row from the table, same scores
SET pgsieve.token_map_mb = 0;
SELECT * FROM rtk_check();
RESET pgsieve.token_map_mb;
RESET client_min_messages;

-- delete a third, VACUUM, insert new rows (some reusing the freed TIDs) with other values:
-- the map made before names pages whose entries are gone or belong to new rows, and
-- knows nothing of the others
CREATE TEMP TABLE old_tids AS SELECT ctid AS t FROM rtk WHERE id BETWEEN 1 AND 30;
DELETE FROM rtk WHERE id BETWEEN 1 AND 30;
VACUUM rtk;
INSERT INTO rtk SELECT 100 + i, 0, ('[' || (SELECT string_agg(rvec(16), ',') FROM generate_series(1, 3 + i % 20 + i * 0)) || ']')::multivec
FROM generate_series(1, 60) i;
SELECT count(*) > 0 AS tids_reused FROM rtk WHERE id > 100 AND ctid IN (SELECT t FROM old_tids);
SELECT * FROM rtk_check();
-- the misses above (rows the map did not know; the index grew by more than a sixteenth)
-- make it again: all from the index
SET client_min_messages = debug1;
SELECT * FROM rtk_check();
RESET client_min_messages;

-- HOT updates (a column the index does not cover): the new row versions have no entry
-- of their own (the index points to their chains' roots), so those 10 come from the
-- table; the scores stay exact
UPDATE rtk SET s = 1 WHERE id BETWEEN 31 AND 40;
SET client_min_messages = debug1;
SELECT * FROM rtk_check();
RESET client_min_messages;

-- REINDEX (a new relfilenode) and an index without a token copy
REINDEX INDEX rtk_fde;
SET client_min_messages = debug1;
SELECT * FROM rtk_check();
RESET client_min_messages;
DROP INDEX rtk_fde;
CREATE INDEX rtk_fde_plain ON rtk USING multivec_fde (mv) WITH (store_tokens = false);
SET client_min_messages = debug1;
SELECT * FROM rtk_check();
RESET client_min_messages;
-- an expression index is not the column's value: not used
DROP INDEX rtk_fde_plain;
CREATE INDEX rtk_fde_expr ON rtk USING multivec_fde (multivec_convert(mv, 'float16'));
SET client_min_messages = debug1;
SELECT * FROM rtk_check();
RESET client_min_messages;

DROP TABLE rtk, rtq;
DROP FUNCTION rtk_check();
