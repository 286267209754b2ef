-- Feature discovery: one extraction per SAE (training), one row per latent.
-- Arrays (per-token sparse activations, token ids) live under trainings/<id>/features/.
CREATE TABLE feature_extractions (
    training_id   TEXT PRIMARY KEY REFERENCES trainings (id) ON DELETE CASCADE,
    status        TEXT NOT NULL CHECK (status IN ('extracting', 'ready', 'error')),
    job_id        TEXT,
    config        TEXT NOT NULL,
    summary       TEXT,
    map_status    TEXT,
    error_message TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);

CREATE TABLE features (
    training_id      TEXT NOT NULL REFERENCES trainings (id) ON DELETE CASCADE,
    idx              INTEGER NOT NULL,
    frequency        REAL NOT NULL,      -- share of evaluation tokens where the latent is > 0
    max_activation   REAL NOT NULL,
    mean_activation  REAL NOT NULL,      -- mean over the tokens where it fires
    active_samples   INTEGER NOT NULL,   -- evaluation samples where it fires at least once
    histogram        TEXT NOT NULL,      -- counts over log10(activation) bins
    top_tokens       TEXT NOT NULL,      -- [[token, count], ...] at its max-activating positions
    logit_lens       TEXT NOT NULL,      -- {"positive": [[token, value]], "negative": [...]}
    example          TEXT,               -- the top context, for the browser table
    auto_label       TEXT NOT NULL,
    score            REAL,               -- interpretability (README): F1 of its top tokens on held-out text
    name             TEXT,               -- the user's label
    description      TEXT,
    is_favorite      INTEGER NOT NULL DEFAULT 0,
    search_text      TEXT NOT NULL,      -- lower-cased labels, name and top tokens
    map_x            REAL,
    map_y            REAL,
    ablation         TEXT,
    PRIMARY KEY (training_id, idx)
);
CREATE INDEX features_frequency ON features (training_id, frequency);
CREATE INDEX features_max ON features (training_id, max_activation);
CREATE INDEX features_score ON features (training_id, score);
