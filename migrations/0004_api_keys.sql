-- API keys: only the SHA-256 hash (hex) and the first 8 characters are ever stored.
CREATE TABLE api_keys (
    id            BIGINT GENERATED ALWAYS AS IDENTITY,
    key_hash      VARCHAR(64)  NOT NULL,
    key_prefix    VARCHAR(8)   NOT NULL,
    name          VARCHAR(100) NOT NULL,
    is_active     BOOLEAN      NOT NULL DEFAULT true,
    is_admin      BOOLEAN      NOT NULL DEFAULT false,
    last_used_at  TIMESTAMPTZ,
    created_at    TIMESTAMPTZ  NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ,
    CONSTRAINT pk_api_keys PRIMARY KEY (id),
    CONSTRAINT uq_api_keys_key_hash UNIQUE (key_hash),
    CONSTRAINT chk_api_keys_key_hash CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT chk_api_keys_key_prefix CHECK (char_length(key_prefix) = 8),
    CONSTRAINT chk_api_keys_name CHECK (char_length(btrim(name)) BETWEEN 1 AND 100)
);

-- Authentication looks keys up by hash among active keys only.
CREATE INDEX idx_api_keys_hash ON api_keys (key_hash) WHERE is_active;
-- The key CLI finds keys by the prefix an administrator can see.
CREATE INDEX idx_api_keys_prefix ON api_keys (key_prefix);
