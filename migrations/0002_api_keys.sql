-- SPDX-License-Identifier: MIT
-- 0002_api_keys: API keys (only a hash of each secret is kept) and the
-- usage counted against each key.
--
-- A key's id ("key_...") is what datasets.owner and jobs.owner hold. Keys
-- are never deleted, only revoked, so owners stay meaningful. An active
-- key's name is unique (so "revoke alice" is unambiguous); a revoked key's
-- name may be reused.

CREATE TABLE api_keys (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE CHECK (length(id) > 0),
    name       TEXT    NOT NULL CHECK (length(name) > 0),
    role       TEXT    NOT NULL CHECK (role IN ('admin', 'member')),
    hash       TEXT    NOT NULL UNIQUE CHECK (length(hash) = 64),
    prefix     TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name)
    WHERE revoked_at IS NULL;

CREATE TABLE key_usage (
    key_id           TEXT    PRIMARY KEY REFERENCES api_keys (id),
    tokens_trained   INTEGER NOT NULL DEFAULT 0,
    tokens_generated INTEGER NOT NULL DEFAULT 0,
    cpu_seconds      REAL    NOT NULL DEFAULT 0,
    updated_at       INTEGER NOT NULL
) WITHOUT ROWID;
