#!/bin/sh
# Runs once, when the postgres container initialises an empty data volume
# (/docker-entrypoint-initdb.d): creates the orchestrator's owner, worker and reader roles with
# their passwords and grants them their rights on the orchestrator database.
# orchestrator-roles.psql is the output of
#   orchestrator roles --sql --login --database orchestrator
# (tests/unit/deploy/test_compose.py checks it is current).
if [ -z "$ORCHESTRATOR_OWNER_PASSWORD" ] || [ -z "$ORCHESTRATOR_WORKER_PASSWORD" ] \
    || [ -z "$ORCHESTRATOR_READER_PASSWORD" ]; then
    echo "set ORCHESTRATOR_OWNER_PASSWORD, ORCHESTRATOR_WORKER_PASSWORD and" \
        "ORCHESTRATOR_READER_PASSWORD" >&2
    exit 1
fi
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v owner_password="$ORCHESTRATOR_OWNER_PASSWORD" \
    -v worker_password="$ORCHESTRATOR_WORKER_PASSWORD" \
    -v reader_password="$ORCHESTRATOR_READER_PASSWORD" \
    -f /docker-entrypoint-initdb.d/orchestrator-roles.psql
