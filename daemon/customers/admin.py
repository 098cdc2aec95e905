"""What an admin edits besides the records (docs/customfields.md): the custom field definitions and the category
list. The JSON API and the admin pages share these steps, as they share daemon/customers/data.py's; each runs in
the caller's transaction on the bound models and raises DataError (400 bad input, 404 missing, 409 conflict).
"""
from __future__ import annotations

import json
from typing import Any

from screenpop.daemon.customers import fields as custom, values
from screenpop.daemon.customers.data import DataError, text
from screenpop.daemon.i18n import lazy_gettext
from screenpop.db.models import FIELD_ENTITIES, Category, Customer, CustomField, Order, database

def _checked(check, raw: Any, key: str, *args: Any) -> Any:
    """A values.py rule applied to a string input, its ValueError as a DataError naming key."""
    if not isinstance(raw, str):
        raise DataError(400, lazy_gettext("%(key)s: must be a string", key=key))
    try:
        return check(raw, *args)
    except ValueError as exc:
        raise DataError(400, lazy_gettext("%(key)s: %(reason)s", key=key, reason=exc)) from None


def _flag(body: dict, key: str) -> bool | None:
    if key not in body:
        return None
    if not isinstance(body[key], bool):
        raise DataError(400, lazy_gettext("%(key)s: must be true or false", key=key))
    return body[key]


def _position(body: dict) -> int | None:
    if "position" not in body:
        return None
    value = body["position"]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000:
        raise DataError(400, lazy_gettext("position: must be a whole number from 0 to 10000"))
    return value


# ---- custom field definitions --------------------------------------------------------------------------


def get_field(field_id: int) -> custom.Field:
    found = next((f for f in custom.load_fields(database.obj) if f.id == field_id), None)
    if found is None:
        raise DataError(404, lazy_gettext("no field %(field_id)s", field_id=field_id))
    return found


def field_input(body: dict, creating: bool) -> dict:
    """A definition's columns from the API's JSON (or a form's, converted): entity, key and type only when creating;
    label, required, options (a choice's), position. The type is fixed once made (delete and define it again)."""
    out: dict[str, Any] = {}
    if creating:
        for key in ("entity", "key", "type", "label"):
            if key not in body:
                raise DataError(400, lazy_gettext("%(key)s: required", key=key))
        out["entity"] = body["entity"]
        if out["entity"] not in FIELD_ENTITIES:
            raise DataError(400, lazy_gettext("entity: must be one of %(entities)s",
                                              entities=', '.join(FIELD_ENTITIES)))
        out["key"] = _checked(values.field_key, body["key"], "key", custom.RESERVED[out["entity"]])
        out["kind"] = _checked(values.field_kind, body["type"], "type")
    if "label" in body:
        out["label"] = _checked(values.field_label, body["label"], "label")
    if (required := _flag(body, "required")) is not None:
        out["required"] = required
    if (position := _position(body)) is not None:
        out["position"] = position
    if "options" in body:
        options = body["options"]
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise DataError(400, lazy_gettext("options: must be a list of strings"))
        out["options"] = options
    return out


def _options(kind: str, options: list[str] | None, current: tuple[str, ...] = ()) -> str:
    """The stored options of a field: a choice needs its list; other kinds take none."""
    if kind != "choice":
        if options:
            raise DataError(400, lazy_gettext("options: only a choice field has options"))
        return "[]"
    try:
        return json.dumps(values.choice_options(options if options is not None else list(current)), ensure_ascii=False)
    except ValueError as exc:
        raise DataError(400, lazy_gettext("options: %(reason)s", reason=exc)) from None


def create_field(body: dict) -> custom.Field:
    """Define a field (checked with field_input): no schema change, its values go into the records' custom JSON."""
    entity, key, kind = body["entity"], body["key"], body["kind"]
    if CustomField.get_or_none((CustomField.entity == entity) & (CustomField.key == key)):
        raise DataError(409, lazy_gettext("key: %(entity)s already has a field %(key)r", entity=entity, key=key))
    position = body.get("position")
    if position is None:
        last = CustomField.select(CustomField.position).where(CustomField.entity == entity) \
            .order_by(CustomField.position.desc()).first()
        position = last.position + 1 if last else 0
    row = CustomField.create(entity=entity, key=key, label=body["label"], kind=kind,
                             required=body.get("required", False), options=_options(kind, body.get("options")),
                             position=position)
    return get_field(row.id)


def update_field(field_id: int, body: dict) -> custom.Field:
    """Change a field's label, required, options or position. A choice's option that records still hold cannot be
    dropped: those values would no longer be valid."""
    field = get_field(field_id)
    change = {k: v for k, v in body.items() if k in ("label", "required", "position")}
    if "options" in body or field.kind == "choice":
        change["options"] = _options(field.kind, body.get("options"), field.options)
        if field.kind == "choice":
            kept = set(json.loads(change["options"]))
            dropped = sorted(set(field.options) - kept)
            held = [o for o in dropped if holders(field, o)]
            if held:
                raise DataError(409, lazy_gettext("options: %(held)r is still the value of %(count)s %(entity)s(s); "
                                                  "change those first",
                                                  held=held[0], count=holders(field, held[0]), entity=field.entity))
    if change:
        CustomField.update(**change).where(CustomField.id == field_id).execute()
    return get_field(field_id)


def _table(entity: str):
    return Customer if entity == "customer" else Order


def holders(field: custom.Field, value: str | None = None) -> int:
    """How many records hold a value of field (that value, when given)."""
    model = _table(field.entity)
    needle = json.dumps(field.key)  # the key as it appears in the JSON text: a cheap filter, checked after decoding
    count = 0
    for (stored,) in model.select(model.custom).where(model.custom.contains(needle)).tuples().iterator():
        found = custom.decode(stored).get(field.key)
        if found and (value is None or found == value):
            count += 1
    return count


def delete_field(field_id: int, confirm: Any) -> int:
    """Remove a field and every value of it; confirm must be its key (what the admin confirms). Returns how many
    records had a value."""
    field = get_field(field_id)
    if confirm != field.key:
        count = holders(field)
        raise DataError(409, lazy_gettext("removing field %(key)r removes its values from %(count)s %(entity)s(s): "
                                          "confirm with its key", key=field.key, count=count, entity=field.entity),
                        key=field.key, values=count)
    model = _table(field.entity)
    remaining = [f for f in custom.load_fields(database.obj, field.entity) if f.id != field.id]
    needle = json.dumps(field.key)
    changed = 0
    for row_id, stored in list(model.select(model.id, model.custom).where(model.custom.contains(needle)).tuples()):
        found = custom.decode(stored)
        if found.pop(field.key, None) is None:
            continue
        update: dict[str, Any] = {"custom": custom.encode(found)}
        if model is Customer:
            update["custom_text"] = custom.search_text(remaining, found)
        model.update(**update).where(model.id == row_id).execute()
        changed += 1
    CustomField.delete().where(CustomField.id == field_id).execute()
    return changed


# ---- categories ----------------------------------------------------------------------------------------


def get_category(name: str) -> Category:
    row = Category.get_or_none(Category.name == name)
    if row is None:
        raise DataError(404, lazy_gettext("no category %(name)r", name=name[:30]))
    return row


def category_input(body: dict, creating: bool) -> dict:
    """A category's columns from the API's JSON: name (required when creating; a new name renames), colour, flag,
    position, default (true makes it the default; the default cannot be unset, only moved)."""
    out: dict[str, Any] = {}
    if creating and "name" not in body:
        raise DataError(400, lazy_gettext("name: required"))
    if creating and "colour" not in body:
        raise DataError(400, lazy_gettext("colour: required, e.g. #ca8a04"))
    if "name" in body:
        out["name"] = _checked(values.category_name, body["name"], "name")
    if "colour" in body:
        out["colour"] = _checked(values.colour, body["colour"], "colour")
    if "flag" in body:
        out["flag"] = _checked(values.flag, body["flag"], "flag")
    if (position := _position(body)) is not None:
        out["position"] = position
    if (default := _flag(body, "default")) is not None:
        if default is False:
            raise DataError(400, lazy_gettext("default: make another category the default instead"))
        out["is_default"] = True
    return out


def _make_default(name: str) -> None:
    Category.update(is_default=Category.name == name).execute()


def create_category(fields: dict) -> Category:
    if Category.get_or_none(Category.name == fields["name"]):
        raise DataError(409, lazy_gettext("name: category %(name)r exists already", name=fields['name']))
    if "position" not in fields:
        last = Category.select(Category.position).order_by(Category.position.desc()).first()
        fields = {**fields, "position": last.position + 1 if last else 0}
    row = Category.create(**{k: v for k, v in fields.items() if k != "is_default"})
    if fields.get("is_default"):
        _make_default(row.name)
    return get_category(row.name)


def update_category(name: str, fields: dict) -> Category:
    """Change a category; a new name renames it and moves its customers with it."""
    get_category(name)
    new = fields.get("name", name)
    if new != name:
        if Category.get_or_none(Category.name == new):
            raise DataError(409, lazy_gettext("name: category %(new)r exists already", new=new))
        row = get_category(name)
        Category.create(name=new, colour=row.colour, flag=row.flag, position=row.position, is_default=row.is_default)
        Customer.update(category=new).where(Customer.category == name).execute()
        Category.delete().where(Category.name == name).execute()
    change = {k: v for k, v in fields.items() if k not in ("name", "is_default")}
    if change:
        Category.update(**change).where(Category.name == new).execute()
    if fields.get("is_default"):
        _make_default(new)
    return get_category(new)


def delete_category(name: str, move_to: Any = None) -> int:
    """Delete a category. One that customers have is refused unless move_to names another category, which they
    then get; the default cannot be deleted. Returns how many customers moved."""
    row = get_category(name)
    if row.is_default:
        raise DataError(409, lazy_gettext("%(name)r is the default category: make another one the default first",
                                          name=name))
    used = Customer.select().where(Customer.category == name).count()
    moved = 0
    if used:
        if move_to is None or move_to == "":
            raise DataError(409, lazy_gettext("%(used)s customer(s) have category %(name)r: choose a category to move "
                                              "them to", used=used, name=name),
                            customers=used)
        target = text({"move_to": move_to}, "move_to", 16) or ""
        if target == name or Category.get_or_none(Category.name == target) is None:
            raise DataError(400, lazy_gettext("move_to: %(target)r is not another category", target=target[:30]))
        moved = Customer.update(category=target).where(Customer.category == name).execute()
    Category.delete().where(Category.name == name).execute()
    return moved
