"""Demo data: operators, customers with photos and several numbers, orders with debts. Invented, not anyone's."""
from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

from PIL import Image, ImageDraw

from screenpop.daemon.customers.lookup import add_phone
from screenpop.db.database import private_dir
from screenpop.db.models import Customer, Employee, Order, database
from screenpop.db.numbers import NumberRules

OPERATORS = [(f"{1000 + n}", name) for n, name in enumerate(
    ["Anna Jónsdóttir", "Bjarni Ólafsson", "Elín Magnúsdóttir", "Gunnar Pétursson", "Helga Sigurðardóttir",
     "Kári Einarsson", "Lilja Guðmundsdóttir", "Ólafur Stefánsson", "Sara Kristjánsdóttir", "Tómas Halldórsson"],
    start=1)]

_FIRST = ["Jón", "Guðrún", "Sigríður", "Einar", "Kristín", "Magnús", "Margrét", "Pétur", "Katrín", "Stefán",
          "Amélie", "Zoë", "Łukasz", "Søren", "José", "Ngozi", "Hiroshi", "Olga", "Priya", "Mateo"]
_LAST = ["Jónsson", "Helgadóttir", "Sigurðardóttir", "Björnsson", "Karlsdóttir", "Þórsson", "Dubois", "Nowak",
         "Nielsen", "García", "Okafor", "Tanaka", "Ivanova", "Sharma", "Rossi"]
_COMPANIES = ["Norðurljós ehf.", "Fiskur & Co.", "Hekla Logistics", "Vatnajökull Tours", "Reykjavík Roasters",
              "Geysir Software", "Brim Shipping", "Askja Apparel", "Lava Labs", "Sólheimar Foods", "", "", ""]
_CITIES = [("Reykjavík", "Iceland"), ("Akureyri", "Iceland"), ("Hafnarfjörður", "Iceland"), ("Selfoss", "Iceland"),
           ("Copenhagen", "Denmark"), ("Oslo", "Norway"), ("Warsaw", "Poland")]
_STAGES = ["quote sent", "confirmed", "in production", "shipped", "invoiced", "awaiting payment"]
_NOTES = ["", "", "", "Prefers email for invoices.", "Always asks for Kári.", "Disputed invoice in March.",
          "Speaks English, not Icelandic.", "Call back before noon.", "<b>Important</b>: key account & renewal due"]
_COLOURS = {"regular": (52, 101, 164), "vip": (196, 160, 0), "problem": (204, 0, 0)}


def _photo(path: Path, initials: str, category: str, rng: random.Random) -> None:
    img = Image.new("RGB", (256, 256), _COLOURS[category])
    draw = ImageDraw.Draw(img)
    shade = tuple(min(255, c + rng.randint(30, 80)) for c in _COLOURS[category])
    draw.ellipse((40, 24, 216, 200), fill=shade)
    draw.rectangle((20, 180, 236, 256), fill=shade)
    draw.text((128, 112), initials, fill=(255, 255, 255), anchor="mm", font_size=64)
    img.save(path, "JPEG", quality=85)


def seed(rules: NumberRules, photo_dir: Path, customers: int = 60, seed: int = 7) -> list[str]:
    """Fill an empty database with demo operators, customers, phones and orders; returns the customers' numbers."""
    rng = random.Random(seed)
    private_dir(photo_dir)
    numbers: list[str] = []
    with database.atomic():
        employees = [Employee.create(extension=ext, name=name) for ext, name in OPERATORS]
        for i in range(customers):
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            category = rng.choices(["regular", "vip", "problem"], weights=[7, 2, 1])[0]
            city, country = rng.choice(_CITIES)
            customer = Customer.create(
                external_id=f"demo-{i + 1:03d}",
                name=f"{first} {last}",
                company=rng.choice(_COMPANIES),
                category=category,
                note=rng.choice(_NOTES),
                city=city,
                country=country,
            )
            if rng.random() < 0.8:
                name = f"{customer.id}.jpg"
                _photo(photo_dir / name, first[0] + last[0], category, rng)
                customer.photo = name
                customer.save()
            for label in rng.sample(["mobile", "office", "home"], k=rng.choice([1, 1, 2])):
                number = f"+354{rng.choice('5678')}{rng.randint(0, 999999):06d}"
                add_phone(customer, number, label, rules)
                numbers.append(number)
            for n in range(rng.choice([0, 0, 1, 1, 2, 3])):
                amount = Decimal(rng.randint(5, 500) * 1000)
                paid = amount if rng.random() < 0.5 else Decimal(rng.randint(0, int(amount) // 1000) * 1000)
                Order.create(
                    customer=customer,
                    number=f"SO-{2026}{i:03d}{n}",
                    title=rng.choice(["Annual support", "Fleet order", "Spare parts", "Consulting", "Catering"]),
                    stage=rng.choice(_STAGES),
                    responsible=rng.choice(employees),
                    amount=amount,
                    paid=paid,
                    status="open" if rng.random() < 0.7 else "closed",
                )
    return numbers
