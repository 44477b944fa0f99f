-- Helpers shared by the regress files (pg_regress runs them in one database).
-- knn(): ids (or, with output => 'dist', distances) of the k nearest rows by
-- one operator, through the index (and then it checks that the plan really
-- is an index scan) or through a sequential scan + sort, the ground truth.
-- Compare distances where ties are likely: the two plans order ties
-- differently.
CREATE FUNCTION knn(tbl regclass, expr text, op text, q text, k int, via_index bool,
					filter text DEFAULT 'true', output text DEFAULT 'id')
RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
	r text[];
	line text;
	plan text := '';
	dist text := format('%s %s %L', expr, op, q);
	sql text := format('SELECT %s AS x FROM %s WHERE %s ORDER BY %s LIMIT %s',
					   CASE WHEN output = 'dist' THEN dist ELSE 'id' END, tbl, filter, dist, k);
BEGIN
	PERFORM set_config('enable_seqscan', CASE WHEN via_index THEN 'off' ELSE 'on' END, true);
	PERFORM set_config('enable_indexscan', CASE WHEN via_index THEN 'on' ELSE 'off' END, true);
	PERFORM set_config('enable_bitmapscan', 'off', true);
	IF via_index THEN
		FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || sql LOOP
			plan := plan || line;
		END LOOP;
		IF plan NOT LIKE '%Index Scan%' THEN
			RAISE EXCEPTION 'expected an index scan, got: %', plan;
		END IF;
	END IF;
	EXECUTE format('SELECT array_agg(x::text) FROM (%s) s', sql) INTO r;
	RETURN coalesce(r, '{}');
END $$;

-- random vector literal of d dimensions (deterministic after setseed)
CREATE FUNCTION rvec(d int) RETURNS text LANGUAGE sql AS $$
	SELECT '[' || string_agg(round((random() - 0.5)::numeric, 4)::text, ',') || ']'
	FROM generate_series(1, d)
$$;
