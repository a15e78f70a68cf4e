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
-- no row when the queue holds no claimable instance, never because a candidate
-- was lost to a concurrent fetcher (duroxide-pg's "empty fetch" race). Lock
-- order everywhere is instance_locks row, then queue rows, so claims never
-- deadlock with acks (duroxide-pg's fan-in deadlock).
--
-- Returns the instance row, the batch (messages and attempt counts, in
-- enqueue order) and the KV baseline, so a caller holding the history in
-- memory needs no second round trip.
CREATE FUNCTION __SCHEMA__.claim_instance(p_now bigint, p_until bigint, p_token text)
RETURNS TABLE (
    instance_id text,
    orchestration_name text,
    orchestration_version text,
    execution_id bigint,
    history_len bigint,
    messages text[],
    attempts integer[],
    kv_keys text[],
    kv_values text[],
    kv_times bigint[]
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
                     WHERE h.instance_id = i.instance_id AND h.execution_id = i.current_execution_id),
                   b.messages, b.attempts, kv.keys, kv.vals, kv.times
              FROM __SCHEMA__.instances i
             CROSS JOIN LATERAL (
                   SELECT array_agg(q.work_item ORDER BY q.id) AS messages,
                          array_agg(q.attempt_count ORDER BY q.id) AS attempts
                     FROM __SCHEMA__.orchestrator_queue q WHERE q.lock_token = p_token) b
             CROSS JOIN LATERAL (
                   SELECT array_agg(s.key) AS keys, array_agg(s.value) AS vals,
                          array_agg(s.updated_at_ms) AS times
                     FROM __SCHEMA__.kv_store s WHERE s.instance_id = i.instance_id) kv
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

-- Insert activities into the worker queue (direct enqueues and turn acks);
-- returns how many. Callers NOTIFY after their commit, never inside it: a
-- notifying transaction holds a database-wide lock through its commit, which
-- would serialize every writer's WAL flush.
CREATE FUNCTION __SCHEMA__.insert_activities(
    p_now bigint, p_inst text[], p_exec bigint[], p_id bigint[], p_item text[],
    p_session text[], p_tag text[]
) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(p_item) = 0 THEN
        RETURN 0;
    END IF;
    INSERT INTO __SCHEMA__.worker_queue (instance_id, execution_id, activity_id, work_item,
                                         visible_at, session_id, tag)
    SELECT t.i, t.e, t.a, t.item, p_now, t.sid, t.tag
      FROM unnest(p_inst, p_exec, p_id, p_item, p_session, p_tag) AS t(i, e, a, item, sid, tag);
    RETURN cardinality(p_item);
END
$$;

-- Apply one orchestration turn (a Commit) and release the instance lock, in
-- the caller's single-statement transaction. The lock row is locked first,
-- so a concurrent re-claim after expiry or a forced delete decides the race
-- here. Raises DX001 (lock lost) or DX002 (the commit names another instance);
-- a repeated event id fails on the history primary key. Inserts go before
-- cancellations, so an activity scheduled and cancelled in one turn leaves
-- no row (duroxide-pg 0.1.17).
--
-- Returns which queues now hold work someone should be woken for: bit 1 the
-- orchestrator queue (messages sent, or messages that arrived while the lock
-- held them back), bit 2 the worker queue. The caller sends the NOTIFY.
CREATE FUNCTION __SCHEMA__.ack_turn(
    p_now bigint, p_token text, p_instance text, p_execution bigint,
    p_name text, p_version text, p_parent text,
    p_cs_changed boolean, p_cs text,
    p_status text, p_output text, p_terminal boolean,
    p_ev_id bigint[], p_ev_type text[], p_ev_data text[],
    p_kv_clear_all bigint, p_k_key text[], p_k_value text[], p_k_ts bigint[],
    p_w_inst text[], p_w_exec bigint[], p_w_id bigint[], p_w_item text[], p_w_session text[], p_w_tag text[],
    p_c_inst text[], p_c_exec bigint[], p_c_id bigint[],
    p_ch_inst text[], p_ch_name text[], p_ch_ver text[], p_ch_parent text[],
    p_o_inst text[], p_o_item text[], p_o_delay bigint[]
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_instance text;
    v_until bigint;
    v_wake integer := 0;
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
    UPDATE __SCHEMA__.instances i
       SET orchestration_name = p_name,
           orchestration_version = p_version,
           parent_instance_id = coalesce(i.parent_instance_id, p_parent),
           current_execution_id = greatest(i.current_execution_id, p_execution),
           updated_at_ms = p_now,
           custom_status = CASE WHEN p_cs_changed THEN p_cs ELSE i.custom_status END,
           custom_status_version = i.custom_status_version + CASE WHEN p_cs_changed THEN 1 ELSE 0 END
     WHERE i.instance_id = p_instance;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'instance % was deleted while lock % was held', p_instance, p_token
            USING ERRCODE = 'DX001';
    END IF;
    INSERT INTO __SCHEMA__.executions (instance_id, execution_id, started_at_ms)
    VALUES (p_instance, p_execution, p_now)
    ON CONFLICT (instance_id, execution_id) DO NOTHING;
    IF cardinality(p_ev_id) > 0 THEN
        INSERT INTO __SCHEMA__.history (instance_id, execution_id, event_id, event_type, event_data)
        SELECT p_instance, p_execution, t.id, t.kind, t.data
          FROM unnest(p_ev_id, p_ev_type, p_ev_data) AS t(id, kind, data);
    END IF;
    IF p_status IS NOT NULL THEN
        UPDATE __SCHEMA__.executions e
           SET status = p_status, output = p_output,
               completed_at_ms = CASE WHEN p_terminal THEN p_now ELSE e.completed_at_ms END
         WHERE e.instance_id = p_instance AND e.execution_id = p_execution;
    END IF;
    -- KV: the net effect of the turn's ops, a clear-all first (tombstoning
    -- every key known so far), then each key's final value or tombstone.
    IF p_kv_clear_all IS NOT NULL THEN
        INSERT INTO __SCHEMA__.kv_delta AS d (instance_id, key, value, updated_at_ms)
        SELECT s.instance_id, s.key, NULL, p_kv_clear_all FROM __SCHEMA__.kv_store s WHERE s.instance_id = p_instance
        UNION
        SELECT x.instance_id, x.key, NULL, p_kv_clear_all FROM __SCHEMA__.kv_delta x WHERE x.instance_id = p_instance
        ON CONFLICT (instance_id, key) DO UPDATE SET value = NULL, updated_at_ms = EXCLUDED.updated_at_ms;
    END IF;
    IF cardinality(p_k_key) > 0 THEN
        INSERT INTO __SCHEMA__.kv_delta AS d (instance_id, key, value, updated_at_ms)
        SELECT p_instance, u.k, u.v, u.t FROM unnest(p_k_key, p_k_value, p_k_ts) AS u(k, v, t)
        ON CONFLICT (instance_id, key) DO UPDATE SET value = EXCLUDED.value, updated_at_ms = EXCLUDED.updated_at_ms;
    END IF;
    IF p_terminal THEN
        -- The execution ended: its writes become the next execution's baseline.
        DELETE FROM __SCHEMA__.kv_store s USING __SCHEMA__.kv_delta d
         WHERE s.instance_id = p_instance AND d.instance_id = s.instance_id AND d.key = s.key AND d.value IS NULL;
        INSERT INTO __SCHEMA__.kv_store AS s (instance_id, key, value, updated_at_ms)
        SELECT d.instance_id, d.key, d.value, d.updated_at_ms FROM __SCHEMA__.kv_delta d
         WHERE d.instance_id = p_instance AND d.value IS NOT NULL
        ON CONFLICT (instance_id, key) DO UPDATE SET value = EXCLUDED.value, updated_at_ms = EXCLUDED.updated_at_ms;
        DELETE FROM __SCHEMA__.kv_delta d WHERE d.instance_id = p_instance;
    END IF;
    IF __SCHEMA__.insert_activities(p_now, p_w_inst, p_w_exec, p_w_id, p_w_item, p_w_session, p_w_tag) > 0 THEN
        v_wake := v_wake | 2;
    END IF;
    IF cardinality(p_c_id) > 0 THEN
        DELETE FROM __SCHEMA__.worker_queue w
         USING unnest(p_c_inst, p_c_exec, p_c_id) AS c(i, e, a)
         WHERE w.instance_id = c.i AND w.execution_id = c.e AND w.activity_id = c.a;
    END IF;
    IF cardinality(p_ch_inst) > 0 THEN
        -- Children and detached orchestrations exist from the commit that starts them.
        WITH created AS (
            INSERT INTO __SCHEMA__.instances (instance_id, orchestration_name, orchestration_version,
                                              parent_instance_id, created_at_ms, updated_at_ms)
            SELECT t.i, t.n, t.v, t.p, p_now, p_now
              FROM unnest(p_ch_inst, p_ch_name, p_ch_ver, p_ch_parent) AS t(i, n, v, p)
            ON CONFLICT (instance_id) DO NOTHING
            RETURNING instance_id)
        INSERT INTO __SCHEMA__.executions (instance_id, execution_id, started_at_ms)
        SELECT created.instance_id, 1, p_now FROM created;
    END IF;
    IF cardinality(p_o_inst) > 0 THEN
        INSERT INTO __SCHEMA__.orchestrator_queue (instance_id, work_item, visible_at)
        SELECT t.i, t.item, p_now + t.d
          FROM unnest(p_o_inst, p_o_item, p_o_delay) WITH ORDINALITY AS t(i, item, d, n)
         ORDER BY t.n;
    END IF;
    DELETE FROM __SCHEMA__.orchestrator_queue q WHERE q.lock_token = p_token;
    DELETE FROM __SCHEMA__.instance_locks il WHERE il.lock_token = p_token;
    IF cardinality(p_o_inst) > 0
       OR EXISTS (SELECT 1 FROM __SCHEMA__.orchestrator_queue q WHERE q.instance_id = p_instance) THEN
        v_wake := v_wake | 1;
    END IF;
    RETURN v_wake;
END
$$;
