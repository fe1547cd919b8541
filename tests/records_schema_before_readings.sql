-- The schema of a records file as the store created it before readings existed (the SQL that
-- sqlite_master held); test_records_readings.py builds an old file from it and checks the upgrade.
CREATE TABLE dr_request_log (
    request_id      TEXT PRIMARY KEY,        -- canonical UUID text (version 1)
    day             TEXT NOT NULL,           -- UTC day of request_time, YYYY-MM-DD
    sort_key        BLOB NOT NULL,           -- timeuuid order, same as Cassandra's clustering order
    request_time    TEXT NOT NULL,           -- ISO 8601 UTC, milliseconds
    model_name      TEXT NOT NULL,
    model_version   TEXT NOT NULL,
    label           INTEGER NOT NULL,
    class_name      TEXT NOT NULL,
    confidence      REAL NOT NULL,
    probabilities   TEXT NOT NULL,           -- JSON array of 10 numbers
    source          TEXT NOT NULL,
    file_name       TEXT,
    image_path      TEXT,
    image_sha256    TEXT,
    processing_ms   REAL NOT NULL,
    corrected_label INTEGER
);
CREATE INDEX dr_request_log_newest ON dr_request_log (day DESC, sort_key DESC);
CREATE TABLE dr_request_image (
    request_id      TEXT PRIMARY KEY,        -- the record's request id
    size            INTEGER NOT NULL,        -- bytes
    data            BLOB NOT NULL            -- the image as stored (PNG); one cell, SQLite has no cell limit to respect
);
CREATE INDEX dr_filter_model ON dr_request_log
    (model_name, day, sort_key, model_version, confidence, corrected_label);
CREATE INDEX dr_request_log_version ON dr_request_log (model_version, day, sort_key, model_name);
CREATE INDEX dr_filter_label ON dr_request_log (label, day, sort_key, model_name, model_version);
CREATE INDEX dr_filter_corrected ON dr_request_log
    (day, sort_key, model_name, model_version, label, corrected_label, confidence)
    WHERE corrected_label IS NOT NULL;
CREATE INDEX dr_filter_unsure ON dr_request_log
    (day, sort_key, model_name, model_version, label, corrected_label, confidence) WHERE confidence < 0.5;
CREATE TABLE dr_request_hourly (
    model_name    TEXT NOT NULL,
    hour          TEXT NOT NULL,             -- UTC, YYYY-MM-DDTHH
    model_version TEXT NOT NULL,
    bin           INTEGER NOT NULL,          -- confidence bin of width 0.05 (0-19)
    count         INTEGER NOT NULL,
    corrected     INTEGER NOT NULL,
    wrong         INTEGER NOT NULL,          -- corrected to another label
    PRIMARY KEY (model_name, hour, model_version, bin)
) WITHOUT ROWID;
CREATE TRIGGER dr_request_log_tally_insert AFTER INSERT ON dr_request_log BEGIN
    INSERT INTO dr_request_hourly VALUES (NEW.model_name, substr(NEW.request_time, 1, 13), NEW.model_version, MIN(MAX(CAST(NEW.confidence * 20 AS INTEGER), 0), 19), 1, (NEW.corrected_label IS NOT NULL), (NEW.corrected_label IS NOT NULL AND NEW.corrected_label != NEW.label)) ON CONFLICT DO UPDATE SET count = count + excluded.count, corrected = corrected + excluded.corrected, wrong = wrong + excluded.wrong;
END;
CREATE TRIGGER dr_request_log_tally_delete AFTER DELETE ON dr_request_log BEGIN
    INSERT INTO dr_request_hourly VALUES (OLD.model_name, substr(OLD.request_time, 1, 13), OLD.model_version, MIN(MAX(CAST(OLD.confidence * 20 AS INTEGER), 0), 19), -1, -(OLD.corrected_label IS NOT NULL), -(OLD.corrected_label IS NOT NULL AND OLD.corrected_label != OLD.label)) ON CONFLICT DO UPDATE SET count = count + excluded.count, corrected = corrected + excluded.corrected, wrong = wrong + excluded.wrong;
END;
CREATE TRIGGER dr_request_log_tally_update
AFTER UPDATE OF model_name, request_time, model_version, label, confidence, corrected_label ON dr_request_log BEGIN
    INSERT INTO dr_request_hourly VALUES (OLD.model_name, substr(OLD.request_time, 1, 13), OLD.model_version, MIN(MAX(CAST(OLD.confidence * 20 AS INTEGER), 0), 19), -1, -(OLD.corrected_label IS NOT NULL), -(OLD.corrected_label IS NOT NULL AND OLD.corrected_label != OLD.label)) ON CONFLICT DO UPDATE SET count = count + excluded.count, corrected = corrected + excluded.corrected, wrong = wrong + excluded.wrong;
    INSERT INTO dr_request_hourly VALUES (NEW.model_name, substr(NEW.request_time, 1, 13), NEW.model_version, MIN(MAX(CAST(NEW.confidence * 20 AS INTEGER), 0), 19), 1, (NEW.corrected_label IS NOT NULL), (NEW.corrected_label IS NOT NULL AND NEW.corrected_label != NEW.label)) ON CONFLICT DO UPDATE SET count = count + excluded.count, corrected = corrected + excluded.corrected, wrong = wrong + excluded.wrong;
END;
