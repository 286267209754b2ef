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

-- What the browser searches, filters and sorts: narrow rows, so a scan of 32k features is a few
-- pages. The evidence (JSON) is in feature_details, read for the rows shown.
CREATE TABLE features (
    training_id      TEXT NOT NULL REFERENCES trainings (id) ON DELETE CASCADE,
    idx              INTEGER NOT NULL,
    frequency        REAL NOT NULL,      -- share of evaluation tokens where the latent is > 0
    max_activation   REAL NOT NULL,
    mean_activation  REAL NOT NULL,      -- mean over the tokens where it fires
    active_samples   INTEGER NOT NULL,   -- evaluation samples where it fires at least once
    auto_label       TEXT NOT NULL,
    score            REAL,               -- interpretability (README): F1 of its top tokens on held-out text
    llm_label        TEXT,               -- from a language model (optional; settings)
    name             TEXT,               -- the user's label
    description      TEXT,
    is_favorite      INTEGER NOT NULL DEFAULT 0,
    search_text      TEXT NOT NULL,      -- lower-cased label and top tokens
    map_x            REAL,
    map_y            REAL,
    PRIMARY KEY (training_id, idx)
) WITHOUT ROWID;  -- rows stored in (training, index) order: one SAE's features are one range
-- (training, sort key, idx) serves each sort; frequency rides along so "live only" is read from the
-- index while skipping to a deep page.
CREATE INDEX features_frequency ON features (training_id, frequency, idx);
CREATE INDEX features_max ON features (training_id, max_activation, idx, frequency);
CREATE INDEX features_score ON features (training_id, score, idx, frequency);
CREATE INDEX features_label ON features (training_id, COALESCE(name, llm_label, auto_label), idx, frequency,
                                         name, llm_label, auto_label);

CREATE TABLE feature_details (
    training_id  TEXT NOT NULL REFERENCES trainings (id) ON DELETE CASCADE,
    idx          INTEGER NOT NULL,
    histogram    TEXT NOT NULL,      -- counts over log10(activation) bins
    top_tokens   TEXT NOT NULL,      -- [[token, count], ...] at its max-activating positions
    logit_lens   TEXT NOT NULL,      -- {"positive": [[token, value]], "negative": [...], "logsumexp": x}
    example      TEXT,               -- the top context, for the browser table
    ablation     TEXT,
    PRIMARY KEY (training_id, idx)
) WITHOUT ROWID;
