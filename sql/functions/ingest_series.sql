CREATE OR REPLACE FUNCTION perfmon.ingest_series(metrics text[], labels jsonb[] DEFAULT NULL,
                                                 units text[] DEFAULT NULL)
RETURNS TABLE (ord integer, series_id integer, refused text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
-- Resolves (metric, labels, unit) triples to series ids, creating the series
-- the first time, so that a batch carries 4-byte ids instead of names. Each
-- element is validated; a bad one gets a reason instead of an id:
--  * the metric name: at most 100 characters, lowercase words of a-z, 0-9, _
--    separated by dots (so it can never be mistaken for SQL or markup);
--  * labels: a JSON object of at most 16 keys (lowercase identifiers up to 63
--    characters) whose values are strings, numbers or booleans (stored as
--    strings) of at most 200 characters, 2 kB in all;
--  * the unit, when given, must be known (perfmon.metric_units) and match the
--    catalog; an unknown metric with a unit is added to the catalog as a
--    custom gauge (at most 10,000 custom metrics), without one it is refused;
--  * a label set the metric has no series for yet, once the metric has
--    collection.max_series_per_metric series.
DECLARE
    n int := coalesce(cardinality(metrics), 0);
    m text;
    l jsonb;
    u text;
    met record;
    bad_key text;
    max_series integer;
    n_series bigint;
BEGIN
    IF cardinality(labels) <> n OR cardinality(units) <> n THEN
        RAISE EXCEPTION 'pgperfmon: metrics, labels and units must be arrays of the same length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF n > 10000 THEN
        RAISE EXCEPTION 'pgperfmon: at most 10000 series per call (got %)', n
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 1 .. n LOOP
        ord := i;
        series_id := NULL;
        refused := NULL;
        m := metrics[i];
        l := coalesce(labels[i], '{}');
        u := nullif(units[i], '');
        IF m IS NULL OR m = '' THEN
            refused := 'metric name is missing';
        ELSIF length(m) > 100 THEN
            refused := format('metric name is %s characters long; at most 100', length(m));
        ELSIF m !~ '^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$' THEN
            refused := format('metric name %s is not valid: expected lowercase words of a-z, 0-9 and _ '
                              'separated by dots, e.g. host.cpu.user_pct', quote_literal(left(m, 60)));
        ELSIF jsonb_typeof(l) <> 'object' THEN
            refused := format('labels must be a JSON object, got a %s', jsonb_typeof(l));
        ELSIF octet_length(l::text) > 2048 THEN
            refused := format('labels are %s bytes long; at most 2048', octet_length(l::text));
        ELSIF (SELECT count(*) FROM jsonb_object_keys(l)) > 16 THEN
            refused := format('%s labels; at most 16', (SELECT count(*) FROM jsonb_object_keys(l)));
        END IF;
        IF refused IS NULL THEN
            SELECT k INTO bad_key FROM jsonb_object_keys(l) AS k WHERE k !~ '^[a-z_][a-z0-9_]{0,62}$' LIMIT 1;
            IF FOUND THEN
                refused := format('label name %s is not valid: expected a lowercase identifier of at most '
                                  '63 characters', quote_literal(left(bad_key, 60)));
            END IF;
        END IF;
        IF refused IS NULL THEN
            SELECT e.key INTO bad_key FROM jsonb_each(l) AS e
             WHERE jsonb_typeof(e.value) NOT IN ('string', 'number', 'boolean') LIMIT 1;
            IF FOUND THEN
                refused := format('label %s: expected a string, number or boolean value', bad_key);
            ELSE
                SELECT e.key INTO bad_key FROM jsonb_each_text(l) AS e WHERE length(e.value) > 200 LIMIT 1;
                IF FOUND THEN
                    refused := format('label %s: value is longer than 200 characters', bad_key);
                END IF;
            END IF;
        END IF;
        IF refused IS NULL AND u IS NOT NULL
           AND NOT EXISTS (SELECT FROM perfmon.metric_units AS mu WHERE mu.unit = u) THEN
            refused := format('unknown unit %s; expected one of %s', quote_literal(left(u, 40)),
                              (SELECT string_agg(mu.unit, ', ' ORDER BY mu.unit) FROM perfmon.metric_units AS mu));
        END IF;
        IF refused IS NULL THEN
            SELECT mt.metric_id, mt.unit INTO met FROM perfmon.metrics AS mt WHERE mt.name = m;
            IF NOT FOUND THEN
                IF u IS NULL THEN
                    refused := format('unknown metric %s: name its unit to add it to the catalog '
                                      '(pgperfmon ingest --unit, or the unit argument)', m);
                ELSIF (SELECT count(*) FROM perfmon.metrics AS mt WHERE mt.category = 'custom') >= 10000 THEN
                    refused := format('unknown metric %s: the catalog already holds 10000 custom metrics', m);
                ELSE
                    INSERT INTO perfmon.metrics (name, category, unit, kind, description)
                    VALUES (m, 'custom', u, 'gauge', 'custom metric, added by a feeder')
                    ON CONFLICT (name) DO NOTHING;
                    SELECT mt.metric_id, mt.unit INTO met FROM perfmon.metrics AS mt WHERE mt.name = m;
                END IF;
            END IF;
            IF refused IS NULL AND u IS NOT NULL AND met.unit <> u THEN
                refused := format('metric %s is measured in %s, not %s', m, met.unit, u);
            END IF;
        END IF;
        IF refused IS NULL THEN
            -- Label values are stored as strings: {"device": 1} and {"device": "1"} are one series.
            SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}') INTO l FROM jsonb_each_text(l) AS e;
            SELECT s.series_id INTO series_id FROM perfmon.metric_series AS s
             WHERE s.metric_id = met.metric_id AND s.labels = l;
            IF NOT FOUND THEN
                -- A feeder sending a fresh label value per sample would make a series per
                -- sample: new label sets stop at collection.max_series_per_metric (the
                -- series already there go on). The lock makes two new label sets of one
                -- metric at once count each other; known series never take it.
                max_series := coalesce(max_series, perfmon.setting('collection.max_series_per_metric')::int);
                PERFORM pg_advisory_xact_lock(hashtext('perfmon.metric_series'), met.metric_id);
                SELECT s.series_id INTO series_id FROM perfmon.metric_series AS s
                 WHERE s.metric_id = met.metric_id AND s.labels = l;
                IF NOT FOUND THEN
                    SELECT count(*) INTO n_series FROM perfmon.metric_series AS s
                     WHERE s.metric_id = met.metric_id;
                    IF n_series >= max_series THEN
                        refused := format('metric %s has %s series, the most collection.max_series_per_metric '
                                          'allows: a new label set is refused', m, n_series);
                    ELSE
                        INSERT INTO perfmon.metric_series AS s (metric_id, labels) VALUES (met.metric_id, l)
                        ON CONFLICT ON CONSTRAINT metric_series_metric_id_labels_key DO NOTHING
                        RETURNING s.series_id INTO series_id;
                        IF series_id IS NULL THEN  -- a concurrent call created it (unseen in a snapshot)
                            SELECT s.series_id INTO series_id FROM perfmon.metric_series AS s
                             WHERE s.metric_id = met.metric_id AND s.labels = l;
                        END IF;
                    END IF;
                END IF;
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION perfmon.ingest_series(text[], jsonb[], text[]) IS
    'Series ids for (metric, labels, unit) triples, creating series (and custom metrics, when a '
    'unit is named) as needed, at most collection.max_series_per_metric series per metric; refused '
    'says why an element has no id. Feeders call it once per '
    'new series and cache the ids.';
