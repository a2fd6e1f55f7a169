-- The checkout domain: who buys, what they buy, how many are left, and what was promised.

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE products (
    id          BIGSERIAL PRIMARY KEY,
    sku         TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    size        TEXT NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0)
);

-- One row per product; the row lock on it is what serialises checkouts of the same product.
CREATE TABLE inventory (
    product_id    BIGINT PRIMARY KEY REFERENCES products (id) ON DELETE CASCADE,
    quantity      INTEGER NOT NULL CHECK (quantity >= 0),
    initial_stock INTEGER NOT NULL CHECK (initial_stock >= 0)
);

CREATE TABLE orders (
    id              BIGSERIAL PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users (id),
    product_id      BIGINT NOT NULL REFERENCES products (id),
    quantity        INTEGER NOT NULL CHECK (quantity > 0),
    total_cents     BIGINT NOT NULL,
    idempotency_key TEXT,
    request_id      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Scoped to the user: another user's key must never return this user's order.
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX orders_user_id_idx ON orders (user_id);
CREATE INDEX orders_product_id_idx ON orders (product_id);

CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    event_type      TEXT NOT NULL,
    order_id        BIGINT NOT NULL REFERENCES orders (id),
    payload         JSONB NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at    TIMESTAMPTZ
);
CREATE INDEX outbox_pending_idx ON outbox (next_attempt_at) WHERE status = 'pending';

-- The simulated side effect of an order.created event. One email per event, however often it is relayed.
CREATE TABLE emails (
    id         BIGSERIAL PRIMARY KEY,
    event_id   BIGINT NOT NULL UNIQUE REFERENCES outbox (id),
    order_id   BIGINT NOT NULL REFERENCES orders (id),
    recipient  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    sent_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
