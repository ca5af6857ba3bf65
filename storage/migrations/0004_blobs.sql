-- 0004: the "pg" blob store backend (storage/blob_pg.c).
--
-- A blob's bytes are rows of blob_chunks, 256 KiB each (the last one
-- shorter, none for an empty blob), grouped under a content number. A writer
-- takes a content number from blob_uploads when it starts and stores each
-- chunk as it fills, so its memory stays at one chunk whatever the size. At
-- finish, in one transaction, the upload row goes away and either a blobs row
-- names the content under the blob's id, or (the id exists already) the
-- chunks are deleted. Chunks are never rewritten or moved.
--
-- Nothing references blob_chunks.content by foreign key: a content number
-- belongs to an upload first and to a blob afterwards. Deleting a blob or
-- purging an upload deletes its chunks explicitly in the same transaction.
--
-- Runs inside the transaction db_migrate() opens: no BEGIN/COMMIT here.

-- Uploads in progress. A row whose writer died is removed, with its chunks,
-- by blob_purge_uploads() once touched_at is old enough.
CREATE TABLE blob_uploads (
    id          bigserial PRIMARY KEY,   -- the content number of the chunks
    started_at  timestamptz NOT NULL DEFAULT now(),
    -- last chunk stored; purge looks at this, not at started_at, so a slow
    -- but live writer is not purged under its own feet
    touched_at  timestamptz NOT NULL DEFAULT now()
);
-- serves blob_purge_uploads(): touched_at < now() - interval
CREATE INDEX blob_uploads_touched_at ON blob_uploads (touched_at);

-- Finished blobs, by id = lowercase hex SHA-256 of the content.
CREATE TABLE blobs (
    -- "C" collation: ORDER BY id and id > $1 (blob_list paging) compare bytes,
    -- the same order as the fs and s3 backends list in
    id          text COLLATE "C" PRIMARY KEY
                CHECK (id ~ '^[0-9a-f]{64}$'),
    size        bigint NOT NULL CHECK (size >= 0),
    content     bigint NOT NULL,
    -- when the blob was stored, or last refreshed by a writer that
    -- deduplicated against it (the garbage collector's grace period runs
    -- from here)
    written_at  timestamptz NOT NULL DEFAULT now()
);
-- The primary key serves every per-blob query: stat, reader open, finish's
-- ON CONFLICT, delete, and the listing's id > $1 ORDER BY id LIMIT $2.

CREATE TABLE blob_chunks (
    content     bigint NOT NULL,           -- blob_uploads.id, then blobs.content
    seq         integer NOT NULL CHECK (seq >= 0),   -- byte offset / 262144
    data        bytea NOT NULL CHECK (octet_length(data) BETWEEN 1 AND 262144),
    PRIMARY KEY (content, seq)
);
-- The primary key serves reading one chunk (content = $1 AND seq = $2) and
-- deleting a blob's or an upload's chunks (content = $1).
