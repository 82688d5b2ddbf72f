-- A small customer table with synthetic PII, for the PostgreSQL gateway walkthrough (README).
-- psql "postgresql://postgres@127.0.0.1:5432/app" -f examples/customers.sql
CREATE TABLE IF NOT EXISTS customers (
    id integer PRIMARY KEY,
    name text NOT NULL,
    ssn text UNIQUE,
    phone text,
    address text
);
INSERT INTO customers VALUES
    (1, 'Ada Example', '900-12-3456', '+1 202 555 0142', '12 Elm Street, Springfield'),
    (2, 'Ben Sample', '900-65-4321', '+1 202 555 0188', '7 Oak Avenue, Riverton'),
    (3, 'Cy Placeholder', '900-11-2222', '+1 202 555 0107', '3 Pine Road, Lakeside')
ON CONFLICT (id) DO NOTHING;
