"""Every measurement default, defined once: the command line's options, the benchmark settings, the build, the
re-measure rule and the phones' connection and hygiene all take their defaults from here."""

REPEATS = 5  # repeats per entry or model, interleaved round-robin (`lut build`, `profile`, the demo's table)
RUNS = 20  # timed runs per repeat (benchmark_model --num_runs) of a table's entries
PROFILE_RUNS = 50  # timed runs per repeat of `hnas profile` (a one-off model or op)
WARMUP_RUNS = 5  # warm-up runs per repeat (benchmark_model --warmup_runs)
SPREAD = 0.10  # repeat medians agree when they differ by at most this fraction (else: measured again)
MIN_ROUND = 8  # while models convert, a round measures at least this many (or all left): repeats stay apart
# convert on the host's other CPUs while its pinned core measures (`--measure-alone` turns it off); a phone's build
# always converts while the phone measures. A cold basic table on the 2-core VM, five paired runs: 23.0 s overlapped
# against 32.5 s serial (medians), unstable entries 24 against 23 (the machine's noise: 3 to 44 either way)
CONVERT_BESIDE_HOST = True
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
