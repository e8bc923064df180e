"""PostgreSQL only: ``analytics_cohortnights``, each participant's main sleeps of a quarter packed
into one row, kept up to date by triggers on ``analytics_nightlymetrics``.

Why: a cohort report over 10,000 people x 90 nights reads 900,000 nights. Scanning them in
NightlyMetrics (260 MB of wide rows) costs more than the whole report may take; the same
nights packed a quarter to a row are 10,000 rows (39 MB, kept inline: toast_tuple_target), scanned
in a few ms and sent as they are. Each row holds, per column, the
nights in (night_date, session) order as one big-endian byte string: ``days`` (int4 days
since 1970-01-01), ``score``, ``tst_min``, ``se_pct``, ``waso_min`` (float8, NULL -> NaN), so a
report joins each column's rows in one byte string and numpy reads it as is.
``analytics.selectors.cohort_nights`` reads it; the figures are computed from it exactly as
from NightlyMetrics (medians and percentiles need every night, so nothing is pre-aggregated).

Why triggers rather than a service: the table must follow every write of NightlyMetrics,
whatever its path (the metrics upsert, the main-sleep settling, cascading deletes of a
session, participant or organization, raw SQL). Statement-level triggers with transition
tables rebuild only the (participant, quarter) rows a statement touched; an advisory lock per
participant serializes two transactions rebuilding the same person (under READ COMMITTED the
second one then sees the first one's rows). TRUNCATE empties the table too.

SQLite has no such table: the cohort report reads NightlyMetrics there.
"""

from django.db import migrations

# Column of analytics_cohortnights -> the value packed per night.
PACKED = {
    "days": "int4send(n.night_date - DATE '1970-01-01')",
    "score": "float8send(COALESCE(n.score, 'NaN'))",
    "tst_min": "float8send(COALESCE(n.tst_min, 'NaN'))",
    "se_pct": "float8send(COALESCE(n.se_pct, 'NaN'))",
    "waso_min": "float8send(COALESCE(n.waso_min, 'NaN'))",
}
COLUMNS = ", ".join(PACKED)
AGGREGATES = ", ".join(
    f"string_agg({value}, ''::bytea ORDER BY n.night_date, n.session_id)" for value in PACKED.values()
)
TABLE_COLUMNS = ",\n    ".join(f"{name} bytea NOT NULL" for name in PACKED)


FORWARD = f"""
CREATE TABLE analytics_cohortnights (
    participant_id bigint NOT NULL,
    quarter date NOT NULL,
    organization_id bigint NOT NULL,
    nights integer NOT NULL,
    {TABLE_COLUMNS},
    PRIMARY KEY (participant_id, quarter)
) WITH (toast_tuple_target = 8160);
CREATE INDEX analytics_cohortnights_org_quarter ON analytics_cohortnights (organization_id, quarter);

CREATE FUNCTION analytics_cohortnights_rebuild(keys_participant bigint[], keys_quarter date[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('analytics_cohortnights', p))
    FROM (SELECT DISTINCT unnest(keys_participant) AS p ORDER BY 1) AS people;
    DELETE FROM analytics_cohortnights c
    USING unnest(keys_participant, keys_quarter) AS k(participant_id, quarter)
    WHERE c.participant_id = k.participant_id AND c.quarter = k.quarter;
    INSERT INTO analytics_cohortnights (participant_id, quarter, organization_id, nights, {COLUMNS})
    SELECT n.participant_id, k.quarter, min(n.organization_id), count(*), {AGGREGATES}
    FROM (SELECT DISTINCT * FROM unnest(keys_participant, keys_quarter) AS u(participant_id, quarter)) AS k
    JOIN analytics_nightlymetrics n
      ON n.participant_id = k.participant_id
     AND n.night_date >= k.quarter AND n.night_date < (k.quarter + INTERVAL '3 months')::date
    WHERE n.is_main_sleep AND NOT n.is_nap
    GROUP BY n.participant_id, k.quarter;
END $$;

CREATE FUNCTION analytics_cohortnights_on_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    people bigint[];
    quarters date[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(participant_id), array_agg(quarter) INTO people, quarters FROM (
            SELECT DISTINCT participant_id, date_trunc('quarter', night_date)::date AS quarter FROM new_rows) AS k;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(participant_id), array_agg(quarter) INTO people, quarters FROM (
            SELECT DISTINCT participant_id, date_trunc('quarter', night_date)::date AS quarter FROM old_rows) AS k;
    ELSE
        SELECT array_agg(participant_id), array_agg(quarter) INTO people, quarters FROM (
            SELECT participant_id, date_trunc('quarter', night_date)::date AS quarter FROM new_rows
            UNION
            SELECT participant_id, date_trunc('quarter', night_date)::date AS quarter FROM old_rows) AS k;
    END IF;
    IF people IS NOT NULL THEN
        PERFORM analytics_cohortnights_rebuild(people, quarters);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION analytics_cohortnights_on_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE analytics_cohortnights;
    RETURN NULL;
END $$;

CREATE TRIGGER analytics_cohortnights_insert AFTER INSERT ON analytics_nightlymetrics
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION analytics_cohortnights_on_write();
CREATE TRIGGER analytics_cohortnights_update AFTER UPDATE ON analytics_nightlymetrics
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_cohortnights_on_write();
CREATE TRIGGER analytics_cohortnights_delete AFTER DELETE ON analytics_nightlymetrics
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION analytics_cohortnights_on_write();
CREATE TRIGGER analytics_cohortnights_truncate AFTER TRUNCATE ON analytics_nightlymetrics
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_cohortnights_on_truncate();

INSERT INTO analytics_cohortnights (participant_id, quarter, organization_id, nights, {COLUMNS})
SELECT n.participant_id, date_trunc('quarter', n.night_date)::date, min(n.organization_id), count(*), {AGGREGATES}
FROM analytics_nightlymetrics n
WHERE n.is_main_sleep AND NOT n.is_nap
GROUP BY 1, 2;
ANALYZE analytics_cohortnights;
"""

BACKWARD = """
DROP TRIGGER IF EXISTS analytics_cohortnights_insert ON analytics_nightlymetrics;
DROP TRIGGER IF EXISTS analytics_cohortnights_update ON analytics_nightlymetrics;
DROP TRIGGER IF EXISTS analytics_cohortnights_delete ON analytics_nightlymetrics;
DROP TRIGGER IF EXISTS analytics_cohortnights_truncate ON analytics_nightlymetrics;
DROP FUNCTION IF EXISTS analytics_cohortnights_on_truncate();
DROP FUNCTION IF EXISTS analytics_cohortnights_on_write();
DROP FUNCTION IF EXISTS analytics_cohortnights_rebuild(bigint[], date[]);
DROP TABLE IF EXISTS analytics_cohortnights;
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("analytics", "0004_export_weeklydigest")]

    operations = [migrations.RunPython(_on_postgresql(FORWARD), _on_postgresql(BACKWARD), elidable=False)]
