"""Committed pops -> each extension: the card, the hub's fan-out, the cross-node fan-out on PostgreSQL.
May import: daemon.record (the pop's row shape), daemon.customers, daemon.auth, daemon.staff (operator names), db."""
