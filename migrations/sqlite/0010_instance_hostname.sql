-- The hostname a user chose (2.90); NULL: derived from the server's name, as Nova does.
ALTER TABLE instances ADD COLUMN hostname TEXT;
