ALTER TABLE accounts ADD COLUMN email TEXT;
UPDATE accounts SET email = name || '@example.org';
