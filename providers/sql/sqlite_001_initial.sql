-- durox SQLite schema, version 1.
--
-- Applied by durox.providers.sqlite inside one BEGIN IMMEDIATE transaction that
-- also sets PRAGMA user_version = 1, so several processes opening a new file at
-- once apply it exactly once. Times are epoch milliseconds of the provider clock.
-- Stored records (events, work items) are the JSON text of durox.core.codec.

-- One row per instance; exists from create_instance (or a child start) on.
CREATE TABLE instances (
    instance_id           TEXT    PRIMARY KEY,
    orchestration_name    TEXT    NOT NULL,
    orchestration_version TEXT,
    current_execution_id  INTEGER NOT NULL DEFAULT 1,
    parent_instance_id    TEXT,
    custom_status         TEXT,
    custom_status_version INTEGER NOT NULL DEFAULT 0,
    created_at_ms         INTEGER NOT NULL,
    updated_at_ms         INTEGER NOT NULL
);
CREATE INDEX instances_by_parent ON instances (parent_instance_id) WHERE parent_instance_id IS NOT NULL;

-- One row per execution (continue_as_new starts a new one). event_count is kept
-- by the ack so fetch knows the history length without counting rows.
CREATE TABLE executions (
    instance_id     TEXT    NOT NULL REFERENCES instances (instance_id) ON DELETE CASCADE,
    execution_id    INTEGER NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'Running',
    output          TEXT,
    started_at_ms   INTEGER NOT NULL,
    completed_at_ms INTEGER,
    event_count     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (instance_id, execution_id)
) WITHOUT ROWID;

-- Append-only history. The primary key is the turn-once fence: an ack whose
-- events clash with stored ones fails as a whole.
CREATE TABLE history (
    instance_id  TEXT    NOT NULL,
    execution_id INTEGER NOT NULL,
    event_id     INTEGER NOT NULL,
    event_type   TEXT    NOT NULL,
    event_data   TEXT    NOT NULL,
    PRIMARY KEY (instance_id, execution_id, event_id),
    FOREIGN KEY (instance_id, execution_id)
        REFERENCES executions (instance_id, execution_id) ON DELETE CASCADE
) WITHOUT ROWID;

-- Orchestrator queue. lock_token tags the batch a fetch handed out; whether that
-- lock still holds is decided by instance_locks (an expired lock's messages are
-- re-tagged by the next fetch). Rows may outlive their instance (a late
-- activity result); fetch discards those orphans.
CREATE TABLE orchestrator_queue (
    id            INTEGER PRIMARY KEY,
    instance_id   TEXT    NOT NULL,
    work_item     TEXT    NOT NULL,
    visible_at    INTEGER NOT NULL,
    lock_token    TEXT,
    attempt_count INTEGER NOT NULL DEFAULT 0
);
-- Fetch: the oldest visible message (range scan on visible_at, then id).
CREATE INDEX orchestrator_queue_by_visible ON orchestrator_queue (visible_at);
-- Fetch/ack/abandon: the messages of one instance.
CREATE INDEX orchestrator_queue_by_instance ON orchestrator_queue (instance_id, visible_at);

-- The instance lock: one row per locked instance, with a fresh random token.
CREATE TABLE instance_locks (
    instance_id  TEXT    PRIMARY KEY REFERENCES instances (instance_id) ON DELETE CASCADE,
    lock_token   TEXT    NOT NULL UNIQUE,
    locked_until INTEGER NOT NULL
) WITHOUT ROWID;

-- Worker queue: one activity per row, locked one at a time. The identity
-- columns are copied out of work_item for cancellation and routing.
CREATE TABLE worker_queue (
    id            INTEGER PRIMARY KEY,
    instance_id   TEXT    NOT NULL,
    execution_id  INTEGER NOT NULL,
    activity_id   INTEGER NOT NULL,
    session_id    TEXT,
    tag           TEXT,
    work_item     TEXT    NOT NULL,
    visible_at    INTEGER NOT NULL,
    lock_token    TEXT,
    locked_until  INTEGER,
    attempt_count INTEGER NOT NULL DEFAULT 0
);
-- Fetch of unlocked work, in id order within a tag (NULL = untagged).
CREATE INDEX worker_queue_ready ON worker_queue (tag, id) WHERE lock_token IS NULL;
-- Fetch of work whose lock expired (crash recovery): few rows, found by expiry.
CREATE INDEX worker_queue_by_expiry ON worker_queue (locked_until) WHERE lock_token IS NOT NULL;
-- Ack / renew / abandon by token.
CREATE UNIQUE INDEX worker_queue_by_token ON worker_queue (lock_token) WHERE lock_token IS NOT NULL;
-- Cancellation by (instance, execution, activity id), and deletion by instance.
CREATE INDEX worker_queue_by_activity ON worker_queue (instance_id, execution_id, activity_id);
-- Orphaned-session cleanup.
CREATE INDEX worker_queue_by_session ON worker_queue (session_id) WHERE session_id IS NOT NULL;

-- Session affinity: which worker owns a session, until when.
CREATE TABLE sessions (
    session_id       TEXT    PRIMARY KEY,
    worker_id        TEXT    NOT NULL,
    locked_until     INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_by_worker ON sessions (worker_id);

-- KV baseline: the merged state of finished executions (what fetch returns).
CREATE TABLE kv_store (
    instance_id   TEXT    NOT NULL REFERENCES instances (instance_id) ON DELETE CASCADE,
    key           TEXT    NOT NULL,
    value         TEXT    NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (instance_id, key)
) WITHOUT ROWID;

-- KV writes of the running execution; value NULL is a tombstone. Merged into
-- kv_store and emptied by the ack that ends the execution.
CREATE TABLE kv_delta (
    instance_id   TEXT    NOT NULL REFERENCES instances (instance_id) ON DELETE CASCADE,
    key           TEXT    NOT NULL,
    value         TEXT,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (instance_id, key)
) WITHOUT ROWID;
