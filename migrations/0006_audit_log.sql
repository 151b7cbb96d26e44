-- Audit trail of admin and privacy operations, written in the same transaction as the change.
CREATE TABLE audit_log (
    id             BIGINT GENERATED ALWAYS AS IDENTITY,
    api_key_id     BIGINT,
    action         VARCHAR(100) NOT NULL,
    resource_type  VARCHAR(50)  NOT NULL,
    resource_id    TEXT,
    metadata       JSONB,
    ip_address     INET,
    created_at     TIMESTAMPTZ  NOT NULL DEFAULT now(),
    CONSTRAINT pk_audit_log PRIMARY KEY (id),
    -- Deleting a key must not erase the history of what it did.
    CONSTRAINT fk_audit_log_api_key FOREIGN KEY (api_key_id)
        REFERENCES api_keys (id) ON DELETE SET NULL,
    CONSTRAINT chk_audit_log_action CHECK (char_length(action) >= 1),
    CONSTRAINT chk_audit_log_resource_type CHECK (char_length(resource_type) >= 1)
);

CREATE INDEX idx_audit_api_key ON audit_log (api_key_id, created_at DESC);
CREATE INDEX idx_audit_resource ON audit_log (resource_type, resource_id);
CREATE INDEX idx_audit_created ON audit_log (created_at DESC);
