"""The Lua scripts take their constants from Python and change campaign states only as TRANSITIONS allow."""

from __future__ import annotations

import re
from importlib.resources import files

import redis

from dispatcher.schema.names import TERMINAL_CODES, TRANSITIONS, State
from dispatcher.schema.scripts import prelude, script

LUA_FILES = sorted(p.name for p in (files("dispatcher.schema") / "lua").iterdir() if p.name.endswith(".lua"))


def test_every_lua_state_change_goes_through_set_state() -> None:
    for name in LUA_FILES:
        text = (files("dispatcher.schema") / "lua" / name).read_text()
        if name == "prelude.lua":  # set_state itself
            continue
        assert not re.search(r"HSET'[^)]*'state'", text), f"{name} writes 'state' without set_state"
    assert "'state', target" in prelude()


def test_no_lua_file_spells_a_key_or_a_record_code() -> None:
    for name in LUA_FILES:
        text = (files("dispatcher.schema") / "lua" / name).read_text()
        assert ":c:" not in text, name
        for line in text.splitlines():  # arguments are named once, at the top
            if re.search(r"(ARGV|KEYS)\[\d", line):
                assert line.startswith("local "), f"{name}: {line}"
        assert not re.search(r"'[srfucex]\|", text), f"{name} spells a record code"


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
