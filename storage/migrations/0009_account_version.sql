-- 0009: a version number per account for optimistic concurrency in the admin API
-- (ETag / If-Match): it changes whenever an administrator-visible field changes,
-- so two administrators cannot silently overwrite each other. Mail activity
-- (accounts.modseq) does not touch it.

ALTER TABLE accounts ADD COLUMN version bigint NOT NULL DEFAULT 1;

CREATE FUNCTION accounts_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END
$$;

CREATE TRIGGER accounts_version BEFORE UPDATE ON accounts FOR EACH ROW
    WHEN (OLD.local_part IS DISTINCT FROM NEW.local_part
          OR OLD.kind IS DISTINCT FROM NEW.kind
          OR OLD.full_name IS DISTINCT FROM NEW.full_name
          OR OLD.password_hash IS DISTINCT FROM NEW.password_hash
          OR OLD.disabled IS DISTINCT FROM NEW.disabled
          OR OLD.is_admin IS DISTINCT FROM NEW.is_admin
          OR OLD.quota_bytes IS DISTINCT FROM NEW.quota_bytes
          OR OLD.quota_messages IS DISTINCT FROM NEW.quota_messages
          OR OLD.deliver_to IS DISTINCT FROM NEW.deliver_to)
    EXECUTE FUNCTION accounts_bump_version();
