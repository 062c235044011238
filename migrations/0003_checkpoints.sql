-- SPDX-License-Identifier: MIT
-- 0003_checkpoints: job checkpoints, job controls (pause, stop-and-save),
-- the "paused" status, and an outbox of webhook deliveries.
--
-- The jobs table is rebuilt (SQLite's documented 12-step procedure; the
-- migration runner switches foreign keys off around it) because its status
-- CHECK gains 'paused'. Every column and row is copied as it is; seq values
-- are kept, so FIFO order and event cursors do not move. New columns:
--   control         NULL, 'stop' or 'pause': what the API asked a running
--                   job to do at its next step (cancel keeps its own
--                   column, cancel_requested)
--   note            a sentence for people about how the job ended (e.g.
--                   stopped early by request, or by early stopping)
--   webhook_url     where terminal states are POSTed (NULL: none)
--   webhook_secret  the job's HMAC key for those POSTs (NULL: the server's)

CREATE TABLE jobs_new (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT    NOT NULL UNIQUE CHECK (length(id) > 0),
    status            TEXT    NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'running', 'paused',
                                        'succeeded', 'failed', 'cancelled')),
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
    idempotency_key   TEXT    CHECK (idempotency_key IS NULL OR length(idempotency_key) > 0),
    control           TEXT    CHECK (control IS NULL OR control IN ('stop', 'pause')),
    note              TEXT,
    webhook_url       TEXT    CHECK (webhook_url IS NULL OR length(webhook_url) > 0),
    webhook_secret    TEXT    CHECK (webhook_secret IS NULL OR length(webhook_secret) > 0)
);
INSERT INTO jobs_new (seq, id, status, base_model, dataset_id, val_dataset_id,
    hyperparameters, suffix, model, created_at, started_at, finished_at, step,
    total_steps, epoch, train_loss, val_loss, tokens_per_second, eta_seconds,
    error, priority, cancel_requested, worker, attempts, owner, shared,
    idempotency_key)
SELECT seq, id, status, base_model, dataset_id, val_dataset_id,
    hyperparameters, suffix, model, created_at, started_at, finished_at, step,
    total_steps, epoch, train_loss, val_loss, tokens_per_second, eta_seconds,
    error, priority, cancel_requested, worker, attempts, owner, shared,
    idempotency_key
FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_queue ON jobs (priority DESC, seq) WHERE status = 'queued';
CREATE INDEX jobs_status ON jobs (status, seq);
CREATE INDEX jobs_owner ON jobs (owner, seq);
CREATE INDEX jobs_dataset ON jobs (dataset_id);
CREATE INDEX jobs_val_dataset ON jobs (val_dataset_id) WHERE val_dataset_id IS NOT NULL;
CREATE UNIQUE INDEX jobs_idempotency ON jobs (owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- One row per saved checkpoint that still exists on disk. A step saved
-- again after a resume replaces its row. path is relative to the data dir.
CREATE TABLE job_checkpoints (
    job_id        TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    step          INTEGER NOT NULL CHECK (step >= 0),
    path          TEXT    NOT NULL,
    train_loss    REAL,
    val_loss      REAL,
    val_accuracy  REAL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (job_id, step)
) WITHOUT ROWID;

-- The webhook outbox. A trigger adds the row in the same transaction that
-- gives a job with a webhook_url its terminal status, whichever code path
-- does it, so a crash can neither lose a delivery nor make two: the
-- UNIQUE (job_id, event) pair allows one delivery per terminal state.
-- state: pending (next attempt at next_at), delivered, or failed (gave up).
-- body is the JSON sent, fixed at the first attempt so retries repeat it.
CREATE TABLE webhook_deliveries (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id       TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    event        TEXT    NOT NULL CHECK (event IN ('succeeded', 'failed', 'cancelled')),
    url          TEXT    NOT NULL,
    body         TEXT,
    state        TEXT    NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    last_status  INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    delivered_at INTEGER,
    UNIQUE (job_id, event)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at, seq)
    WHERE state = 'pending';

CREATE TRIGGER jobs_webhook_outbox AFTER UPDATE OF status ON jobs
WHEN NEW.webhook_url IS NOT NULL AND OLD.status IS NOT NEW.status
     AND NEW.status IN ('succeeded', 'failed', 'cancelled')
BEGIN
    INSERT OR IGNORE INTO webhook_deliveries (job_id, event, url, next_at,
                                              created_at)
    VALUES (NEW.id, NEW.status, NEW.webhook_url, CAST(strftime('%s', 'now') AS INTEGER),
            CAST(strftime('%s', 'now') AS INTEGER));
END;
