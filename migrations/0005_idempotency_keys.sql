-- Idempotency records for location uploads: the first response to an Idempotency-Key is kept
-- for 24 h and replayed to the same API key. A row is inserted before the work starts (status
-- NULL = in progress) so that two concurrent requests with one key can never both insert.
CREATE TABLE idempotency_keys (
    id               BIGINT GENERATED ALWAYS AS IDENTITY,
    api_key_id       BIGINT      NOT NULL,
    key_hash         VARCHAR(64) NOT NULL,
    request_hash     VARCHAR(64) NOT NULL,
    device_id        UUID        NOT NULL,
    response_status  SMALLINT,
    response_body    JSONB,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at       TIMESTAMPTZ NOT NULL DEFAULT now() + INTERVAL '24 hours',
    CONSTRAINT pk_idempotency_keys PRIMARY KEY (id),
    CONSTRAINT uq_idempotency_keys_api_key_key UNIQUE (api_key_id, key_hash),
    CONSTRAINT fk_idempotency_keys_api_key FOREIGN KEY (api_key_id)
        REFERENCES api_keys (id) ON DELETE CASCADE,
    CONSTRAINT fk_idempotency_keys_device FOREIGN KEY (device_id)
        REFERENCES devices (device_id) ON DELETE CASCADE,
    CONSTRAINT chk_idempotency_keys_response
        CHECK ((response_status IS NULL) = (response_body IS NULL)),
    CONSTRAINT chk_idempotency_keys_status
        CHECK (response_status IS NULL OR response_status BETWEEN 100 AND 599),
    CONSTRAINT chk_idempotency_keys_expiry CHECK (expires_at > created_at)
);

-- The cleanup job deletes expired records; the device index serves the cascade on hard delete.
CREATE INDEX idx_idempotency_keys_expires_at ON idempotency_keys (expires_at);
CREATE INDEX idx_idempotency_keys_device ON idempotency_keys (device_id);
