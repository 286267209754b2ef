-- A running training's "save now" is a control value like pause and stop: the API sets it on the
-- job, the worker's supervisor hands it to the handler and clears it. SQLite cannot change a CHECK
-- constraint in place, so the jobs table is rebuilt with 'save' allowed (no table refers to it).
CREATE TABLE jobs_new (
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
    -- A request the running task polls: 'cancel', 'pause', 'stop', or 'save' (a checkpoint now).
    control       TEXT CHECK (control IN ('cancel', 'pause', 'stop', 'save')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL,
    started_at    REAL,
    finished_at   REAL,
    updated_at    REAL NOT NULL
);
INSERT INTO jobs_new (id, kind, lane, status, progress, message, params, result, error_code, error_message,
                      target_type, target_id, control, attempts, created_at, started_at, finished_at, updated_at)
    SELECT id, kind, lane, status, progress, message, params, result, error_code, error_message,
           target_type, target_id, control, attempts, created_at, started_at, finished_at, updated_at FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_status ON jobs (status, created_at);
CREATE INDEX jobs_created ON jobs (created_at);
CREATE INDEX jobs_target ON jobs (target_type, target_id);
