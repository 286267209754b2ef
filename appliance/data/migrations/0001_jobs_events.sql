-- Jobs are the truth about long operations; Huey is only the transport (docs/ARCHITECTURE.md).
CREATE TABLE jobs (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    lane          TEXT NOT NULL CHECK (lane IN ('heavy', 'interactive')),
    status        TEXT NOT NULL CHECK (status IN ('queued', 'running', 'paused', 'completed', 'failed', 'cancelled')),
    progress      REAL NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    message       TEXT NOT NULL DEFAULT '',
    params        TEXT NOT NULL DEFAULT '{}',
    result        TEXT,
    error_code    TEXT,
    error_message TEXT,
    target_type   TEXT,
    target_id     TEXT,
    -- A request the running task polls: 'cancel', 'pause' or 'stop'.
    control       TEXT CHECK (control IN ('cancel', 'pause', 'stop')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL,
    started_at    REAL,
    finished_at   REAL,
    updated_at    REAL NOT NULL
);
CREATE INDEX jobs_status ON jobs (status, created_at);
CREATE INDEX jobs_created ON jobs (created_at);
CREATE INDEX jobs_target ON jobs (target_type, target_id);

-- AUTOINCREMENT: ids are never reused after retention deletes rows, so Last-Event-ID stays valid.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    topic      TEXT NOT NULL,
    type       TEXT NOT NULL,
    job_id     TEXT,
    -- Lifecycle events are durable; progress events may be thinned by retention.
    durable    INTEGER NOT NULL DEFAULT 1,
    data       TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE INDEX events_job ON events (job_id, id);
CREATE INDEX events_topic ON events (topic, id);
CREATE INDEX events_thin ON events (durable, created_at);

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    pid          INTEGER NOT NULL,
    hostname     TEXT NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    stopped_at   REAL,
    info         TEXT NOT NULL DEFAULT '{}'
);
