-- durox PostgreSQL schema, version 1.
--
-- __SCHEMA__ is replaced by the quoted schema name and __LOCK_CLASS__ by a
-- 32-bit number derived from it (the first key of per-instance advisory locks),
-- so several durox schemas share one database without interfering.
--
-- All times are epoch milliseconds on the DATABASE clock (see postgres.py: every
-- statement computes "now" from statement_timestamp() plus the test offset).

CREATE TABLE __SCHEMA__.instances (
    instance_id            text PRIMARY KEY,
    orchestration_name     text NOT NULL,
    orchestration_version  text,
    current_execution_id   bigint NOT NULL DEFAULT 1,
    parent_instance_id     text,
    custom_status          text,
    custom_status_version  bigint NOT NULL DEFAULT 0,
    created_at_ms          bigint NOT NULL,
    updated_at_ms          bigint NOT NULL,
    -- Tie-breaker for "newest first" listings when two instances share a millisecond.
    created_seq            bigserial NOT NULL
);
CREATE INDEX instances_parent ON __SCHEMA__.instances (parent_instance_id)
    WHERE parent_instance_id IS NOT NULL;
CREATE INDEX instances_created ON __SCHEMA__.instances (created_at_ms DESC, created_seq DESC);

CREATE TABLE __SCHEMA__.executions (
    instance_id      text NOT NULL,
    execution_id     bigint NOT NULL,
    status           text NOT NULL DEFAULT 'Running',
    output           text,
    started_at_ms    bigint NOT NULL,
    completed_at_ms  bigint,
    PRIMARY KEY (instance_id, execution_id)
);

-- The primary key is the last fence against a turn committed twice: a replayed
-- turn reuses event ids, so its ack fails and rolls back as a whole.
CREATE TABLE __SCHEMA__.history (
    instance_id   text NOT NULL,
    execution_id  bigint NOT NULL,
    event_id      bigint NOT NULL,
    event_type    text NOT NULL,
    event_data    text NOT NULL,
    PRIMARY KEY (instance_id, execution_id, event_id)
);

CREATE TABLE __SCHEMA__.orchestrator_queue (
    id             bigserial PRIMARY KEY,
    instance_id    text NOT NULL,
    work_item      text NOT NULL,
    visible_at     bigint NOT NULL,
    -- Token of the fetch that took this message into its batch. The message is
    -- locked while instance_locks holds that token unexpired.
    lock_token     text,
    attempt_count  integer NOT NULL DEFAULT 0 CHECK (attempt_count >= 0)
);
CREATE INDEX orchestrator_queue_visible ON __SCHEMA__.orchestrator_queue (visible_at, id);
CREATE INDEX orchestrator_queue_instance ON __SCHEMA__.orchestrator_queue (instance_id, id);
CREATE INDEX orchestrator_queue_lock ON __SCHEMA__.orchestrator_queue (lock_token)
    WHERE lock_token IS NOT NULL;

CREATE TABLE __SCHEMA__.worker_queue (
    id             bigserial PRIMARY KEY,
    instance_id    text NOT NULL,
    execution_id   bigint NOT NULL,
    activity_id    bigint NOT NULL,
    work_item      text NOT NULL,
    visible_at     bigint NOT NULL,
    lock_token     text,
    locked_until   bigint,
    attempt_count  integer NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    session_id     text,
    tag            text
);
CREATE INDEX worker_queue_identity ON __SCHEMA__.worker_queue (instance_id, execution_id, activity_id);
CREATE INDEX worker_queue_lock ON __SCHEMA__.worker_queue (lock_token) WHERE lock_token IS NOT NULL;
CREATE INDEX worker_queue_session ON __SCHEMA__.worker_queue (session_id) WHERE session_id IS NOT NULL;

CREATE TABLE __SCHEMA__.instance_locks (
    instance_id   text PRIMARY KEY,
    lock_token    text NOT NULL UNIQUE,
    locked_until  bigint NOT NULL
);

CREATE TABLE __SCHEMA__.sessions (
    session_id        text PRIMARY KEY,
    owner_id          text NOT NULL,
    locked_until      bigint NOT NULL,
    last_activity_at  bigint NOT NULL
);

-- KV in two tiers: kv_store is the state as of the start of the current
-- execution (what a fetch hands to replay); kv_delta holds the running
-- execution's writes (NULL value = tombstone), folded into kv_store when the
-- execution ends.
CREATE TABLE __SCHEMA__.kv_store (
    instance_id    text NOT NULL,
    key            text NOT NULL,
    value          text NOT NULL,
    updated_at_ms  bigint NOT NULL,
    PRIMARY KEY (instance_id, key)
);

CREATE TABLE __SCHEMA__.kv_delta (
    instance_id    text NOT NULL,
    key            text NOT NULL,
    value          text,
    updated_at_ms  bigint NOT NULL,
    PRIMARY KEY (instance_id, key)
);

-- Claim the instance whose oldest visible message is oldest, in one round trip.
--
-- Peek without row locks, then take a per-instance transaction advisory lock
-- with pg_try_advisory_xact_lock: a fetcher that loses it skips that instance
-- (another fetcher is claiming it) instead of blocking. The loop only returns
-- NULL when the queue holds no claimable instance, never because a candidate
-- was lost to a concurrent fetcher (duroxide-pg's "empty fetch" race). Lock
-- order everywhere is instance_locks row, then queue rows, so claims never
-- deadlock with acks (duroxide-pg's fan-in deadlock).
CREATE FUNCTION __SCHEMA__.claim_instance(p_now bigint, p_until bigint, p_token text)
RETURNS TABLE (
    instance_id text,
    orchestration_name text,
    orchestration_version text,
    execution_id bigint,
    history_len bigint
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_instance text;
    v_skipped text[] := '{}';
    v_rows integer;
BEGIN
    LOOP
        SELECT q.instance_id INTO v_instance
          FROM __SCHEMA__.orchestrator_queue q
         WHERE q.visible_at <= p_now
           AND NOT (q.instance_id = ANY (v_skipped))
           AND NOT EXISTS (SELECT 1 FROM __SCHEMA__.instance_locks il
                            WHERE il.instance_id = q.instance_id AND il.locked_until > p_now)
         ORDER BY q.visible_at, q.id
         LIMIT 1;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        v_skipped := v_skipped || v_instance;
        IF NOT pg_try_advisory_xact_lock(__LOCK_CLASS__, hashtext(v_instance)) THEN
            CONTINUE;
        END IF;
        -- Orphans (the instance was deleted): discard in the same snapshot that
        -- proves the instance absent, so a concurrent re-create is never hit.
        DELETE FROM __SCHEMA__.orchestrator_queue q
         WHERE q.instance_id = v_instance AND q.visible_at <= p_now
           AND NOT EXISTS (SELECT 1 FROM __SCHEMA__.instances i WHERE i.instance_id = v_instance);
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        IF v_rows > 0 THEN
            CONTINUE;
        END IF;
        INSERT INTO __SCHEMA__.instance_locks AS il (instance_id, lock_token, locked_until)
        VALUES (v_instance, p_token, p_until)
        ON CONFLICT ON CONSTRAINT instance_locks_pkey DO UPDATE
            SET lock_token = EXCLUDED.lock_token, locked_until = EXCLUDED.locked_until
            WHERE il.locked_until <= p_now;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        IF v_rows = 0 THEN
            CONTINUE;  -- locked meanwhile by a fetcher that committed after our peek
        END IF;
        UPDATE __SCHEMA__.orchestrator_queue q
           SET lock_token = p_token, attempt_count = q.attempt_count + 1
         WHERE q.instance_id = v_instance AND q.visible_at <= p_now;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        IF v_rows = 0 THEN
            -- Its messages were acked away after our peek: release and look again.
            DELETE FROM __SCHEMA__.instance_locks il WHERE il.lock_token = p_token;
            CONTINUE;
        END IF;
        RETURN QUERY
            SELECT i.instance_id, i.orchestration_name, i.orchestration_version,
                   i.current_execution_id,
                   (SELECT count(*) FROM __SCHEMA__.history h
                     WHERE h.instance_id = i.instance_id AND h.execution_id = i.current_execution_id)
              FROM __SCHEMA__.instances i
             WHERE i.instance_id = v_instance;
        IF FOUND THEN
            RETURN;
        END IF;
        -- Deleted between the orphan check and now: undo this claim, keep looking.
        DELETE FROM __SCHEMA__.instance_locks il WHERE il.lock_token = p_token;
        DELETE FROM __SCHEMA__.orchestrator_queue q WHERE q.lock_token = p_token;
    END LOOP;
END
$$;

-- Validate an ack's lock inside the ack transaction and lock the lock row, so a
-- concurrent re-claim (after expiry) or a forced delete decides the race here.
-- Raises DX001 (lock lost) or DX002 (the commit names another instance).
CREATE FUNCTION __SCHEMA__.check_ack(p_token text, p_instance text, p_now bigint)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_instance text;
    v_until bigint;
BEGIN
    SELECT il.instance_id, il.locked_until INTO v_instance, v_until
      FROM __SCHEMA__.instance_locks il
     WHERE il.lock_token = p_token
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'lock token % is unknown (never issued, already acked or abandoned, or taken over after expiry)', p_token
            USING ERRCODE = 'DX001';
    END IF;
    IF v_until <= p_now THEN
        RAISE EXCEPTION 'the lock % on instance % expired % ms ago', p_token, v_instance, p_now - v_until
            USING ERRCODE = 'DX001';
    END IF;
    IF v_instance <> p_instance THEN
        RAISE EXCEPTION 'the commit is for instance % but lock % holds instance %', p_instance, p_token, v_instance
            USING ERRCODE = 'DX002';
    END IF;
    PERFORM 1 FROM __SCHEMA__.instances i WHERE i.instance_id = p_instance FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'instance % was deleted while lock % was held', p_instance, p_token
            USING ERRCODE = 'DX001';
    END IF;
END
$$;
