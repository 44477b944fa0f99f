-- pgsieve 0.1.0 -> 0.2.0 (ALTER EXTENSION pgsieve UPDATE).
--
-- How releases work (as pgvector): sql/pgsieve--<current>.sql is the one full script that changes are made
-- in; every released version's full script is kept byte-for-byte (tests/test_upgrade.py checks their
-- digests), and sql/pgsieve--<previous>--<current>.sql carries exactly the differences between them.  Any
-- object added to, changed in or removed from the current full script must be added, changed or removed here
-- too: tests/test_upgrade.py compares the catalog of `CREATE EXTENSION pgsieve VERSION '0.1.0'; ALTER
-- EXTENSION pgsieve UPDATE` with a fresh `CREATE EXTENSION pgsieve` and fails on any difference.
--
-- 0.2.0 adds no SQL objects over 0.1.0: the release is the shared library's (same C entry points), and
-- indexes built under 0.1.0 stay valid (no on-disk format change).

\echo Use "ALTER EXTENSION pgsieve UPDATE TO '0.2.0'" to load this file. \quit
