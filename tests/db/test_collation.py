"""Names sorted by the database in the reader's language (db/collation.py): SQLite's collations and PostgreSQL's ICU
and folded orders give the same order as sort_key, the rule, for the same names."""
from __future__ import annotations

import peewee
import pytest

from screenpop.db import collation
from screenpop.db.models import Employee

NAMES = ["Ari", "Ásta", "Bjarni", "Davíð", "Ðóra", "Einar", "Þórður", "Ægir", "Örn", "Zóphónías", "Oddur", "Óli",
         "ari", "Ari Jónsson", "Anna María", "Annabella", "Ólafur", "Olga", "Ívar", "Ingi", "Ýr", "Yngvi", "Úlfar",
         "Ulla", "Éva", "Eva", "Jón", "Jón 2", "Jón-Jónsson", "Jón10", "Äla", "Ægis", "Øra", "Åsa", "Đura", "Dora",
         "Charlie", "charles", "Chloé", "Zoe", "Thomas", "Tómas", "Théo", "Adam", "Aeneas", "Über", "Uber", "Walter",
         "Xena", "Quentin", "McDonald", "Mac", "O'Brien", "Smith", "Søren", "Brontë", "Renée", "José"]

ICELANDIC = ["Adam", "Aeneas", "Anna María", "Annabella", "Ari", "ari", "Ari Jónsson", "Ásta", "Bjarni", "Brontë",
             "charles", "Charlie", "Chloé", "Davíð", "Dora", "Đura", "Ðóra", "Einar", "Eva", "Éva", "Ingi", "Ívar",
             "José", "Jón", "Jón 2", "Jón-Jónsson", "Jón10", "Mac", "McDonald", "O'Brien", "Oddur", "Olga", "Ólafur",
             "Óli", "Quentin", "Renée", "Smith", "Søren", "Théo", "Thomas", "Tómas", "Uber", "Über", "Ulla", "Úlfar",
             "Walter", "Xena", "Yngvi", "Ýr", "Zoe", "Zóphónías", "Þórður", "Ægir", "Ægis", "Äla", "Øra", "Örn", "Åsa"]
ENGLISH = ["Adam", "Ægir", "Ægis", "Aeneas", "Äla", "Anna María", "Annabella", "Ari", "ari", "Ari Jónsson", "Åsa",
           "Ásta", "Bjarni", "Brontë", "charles", "Charlie", "Chloé", "Davíð", "Dora", "Ðóra", "Đura", "Einar", "Eva",
           "Éva", "Ingi", "Ívar", "Jón", "Jón 2", "Jón-Jónsson", "Jón10", "José", "Mac", "McDonald", "O'Brien",
           "Oddur", "Ólafur", "Olga", "Óli", "Øra", "Örn", "Quentin", "Renée", "Smith", "Søren", "Théo", "Thomas",
           "Þórður", "Tómas", "Uber", "Über", "Úlfar", "Ulla", "Walter", "Xena", "Yngvi", "Ýr", "Zoe", "Zóphónías"]


@pytest.mark.parametrize("lang, expected", [("is", ICELANDIC), ("en", ENGLISH)])
def test_the_rule(lang: str, expected: list[str]) -> None:
    """Þ, Æ, Ö after Z in Icelandic, Á after A, Ð after D; English reads Þ as th, Æ as ae and drops accents."""
    assert sorted(NAMES, key=lambda n: collation.sort_key(n, lang)) == expected


@pytest.mark.parametrize("lang", ["is", "en"])
def test_the_database_sorts_as_the_rule(db: peewee.Database, lang: str) -> None:
    """The same names, stored in an order of their own, come back from ORDER BY in sort_key's order (ties by id)."""
    for i, name in enumerate(reversed(NAMES)):
        Employee.create(name=name, extension=str(1000 + i))
    rows = Employee.select(Employee.name).order_by(*collation.by_name(Employee.name, lang), Employee.id)
    stored = [n for (n,) in rows.tuples()]
    by_id = sorted(reversed(NAMES), key=lambda n: collation.sort_key(n, lang))  # stable: ties keep id order
    assert stored == by_id


def test_sqlite_keeps_the_collations_on_every_connection(db: peewee.Database) -> None:
    """A connection opened later (the database worker's, another greenlet's) sorts by the rule too."""
    if not isinstance(db, peewee.SqliteDatabase):
        pytest.skip("SQLite's collations")
    Employee.create(name="Örn", extension="1")
    Employee.create(name="Zoe", extension="2")
    db.close()
    db.connect()
    assert [n for (n,) in Employee.select(Employee.name).order_by(*collation.by_name(Employee.name, "is")).tuples()] \
        == ["Zoe", "Örn"]
