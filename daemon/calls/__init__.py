"""Events -> calls, parties and pops: the direction rules and the call tracker; pure, no I/O.
May import: daemon.pbx (the Event type)."""
