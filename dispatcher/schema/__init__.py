"""The Redis schema, shared by Python and Lua: :mod:`.names` names every field, record code and
state both use, :mod:`.scripts` loads the Lua scripts of ``lua/`` with a prelude generated from it.

It sits on the ground floor, with ``settings``, ``keys`` and ``errors``: ``sending`` and
``delivery`` both use it, and it imports nothing of theirs.
"""
