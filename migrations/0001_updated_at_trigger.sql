-- Shared trigger function: keeps updated_at truthful whatever code path writes a row.
-- (architecture.md also lists the uuid-ossp extension here; nothing uses it: device ids come
-- from the phones and PostgreSQL 13+ has gen_random_uuid() built in, so we don't install it.)
CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
