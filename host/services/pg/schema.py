"""The PostgreSQL schema, created and migrated by every host at start.

Migrations are numbered and applied in order, each in the transaction that records
it in ``nimbus_schema``. The whole step holds a transaction-scoped advisory lock, so
hosts starting at once take turns: the first applies what is missing, the others
find it done. A database migrated by a newer Nimbus (a version this one does not
know) is refused rather than written with the wrong shapes.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from host.errors import StorageUnavailable

#: the advisory lock key of migrations (any constant no other lock uses)
MIGRATION_LOCK = 0x6E696D627573  # "nimbus"

SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema(name: str) -> str:
    """``name`` if it is a plain lower-case PostgreSQL identifier."""
    if not SCHEMA_NAME.match(name):
        raise ValueError(f"schema {name!r}: use a-z, 0-9 and '_' (at most 63, not a digit first)")
    return name


MIGRATIONS: list[str] = [
    # 1: every service's tables
    """
    CREATE TABLE kv (
        tbl text NOT NULL, key bytea NOT NULL, value bytea NOT NULL,
        version bigint NOT NULL, PRIMARY KEY (tbl, key));
    CREATE TABLE kv_deleted (tbl text PRIMARY KEY, version bigint NOT NULL);
    CREATE TABLE blob_meta (
        bucket text NOT NULL, key bytea NOT NULL, size bigint NOT NULL,
        content_type text NOT NULL, metadata bytea NOT NULL, etag text NOT NULL,
        modified_ms bigint NOT NULL, PRIMARY KEY (bucket, key));
    CREATE TABLE blob_chunks (
        bucket text NOT NULL, key bytea NOT NULL, idx integer NOT NULL,
        data bytea NOT NULL, PRIMARY KEY (bucket, key, idx));
    CREATE TABLE q_msgs (
        queue text NOT NULL, id text NOT NULL, body bytea NOT NULL,
        enqueued_ms bigint NOT NULL, visible_ms bigint NOT NULL,
        attempt integer NOT NULL DEFAULT 0, last_error text,
        holder text NOT NULL DEFAULT '', PRIMARY KEY (queue, id));
    CREATE INDEX q_visible ON q_msgs (queue, visible_ms, id);
    CREATE INDEX q_holder ON q_msgs (holder) WHERE holder <> '';
    CREATE TABLE outbox (seq bigint PRIMARY KEY, record bytea NOT NULL);
    CREATE TABLE counters (name text PRIMARY KEY, value bigint NOT NULL);
    INSERT INTO counters VALUES ('outbox_last', 0), ('outbox_cursor', 0), ('generation', 0);
    CREATE TABLE idempotency (id text PRIMARY KEY, committed_ms bigint NOT NULL);
    CREATE TABLE schedules (name text PRIMARY KEY, fired_ms bigint);
    CREATE TABLE wf_runs (id text PRIMARY KEY, run bytea NOT NULL);
    CREATE TABLE wf_timers (
        due_ms bigint NOT NULL, run_id text NOT NULL, step text NOT NULL,
        attempt integer NOT NULL, leased boolean NOT NULL, holder text NOT NULL DEFAULT '',
        PRIMARY KEY (due_ms, run_id));
    CREATE INDEX wf_timers_leased ON wf_timers (holder) WHERE leased;
    CREATE TABLE wf_keys (
        workflow text NOT NULL, key text NOT NULL, run_id text NOT NULL,
        PRIMARY KEY (workflow, key));
    CREATE TABLE deployments (name text PRIMARY KEY, record bytea NOT NULL);
    CREATE TABLE app_config (name text PRIMARY KEY, value bytea NOT NULL);
    CREATE TABLE modules (sha256 text PRIMARY KEY, wasm bytea NOT NULL);
    CREATE TABLE usage (
        hour_ms bigint NOT NULL, function text NOT NULL, version integer NOT NULL,
        trigger text NOT NULL, outcome text NOT NULL,
        requests bigint NOT NULL, cold bigint NOT NULL, wall_ms double precision NOT NULL,
        billed_ms bigint NOT NULL, byte_ms numeric NOT NULL, bytes_in bigint NOT NULL,
        bytes_out bigint NOT NULL,
        PRIMARY KEY (hour_ms, function, version, trigger, outcome));
    CREATE TABLE hosts (
        incarnation text PRIMARY KEY, info bytea NOT NULL, heartbeat_ms bigint NOT NULL);
    """,
    # 2: a table key locked and read in one round trip (a VOLATILE function's every
    # statement takes a new snapshot: the reads see what the lock's last holder committed)
    """
    CREATE FUNCTION nimbus_kv_lock(t text, k bytea, h bigint,
                                   OUT version bigint, OUT deleted bigint) AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(h);
        SELECT kv.version INTO version FROM kv WHERE kv.tbl = t AND kv.key = k;
        SELECT kv_deleted.version INTO deleted FROM kv_deleted WHERE kv_deleted.tbl = t;
    END $$ LANGUAGE plpgsql VOLATILE;
    """,
    # 3: secondary indexes of tables; the key lock also takes the definitions' shared
    # lock and reads the table's definitions (pg/indexes.py)
    """
    CREATE TABLE kv_index_defs (tbl text PRIMARY KEY, specs bytea NOT NULL);
    CREATE TABLE kv_index (
        tbl text NOT NULL, field text NOT NULL, value bytea NOT NULL, key bytea NOT NULL,
        PRIMARY KEY (tbl, field, value, key));
    DROP FUNCTION nimbus_kv_lock(text, bytea, bigint);
    CREATE FUNCTION nimbus_kv_lock(t text, k bytea, h bigint, defs bigint,
                                   OUT version bigint, OUT deleted bigint, OUT specs bytea)
    AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock_shared(defs);
        PERFORM pg_advisory_xact_lock(h);
        SELECT kv.version INTO version FROM kv WHERE kv.tbl = t AND kv.key = k;
        SELECT kv_deleted.version INTO deleted FROM kv_deleted WHERE kv_deleted.tbl = t;
        SELECT kv_index_defs.specs INTO specs FROM kv_index_defs WHERE kv_index_defs.tbl = t;
    END $$ LANGUAGE plpgsql VOLATILE;
    """,
    # 4: usage entries carry guest CPU ms, host calls, outbound calls and peak memory
    """
    ALTER TABLE usage
        ADD COLUMN cpu_ms double precision NOT NULL DEFAULT 0,
        ADD COLUMN host_calls bigint NOT NULL DEFAULT 0,
        ADD COLUMN outbound_calls bigint NOT NULL DEFAULT 0,
        ADD COLUMN peak_memory bigint NOT NULL DEFAULT 0;
    """,
    # 5: what hosts shared only through their data dir until now: the gateway's API
    # keys (and their generation), rate-limit buckets and quota counts, sealed secrets
    # (with a check value of their key, never the key), console sessions
    """
    CREATE TABLE api_keys (id text PRIMARY KEY, record bytea NOT NULL);
    INSERT INTO counters VALUES ('apikeys_generation', 0);
    CREATE TABLE rl_counts (
        key bytea PRIMARY KEY, count bigint NOT NULL, resets_at double precision NOT NULL);
    CREATE TABLE rl_buckets (
        key bytea PRIMARY KEY, tokens double precision NOT NULL,
        updated double precision NOT NULL, full_at double precision NOT NULL,
        last_ok boolean NOT NULL);
    CREATE TABLE secrets (name text PRIMARY KEY, record bytea NOT NULL);
    CREATE TABLE secrets_key (one boolean PRIMARY KEY CHECK (one), key_check bytea NOT NULL);
    CREATE TABLE console_sessions (
        id text PRIMARY KEY, record bytea NOT NULL, expires_ms bigint NOT NULL);
    CREATE INDEX console_sessions_expiry ON console_sessions (expires_ms);
    """,
]


def migrate(conn: psycopg.Connection[Any], schema: str = "") -> int:
    """Bring the schema of ``conn``'s search path (``schema``, created if need be) up
    to date; its version after."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        if schema:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{check_schema(schema)}"'.encode())
        conn.execute("CREATE TABLE IF NOT EXISTS nimbus_schema (version integer NOT NULL)")
        row = conn.execute("SELECT max(version) FROM nimbus_schema").fetchone()
        current = int(row[0]) if row and row[0] is not None else 0
        if current > len(MIGRATIONS):
            raise StorageUnavailable(
                f"the database's Nimbus schema is version {current}, newer than this "
                f"host knows ({len(MIGRATIONS)}): upgrade this host"
            )
        for version in range(current + 1, len(MIGRATIONS) + 1):
            conn.execute(MIGRATIONS[version - 1].encode())
            conn.execute("INSERT INTO nimbus_schema VALUES (%s)", (version,))
        return len(MIGRATIONS)
