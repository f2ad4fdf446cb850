\set id random(1, 10000)
SELECT date_of_birth FROM users WHERE username = 'u' || translate(:id::text, '0123456789', 'abcdefghij');
