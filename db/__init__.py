"""screenpop storage only: peewee models, migrations, connection and dialect helpers (outages, dead connections),
the database worker the HTTP side, the CDR intake and the push hub run their steps on, the number rules the stored
forms follow, the search index and the facts its triggers keep. Imports nothing of screenpop but db."""
