"""The screenpop daemon, its packages in the order data flows: pbx -> calls -> record -> push -> web, with
customers, reports and auth beside them for web, staff.py (the employee snapshot) beside record, push and web;
db below all. runtime.py wires them by constructors; cli.py starts it."""
