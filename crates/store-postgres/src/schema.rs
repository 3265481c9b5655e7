//! The store's own tables, in their own schema, versioned in `schema_version` and migrated
//! forward under an advisory lock.
//!
//! Every value a record claims for itself alone (user name, unique attribute values, OTP
//! addresses, external logins, passkey credentials) is one row of `claims`, keyed by the
//! SHA-256 of the claim's kind and key ([`crate::claim`]): one unique index enforces all
//! of them, whichever loader writes, and a value of any length fits it. The authenticator
//! tables hold the data and are found by user.

/// Migrations in order; migration `i` takes the store from version `i` to `i + 1`. Each
/// runs with the schema first on the `search_path`.
pub(crate) const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO settings VALUES ('recovery_code_iterations', '10000');

CREATE TABLE roles (
    id     text PRIMARY KEY,
    name   text NOT NULL,
    claims jsonb NOT NULL DEFAULT '[]'
);

CREATE SEQUENCE users_id_seq;
CREATE TABLE users (
    id                     bigint PRIMARY KEY DEFAULT nextval('users_id_seq'),
    subject_id             text NOT NULL UNIQUE,
    profile                jsonb NOT NULL,
    user_name              text,
    normalized_user_name   text,
    email_confirmed        boolean NOT NULL,
    phone_number_confirmed boolean NOT NULL,
    two_factor_enabled     boolean NOT NULL,
    lockout_end            timestamptz,
    lockout_enabled        boolean NOT NULL,
    access_failed_count    integer NOT NULL,
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL
);
ALTER SEQUENCE users_id_seq OWNED BY users.id;

CREATE TABLE claims (
    digest  bytea PRIMARY KEY,
    kind    text NOT NULL,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX claims_user ON claims (user_id);

CREATE TABLE passwords (
    user_id    bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    algorithm  text NOT NULL,
    hash       bytea NOT NULL,
    salt       bytea NOT NULL,
    parameters jsonb NOT NULL,
    set_at     timestamptz NOT NULL
);

CREATE TABLE otp_addresses (
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel    text NOT NULL,
    address    text NOT NULL,
    normalized text NOT NULL,
    verified   boolean NOT NULL
);
CREATE INDEX otp_addresses_user ON otp_addresses (user_id);

CREATE TABLE external_logins (
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider     text NOT NULL,
    provider_key text NOT NULL,
    display_name text
);
CREATE INDEX external_logins_user ON external_logins (user_id);

CREATE TABLE passkeys (
    user_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id   bytea NOT NULL,
    public_key_cose bytea NOT NULL,
    algorithm       bigint NOT NULL,
    sign_count      bigint NOT NULL,
    backup_eligible boolean NOT NULL,
    backed_up       boolean NOT NULL,
    aaguid          bytea NOT NULL,
    name            text NOT NULL
);
CREATE INDEX passkeys_user ON passkeys (user_id);

CREATE TABLE totp_devices (
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name    text NOT NULL,
    key     bytea NOT NULL,
    PRIMARY KEY (user_id, name)
);

CREATE TABLE recovery_codes (
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    salt       bytea NOT NULL,
    hash       bytea NOT NULL,
    iterations integer NOT NULL
);
CREATE INDEX recovery_codes_user ON recovery_codes (user_id);

CREATE TABLE memberships (
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id text NOT NULL REFERENCES roles (id),
    PRIMARY KEY (user_id, role_id)
);

CREATE TABLE import_runs (
    id          bigserial PRIMARY KEY,
    bundle      text NOT NULL,
    policy      text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    status      text NOT NULL,
    reason      text,
    host        text,
    pid         bigint,
    created     bigint NOT NULL DEFAULT 0,
    updated     bigint NOT NULL DEFAULT 0,
    skipped     bigint NOT NULL DEFAULT 0,
    failed      bigint NOT NULL DEFAULT 0
);

CREATE TABLE import_results (
    run_id     bigint NOT NULL REFERENCES import_runs (id),
    seq        bigint NOT NULL,
    subject_id text,
    file       text,
    line       bigint,
    status     text NOT NULL,
    reason     text,
    message    text,
    PRIMARY KEY (run_id, seq)
);
"#];
