"""Every Lua script is a file of dispatcher/schema/lua, runs with the prelude generated from
dispatcher.schema.names, takes its codes, states and fields from there, and changes campaign states
only as TRANSITIONS allow."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

import redis

import dispatcher
from dispatcher.schema import names
from dispatcher.schema.names import TERMINAL_CODES, TRANSITIONS, State
from dispatcher.schema.scripts import batched, every_name, prelude, script, source

LUA_FILES = sorted(p.name for p in (files("dispatcher.schema") / "lua").iterdir() if p.name.endswith(".lua"))
PACKAGE = Path(dispatcher.__file__).parent
#: Every hash field a script may name.
FIELDS = {*names.BATCH_FIELDS, *names.CAMPAIGN_FIELDS, *names.SCHEDULE_FIELDS}
#: Values a script must take from the prelude's tables, never spell.
SPELLED_BY_THE_PRELUDE = ({*names.CODES, *(s.value for s in State), *(s.value for s in names.BatchState),
                           *names.DELIVERED, *names.UNDELIVERED, *names.DELIVERY_COUNTERS.values(),
                           *names.COUNTERS.values()})


def _calls(text: str, opener: str) -> list[list[str]]:
    """The top-level arguments of each ``opener(...)`` call in ``text`` (strings kept quoted)."""
    found = []
    for match in re.finditer(r"(?<![\w.])" + re.escape(opener) + r"\(", text):
        depth, quote, arg, args = 1, "", "", []
        for ch in text[match.end():]:
            if quote:
                quote = "" if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch in "({":
                depth += 1
            elif ch in ")}":
                depth -= 1
                if depth == 0:
                    break
            elif ch == "," and depth == 1:
                args.append(arg.strip())
                arg = ""
                continue
            arg += ch
        found.append([*args, arg.strip()])
    return found


def _literal(arg: str) -> str | None:
    return arg[1:-1] if re.fullmatch(r"'[^']*'", arg) else None


def _fields(text: str) -> set[str]:
    """The hash fields a script names as literals: in HGET, HMGET, HDEL, HSET, HINCRBY and set_state."""
    fields: list[str | None] = []
    for args in _calls(text, "redis.call"):
        command, rest = _literal(args[0]), args[2:]
        if command in ("HGET", "HMGET", "HDEL"):
            fields += [_literal(a) for a in rest]
        elif command in ("HSET", "HINCRBY"):
            fields += [_literal(a) for a in rest[::2]]
    for args in _calls(text, "set_state"):
        fields += [_literal(a) for a in args[2::2]]
    return {f for f in fields if f is not None}


def test_every_lua_state_change_goes_through_set_state() -> None:
    for name in LUA_FILES:
        if name == "prelude.lua":  # set_state itself
            continue
        text = (files("dispatcher.schema") / "lua" / name).read_text()
        assert not re.search(r"HSET'[^)]*'state'", text), f"{name} writes 'state' without set_state"
        assert "'state'," not in "".join(",".join(a) for a in _calls(text, "redis.call") if a[0] == "'HSET'"), name
    assert "'state', target" in prelude()


def test_no_lua_file_spells_a_key_or_a_record_code() -> None:
    for name in LUA_FILES:
        text = (files("dispatcher.schema") / "lua" / name).read_text()
        assert ":c:" not in text, name
        for line in text.splitlines():  # arguments are named once, at the top
            if re.search(r"(ARGV|KEYS)\[\d", line):
                assert line.startswith("local "), f"{name}: {line}"
        assert not re.search(r"'[srfucex]\|", text), f"{name} spells a record code"


def test_no_lua_file_spells_a_record_code_state_or_status_the_prelude_names() -> None:
    for name in LUA_FILES:
        text = (files("dispatcher.schema") / "lua" / name).read_text()
        # ``streak`` (record.lua) is attempt.Streak's 'ok' or 'failed', an argument, not a status.
        compared = [y for x, y in re.findall(r"([\w\]\[]+)\s*[=~]=\s*'([^']*)'", text) if x != "streak"]
        counted = [_literal(a[1]) for a in _calls(text, "redis.call") if a[0] == "'HINCRBY'" and len(a) > 2]
        for literal in compared + [c for c in counted if c is not None]:
            assert literal not in SPELLED_BY_THE_PRELUDE, f"{name} spells {literal!r}: take it from the prelude"


def test_every_hash_field_a_script_names_is_in_the_schema() -> None:
    for name in LUA_FILES:
        unknown = _fields((files("dispatcher.schema") / "lua" / name).read_text()) - FIELDS
        assert not unknown, f"{name} names fields that dispatcher.schema.names does not: {sorted(unknown)}"
    assert _fields(source("claim")) >= {"st", "lease", "rc", "tok", "inc", "send_window", "supp_v"}  # the parser works


def test_no_python_module_of_the_package_holds_lua() -> None:
    for path in PACKAGE.rglob("*.py"):
        assert "redis.call" not in path.read_text(encoding="utf-8"), f"{path} holds Lua: move it to schema/lua"


def test_every_lua_file_and_every_script_the_code_loads_compiles_with_the_prelude(redis_client: redis.Redis) -> None:
    for name in every_name():
        redis_client.script_load(prelude() if name == "prelude" else script(name))
    redis_client.script_load(batched(source("apply_report")))
    libraries = {m for name in every_name() for m in re.findall(r"^local function (\w+)", source(name), re.M)}
    loaded = set()
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for args in _calls(text, "script") + _calls(text, "source"):
            wanted = tuple(a.strip('"') for a in args if re.fullmatch(r'"\w+"', a))
            if not wanted:
                continue
            assert set(wanted) <= set(every_name()), f"{path} loads {wanted}"
            full = script(*wanted)
            redis_client.script_load(full)
            # Lua compiles a call of an undefined function: check that each library a script calls is loaded with it.
            for called in {f for f in libraries if re.search(rf"(?<![\w.]){f}\(", full)}:
                assert re.search(rf"^local function {called}\(", full, re.M), f"{path}: {wanted} lacks {called}"
            loaded.add(wanted)
    assert {("slot", "claim"), ("apply_report",), ("batch", "commit_chunk"), ("take_held",), ("trim_held", "hold"),
            ("batch", "store_batches"), ("beat",), ("pause",)} <= loaded


def test_set_state_allows_exactly_the_python_transitions(redis_client: redis.Redis) -> None:
    probe = redis_client.register_script(script() + """
redis.call('HSET', KEYS[1], 'state', ARGV[1])
return set_state(KEYS[1], ARGV[2]) and 1 or 0
""")
    for current in State:
        for target in State:
            moved = probe(keys=["dsptest:probe"], args=[current.value, target.value])
            assert bool(moved) == (target in TRANSITIONS[current]), (current, target)


def test_the_prelude_carries_the_ledger_codes_and_terminal_set(redis_client: redis.Redis) -> None:
    probe = redis_client.register_script(script() + """
local out = {}
for code, _ in pairs(TERMINAL) do table.insert(out, code) end
table.sort(out)
return {table.concat(out), COUNTER[CODE.sent]}
""")
    terminal, sent_counter = probe(keys=[], args=[])
    assert terminal.decode() == "".join(sorted(TERMINAL_CODES))
    assert sent_counter == b"n:sent"


def test_the_prelude_classes_delivery_statuses_as_python_does(redis_client: redis.Redis) -> None:
    from dispatcher.delivery.reports import status_class

    probe = redis_client.register_script(script() + "return {DCLASS[ARGV[1]] or '', DCOUNTER[DCLASS[ARGV[1]]] or ''}")
    for status in [*names.DELIVERED, *names.UNDELIVERED, "sent", "accepted", "buffered", "unknown"]:
        klass, counter = (v.decode() for v in probe(keys=[], args=[status]))
        assert klass == status_class(status), status
        assert counter == names.DELIVERY_COUNTERS.get(klass, ""), status
