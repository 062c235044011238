-- SPDX-License-Identifier: MIT
-- 0001_init: datasets, jobs, their events and per-step metrics.
--
-- Every table has an INTEGER PRIMARY KEY "seq": it records insertion order
-- (FIFO claiming, newest-first listing) and, unlike a bare rowid, survives
-- VACUUM. Public ids ("ds_...", "job_...") are UNIQUE text columns.
-- Times are Unix seconds; NULL means "not yet". Unmeasured numbers are NULL
-- (the store maps them to NaN). JSON columns are opaque text.

CREATE TABLE datasets (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE CHECK (length(id) > 0),
    name       TEXT    NOT NULL DEFAULT '',
    format     TEXT    NOT NULL CHECK (format IN ('completion', 'chat', 'text')),
    rows       INTEGER NOT NULL CHECK (rows >= 0),
    tokens     INTEGER NOT NULL CHECK (tokens >= 0),
    bytes      INTEGER NOT NULL CHECK (bytes >= 0),
    sha256     TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    owner      TEXT    NOT NULL DEFAULT '',
    shared     INTEGER NOT NULL DEFAULT 0 CHECK (shared IN (0, 1))
);
CREATE INDEX datasets_owner ON datasets (owner, seq);

-- dataset_id and val_dataset_id are deliberately not foreign keys: a finished
-- job keeps naming the dataset it was trained on after that dataset is
-- deleted. The store checks existence at insert and refuses to delete a
-- dataset while a queued or running job uses it.
CREATE TABLE jobs (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT    NOT NULL UNIQUE CHECK (length(id) > 0),
    status            TEXT    NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'running', 'succeeded',
                                        'failed', 'cancelled')),
    base_model        TEXT    NOT NULL,
    dataset_id        TEXT    NOT NULL,
    val_dataset_id    TEXT,
    hyperparameters   TEXT    NOT NULL DEFAULT '{}',
    suffix            TEXT    NOT NULL DEFAULT '',
    model             TEXT    NOT NULL DEFAULT '',
    created_at        INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER,
    step              INTEGER NOT NULL DEFAULT 0,
    total_steps       INTEGER NOT NULL DEFAULT 0,
    epoch             INTEGER NOT NULL DEFAULT 0,
    train_loss        REAL,
    val_loss          REAL,
    tokens_per_second REAL    NOT NULL DEFAULT 0,
    eta_seconds       REAL    NOT NULL DEFAULT -1,
    error             TEXT,
    priority          INTEGER NOT NULL DEFAULT 0,
    cancel_requested  INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    worker            TEXT    NOT NULL DEFAULT '',
    attempts          INTEGER NOT NULL DEFAULT 0,
    owner             TEXT    NOT NULL DEFAULT '',
    shared            INTEGER NOT NULL DEFAULT 0 CHECK (shared IN (0, 1)),
    idempotency_key   TEXT    CHECK (idempotency_key IS NULL OR length(idempotency_key) > 0)
);
-- The claim order: highest priority first, FIFO within a priority.
CREATE INDEX jobs_queue ON jobs (priority DESC, seq) WHERE status = 'queued';
CREATE INDEX jobs_status ON jobs (status, seq);
CREATE INDEX jobs_owner ON jobs (owner, seq);
CREATE INDEX jobs_dataset ON jobs (dataset_id);
CREATE INDEX jobs_val_dataset ON jobs (val_dataset_id) WHERE val_dataset_id IS NOT NULL;
CREATE UNIQUE INDEX jobs_idempotency ON jobs (owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- seq is the SSE cursor (Last-Event-ID): AUTOINCREMENT never reuses a value,
-- even after the newest rows are deleted.
CREATE TABLE job_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    level      TEXT    NOT NULL CHECK (level IN ('info', 'warn', 'error')),
    type       TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    data       TEXT
);
CREATE INDEX job_events_job ON job_events (job_id, seq);

-- One row per (job, step): a training and a validation measurement of the
-- same step merge into it, and a step replayed after a resume replaces it.
CREATE TABLE job_metrics (
    job_id            TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    step              INTEGER NOT NULL CHECK (step >= 0),
    train_loss        REAL,
    val_loss          REAL,
    val_accuracy      REAL,
    lr                REAL,
    grad_norm         REAL,
    tokens_per_second REAL,
    created_at        INTEGER NOT NULL,
    PRIMARY KEY (job_id, step)
) WITHOUT ROWID;
