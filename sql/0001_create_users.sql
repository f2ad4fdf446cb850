-- Users and their dates of birth.
-- COLLATE "C": usernames are ASCII letters compared byte for byte (Bob and bob are two
-- users), so the cheapest collation is also the correct one.
CREATE TABLE users (
    username      text COLLATE "C" PRIMARY KEY
                  CONSTRAINT users_username_letters CHECK (username ~ '^[A-Za-z]{1,64}$'),
    date_of_birth date NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
