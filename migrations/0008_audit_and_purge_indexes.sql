-- Found by docs/query-plans.md on a seeded database:
-- The audit listing filtered by resource_id alone (an admin looking up one device) read the
-- whole of idx_audit_resource, whose first column is resource_type. This one serves it, newest
-- first, with the cursor (id) in the index.
CREATE INDEX idx_audit_resource_id ON audit_log (resource_id, id DESC);

-- The purge of long-inactive devices scanned every device; inactive ones are few.
CREATE INDEX idx_devices_inactive_seen ON devices ((COALESCE(last_seen_at, updated_at))) WHERE NOT active;
