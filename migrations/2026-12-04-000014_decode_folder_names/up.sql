-- Folder names are stored as people write them ("Projekte/Übersicht"), no longer in IMAP's
-- modified UTF-7 ("Projekte/&ANw-bersicht", RFC 3501 §5.1.3): the worker decodes what LIST
-- says and encodes only on the wire. This decodes the names stored before. A name that is
-- not valid modified UTF-7 stays as it is (the worker keeps such names as sent, too), and so
-- does one whose decoded form the account already has.
CREATE FUNCTION mailfleet_mutf7_decode(wire TEXT) RETURNS TEXT
    LANGUAGE plpgsql IMMUTABLE STRICT
    AS $$
DECLARE
    result TEXT := '';
    i INT := 1;
    j INT;
    c TEXT;
    run TEXT;
    bytes BYTEA;
    k INT;
    unit INT;
    low INT;
BEGIN
    WHILE i <= length(wire) LOOP
        c := substr(wire, i, 1);
        IF ascii(c) < 32 OR ascii(c) > 126 THEN
            RETURN wire;
        END IF;
        IF c <> '&' THEN
            result := result || c;
            i := i + 1;
            CONTINUE;
        END IF;
        j := strpos(substr(wire, i + 1), '-');
        IF j = 0 THEN
            RETURN wire;
        END IF;
        run := substr(wire, i + 1, j - 1);
        i := i + j + 1;
        IF run = '' THEN
            result := result || '&';
            CONTINUE;
        END IF;
        IF run !~ '^[A-Za-z0-9+,]+$' OR length(run) % 4 = 1 THEN
            RETURN wire;
        END IF;
        run := translate(run, ',', '/');
        bytes := decode(run || repeat('=', (4 - length(run) % 4) % 4), 'base64');
        IF length(bytes) % 2 <> 0 THEN
            RETURN wire;
        END IF;
        k := 0;
        WHILE k < length(bytes) LOOP
            unit := get_byte(bytes, k) * 256 + get_byte(bytes, k + 1);
            k := k + 2;
            IF unit BETWEEN 55296 AND 56319 THEN -- a high surrogate: its low one follows
                IF k >= length(bytes) THEN
                    RETURN wire;
                END IF;
                low := get_byte(bytes, k) * 256 + get_byte(bytes, k + 1);
                k := k + 2;
                IF low NOT BETWEEN 56320 AND 57343 THEN
                    RETURN wire;
                END IF;
                unit := 65536 + (unit - 55296) * 1024 + (low - 56320);
            ELSIF unit BETWEEN 56320 AND 57343 OR unit BETWEEN 32 AND 126 OR unit = 0 THEN
                RETURN wire; -- a lone low surrogate, or ASCII that must not be shifted
            END IF;
            result := result || chr(unit);
        END LOOP;
    END LOOP;
    RETURN result;
END
$$;

UPDATE folders f
SET name = mailfleet_mutf7_decode(f.name)
WHERE f.name LIKE '%&%'
  AND mailfleet_mutf7_decode(f.name) <> f.name
  AND NOT EXISTS (
      SELECT 1 FROM folders o
      WHERE o.account_id = f.account_id AND o.name = mailfleet_mutf7_decode(f.name));

DROP FUNCTION mailfleet_mutf7_decode(TEXT);
