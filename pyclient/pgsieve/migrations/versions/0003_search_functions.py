"""pgsieve_catalog.search(): collection pipelines callable from SQL, in both modes

Revision ID: pgsieve_0003
Revises: pgsieve_0002
Create Date: 2026-11-29

``pgsieve_catalog.search(collection text, queries jsonb, pipeline jsonb DEFAULT NULL, k integer DEFAULT 10,
filter jsonb DEFAULT NULL) RETURNS TABLE (id text, score float8, stages jsonb)`` builds the same single
statement as the Python client's :mod:`pgsieve.pipeline_sql` (gathers → RRF / weighted fusion → MaxSim / exact
re-rank, metadata filter) from the collection's catalog entry and runs it.  Query values are JSON, keyed by field
(a dense vector as an array, a sparse vector in pgvector's text form ``'{i:v,...}/dim'``, a multivector as an
array of token arrays; a managed-mode multivector gather also needs ``<field>_fde``, the query's FDE).  The
functions reference no pgvector or pgsieve type in their signatures, so the catalog installs without either
extension; at run time they look up the schemas of ``vector`` (and ``pgsieve``) and run with those on the
search_path.  Validation errors raise SQLSTATE 22023 (invalid_parameter_value) before the statement runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from alembic import op

revision: str = "pgsieve_0003"
down_revision: Union[str, Sequence[str], None] = "pgsieve_0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

SCHEMA = "pgsieve_catalog"

_FIELD = f"""
CREATE FUNCTION {SCHEMA}._field(spec jsonb, fname text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    f jsonb;
BEGIN
    SELECT x INTO f FROM jsonb_array_elements(spec->'fields') AS x WHERE x->>'name' = fname;
    IF f IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown field %L; the collection has %s', fname,
                             (SELECT string_agg(x->>'name', ', ') FROM jsonb_array_elements(spec->'fields') AS x));
    END IF;
    RETURN f;
END
$fn$
"""

_QUERY = f"""
CREATE FUNCTION {SCHEMA}._query_literal(mode text, f jsonb, queries jsonb, what text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    fname text := f->>'name';
    kind text := f->>'kind';
    dim int := (f->>'dim')::int;
    v jsonb := queries->fname;
    typ text;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('the pipeline reads field %L (%s); queries has no value for it', fname, what);
    END IF;
    IF kind IN ('dense', 'binary') THEN
        IF jsonb_typeof(v) <> 'array' OR jsonb_array_length(v) <> dim THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('query for field %L must be an array of %s numbers', fname, dim);
        END IF;
        RETURN format('%L::vector(%s)', v::text, dim);
    ELSIF kind = 'sparse' THEN
        IF jsonb_typeof(v) <> 'string' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('query for sparse field %L must be a string in sparsevec text form (''{{i:v,...}}/%s'')',
                                 fname, dim);
        END IF;
        RETURN format('%L::sparsevec(%s)', v #>> '{{}}', dim);
    END IF;
    IF jsonb_typeof(v) <> 'array' OR jsonb_array_length(v) = 0 OR EXISTS (
            SELECT 1 FROM jsonb_array_elements(v) AS t
            WHERE jsonb_typeof(t) <> 'array' OR jsonb_array_length(t) <> dim) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('query for multivector field %L must be a non-empty array of token arrays of %s numbers',
                             fname, dim);
    END IF;
    IF mode = 'pgsieve' THEN
        RETURN format('%L::multivec', v::text);
    END IF;
    typ := CASE WHEN f->>'fmt' = 'float32' THEN 'vector' ELSE 'halfvec' END;
    RETURN format('(SELECT array_agg(e.t::text::%s(%s) ORDER BY e.o) FROM jsonb_array_elements(%L::jsonb) '
                  'WITH ORDINALITY AS e(t, o))', typ, dim, v::text);
END
$fn$
"""

_MAXSIM = f"""
CREATE FUNCTION {SCHEMA}._maxsim_sql(mode text, f jsonb, col text, q text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN mode = 'pgsieve' THEN format('maxsim(%s, %s)', col, q)
       ELSE format('(SELECT sum(m.best) FROM (SELECT max(-(d <#> qt.v)) AS best FROM unnest(%s) WITH ORDINALITY '
                   'AS qt(v, i) CROSS JOIN unnest(%s) AS d GROUP BY qt.i) AS m)', q, col) END
"""

_GATHER = f"""
CREATE FUNCTION {SCHEMA}._gather_sql(mode text, tbl text, spec jsonb, f jsonb, kind text, k int,
                                      queries jsonb, filt text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    c text := quote_ident(f->>'name');
    dim int := (f->>'dim')::int;
    src jsonb;
    q text;
    n_fetch int;
    one text := 'SELECT id, -(%1$s <#> %2$s) AS score FROM %3$s WHERE %4$s%5$s ORDER BY %1$s <#> %2$s LIMIT %6$s';
BEGIN
    IF kind = 'sparse' THEN
        q := {SCHEMA}._query_literal(mode, f, queries, 'sparse gather');
        IF mode = 'pgsieve' THEN
            PERFORM set_config('pgsieve.sparse_top_k',
                               greatest(k, coalesce(nullif(current_setting('pgsieve.sparse_top_k', true), '')::int, 0))::text, true);
            RETURN format(one, c, q, tbl, c || ' IS NOT NULL', filt, k);
        END IF;
        PERFORM {SCHEMA}._hnsw(k);
        RETURN format('SELECT id, score FROM ((%s) UNION ALL (%s)) AS u ORDER BY score DESC, id LIMIT %s',
                      format(one, c, q, tbl, quote_ident(f->>'name' || '_nnz') || ' <= 1000', filt, k),
                      format(one, c, q, tbl, quote_ident(f->>'name' || '_nnz') || ' > 1000', filt, k), k);
    ELSIF kind = 'dense' THEN
        q := {SCHEMA}._query_literal(mode, f, queries, 'dense gather');
        PERFORM {SCHEMA}._hnsw(k);
        RETURN format('SELECT id, 1 - (%1$s <=> %2$s) AS score FROM %3$s WHERE %1$s IS NOT NULL%4$s '
                      'ORDER BY %1$s <=> %2$s LIMIT %5$s', c, q, tbl, filt, k);
    ELSIF kind = 'binary' THEN
        src := CASE WHEN f->>'source' IS NULL THEN f ELSE {SCHEMA}._field(spec, f->>'source') END;
        q := {SCHEMA}._query_literal(mode, src, queries, 'binary gather');
        c := quote_ident(src->>'name');
        IF mode = 'pgsieve' THEN
            PERFORM set_config('pgsieve.binary_rerank',
                               greatest(k, 200, coalesce(nullif(current_setting('pgsieve.binary_rerank', true), '')::int, 0))::text, true);
            RETURN format('SELECT id, 1 - ((%1$s::halfvec(%6$s)) <=> %2$s::halfvec(%6$s)) AS score FROM %3$s '
                          'WHERE %1$s IS NOT NULL%4$s ORDER BY (%1$s::halfvec(%6$s)) <=> %2$s::halfvec(%6$s) '
                          'LIMIT %5$s', c, q, tbl, filt, k, dim);
        END IF;
        n_fetch := k * (f->>'oversample')::int;
        PERFORM {SCHEMA}._hnsw(n_fetch);
        RETURN format('SELECT id, 1 - (v <=> %2$s) AS score FROM (SELECT id, %1$s AS v FROM %3$s '
                      'WHERE %1$s IS NOT NULL%4$s ORDER BY (binary_quantize(%1$s)::bit(%6$s)) <~> '
                      'binary_quantize(%2$s)::bit(%6$s) LIMIT %7$s) AS b ORDER BY v <=> %2$s, id LIMIT %5$s',
                      c, q, tbl, filt, k, dim, n_fetch);
    END IF;
    -- multivector
    IF NOT (f->>'index')::boolean THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('multivector field %L was created without an index; it can only re-rank', f->>'name');
    END IF;
    q := {SCHEMA}._query_literal(mode, f, queries, 'multivector gather');
    IF mode = 'pgsieve' THEN
        PERFORM set_config('pgsieve.fde_rerank',
                           greatest(k, 200, coalesce(nullif(current_setting('pgsieve.fde_rerank', true), '')::int, 0))::text, true);
        RETURN format('SELECT id, -(%1$s @# %2$s) AS score FROM %3$s WHERE %1$s IS NOT NULL%4$s '
                      'ORDER BY %1$s @# %2$s LIMIT %5$s', c, q, tbl, filt, k);
    END IF;
    IF jsonb_typeof(queries->(f->>'name' || '_fde')) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('managed mode: a gather over multivector field %L needs the query FDE in queries.%s',
                             f->>'name', f->>'name' || '_fde');
    END IF;
    n_fetch := k * (f->>'oversample')::int;
    PERFORM {SCHEMA}._hnsw(n_fetch);
    RETURN format('SELECT id, %1$s AS score FROM (SELECT * FROM %2$s WHERE %3$s IS NOT NULL%4$s '
                  'ORDER BY %3$s <#> %5$L::vector LIMIT %6$s) AS c ORDER BY score DESC, id LIMIT %7$s',
                  {SCHEMA}._maxsim_sql(mode, f, 'c.' || c, q), tbl, quote_ident(f->>'name' || '_fde'), filt,
                  (queries->(f->>'name' || '_fde'))::text, n_fetch, k);
END
$fn$
"""

_HNSW = f"""
CREATE FUNCTION {SCHEMA}._hnsw(n_fetch int) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT set_config('hnsw.ef_search', least(1000, greatest(40, n_fetch,
                      coalesce(nullif(current_setting('hnsw.ef_search', true), '')::int, 0)))::text, true);
    -- pgvector 0.8 and later (0.7 has no iterative scans: the setting is then left alone)
    SELECT set_config('hnsw.iterative_scan', 'strict_order', true)
    WHERE (SELECT string_to_array(extversion, '.')::int[] >= '{{0,8}}' FROM pg_extension WHERE extname = 'vector');
END
"""

_SEARCH = f"""
CREATE FUNCTION {SCHEMA}.search(collection text, queries jsonb, pipeline jsonb DEFAULT NULL, k integer DEFAULT 10,
                                 filter jsonb DEFAULT NULL)
RETURNS TABLE (id text, score double precision, stages jsonb)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    coll record;
    spec jsonb;
    tbl text;
    p jsonb;
    g jsonb;
    f jsonb;
    fusion jsonb;
    rr jsonb;
    i int := 0;
    gk int;
    kind text;
    label text;
    labels text[] := '{{}}';
    filt text := '';
    ctes text[] := '{{}}';
    branches text[] := '{{}}';
    norm text;
    contrib text;
    k_fused int;
    fstage text := '';
    expr text;
    final text;
    stmt text;
    path text;
    want text;
BEGIN
    SELECT c.mode, c.spec, c.table_name INTO coll FROM {SCHEMA}.collections AS c WHERE c.name = collection;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'undefined_object',
            MESSAGE = format('no collection %L in {SCHEMA}.collections', collection);
    END IF;
    spec := coll.spec;
    IF k IS NULL OR k < 1 OR k > 100000 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = format('k must be in 1..100000, got %s', k);
    END IF;
    IF queries IS NULL OR jsonb_typeof(queries) <> 'object' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'queries must be a JSON object {{field: query value}}';
    END IF;
    IF filter IS NOT NULL THEN
        IF jsonb_typeof(filter) <> 'object' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'filter must be a JSON object (matched with metadata @> filter)';
        END IF;
        filt := format(' AND metadata @> %L::jsonb', filter::text);
    END IF;
    p := coalesce(pipeline, spec->'default_pipeline');
    IF p IS NULL OR jsonb_typeof(p) <> 'object' OR jsonb_typeof(p->'gather') IS DISTINCT FROM 'array'
            OR jsonb_array_length(p->'gather') = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'pipeline must be a JSON object with a non-empty "gather" array';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_object_keys(p) AS x WHERE x NOT IN ('gather', 'fusion', 'rerank')) THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = 'unknown pipeline keys (known: gather, fusion, rerank)';
    END IF;
    fusion := nullif(p->'fusion', 'null'::jsonb);
    rr := nullif(p->'rerank', 'null'::jsonb);
    IF jsonb_array_length(p->'gather') > 1 AND fusion IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('a pipeline with %s gather stages needs a fusion stage', jsonb_array_length(p->'gather'));
    END IF;
    IF fusion IS NOT NULL AND coalesce(fusion->>'method', 'rrf') NOT IN ('rrf', 'weighted') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('fusion method must be rrf or weighted, got %s', fusion->>'method');
    END IF;
    tbl := format('%I.%I', coalesce(spec->>'schema', 'public'), coll.table_name);
    SELECT string_agg(quote_ident(n.nspname), ', ') INTO path
    FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace WHERE e.extname IN ('vector', 'pgsieve');
    PERFORM set_config('search_path', concat_ws(', ', path, 'pg_catalog', 'pg_temp'), true);

    FOR g IN SELECT x FROM jsonb_array_elements(p->'gather') AS x LOOP
        f := {SCHEMA}._field(spec, g->>'field');
        kind := coalesce(g->>'kind', f->>'kind');
        IF kind <> f->>'kind' THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('gather(%L, kind=%L): field %L is a %s field', f->>'name', kind, f->>'name', f->>'kind');
        END IF;
        gk := coalesce((g->>'k')::int, 100);
        IF gk < 1 OR gk > 100000 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('gather(%L) k must be in 1..100000, got %s', f->>'name', gk);
        END IF;
        label := coalesce(g->>'name', f->>'name');
        IF label = ANY (labels) OR label IN ('rrf', 'weighted', 'maxsim', 'exact') THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('gather stage name %L is repeated or reserved', label);
        END IF;
        labels := labels || label;
        norm := '';
        IF fusion IS NULL THEN
            contrib := 'score';
        ELSIF coalesce(fusion->>'method', 'rrf') = 'rrf' THEN
            contrib := format('%s::float8 / (%s::float8 + rank)',
                              CASE WHEN fusion ? 'weights' THEN coalesce((fusion->'weights'->>label)::float8, 0) ELSE 1 END,
                              coalesce((fusion->>'k')::float8, 60));
        ELSE
            norm := ', coalesce((score - min(score) OVER ()) / nullif(max(score) OVER () - min(score) OVER (), 0), 1.0) AS norm';
            contrib := format('%s::float8 * norm', coalesce((fusion->'weights'->>label)::float8, 0));
        END IF;
        ctes := ctes || format('g_%s AS (SELECT id, score, row_number() OVER (ORDER BY score DESC, id) AS rank%s '
                               'FROM (%s) AS s)', i, norm,
                               {SCHEMA}._gather_sql(coll.mode, tbl, spec, f, kind, gk, queries, filt));
        branches := branches || format('SELECT %L::text AS stage, id, rank, score, %s AS contrib FROM g_%s',
                                       label, contrib, i);
        i := i + 1;
    END LOOP;
    ctes := ctes || format('cand AS (%s)', array_to_string(branches, ' UNION ALL '));
    k_fused := coalesce((fusion->>'limit')::int, CASE WHEN rr IS NULL THEN k ELSE greatest(coalesce((rr->>'k')::int, 100), k) END);
    ctes := ctes || format('fused AS (SELECT id, fscore, stages, row_number() OVER (ORDER BY fscore DESC, id) AS frank '
                           'FROM (SELECT id, sum(contrib)::float8 AS fscore, jsonb_object_agg(stage, '
                           'jsonb_build_object(''rank'', rank, ''score'', score)) AS stages FROM cand GROUP BY id) AS a '
                           'ORDER BY fscore DESC, id LIMIT %s)', k_fused);
    IF fusion IS NOT NULL THEN
        fstage := format(' || jsonb_build_object(%L, jsonb_build_object(''rank'', r.frank, ''score'', r.fscore))',
                         coalesce(fusion->>'method', 'rrf'));
    END IF;
    IF rr IS NULL THEN
        final := format('SELECT r.id, r.fscore AS score, r.stages%s AS stages FROM fused AS r '
                        'ORDER BY r.fscore DESC, r.id LIMIT %s', fstage, k);
    ELSE
        IF rr->>'method' NOT IN ('maxsim', 'exact') THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('rerank method must be maxsim or exact, got %s', rr->>'method');
        END IF;
        want := CASE WHEN rr->>'method' = 'maxsim' THEN 'multivector' ELSE 'dense' END;
        IF rr->>'field' IS NULL THEN
            SELECT x INTO f FROM jsonb_array_elements(spec->'fields') AS x WHERE x->>'kind' = want LIMIT 1;
            IF f IS NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                    MESSAGE = format('rerank %s: the collection has no %s field', rr->>'method', want);
            END IF;
        ELSE
            f := {SCHEMA}._field(spec, rr->>'field');
        END IF;
        IF f->>'kind' <> want THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('rerank %s needs a %s field, %L is %s', rr->>'method', want, f->>'name', f->>'kind');
        END IF;
        IF rr->>'method' = 'maxsim' AND coll.mode = 'pgsieve' THEN
            ctes := ctes || format(
                'rr AS (SELECT r.id, r.fscore, r.frank, r.stages, m.score AS rscore FROM maxsim_rerank(%L::regclass, '
                '%L::name, ARRAY(SELECT t.ctid FROM fused AS f JOIN %s AS t ON t.id = f.id ORDER BY f.fscore DESC, f.id), '
                'ARRAY(SELECT f.fscore FROM fused AS f ORDER BY f.fscore DESC, f.id), %s, %s, %s::float8, %s::integer) AS m '
                'JOIN %s AS t ON t.ctid = m.tid JOIN fused AS r ON r.id = t.id)',
                tbl, f->>'name', tbl, {SCHEMA}._query_literal(coll.mode, f, queries, 'MaxSim re-rank'), k,
                coalesce(rr->>'alpha', 'NULL'), coalesce(rr->>'beta', 'NULL'), tbl);
        ELSE
            IF rr ? 'alpha' OR rr ? 'beta' THEN
                RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                    MESSAGE = 'rerank alpha/beta (candidate pruning, early exit) need pgsieve mode and method maxsim';
            END IF;
            IF rr->>'method' = 'maxsim' THEN
                expr := {SCHEMA}._maxsim_sql(coll.mode, f, 't.' || quote_ident(f->>'name'),
                                              {SCHEMA}._query_literal(coll.mode, f, queries, 'MaxSim re-rank'));
            ELSE
                expr := format('1 - (t.%I <=> %s)', f->>'name',
                               {SCHEMA}._query_literal(coll.mode, f, queries, 'exact re-rank'));
            END IF;
            ctes := ctes || format('rr AS (SELECT r.id, r.fscore, r.frank, r.stages, %s AS rscore '
                                   'FROM fused AS r JOIN %s AS t ON t.id = r.id)', expr, tbl);
        END IF;
        final := format('SELECT r.id, r.rscore AS score, r.stages%s || jsonb_build_object(%L, jsonb_build_object('
                        '''rank'', row_number() OVER (ORDER BY r.rscore DESC NULLS LAST, r.id), ''score'', r.rscore)) '
                        'AS stages FROM rr AS r ORDER BY r.rscore DESC NULLS LAST, r.id LIMIT %s',
                        fstage, rr->>'method', k);
    END IF;
    stmt := 'WITH ' || array_to_string(ctes, ', ') || ' ' || final;
    RETURN QUERY EXECUTE stmt;
END
$fn$
"""

_COMMENT = f"""
COMMENT ON FUNCTION {SCHEMA}.search(text, jsonb, jsonb, integer, jsonb) IS
'Run a pgsieve collection pipeline (gathers, RRF/weighted fusion, MaxSim/exact re-rank, metadata filter) as one statement'
"""

_FUNCTIONS = ("search(text, jsonb, jsonb, integer, jsonb)",
              "_gather_sql(text, text, jsonb, jsonb, text, integer, jsonb, text)", "_hnsw(integer)",
              "_maxsim_sql(text, jsonb, text, text)", "_query_literal(text, jsonb, jsonb, text)",
              "_field(jsonb, text)")


def upgrade() -> None:
    for ddl in (_FIELD, _QUERY, _MAXSIM, _HNSW, _GATHER, _SEARCH, _COMMENT):
        op.execute(ddl)


def downgrade() -> None:
    for fn in _FUNCTIONS:
        op.execute(f"DROP FUNCTION {SCHEMA}.{fn}")
