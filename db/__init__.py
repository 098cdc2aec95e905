"""screenpop storage: models, migrations, phone numbers, lookups, import."""
