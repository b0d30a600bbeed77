#!/usr/bin/env bash
# Runs once, on the first start of an empty data directory (docker-entrypoint-initdb.d).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -c "CREATE EXTENSION IF NOT EXISTS pg_cron"
/opt/pgperfmon/venv/bin/pgperfmon install \
    --dsn "host=/var/run/postgresql user=$POSTGRES_USER dbname=${POSTGRES_DB:-$POSTGRES_USER}" \
    ${PGPERFMON_CONFIG:+--config "$PGPERFMON_CONFIG"}
