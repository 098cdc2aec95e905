"""screenpop storage only: peewee models, migrations, connection and dialect helpers, the number rules the
stored forms follow, the search index and the facts its triggers keep. Imports nothing of screenpop but db."""
