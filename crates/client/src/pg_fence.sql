-- arbiter fence for PostgreSQL, schema version 2.
--
-- Installed by `arbiter pg install-fence` (see `arbiter_client::pg_fence::install`), which runs
-- this script inside one transaction under an advisory lock, and only when the recorded version
-- is older than 2: a second install changes nothing; a version-1 fence is upgraded in place
-- (the floor rows are kept).
--
-- Every write transaction under a lease calls, first:
--     SELECT arbiter_fence.check(resource, token);
-- It locks the resource's floor row until the transaction ends, so the check and the writes
-- that follow are ordered with every other fenced transaction on the same resource:
--   token <  floor  -> raises SQLSTATE AF001 (stale token); the transaction is aborted, nothing
--                      it wrote commits. DETAIL is "floor <n>".
--   token =  floor  -> the same lease holder: allowed, nothing changes. The lock is a SHARE
--                      lock, so the holder's transactions do not wait for one another (version
--                      1 took FOR UPDATE here: one commit at a time per resource, a round trip
--                      each under synchronous replication).
--   token >  floor  -> the floor becomes token when the transaction commits. Raising it takes
--                      the row's exclusive lock, which waits for every transaction holding the
--                      share lock under the old token to end; once it commits, an old-token
--                      check (waiting or new) reads the raised floor and is refused. So no
--                      lower token commits after a higher one.
-- Under REPEATABLE READ or SERIALIZABLE, a check that meets a floor raised after its snapshot
-- fails with SQLSTATE 40001 instead; that transaction commits nothing either.
-- A negative or NULL token raises SQLSTATE 22023 (invalid_parameter_value).
--
-- The floor is an ordinary table: durable with the WAL, streamed to standbys with the rows it
-- protects, and still there after a restart or a promotion.

CREATE SCHEMA IF NOT EXISTS arbiter_fence;

CREATE TABLE IF NOT EXISTS arbiter_fence.schema_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version integer NOT NULL
);

CREATE TABLE IF NOT EXISTS arbiter_fence.floor (
    resource text NOT NULL,
    token bigint NOT NULL CHECK (token >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT floor_pkey PRIMARY KEY (resource)
);

-- SECURITY DEFINER: application roles may call the check but not write the floor, so no
-- application bug can lower it. The fixed search_path keeps the definer's rights from being
-- borrowed through objects a caller puts earlier on its path.
CREATE OR REPLACE FUNCTION arbiter_fence.check(resource text, token bigint)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    current_floor bigint;
BEGIN
    IF $2 IS NULL OR $2 < 0 OR $1 IS NULL THEN
        RAISE EXCEPTION 'arbiter_fence.check: resource and a non-negative token are required'
            USING ERRCODE = '22023';
    END IF;
    -- A resource seen for the first time starts at the presented token. ON CONFLICT waits for a
    -- concurrent first insert to finish, so the row exists for the reads below.
    INSERT INTO arbiter_fence.floor AS f (resource, token)
        VALUES ($1, $2)
        ON CONFLICT ON CONSTRAINT floor_pkey DO NOTHING;
    LOOP
        -- Unlocked: only picks the path. The floor never goes down, so a token found not above
        -- it here is not above it later either.
        SELECT f.token INTO current_floor FROM arbiter_fence.floor AS f WHERE f.resource = $1;
        IF $2 > current_floor THEN
            -- Raise it. The exclusive row lock waits for every old-token transaction holding
            -- the share lock; the WHERE is re-checked on the newest row version, so of two
            -- transactions raising to the same token the second finds nothing and goes round.
            UPDATE arbiter_fence.floor AS f SET token = $2, updated_at = now()
                WHERE f.resource = $1 AND f.token < $2;
            IF FOUND THEN
                RETURN;
            END IF;
        ELSE
            -- Held until commit or rollback: a raise cannot commit between this check and this
            -- transaction's commit; a raise in progress is waited for, and then read.
            SELECT f.token INTO current_floor FROM arbiter_fence.floor AS f
                WHERE f.resource = $1 FOR SHARE;
            IF $2 < current_floor THEN
                RAISE EXCEPTION 'arbiter_fence: stale fencing token % for resource %', $2, $1
                    USING ERRCODE = 'AF001', DETAIL = 'floor ' || current_floor;
            ELSIF $2 = current_floor THEN
                RETURN;
            END IF;
        END IF;
    END LOOP;
END
$fn$;

REVOKE ALL ON arbiter_fence.floor, arbiter_fence.schema_version FROM PUBLIC;
GRANT USAGE ON SCHEMA arbiter_fence TO PUBLIC;
GRANT SELECT ON arbiter_fence.floor, arbiter_fence.schema_version TO PUBLIC;
GRANT EXECUTE ON FUNCTION arbiter_fence.check(text, bigint) TO PUBLIC;

INSERT INTO arbiter_fence.schema_version (singleton, version) VALUES (true, 2)
    ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version;
