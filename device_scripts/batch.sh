#!/system/bin/sh
# Benchmark a list of models on one pinned core, framing each run so one ADB round trip measures a batch.
# usage: sh batch.sh BINARY CORE SYSFS_ROOT COOL_SECONDS LIST_FILE [benchmark_model flags ...]
#   BINARY        the benchmark_model binary on the device
#   CORE          CPU to pin to with taskset (mask 1<<CORE)
#   SYSFS_ROOT    /sys on a phone; tests hand it a tree
#   COOL_SECONDS  pause after each model (0: none)
#   LIST_FILE     one .tflite path per line
# Per model it prints:
#   === hnas-begin MODEL
#   === hnas-cond before freq_khz=F temp_mc=T     (pinned core's current frequency, hottest thermal zone)
#   ...benchmark_model output (stdout and stderr)...
#   === hnas-cond after freq_khz=F temp_mc=T
#   === hnas-end MODEL rc=STATUS
bin=$1; core=$2; root=$3; cool=$4; list=$5
shift 5
mask=$(printf '%x' $((1 << core)))
cond() {
  freq=$(cat "$root/devices/system/cpu/cpu$core/cpufreq/scaling_cur_freq" 2>/dev/null || echo 0)
  hot=-1000000
  for z in "$root"/class/thermal/thermal_zone[0-9]*/temp; do
    [ -f "$z" ] || continue
    t=$(cat "$z" 2>/dev/null) || continue
    case $t in ''|*[!0-9-]*) continue ;; esac
    [ "$t" -gt "$hot" ] && hot=$t
  done
  echo "=== hnas-cond $1 freq_khz=$freq temp_mc=$hot"
}
while IFS= read -r model || [ -n "$model" ]; do
  [ -n "$model" ] || continue
  echo "=== hnas-begin $model"
  cond before
  taskset "$mask" "$bin" --graph="$model" "$@" 2>&1
  rc=$?
  cond after
  echo "=== hnas-end $model rc=$rc"
  [ "$cool" = 0 ] || sleep "$cool"
done < "$list"
