"""Sources: the card's fields from the systems a call centre already runs (an ERP's database, a CRM's HTTP API),
read by the caller's number when a call comes in, off the pop's path (docs/sources.md).

source.py is what every source shares (the timeout, the cache, the pause after failures in a row, the largest
answer, values made text), sql.py and http.py the two kinds, fetch.py the pool that asks them and tells the push
hub (and the record page) what they answered.
"""
