"""Every measurement default, defined once: the command line's options, the benchmark settings, the build, the
re-measure rule and the phones' connection and hygiene all take their defaults from here."""

REPEATS = 5  # repeats per entry or model, interleaved round-robin (`lut build`, `profile`, the demo's table)
RUNS = 20  # timed runs per repeat (benchmark_model --num_runs) of a table's entries
PROFILE_RUNS = 50  # timed runs per repeat of `hnas profile` (a one-off model or op)
WARMUP_RUNS = 5  # warm-up runs per repeat (benchmark_model --warmup_runs)
SPREAD = 0.10  # repeat medians agree when they differ by at most this fraction (else: measured again)
CONVERT_WORKERS = 4  # conversion processes of a build at most, on the CPUs besides the measuring core (each imports TF)

# phones
COOL_S = 0.0  # pause after each model
MAX_TEMP_C = 45.0  # a run is re-measured when a thermal zone passed this
MIN_FREQ_FRACTION = 0.9  # ... or when the pinned core fell below this fraction of its max frequency
COOLDOWN_S = 30.0  # the pause after a throttled run
RETRIES = 4  # reconnect attempts after a dropped link
BACKOFF_S = 1.0  # the first reconnect wait, doubling
TIMEOUT_S = 10.0  # connecting and each transport read
COMMAND_TIMEOUT_S = 600.0  # one shell command on the phone
