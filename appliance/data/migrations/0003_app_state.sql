-- Small facts about this installation, e.g. which first-start seeds were created (so a seed the
-- user deleted is not created again on the next start).
CREATE TABLE app_state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL
);
