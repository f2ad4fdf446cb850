\set id random(1, 10000)
\set days random(1, 36500)
INSERT INTO users (username, date_of_birth) VALUES ('u' || translate(:id::text, '0123456789', 'abcdefghij'), current_date - (:days)::int) ON CONFLICT (username) DO UPDATE SET date_of_birth = EXCLUDED.date_of_birth, updated_at = now();
