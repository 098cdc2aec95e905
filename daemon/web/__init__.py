"""The HTTP side: the server (event stream, photos, health, limits on strangers), the JSON API, the pages,
one templates folder and one stylesheet. May import every daemon package below it and db; nothing imports it
but the runtime."""
