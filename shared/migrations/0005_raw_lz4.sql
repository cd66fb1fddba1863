-- Raw mail is stored with lz4 instead of PostgreSQL's default pglz: pglz
-- spends ~10x longer trying to compress mail (mostly base64 attachments it
-- barely shrinks), which capped the fetcher's first import near 250 mails/s.
-- A server built without lz4 stores raw mail uncompressed instead, which is
-- nearly as fast and costs ~4 % more space.
DO $$
BEGIN
    ALTER TABLE raw_messages ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    ALTER TABLE raw_messages ALTER COLUMN data SET STORAGE EXTERNAL;
END
$$;
