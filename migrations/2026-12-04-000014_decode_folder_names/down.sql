-- Back to modified UTF-7 (RFC 3501 §5.1.3) for names that need it. (A name kept as the server
-- sent it because it was not valid modified UTF-7 is encoded too: going back cannot tell.)
CREATE FUNCTION mailfleet_mutf7_encode(name TEXT) RETURNS TEXT
    LANGUAGE plpgsql IMMUTABLE STRICT
    AS $$
DECLARE
    result TEXT := '';
    pending BYTEA := '';
    c TEXT;
    code INT;
    i INT;
BEGIN
    FOR i IN 1 .. length(name) + 1 LOOP
        c := substr(name, i, 1);
        code := CASE WHEN c = '' THEN NULL ELSE ascii(c) END;
        IF code IS NULL OR code BETWEEN 32 AND 126 THEN
            IF length(pending) > 0 THEN
                result := result || '&'
                    || translate(rtrim(replace(encode(pending, 'base64'), E'\n', ''), '='), '/', ',')
                    || '-';
                pending := '';
            END IF;
            IF c = '&' THEN
                result := result || '&-';
            ELSIF code IS NOT NULL THEN
                result := result || c;
            END IF;
        ELSIF code >= 65536 THEN
            code := code - 65536;
            pending := pending
                || int4send(((55296 + code / 1024) << 16) | (56320 + code % 1024));
        ELSE
            pending := pending || substring(int4send(code) FROM 3 FOR 2);
        END IF;
    END LOOP;
    RETURN result;
END
$$;

UPDATE folders f
SET name = mailfleet_mutf7_encode(f.name)
WHERE mailfleet_mutf7_encode(f.name) <> f.name
  AND NOT EXISTS (
      SELECT 1 FROM folders o
      WHERE o.account_id = f.account_id AND o.name = mailfleet_mutf7_encode(f.name));

DROP FUNCTION mailfleet_mutf7_encode(TEXT);
