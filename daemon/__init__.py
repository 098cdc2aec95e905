"""The screenpop daemon, its packages in the order data flows: pbx -> calls -> record -> push -> web, with
customers, reports and auth beside them for web; db below all. runtime.py wires them; cli.py starts it."""
