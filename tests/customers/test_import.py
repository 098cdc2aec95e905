"""CSV and photo import: good files, bad rows by line, re-import, broken files that must not touch stored data."""
from __future__ import annotations

import struct
import zlib
from decimal import Decimal
from pathlib import Path

import peewee
import pytest
from PIL import Image

from screenpop.daemon.customers import importer
from screenpop.daemon.customers.importer import import_customers, import_employees, import_orders, import_photos
from screenpop.db.models import AuditEntry, Customer, Employee, Order, Phone

from support import RULES

HEADER = "external_id,name,company,category,note,city,country,phones\n"


def write(tmp_path: Path, text: str, name: str = "data.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def phones_of(external_id: str) -> dict[str, tuple[str, str]]:
    return {p.e164: (p.raw, p.label) for p in Phone.select().join(Customer).where(Customer.external_id == external_id)}


def snapshot() -> list[tuple]:
    customers = [(c.external_id, c.name, c.category, c.note) for c in Customer.select().order_by(Customer.id)]
    phones = [(p.customer_id, p.e164, p.raw, p.label) for p in Phone.select().order_by(Phone.id)]
    return customers + phones


# ---------------------------------------------------------------- customers


def test_good_customers_file(db: peewee.Database, tmp_path: Path) -> None:
    path = write(tmp_path, HEADER
                 + 'C1,Jón Jónsson,Acme ehf.,VIP,"Likes boats, ""fast"" ones",Reykjavík,Iceland,mobile:+3545551234;office:5551000\n'
                 + "C2,Anna,,,,,,5552000 | +44 7911 123456\n"
                 + "C3,No Phones,,problem,,,,\n")
    report = import_customers(path, RULES)
    assert report.errors == []
    assert (report.created, report.updated, report.unchanged, report.skipped) == (3, 0, 0, 0)
    jon = Customer.get(Customer.external_id == "C1")
    assert (jon.name, jon.company, jon.category, jon.note, jon.city) == (
        "Jón Jónsson", "Acme ehf.", "vip", 'Likes boats, "fast" ones', "Reykjavík")
    assert phones_of("C1") == {"+3545551234": ("+3545551234", "mobile"), "+3545551000": ("5551000", "office")}
    assert phones_of("C2") == {"+3545552000": ("5552000", ""), "+447911123456": ("+44 7911 123456", "")}
    assert Customer.get(Customer.external_id == "C2").category == "regular"
    assert Phone.get(Phone.e164 == "+3545551234").rev == "4321555453"


def test_bad_rows_are_reported_by_physical_line_and_the_rest_imports(db: peewee.Database, tmp_path: Path) -> None:
    path = write(tmp_path, HEADER
                 + "C1,Good,,,,,,5551234\n"
                 + ",No key,,,,,,\n"                                # line 3
                 + "C3,Bad category,,gold,,,,\n"                    # line 4
                 + 'C4,"Multi\nline note",,,,,,5551235\n'         # lines 5-6, fine
                 + "C5,Not a number,,,,,,call me\n"                 # line 7
                 + "C6,Extension,,,,,,1001\n"                       # line 8
                 + "C7,Too few fields\n"                            # line 9
                 + "C8,Too,many,fields,,,,,,,\n"                    # line 10
                 + "C1,Duplicate key,,,,,,\n"                       # line 11
                 + f"C9,{'n' * 301},,,,,,\n"                        # line 12
                 + "C10,Nul\x00byte,,,,,,\n"                        # line 13
                 + "\n"
                 + "C11,After a blank line,,,,,,5551236\n")         # line 15
    report = import_customers(path, RULES)
    lines = [line for line, _ in report.errors]
    assert lines == [3, 4, 7, 8, 9, 10, 11, 12, 13]
    messages = dict(report.errors)
    assert "external_id is empty" in messages[3]
    assert "gold" in messages[4]
    assert "E.164" in messages[7]
    assert "extension" in messages[8]
    assert "fields" in messages[9] and "fields" in messages[10]
    assert "line 2" in messages[11]
    assert "300" in messages[12]
    assert "NUL" in messages[13]
    assert (report.created, report.skipped) == (3, 9)
    assert sorted(c.external_id for c in Customer.select()) == ["C1", "C11", "C4"]
    assert Customer.get(Customer.external_id == "C4").name == "Multi\nline note"


def test_reimport_updates_instead_of_duplicating(db: peewee.Database, tmp_path: Path) -> None:
    first = write(tmp_path, HEADER + "C1,Jón,,vip,,,,mobile:5551234;home:5559999\nC2,Anna,,,,,,5552000\n", "a.csv")
    assert import_customers(first, RULES).created == 2
    jon_id = Customer.get(Customer.external_id == "C1").id

    second = write(tmp_path, HEADER + "C1,Jón Jónsson,,VIP,,,,work:5551234;5558888\nC2,Anna,,,,,,5552000\nC3,New,,,,,,\n", "b.csv")
    report = import_customers(second, RULES)
    assert (report.created, report.updated, report.unchanged, report.errors) == (1, 1, 1, [])
    jon = Customer.get(Customer.external_id == "C1")
    assert (jon.id, jon.name) == (jon_id, "Jón Jónsson")
    assert jon.updated_at >= jon.created_at
    assert phones_of("C1") == {"+3545551234": ("5551234", "work"), "+3545558888": ("5558888", "")}
    assert Customer.select().count() == 3

    again = import_customers(second, RULES)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)


def test_columns_missing_from_the_file_are_left_alone(db: peewee.Database, tmp_path: Path) -> None:
    import_customers(write(tmp_path, HEADER + "C1,Jón,Acme,vip,a note,,,5551234\n", "a.csv"), RULES)
    report = import_customers(write(tmp_path, "external_id,name,phone\nC1,Jón J.,5559999\n", "b.csv"), RULES)
    assert report.updated == 1
    assert report.ignored_columns == ["phone"]
    jon = Customer.get(Customer.external_id == "C1")
    assert (jon.name, jon.company, jon.category, jon.note) == ("Jón J.", "Acme", "vip", "a note")
    assert list(phones_of("C1")) == ["+3545551234"]


def test_a_number_is_never_moved_from_another_customer(db: peewee.Database, tmp_path: Path) -> None:
    import_customers(write(tmp_path, HEADER + "C1,Jón,,,,,,5551234\n", "a.csv"), RULES)
    report = import_customers(write(tmp_path, HEADER + "C2,Anna,,,,,,5552000;555 1234\nC3,Ok,,,,,,5553000\n", "b.csv"), RULES)
    assert report.created == 1
    assert len(report.errors) == 1
    line, message = report.errors[0]
    assert line == 2 and "C1" in message and "555 1234" in message
    assert phones_of("C1") == {"+3545551234": ("5551234", "")}
    assert not Customer.select().where(Customer.external_id == "C2").exists()


def test_same_number_twice_in_one_file(db: peewee.Database, tmp_path: Path) -> None:
    report = import_customers(write(tmp_path, HEADER + "C1,A,,,,,,5551234\nC2,B,,,,,,+354 555 1234\n"), RULES)
    assert report.created == 1
    assert report.errors[0][0] == 3 and "C1" in report.errors[0][1]


def test_a_number_dropped_earlier_in_the_file_may_be_taken_later(db: peewee.Database, tmp_path: Path) -> None:
    import_customers(write(tmp_path, HEADER + "C1,A,,,,,,5551234\nC2,B,,,,,,5552000\n", "a.csv"), RULES)
    report = import_customers(write(tmp_path, HEADER + "C1,A,,,,,,5559999\nC2,B,,,,,,5552000;5551234\n", "b.csv"), RULES)
    assert report.errors == []
    assert set(phones_of("C2")) == {"+3545552000", "+3545551234"}
    assert set(phones_of("C1")) == {"+3545559999"}


def test_bom_and_crlf_and_header_case(db: peewee.Database, tmp_path: Path) -> None:
    text = "\ufeffExternal_ID , NAME,Phones\r\nC1,Þóra,5551234\r\nC2,Ægir,\r\n"
    report = import_customers(write(tmp_path, text), RULES)
    assert report.errors == [] and report.created == 2
    assert Customer.get(Customer.external_id == "C1").name == "Þóra"


@pytest.mark.parametrize(
    "content, line, words",
    [
        (b"", 1, "empty"),
        (b"name,phones\nJon,5551234\n", 1, "external_id"),
        (b"external_id,name,name\nC9,a,b\n", 1, "twice"),
        ("external_id,name\nC9,J\u00f3n\n".encode("latin-1"), 2, "UTF-8"),
        ("external_id,name\nC9,ok\nC10,J\u00f3n\n".encode("utf-16"), 1, "UTF-8"),
        (b'external_id,name\nC9,ok\nC10,"unterminated\nC11,x\n', 3, "never closed"),
        (b'external_id,name\nC9,"' + b"x" * (importer.FIELD_LIMIT + 10) + b'"\n', 2, "longer than"),
        (b'external_id,name\nC9,"a"b\n', 2, "not valid CSV"),
        (b"external_id,name\nC9,a\xe2\x82", 2, "UTF-8"),
    ],
)
def test_broken_files_write_nothing(db: peewee.Database, tmp_path: Path, content: bytes, line: int, words: str) -> None:
    import_customers(write(tmp_path, HEADER + "C1,Jón,,vip,,,,5551234\n", "good.csv"), RULES)
    before = snapshot()
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    report = import_customers(path, RULES)
    assert report.created == report.updated == 0
    assert len(report.errors) == 1
    assert report.errors[0][0] == line
    assert words in report.errors[0][1]
    assert "nothing imported" in report.errors[0][1]
    assert snapshot() == before


def test_missing_file(db: peewee.Database, tmp_path: Path) -> None:
    report = import_customers(tmp_path / "nope.csv", RULES)
    assert report.errors and "cannot read" in report.errors[0][1]


def test_hostile_text_is_stored_faithfully(db: peewee.Database, tmp_path: Path) -> None:
    note = "<script>alert(1)</script> '; DROP TABLE customer; -- %s ? $1 \u202e 😀"
    path = write(tmp_path, 'external_id,name,note\n"<b>id</b>","Robert\'); DROP TABLE phone;--","' + note.replace('"', '""') + '"\n')
    report = import_customers(path, RULES)
    assert report.errors == []
    stored = Customer.get(Customer.external_id == "<b>id</b>")
    assert (stored.name, stored.note) == ("Robert'); DROP TABLE phone;--", note)


def test_large_file_spans_batches(db: peewee.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "BATCH_ROWS", 50)
    rows = "".join(f"C{i},Name {i},,,,,,+3546{i:06d}\n" for i in range(230))
    report = import_customers(write(tmp_path, HEADER + rows + "C5,dup,,,,,,\n"), RULES)
    assert (report.created, report.errors) == (230, [(232, "external_id 'C5' already appeared on line 7")])
    assert Phone.select().count() == 230
    report = import_customers(write(tmp_path, HEADER + rows.replace("Name 7,", "Seven,")), RULES)
    assert (report.created, report.updated, report.unchanged) == (0, 1, 229)


def test_a_row_the_database_refuses_costs_only_that_row(db: peewee.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importer._apply_customers

    def refuse_c2(database, rows, *schema):
        if any(r.external_id == "C2" for r in rows):
            database.execute_sql("SELECT * FROM no_such_table")
        return real(database, rows, *schema)

    monkeypatch.setattr(importer, "_apply_customers", refuse_c2)
    report = import_customers(write(tmp_path, HEADER + "C1,a,,,,,,\nC2,b,,,,,,\nC3,c,,,,,,\n"), RULES)
    assert report.created == 2
    assert [line for line, _ in report.errors] == [3]
    assert sorted(c.external_id for c in Customer.select()) == ["C1", "C3"]


# ---------------------------------------------------------------- employees and orders


def test_employees_import_and_reimport(db: peewee.Database, tmp_path: Path) -> None:
    path = write(tmp_path, "name,extension\nAnna,1001\nBjörn,1002\n,1003\nDup,1001\nBad ext,10 01\n")
    report = import_employees(path)
    assert report.created == 2
    assert [line for line, _ in report.errors] == [4, 5, 6]
    report = import_employees(write(tmp_path, "extension,name\n1001,Anna Jónsdóttir\n1002,Björn\n", "b.csv"))
    assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
    assert Employee.get(Employee.extension == "1001").name == "Anna Jónsdóttir"
    trail = [(e.entity_id, e.action, e.detail, e.actor) for e in AuditEntry.select().where(AuditEntry.entity == "employee")
             .order_by(AuditEntry.id)]
    anna, bjorn = (Employee.get(Employee.extension == x).id for x in ("1001", "1002"))
    assert trail == [(anna, "added", "1001 Anna", "the system"), (bjorn, "added", "1002 Björn", "the system"),
                     (anna, "changed", "1001 Anna: name Anna Jónsdóttir", "the system")]  # the CLI names its file


def test_orders_import_and_reimport(db: peewee.Database, tmp_path: Path) -> None:
    import_customers(write(tmp_path, HEADER + "C1,Jón,,,,,,\n", "c.csv"), RULES)
    import_employees(write(tmp_path, "name,extension\nAnna,1001\n", "e.csv"))
    path = write(tmp_path, "number,customer,title,stage,responsible,amount,paid,status\n"
                 "SO-1,C1,Boat,quote,1001,1234.5,0,open\n"
                 "SO-2,C1,Oars,,,,,\n"
                 "SO-3,NOPE,x,,,,,\n"
                 "SO-4,C1,x,,9999,,,\n"
                 "SO-5,C1,x,,,12.345,,\n"
                 "SO-6,C1,x,,,1;DROP,,\n"
                 "SO-7,C1,x,,,,,pending\n")
    report = import_orders(path)
    assert report.created == 2
    assert [line for line, _ in report.errors] == [4, 5, 6, 7, 8]
    boat = Order.get(Order.number == "SO-1")
    assert (boat.title, boat.stage, boat.responsible.extension, boat.amount, boat.paid, boat.status) == (
        "Boat", "quote", "1001", Decimal("1234.50"), Decimal("0.00"), "open")
    oars = Order.get(Order.number == "SO-2")
    assert (oars.responsible, oars.amount, oars.status) == (None, Decimal("0.00"), "open")

    report = import_orders(write(tmp_path, "number,customer,paid,status\nSO-1,C1,1234.50,Closed\nSO-2,C1,0,open\n", "b.csv"))
    assert (report.created, report.updated, report.unchanged, report.errors) == (0, 1, 1, [])
    boat = Order.get(Order.number == "SO-1")
    assert (boat.paid, boat.status, boat.title, boat.responsible.extension) == (Decimal("1234.50"), "closed", "Boat", "1001")


# ---------------------------------------------------------------- photos


def png_bomb(path: Path, width: int = 30000, height: int = 30000) -> None:
    """A tiny PNG that claims a huge canvas: only the header is real."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_photos(db: peewee.Database, tmp_path: Path) -> None:
    import_customers(write(tmp_path, HEADER + "".join(f"C{i},n,,,,,,\n" for i in range(1, 8)), "c.csv"), RULES)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.new("RGB", (4000, 3000), "red").save(src / "C1.jpg", quality=60)
    Image.new("RGBA", (100, 50), (0, 0, 255, 128)).save(src / "C2.png")
    Image.new("RGB", (64, 64), "green").save(src / "C3.webp")
    (src / "C4.jpg").write_text("<html>not an image</html>")
    png_bomb(src / "C5.png")
    (src / "C6.jpeg").write_bytes((src / "C1.jpg").read_bytes()[:2000])
    Image.new("RGB", (10, 10)).save(src / "C7.gif")
    Image.new("RGB", (10, 10)).save(src / "C7.png", format="BMP")
    Image.new("RGB", (10, 10)).save(src / "UNKNOWN.jpg")
    (src / "notes.txt").write_text("ignored")

    report = import_photos(src, out)
    assert report.created == 3
    errors = {message.split(":")[0]: message for _, message in report.errors}
    assert set(errors) == {"C4.jpg", "C5.png", "C6.jpeg", "C7.png", "UNKNOWN.jpg"}
    assert "decompression bomb" in errors["C5.png"] or "pixels" in errors["C5.png"]
    assert "not a readable image" in errors["C4.jpg"]
    assert "BMP" in errors["C7.png"]
    assert "no customer" in errors["UNKNOWN.jpg"]

    big = Customer.get(Customer.external_id == "C1")
    assert (out / big.photo).read_bytes() == (src / "C1.jpg").read_bytes(), "the original, as it came (issue 16)"
    with Image.open(out / big.photo) as im:
        assert (im.format, im.size) == ("JPEG", (4000, 3000))
    assert (out / Customer.get(Customer.external_id == "C2").photo).read_bytes() == (src / "C2.png").read_bytes()
    webp = Customer.get(Customer.external_id == "C3").photo
    assert webp.endswith(".webp") and (out / webp).read_bytes() == (src / "C3.webp").read_bytes()
    assert Customer.get(Customer.external_id == "C4").photo is None

    again = import_photos(src, out)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)

    old = big.photo
    Image.new("RGB", (600, 600), "blue").save(src / "C1.jpg")
    changed = import_photos(src, out)
    assert changed.updated == 1
    assert not (out / old).exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(c.photo for c in Customer.select() if c.photo)


def test_photo_pixel_limit_below_pillows(db: peewee.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Customer.create(external_id="C1")
    src = tmp_path / "in"
    src.mkdir()
    png_bomb(src / "C1.png", 8000, 6000)
    report = import_photos(src, tmp_path / "out")
    assert "more than" in report.errors[0][1]
    assert Customer.get().photo is None


def test_photo_folder_missing(db: peewee.Database, tmp_path: Path) -> None:
    report = import_photos(tmp_path / "nope", tmp_path / "out")
    assert report.errors and "cannot read folder" in report.errors[0][1]
