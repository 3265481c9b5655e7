//! The store's own tables, versioned with `PRAGMA user_version` and migrated forward.

/// Migrations in order; migration `i` takes the store from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO settings VALUES ('recovery_code_iterations', '10000');

CREATE TABLE roles (
    id     TEXT PRIMARY KEY,
    name   TEXT NOT NULL,
    claims TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE users (
    id                     INTEGER PRIMARY KEY,
    subject_id             TEXT NOT NULL UNIQUE,
    profile                TEXT NOT NULL,
    user_name              TEXT,
    normalized_user_name   TEXT UNIQUE,
    email_confirmed        INTEGER NOT NULL,
    phone_number_confirmed INTEGER NOT NULL,
    two_factor_enabled     INTEGER NOT NULL,
    lockout_end            TEXT,
    lockout_enabled        INTEGER NOT NULL,
    access_failed_count    INTEGER NOT NULL,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL
);

CREATE TABLE unique_keys (
    attribute TEXT NOT NULL,
    value     TEXT NOT NULL,
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (attribute, value)
) WITHOUT ROWID;
CREATE INDEX unique_keys_user ON unique_keys (user_id);

CREATE TABLE passwords (
    user_id    INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    algorithm  TEXT NOT NULL,
    hash       BLOB NOT NULL,
    salt       BLOB NOT NULL,
    parameters TEXT NOT NULL,
    set_at     TEXT NOT NULL
);

CREATE TABLE otp_addresses (
    channel    TEXT NOT NULL,
    normalized TEXT NOT NULL,
    address    TEXT NOT NULL,
    verified   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (channel, normalized)
) WITHOUT ROWID;
CREATE INDEX otp_addresses_user ON otp_addresses (user_id);

CREATE TABLE external_logins (
    provider     TEXT NOT NULL,
    provider_key TEXT NOT NULL,
    display_name TEXT,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (provider, provider_key)
) WITHOUT ROWID;
CREATE INDEX external_logins_user ON external_logins (user_id);

CREATE TABLE passkeys (
    credential_id   BLOB PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    public_key_cose BLOB NOT NULL,
    algorithm       INTEGER NOT NULL,
    sign_count      INTEGER NOT NULL,
    backup_eligible INTEGER NOT NULL,
    backed_up       INTEGER NOT NULL,
    aaguid          BLOB NOT NULL,
    name            TEXT NOT NULL
);
CREATE INDEX passkeys_user ON passkeys (user_id);

CREATE TABLE totp_devices (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name    TEXT NOT NULL,
    key     BLOB NOT NULL,
    PRIMARY KEY (user_id, name)
) WITHOUT ROWID;

CREATE TABLE recovery_codes (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    salt       BLOB NOT NULL,
    hash       BLOB NOT NULL,
    iterations INTEGER NOT NULL
);
CREATE INDEX recovery_codes_user ON recovery_codes (user_id);

CREATE TABLE memberships (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id TEXT NOT NULL REFERENCES roles (id),
    PRIMARY KEY (user_id, role_id)
) WITHOUT ROWID;

CREATE TABLE import_runs (
    id          INTEGER PRIMARY KEY,
    bundle      TEXT NOT NULL,
    policy      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL,
    created     INTEGER NOT NULL DEFAULT 0,
    updated     INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE import_results (
    run_id     INTEGER NOT NULL REFERENCES import_runs (id),
    seq        INTEGER NOT NULL,
    subject_id TEXT,
    file       TEXT,
    line       INTEGER,
    status     TEXT NOT NULL,
    reason     TEXT,
    message    TEXT,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
"#,
    // v2: OTP addresses become a rowid table with a unique index on (channel, normalized). As a
    // WITHOUT ROWID table every address was a whole row inserted in random order into the
    // key's B-tree; the index holds only the key, half the pages for a load to dirty.
    r#"
CREATE TABLE otp_addresses_v2 (
    channel    TEXT NOT NULL,
    normalized TEXT NOT NULL,
    address    TEXT NOT NULL,
    verified   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    UNIQUE (channel, normalized)
);
INSERT INTO otp_addresses_v2 (channel, normalized, address, verified, user_id)
    SELECT channel, normalized, address, verified, user_id FROM otp_addresses;
DROP TABLE otp_addresses;
ALTER TABLE otp_addresses_v2 RENAME TO otp_addresses;
CREATE INDEX otp_addresses_user ON otp_addresses (user_id);
"#,
    // v3: user names and OTP addresses are indexed by a 64-bit hash of their key
    // (`ferry_key_hash`, see key.rs), not by the key's text: a third of the pages, so a
    // load that inserts them in random order touches far fewer. The hash indexes are
    // UNIQUE; a key whose hash another key has taken is stored with a NULL hash (NULLs never
    // conflict) and found through a partial index of such keys, which is empty in
    // practice. Lookups compare the exact text, so two keys that share a hash stay apart.
    // Run with foreign keys off (the users table is rebuilt under the rows that refer to it).
    r#"
CREATE TABLE users_v3 (
    id                     INTEGER PRIMARY KEY,
    subject_id             TEXT NOT NULL UNIQUE,
    profile                TEXT NOT NULL,
    user_name              TEXT,
    normalized_user_name   TEXT,
    user_name_hash         INTEGER,
    email_confirmed        INTEGER NOT NULL,
    phone_number_confirmed INTEGER NOT NULL,
    two_factor_enabled     INTEGER NOT NULL,
    lockout_end            TEXT,
    lockout_enabled        INTEGER NOT NULL,
    access_failed_count    INTEGER NOT NULL,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL
);
INSERT INTO users_v3 (id, subject_id, profile, user_name, normalized_user_name, user_name_hash,
        email_confirmed, phone_number_confirmed, two_factor_enabled, lockout_end, lockout_enabled,
        access_failed_count, created_at, updated_at)
    SELECT id, subject_id, profile, user_name, normalized_user_name,
        CASE WHEN normalized_user_name IS NULL THEN NULL ELSE ferry_key_hash(normalized_user_name) END,
        email_confirmed, phone_number_confirmed, two_factor_enabled, lockout_end, lockout_enabled,
        access_failed_count, created_at, updated_at
    FROM users;
UPDATE users_v3 SET user_name_hash = NULL
    WHERE id NOT IN (SELECT MIN(id) FROM users_v3 GROUP BY user_name_hash);
DROP TABLE users;
ALTER TABLE users_v3 RENAME TO users;
CREATE UNIQUE INDEX users_user_name_hash ON users (user_name_hash);
CREATE INDEX users_unhashed_name ON users (normalized_user_name)
    WHERE user_name_hash IS NULL AND normalized_user_name IS NOT NULL;

CREATE TABLE otp_addresses_v3 (
    channel    TEXT NOT NULL,
    normalized TEXT NOT NULL,
    key_hash   INTEGER,
    address    TEXT NOT NULL,
    verified   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE
);
INSERT INTO otp_addresses_v3 (channel, normalized, key_hash, address, verified, user_id)
    SELECT channel, normalized, ferry_key_hash(channel, normalized), address, verified, user_id
    FROM otp_addresses ORDER BY rowid;
UPDATE otp_addresses_v3 SET key_hash = NULL
    WHERE rowid NOT IN (SELECT MIN(rowid) FROM otp_addresses_v3 GROUP BY key_hash);
DROP TABLE otp_addresses;
ALTER TABLE otp_addresses_v3 RENAME TO otp_addresses;
CREATE UNIQUE INDEX otp_addresses_key ON otp_addresses (key_hash);
CREATE INDEX otp_addresses_unhashed ON otp_addresses (channel, normalized) WHERE key_hash IS NULL;
CREATE INDEX otp_addresses_user ON otp_addresses (user_id);
"#,
    // v4: a run that fails says why.
    r#"
ALTER TABLE import_runs ADD COLUMN reason TEXT;
"#,
    // v5: a run records the process that runs it, so that a load tells a run left
    // `running` by a crash from one another process is still writing.
    r#"
ALTER TABLE import_runs ADD COLUMN host TEXT;
ALTER TABLE import_runs ADD COLUMN pid INTEGER;
"#,
];
