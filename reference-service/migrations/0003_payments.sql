-- The payment behind each order, when the service authorises payments (PAYMENTS_URL): the shop's
-- reference for it (sent to the provider as the order reference and, guarded, the idempotency key)
-- and the provider's authorisation id.
ALTER TABLE orders ADD COLUMN payment_ref TEXT, ADD COLUMN payment_id TEXT;
