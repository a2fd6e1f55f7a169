-- The idempotency key's uniqueness was enforced by an index on (user_id, idempotency_key), which also
-- served every query by user_id: orders_user_id_idx was redundant, and a history query never missed
-- it. Keyed the other way round, the constraint still answers the replay lookup (both columns given),
-- and orders_user_id_idx is the one index behind the order history.
ALTER TABLE orders DROP CONSTRAINT orders_user_id_idempotency_key_key;
ALTER TABLE orders ADD CONSTRAINT orders_idempotency_key_user_id_key UNIQUE (idempotency_key, user_id);

-- /metrics counts the events still to deliver; delivered ones pile up for ever, so that count must not
-- read them.
CREATE INDEX outbox_undelivered_idx ON outbox (status) WHERE status <> 'delivered';
