"""Calls and pops -> the database: the single writer, restoring open calls, FreeSWITCH's CDRs.
May import: daemon.pbx, daemon.calls, daemon.customers, daemon.staff (employee ids), db."""
