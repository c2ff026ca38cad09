"""A visit as plain logic: its lifecycle, roster, room core and wire messages (no I/O).

The lowest package: it imports no other package of the project, so every rule of a
visit can be tested with a fake clock and no sockets.
"""
