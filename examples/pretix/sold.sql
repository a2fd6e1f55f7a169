SELECT q.id, q.size,
  (SELECT count(*) FROM pretixbase_orderposition op JOIN pretixbase_order o ON o.id = op.order_id
    WHERE o.event_id = q.event_id AND o.status IN ('n','p') AND NOT op.canceled
      AND op.item_id IN (SELECT qi.item_id FROM pretixbase_quota_items qi WHERE qi.quota_id = q.id)) AS sold
FROM pretixbase_quota q;
