-- hamming / jaccard agree with pgvector's operators
SELECT hamming(B'10101', B'00111'), jaccard(B'1100', B'1010');
SELECT hamming(B'', B''), jaccard(B'0000', B'0000');
SELECT setseed(0.1);
CREATE TABLE bits AS
	SELECT i, (SELECT string_agg(CASE WHEN random() < 0.5 THEN '1' ELSE '0' END, '')
			   FROM generate_series(1, len) WHERE i > 0)::varbit AS a,
			  (SELECT string_agg(CASE WHEN random() < 0.5 THEN '1' ELSE '0' END, '')
			   FROM generate_series(1, len) WHERE i > 0)::varbit AS b
	FROM generate_series(1, 300) i, LATERAL (SELECT 1 + (i * 37) % 1100 AS len) l;
SELECT count(*) FILTER (WHERE hamming(a, b) <> (a <~> b)) AS hamming_mismatches,
	   count(*) FILTER (WHERE abs(jaccard(a, b) - (a <%> b)) > 1e-12) AS jaccard_mismatches
FROM bits;
SELECT hamming(B'101', B'1010');
SELECT jaccard(B'1', B'10');

-- sign quantization equals pgvector's binary_quantize, for vector and halfvec
CREATE TABLE vecs AS SELECT i, rvec(1 + (i * 13) % 70)::vector AS v FROM generate_series(1, 200) i;
SELECT count(*) FILTER (WHERE bit_quantize(v) <> binary_quantize(v)) AS vector_mismatches,
	   count(*) FILTER (WHERE bit_quantize(v::halfvec) <> binary_quantize(v::halfvec)) AS halfvec_mismatches
FROM vecs;
SELECT bit_quantize('[1,-1,0.5,-2,3,0,0,1,2]'::vector);

-- threshold quantization
SELECT bit_quantize('[1,2,3]'::vector, '{0.5,2.5,2.5}'::real[]);
SELECT bit_quantize('[1,2,3]'::halfvec, '{1.5,1.5,3.5}'::real[]);
SELECT bit_quantize('[1,2,3]'::vector, '{1,2}'::real[]);
SELECT bit_quantize('[1,2,3]'::vector, '{1,NULL,2}'::real[]);
SELECT bit_quantize('[1,2,3]'::vector, '{1,NaN,2}'::real[]);
SELECT bit_quantize('[1,2,3]'::vector, '{{1,2,3}}'::real[]);

-- per-dimension means
SELECT bit_thresholds(v) FROM (VALUES ('[1,2,3]'::vector), ('[3,4,5]'), (NULL)) t(v);
SELECT bit_thresholds(v::halfvec) FROM (VALUES ('[1,2]'::vector), ('[2,4]')) t(v);
SELECT bit_thresholds(v) FROM (VALUES ('[1,2,3]'::vector), ('[3,4]')) t(v);
SELECT bit_thresholds(v) FROM vecs WHERE false;
SELECT bool_and(abs(m - a) < 1e-4) AS means_match FROM (
	SELECT unnest(bit_thresholds(v)) m, unnest((SELECT avg(v) FROM vecs WHERE vector_dims(v) = 14)::real[]) a
	FROM vecs WHERE vector_dims(v) = 14) s;

-- asymmetric score: q . (2b - 1)
SELECT bit_ip('[1,2,3]'::vector, B'101'), bit_ip('[1,2,3]'::halfvec, B'010');
SELECT bit_ip('[1,2,3]'::vector, B'10');

DROP TABLE bits, vecs;
