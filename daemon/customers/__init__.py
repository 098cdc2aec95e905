"""Customers, numbers, orders and employees: one set of value rules for the API, the pages and the CSV
importer; lookup by number, the record, photos. May import: daemon.reports, db."""
