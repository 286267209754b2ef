-- SAE trainings: the run's settings and state; metrics history; the files under trainings/<id>/
-- (checkpoints/step_N/, export/ in the SAELens layout).
CREATE TABLE trainings (
    id              TEXT PRIMARY KEY,
    model_id        TEXT NOT NULL,
    dataset_id      TEXT NOT NULL,
    activation_id   TEXT,
    layer           INTEGER NOT NULL,
    hook_type       TEXT NOT NULL,
    encoder_type    TEXT NOT NULL,
    config          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'paused', 'completed', 'stopped',
                                                     'failed', 'cancelled')),
    job_id          TEXT,
    step            INTEGER NOT NULL DEFAULT 0,
    total_steps     INTEGER NOT NULL,
    latest          TEXT,
    evaluation      TEXT,
    error_message   TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE INDEX trainings_created ON trainings (created_at);

CREATE TABLE training_metrics (
    training_id        TEXT NOT NULL REFERENCES trainings (id) ON DELETE CASCADE,
    step               INTEGER NOT NULL,
    tokens             INTEGER NOT NULL,
    loss               REAL,
    mse                REAL,
    sparsity_loss      REAL,
    l0                 REAL,
    dead_latents       INTEGER,
    explained_variance REAL,
    learning_rate      REAL,
    activations_per_s  REAL,
    recorded_at        REAL NOT NULL,
    PRIMARY KEY (training_id, step)
);
