"""Names sorted by the database in the reader's language (db/collation.py): the rule, and customers' stored keys
giving SQLite and PostgreSQL the rule's order, whichever way the customers were written."""
from __future__ import annotations

import peewee
import pytest

from screenpop.daemon.customers import data
from screenpop.db import collation, migrations
from screenpop.db.models import Customer

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


def test_an_empty_text_sorts_last_and_a_shorter_name_first() -> None:
    for lang in collation.LANGUAGES:
        assert sorted(["", "Ö", "Anna Jóns", "Ann", "Anna"], key=lambda n: collation.sort_key(n, lang)) \
            == ["Ann", "Anna", "Anna Jóns", "Ö", ""]


def _listed(sort: str, lang: str) -> list[tuple[str, str]]:
    return [(c.name, c.company) for c in Customer.select().order_by(*data.customer_order(sort, lang))]


@pytest.mark.parametrize("lang", ["is", "en"])
def test_the_database_sorts_customers_as_the_rule(db: peewee.Database, lang: str) -> None:
    """The same names, stored in an order of their own through the data layer, come back from the list's ORDER BY
    in sort_key's order (ties by id), on SQLite and PostgreSQL alike; no company sorts last in the company order."""
    for name in reversed(NAMES):
        data.create_customer({"name": name}, [])
    assert [n for n, _ in _listed("name", lang)] == sorted(reversed(NAMES), key=lambda n: collation.sort_key(n, lang))
    data.create_customer({"name": "", "company": "Þór hf."}, [])
    assert _listed("company", lang)[0] == ("", "Þór hf.")


def test_a_renamed_customer_moves(db: peewee.Database) -> None:
    zoe, orn = data.create_customer({"name": "Zoe"}, []), data.create_customer({"name": "Örn"}, [])
    assert [n for n, _ in _listed("name", "is")] == ["Zoe", "Örn"]
    data.update_customer(zoe, {"name": "Æsa"})
    data.update_customer(orn, {"company": "Acme"})  # the company alone: the name's keys stay right
    assert [n for n, _ in _listed("name", "is")] == ["Æsa", "Örn"]
    assert [n for n, _ in _listed("name", "en")] == ["Æsa", "Örn"]  # ae, o
    assert _listed("company", "en")[0] == ("Örn", "Acme")


def test_the_migration_keys_the_customers_it_finds(db: peewee.Database) -> None:
    """Customers stored before migration 23 (no keys) get theirs, so an upgraded database sorts at once."""
    for name in ("Örn", "Zoe", "Ásta", "Adam"):
        Customer.create(name=name)  # as a daemon of the version before wrote them: the columns' default
    migrations._customer_sort_keys(db)
    assert [n for n, _ in _listed("name", "is")] == ["Adam", "Ásta", "Zoe", "Örn"]
    assert [n for n, _ in _listed("name", "en")] == ["Adam", "Ásta", "Örn", "Zoe"]
