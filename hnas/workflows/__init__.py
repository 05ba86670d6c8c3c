"""Workflows that join the two halves: a search on a device's latency table, the demo, the ranking study.

Besides the command layer (`hnas.cli`), these are the only `hnas` modules that import `latency`: the search
engine itself is handed its latency objective as an object and never opens a table.
"""
