"""The database schema, as numbered migrations applied in order (tracked in PRAGMA
user_version on SQLite, in the schema_version table on PostgreSQL).

Never edit a released migration; append a new one.
"""

MIGRATIONS: tuple[str, ...] = (
    # 1: threads, the sessions each thread has had, what happened to them, and the journal.
    """
    CREATE TABLE threads (
        id              INTEGER PRIMARY KEY,
        platform        TEXT NOT NULL,
        workspace       TEXT NOT NULL,
        channel         TEXT NOT NULL,
        thread          TEXT NOT NULL,
        session_id      TEXT NOT NULL,            -- the current runtime session
        generation      INTEGER NOT NULL DEFAULT 1,  -- the highest one handed out so far
        status          TEXT NOT NULL DEFAULT 'new'
                        CHECK (status IN ('new', 'active')),  -- new: not yet in the runtime
        created_at      REAL NOT NULL,
        last_activity   REAL NOT NULL,
        parent_id       INTEGER REFERENCES threads(id),  -- set on branches
        branch_turn_id  INTEGER,                  -- the parent's turn the branch was taken at
        context_tokens  INTEGER NOT NULL DEFAULT 0,
        context_limit   INTEGER NOT NULL DEFAULT 0,
        UNIQUE (platform, workspace, channel, thread)
    );

    CREATE TABLE sessions (
        session_id      TEXT PRIMARY KEY,
        thread_id       INTEGER NOT NULL REFERENCES threads(id),
        generation      INTEGER NOT NULL,
        seed_summary    TEXT,                     -- carried in its system message
        created_at      REAL NOT NULL,
        retired_at      REAL,
        retire_cause    TEXT,                     -- reset, idle, context, restore
        summary         TEXT,                     -- taken when summarize+reset retired it
        summary_event_id TEXT,                    -- runtime event id of that request
        deleted_at      REAL                      -- runtime state removed by housekeeping
    );
    CREATE INDEX sessions_thread ON sessions (thread_id, retired_at);
    CREATE INDEX sessions_retired ON sessions (retired_at) WHERE deleted_at IS NULL;

    CREATE TABLE lifecycle (                      -- what happened to threads' sessions, when
        id              INTEGER PRIMARY KEY,
        thread_id       INTEGER NOT NULL REFERENCES threads(id),
        session_id      TEXT NOT NULL,            -- the session it happened to
        action          TEXT NOT NULL,            -- reset, idle, context, restore, branch
        at              REAL NOT NULL
    );
    CREATE INDEX lifecycle_action ON lifecycle (action, at);

    CREATE TABLE turns (
        id              INTEGER PRIMARY KEY,
        event_id        TEXT NOT NULL UNIQUE,     -- platform:delivery id; dedupe key
        thread_id       INTEGER REFERENCES threads(id),  -- none for thread-less commands
        kind            TEXT NOT NULL,            -- 'turn' or the command's name
        status          TEXT NOT NULL
                        CHECK (status IN ('received', 'running', 'done', 'failed',
                                          'interrupted')),
        session_id      TEXT,
        user_ref        TEXT,                     -- platform reference of the user's message
        reply_refs      TEXT NOT NULL DEFAULT '[]',  -- JSON list of references posted
        user_event_id   TEXT,                     -- runtime event ids: fork boundaries
        answer_event_id TEXT,
        error           TEXT,
        received_at     REAL NOT NULL,
        started_at      REAL,
        finished_at     REAL
    );
    CREATE INDEX turns_thread ON turns (thread_id, id);
    CREATE INDEX turns_status ON turns (status);
    CREATE INDEX turns_received ON turns (received_at);
    """,
    # 2: how far the agent has been told its thread (bot/thread_context.py).
    """
    ALTER TABLE threads ADD COLUMN context_ref TEXT;  -- platform position; NULL: not yet
    """,
    # 3: one word, one meaning: a thread's session is new or active (its session_state);
    # a journal entry is received, running, done, failed or interrupted (its state).
    """
    ALTER TABLE threads RENAME COLUMN status TO session_state;
    ALTER TABLE turns RENAME COLUMN status TO state;
    DROP INDEX turns_status;
    CREATE INDEX turns_state ON turns (state);
    """,
    # 4: replicas (bot/leases.py): who is alive, which one runs each thread's turns, who
    # took each journal entry; rate limits counted for the fleet (bot/access.py); and the
    # runtime's session state, where replicas share it (bot/session_files.py).
    """
    CREATE TABLE replicas (
        id              TEXT PRIMARY KEY,
        started_at      REAL NOT NULL,
        seen_at         REAL NOT NULL,            -- its last heartbeat
        leaving         INTEGER NOT NULL DEFAULT 0  -- shutting down: hand it nothing more
    );

    CREATE TABLE leases (                         -- one owner per thread at a time
        thread_id       INTEGER PRIMARY KEY REFERENCES threads(id),
        owner           TEXT NOT NULL,            -- a replica's id
        epoch           INTEGER NOT NULL,         -- + 1 each time the owner changes
        expires_at      REAL NOT NULL             -- 0: let go (the owner may take it back)
    );

    ALTER TABLE turns ADD COLUMN replica TEXT;    -- the replica that took the entry
    ALTER TABLE turns ADD COLUMN redo TEXT;       -- handed over: the delivery, to redeliver
    CREATE INDEX turns_open ON turns (thread_id, id) WHERE state IN ('received', 'running');

    CREATE TABLE rate_events (                    -- turns of the last minute, fleet-wide
        key             TEXT NOT NULL,            -- user:<platform:id> or thread:<key>
        at              REAL NOT NULL
    );
    CREATE INDEX rate_events_key ON rate_events (key, at);

    CREATE TABLE session_files (                  -- the runtime's session state, by session
        session_id      TEXT NOT NULL,
        path            TEXT NOT NULL,            -- inside the session, the same on every replica
        part            INTEGER NOT NULL,         -- a file is its parts in order; appends add one
        content         TEXT,                     -- NULL: a directory
        at              REAL NOT NULL,
        PRIMARY KEY (session_id, path, part)
    );
    """,
    # 5: the thread has been told that its profile redacts what the model is sent.
    """
    ALTER TABLE threads ADD COLUMN redaction_told INTEGER NOT NULL DEFAULT 0;
    """,
    # 6: approvals asked in threads, and how each was decided: the audit log
    # (bot/approvals.py). A thread's 'thread' approvals are its standing grants.
    """
    CREATE TABLE approvals (
        id              TEXT PRIMARY KEY,         -- a random token, in the card's buttons
        thread_id       INTEGER NOT NULL REFERENCES threads(id),
        replica         TEXT NOT NULL,            -- the replica whose agent waits for it
        asker           TEXT NOT NULL,            -- platform:user the agent was answering
        tool            TEXT NOT NULL,
        scope           TEXT NOT NULL,            -- what approving it for the thread covers
        action          TEXT NOT NULL,            -- what the agent wants to do, in words
        detail          TEXT NOT NULL,            -- the command, diff, URL (shortened)
        card_ref        TEXT,                     -- the message that asks
        state           TEXT NOT NULL,            -- pending once thread denied timed_out expired
        decided_by      TEXT,                     -- platform:user
        asked_at        REAL NOT NULL,
        decided_at      REAL
    );
    CREATE INDEX approvals_grants ON approvals (thread_id, scope, state);
    CREATE INDEX approvals_pending ON approvals (state, replica);
    """,
    # 7: the model a thread switched to (`model NAME`); NULL: its profile's.
    """
    ALTER TABLE threads ADD COLUMN model TEXT;
    """,
    # 8: turns and model tokens used a day, by person and by channel (bot/budgets.py).
    """
    CREATE TABLE spending (
        day             TEXT NOT NULL,            -- YYYY-MM-DD, UTC
        who             TEXT NOT NULL,            -- user:<platform:id> or channel:<platform:id>
        turns           INTEGER NOT NULL,
        tokens          INTEGER NOT NULL,
        PRIMARY KEY (day, who)
    );
    """,
)
