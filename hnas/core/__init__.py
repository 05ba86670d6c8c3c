"""The torch-free base both halves stand on: errors the user can act on, atomic file io and the one JSON reader,
file schemas, progress bars, plots and the numeric precision type. It imports nothing of hnas's higher layers,
of the latency toolkit, nor torch or tensorflow."""
