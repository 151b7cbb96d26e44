-- A family's whereabouts are visible to its members only.

-- 1. Key scopes. `full`: tools, server-to-server, admin (what every key was). `app`: the key an
-- app build ships, which acts only for the device whose token comes with it.
CREATE TYPE key_scope AS ENUM ('full', 'app');
ALTER TABLE api_keys
    ADD COLUMN scope key_scope NOT NULL DEFAULT 'full',
    ADD CONSTRAINT chk_api_keys_admin_full CHECK (NOT is_admin OR scope = 'full');

-- 2. Device credentials: the SHA-256 (hex) of the device's token, never the token; NULL for a
-- device registered before tokens existed (it may claim one on its next registration).
ALTER TABLE devices
    ADD COLUMN token_hash VARCHAR(64),
    ADD COLUMN token_issued_at TIMESTAMPTZ,
    ADD CONSTRAINT chk_devices_token_hash CHECK (token_hash IS NULL OR token_hash ~ '^[0-9a-f]{64}$');
CREATE UNIQUE INDEX uq_devices_token_hash ON devices (token_hash) WHERE token_hash IS NOT NULL;

-- 3. Invitations into a group: short codes a member reads out, stored hashed, with an expiry and
-- a use count. A join takes a use inside the registration's transaction (under the group's
-- lock), so a single-use code admits one device however many try at once.
CREATE TABLE group_invites (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY,
    group_id           VARCHAR(50) NOT NULL,
    code_hash          VARCHAR(64) NOT NULL,
    created_by_device  UUID,
    max_uses           INTEGER     NOT NULL,
    uses               INTEGER     NOT NULL DEFAULT 0,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at         TIMESTAMPTZ NOT NULL,
    CONSTRAINT pk_group_invites PRIMARY KEY (id),
    CONSTRAINT uq_group_invites_code UNIQUE (code_hash),
    CONSTRAINT chk_group_invites_code_hash CHECK (code_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT chk_group_invites_uses CHECK (max_uses >= 1 AND uses >= 0 AND uses <= max_uses),
    CONSTRAINT chk_group_invites_expiry CHECK (expires_at > created_at)
);
-- Expired invites are deleted with the idempotency records (the same hourly job).
CREATE INDEX idx_group_invites_expires_at ON group_invites (expires_at);

-- 4. The audit trail names the device a request acted as (app keys act for one device).
ALTER TABLE audit_log ADD COLUMN device_id UUID;
