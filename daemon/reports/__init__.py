"""Call records and analytics: periods and time zones, the SQL of each report, export, charts.
May import: db."""
