-- Scores with support and uncertainty (appliance/pipeline/features/extract.py): the interpretability score's
-- 95% bootstrap interval and its held-out positives; NULL score = too rare to score (or dead).
ALTER TABLE features ADD COLUMN score_low REAL;
ALTER TABLE features ADD COLUMN score_high REAL;
ALTER TABLE features ADD COLUMN held_out_positives INTEGER NOT NULL DEFAULT 0;
-- A language model's explanation judged by detection and fuzzing (balanced accuracy and its interval), written
-- with the explanation (llm_label) by the features.explain job.
ALTER TABLE features ADD COLUMN detection REAL;
ALTER TABLE features ADD COLUMN detection_low REAL;
ALTER TABLE features ADD COLUMN detection_high REAL;
ALTER TABLE features ADD COLUMN fuzzing REAL;
ALTER TABLE features ADD COLUMN fuzzing_low REAL;
ALTER TABLE features ADD COLUMN fuzzing_high REAL;

-- An extraction from before had no support floor nor interval: its scores rank nothing any more and it shows
-- as unscored until it is extracted again (its summary has no "scored" count).
UPDATE features SET score = NULL;

-- Scores sort by their lower bound with unscored features last in both directions. SQLite puts NULL first
-- ascending, last descending: descending walks (training_id, key, idx) backwards; ascending walks
-- (training_id, key IS NULL, key, idx). frequency rides along, as in 0011, for "live only".
DROP INDEX features_score;
CREATE INDEX features_score_low ON features (training_id, score_low, idx, frequency);
CREATE INDEX features_score_low_asc ON features (training_id, score_low IS NULL, score_low, idx, frequency);
CREATE INDEX features_detection ON features (training_id, detection_low, idx, frequency);
CREATE INDEX features_detection_asc ON features (training_id, detection_low IS NULL, detection_low, idx, frequency);
CREATE INDEX features_fuzzing ON features (training_id, fuzzing_low, idx, frequency);
CREATE INDEX features_fuzzing_asc ON features (training_id, fuzzing_low IS NULL, fuzzing_low, idx, frequency);
