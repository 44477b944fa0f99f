-- multivec: text I/O, formats, type modifiers, casts with pgvector's types, and every input error

-- text I/O round trips (white space anywhere between elements; shortest exact float output)
SELECT '[[1,2,3],[4,5,6]]'::multivec;
SELECT E' \t[ [ 1 , 2.5 ] ,\n[-3e2,  4]]  '::multivec;
SELECT '[[0.1,-0,1.5e-7,123456789,-3.4e38]]'::multivec;
SELECT '[[7]]'::multivec, multivec_ntok('[[7]]'), multivec_dims('[[7]]');
SELECT m::text::multivec::text = m::text AS text_round_trip
FROM (VALUES ('[[0.1,0.2,0.3],[1e-30,-1e30,3.1415927]]'::multivec)) t(m);

-- formats: float16 (IEEE half, round to nearest even) and int8 (scale = max|x|/127 per token)
SELECT multivec_convert('[[0.1,0.2],[65504,-0.00006103515625]]', 'float16');
SELECT multivec_convert('[[1.00048828125,1.00146484375]]', 'float16');   -- ties to even: 1, 1.001953125
SELECT multivec_convert('[[1,2,3],[-1,0,2]]', 'int8');                    -- codes 42,85,127 / -64,0,127
SELECT multivec_convert('[[127,-63.5,0.5],[0,0,0]]', 'int8');             -- rint half to even; zero token: scale 0
SELECT multivec_format(m), multivec_format(multivec_convert(m, 'FLOAT16')),
	   multivec_format(multivec_convert(m, 'Int8')), multivec_format(multivec_convert(m, 'float32'))
FROM (VALUES ('[[1,2]]'::multivec)) t(m);
-- converting back and forth: float16 -> float32 is exact; int8 -> float16 keeps the dequantized values
SELECT multivec_convert(multivec_convert('[[0.1,0.2]]', 'float16'), 'float32');
SELECT multivec_convert(multivec_convert('[[1,2,3]]', 'int8'), 'float16');

-- binary output, one value per format (int32 ntok, int16 dim, int16 format, [scales], elements)
SELECT multivec_send('[[1,2],[3,4]]');
SELECT multivec_send(multivec_convert('[[1,2],[3,4]]', 'float16'));
SELECT multivec_send(multivec_convert('[[1,2],[3,-4]]', 'int8'));

-- type modifiers: multivec(dim) or multivec(dim, format), format an identifier or a string
CREATE TABLE mvt (id int, a multivec, b multivec(3), c multivec(3, float16), d multivec(3, 'int8'),
				  e multivec(3, FLOAT32));
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'mvt'::regclass AND attnum > 1 ORDER BY attnum;
INSERT INTO mvt VALUES (1, '[[1,2,3],[4,5,6]]', '[[1,2,3],[4,5,6]]', '[[1,2,3],[4,5,6]]', '[[1,2,3],[4,5,-6]]',
						'[[1,2,3]]');
INSERT INTO mvt (id, a, c, d) SELECT 2, m, m, m FROM (VALUES ('[[0.5,-0.25,8]]'::multivec)) t(m);
SELECT id, a, b, c, d, e FROM mvt ORDER BY id;
SELECT id, multivec_format(a) a, multivec_format(b) b, multivec_format(c) c, multivec_format(d) d,
	   multivec_format(e) e FROM mvt ORDER BY id;
-- the length coercion converts formats of existing values too
SELECT '[[1,2,3]]'::multivec::multivec(3, int8), multivec_format('[[1,2,3]]'::multivec::multivec(3, int8));
SELECT ('[[1,2,3]]'::multivec(3, int8))::multivec(3, float32);
UPDATE mvt SET c = a WHERE id = 1;
SELECT multivec_format(c), c FROM mvt WHERE id = 1;
SELECT '[[1,2,3]]'::multivec(3, int8)::multivec(3);   -- no format in the typmod: kept
SELECT multivec_format('[[1,2,3]]'::multivec(3, int8)::multivec(3));

-- casts from pgvector's types
SELECT ARRAY['[1,2]'::vector, '[3,4]']::multivec, multivec_format(ARRAY['[1,2]'::vector, '[3,4]']::multivec);
SELECT ARRAY['[1,2]'::halfvec, '[3,0.1]']::multivec, multivec_format(ARRAY['[1,2]'::halfvec]::multivec);
SELECT '{{1,2},{3,4}}'::real[]::multivec, multivec_format('{{1,2},{3,4}}'::real[]::multivec);
SELECT ARRAY['[1,2,3]'::vector]::multivec(3, int8), '{{1,2,3}}'::real[]::multivec(3, float16);
SELECT multivec_format(ARRAY['[1,2]'::halfvec]::multivec(2, float32));
-- assignment casts into a multivec column
INSERT INTO mvt (id, a, b) VALUES (3, ARRAY['[1,2]'::vector], ARRAY['[1,2,3]'::halfvec]);
INSERT INTO mvt (id, a, d) VALUES (4, '{{1,2}}'::real[], ARRAY['[1,2,3]'::vector]);
SELECT id, a, b, d, multivec_format(b) b_format, multivec_format(d) d_format FROM mvt WHERE id IN (3, 4) ORDER BY id;

-- casts to pgvector's types and real[][] (dequantized values)
SELECT '[[1,2],[3,4]]'::multivec::vector[], '[[1,2],[3,4]]'::multivec::halfvec[], '[[1,2],[3,4]]'::multivec::real[];
SELECT ('[[1,2],[3,4]]'::multivec::vector[])[2], array_dims('[[1,2,3],[4,5,6]]'::multivec::real[]);
SELECT multivec_convert('[[1,2],[3,4]]', 'int8')::real[], multivec_convert('[[1,2],[3,4]]', 'int8')::vector[];
SELECT multivec_convert('[[0.1,0.2]]', 'float16')::vector[];
-- round trips: vector[] exactly, halfvec[] bit for bit, real[][] exactly
SELECT v = v::multivec::vector[] AS vector_round_trip, h = h::multivec::halfvec[] AS halfvec_round_trip,
	   r = r::multivec::real[] AS real_round_trip
FROM (SELECT ARRAY['[0.1,-2.5,3e-20]'::vector, '[1e20,0,-0]'] v,
			 ARRAY['[0.1,-2.5,6e-8]'::halfvec, '[65504,0,-0.333]'] h,
			 '{{0.1,-2.5},{3e-20,1e20}}'::real[] r) s;
-- an assignment cast to a vector[] column
CREATE TABLE vecs (v vector[], h halfvec(2)[]);
INSERT INTO vecs VALUES ('[[1,2],[3,4]]'::multivec, '[[1,2],[3,4]]'::multivec);
SELECT * FROM vecs;
DROP TABLE vecs;

-- accessors read only the header, also of a compressed or out-of-line value
-- (the type's storage is external: never compressed unless a column asks)
CREATE TABLE mvbig (i int, m multivec);
ALTER TABLE mvbig ALTER COLUMN m SET STORAGE EXTENDED;
INSERT INTO mvbig SELECT i, array_fill(0.25::real, ARRAY[1000 + i, 64])::multivec FROM generate_series(1, 2) i;
SELECT i, multivec_ntok(m), multivec_dims(m), multivec_format(m), pg_column_size(m) < 1000 * 64 * 4 AS compressed
FROM mvbig ORDER BY i;
DROP TABLE mvbig;

-- STRICT: NULL in, NULL out
SELECT multivec_ntok(NULL), multivec_convert(NULL, 'int8') IS NULL, (NULL::real[])::multivec IS NULL;

-- limits: 8192 tokens and 16000 dimensions are accepted, one more is not
SELECT multivec_ntok(m), multivec_dims(m)
FROM (SELECT ('[' || string_agg('[1]', ',') || ']')::multivec m FROM generate_series(1, 8192)) s;
SELECT multivec_ntok(m), multivec_dims(m)
FROM (SELECT ('[[' || string_agg('1', ',') || ']]')::multivec m FROM generate_series(1, 16000)) s;
SELECT ('[' || string_agg('[1]', ',') || ']')::multivec FROM generate_series(1, 8193);
SELECT ('[[' || string_agg('1', ',') || ']]')::multivec FROM generate_series(1, 16001);
SELECT array_fill(1::real, ARRAY[8193, 1])::multivec;
SELECT array_fill(1::real, ARRAY[1, 16001])::multivec;
SELECT multivec_ntok(array_fill(1::real, ARRAY[8192, 4])::multivec);

-- text input errors
SELECT ''::multivec;
SELECT '   '::multivec;
SELECT '[]'::multivec;
SELECT ' [ ] '::multivec;
SELECT '[[]]'::multivec;
SELECT '[[1],[]]'::multivec;
SELECT '[[1,2],[3]]'::multivec;
SELECT '[[1,2],[3,4,5]]'::multivec;
SELECT '[1,2]'::multivec;
SELECT '[[1,2]'::multivec;
SELECT '[[1,2'::multivec;
SELECT '[[1,2]],'::multivec;
SELECT '[[1,2]] x'::multivec;
SELECT '[[1,2]][[3,4]]'::multivec;
SELECT '[[1,,2]]'::multivec;
SELECT '[[1 2]]'::multivec;
SELECT '[[1,]]'::multivec;
SELECT '[[,1]]'::multivec;
SELECT '[[a]]'::multivec;
SELECT '[[1],[2]'::multivec;
SELECT '[[[1]]]'::multivec;
SELECT '{{1,2}}'::multivec;
SELECT '[[1,NaN]]'::multivec;
SELECT '[[Infinity]]'::multivec;
SELECT '[[-inf,1]]'::multivec;
SELECT '[[1e39]]'::multivec;
SELECT '[[-1e39]]'::multivec;
SELECT ('[[' || repeat('1,', 40) || 'x]]')::multivec;   -- a long literal is quoted shortened

-- type modifier errors
SELECT '[[1,2]]'::multivec(3);
SELECT '[[1,2]]'::multivec(3, int8);
INSERT INTO mvt (id, b) VALUES (9, '[[1,2]]');
INSERT INTO mvt (id, d) VALUES (9, ARRAY['[1,2]'::vector]);
SELECT '[[1,2]]'::multivec(0);
SELECT '[[1,2]]'::multivec(-1);
SELECT '[[1,2]]'::multivec(16001);
SELECT '[[1,2]]'::multivec(2.5);
SELECT '[[1,2]]'::multivec(two);
SELECT '[[1,2]]'::multivec(2, int4);
SELECT '[[1,2]]'::multivec(2, 8);
SELECT '[[1,2]]'::multivec(2, int8, 1);
CREATE TABLE mvbad (m multivec(2, 'bfloat16'));

-- format errors: float16 holds at most 65504
SELECT multivec_convert('[[1e5,2]]', 'float16');
SELECT '[[1e5,2]]'::multivec(2, float16);
SELECT multivec_convert('[[1,2]]', 'float64');
SELECT '[[1e5,2]]'::multivec::halfvec[];
SELECT multivec_convert('[[1e5,2]]', 'int8')::halfvec[];

-- cast errors
SELECT ARRAY['[1,2]'::vector, '[3,4,5]']::multivec;
SELECT ARRAY['[1,2]'::halfvec, '[3]']::multivec;
SELECT ARRAY['[1,2]'::vector, NULL]::multivec;
SELECT ARRAY[NULL::halfvec]::multivec;
SELECT '{}'::vector[]::multivec;
SELECT '{}'::halfvec[]::multivec;
SELECT '{}'::real[]::multivec;
SELECT '{{"[1,2]","[3,4]"}}'::vector[]::multivec;
SELECT '{1,2}'::real[]::multivec;
SELECT '{{{1,2}}}'::real[]::multivec;
SELECT '{{1,NULL}}'::real[]::multivec;
SELECT '{{1,NaN}}'::real[]::multivec;
SELECT '{{1,Infinity}}'::real[]::multivec;
SELECT array_fill(1::real, ARRAY[2, 3])::multivec(2);
SELECT ARRAY['[1,2,3]'::halfvec]::multivec(2);
SELECT ('{' || string_agg('"[1]"', ',') || '}')::vector[]::multivec FROM generate_series(1, 8193);

DROP TABLE mvt;
