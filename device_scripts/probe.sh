#!/system/bin/sh
# Print key=value facts about an Android device for the LUT's device fingerprint.
# usage: sh probe.sh [SYSFS_ROOT]     (default /sys; tests hand it a tree)
# POSIX sh: runs under Android's mksh/toybox and under dash/bash.
root=${1:-/sys}
prop() { getprop "$1" 2>/dev/null; }
echo "model=$(prop ro.product.model)"
echo "manufacturer=$(prop ro.product.manufacturer)"
echo "board=$(prop ro.product.board)"
echo "platform=$(prop ro.board.platform)"
echo "soc=$(prop ro.soc.model)"
echo "hardware=$(prop ro.hardware)"
echo "abi=$(prop ro.product.cpu.abi)"
echo "android=$(prop ro.build.version.release)"
echo "sdk=$(prop ro.build.version.sdk)"
echo "kernel=$(uname -r)"
echo "uid=$(id -u)"
for d in "$root"/devices/system/cpu/cpu[0-9]*; do
  [ -d "$d" ] || continue
  n=${d##*/cpu}
  online=1
  [ -f "$d/online" ] && online=$(cat "$d/online")
  echo "cpu$n.online=$online"
  [ -f "$d/cpu_capacity" ] && echo "cpu$n.capacity=$(cat "$d/cpu_capacity")"
  f="$d/cpufreq"
  [ -f "$f/cpuinfo_max_freq" ] && echo "cpu$n.max_khz=$(cat "$f/cpuinfo_max_freq")"
  [ -f "$f/scaling_cur_freq" ] && echo "cpu$n.cur_khz=$(cat "$f/scaling_cur_freq")"
  [ -f "$f/scaling_governor" ] && echo "cpu$n.governor=$(cat "$f/scaling_governor")"
done
for z in "$root"/class/thermal/thermal_zone[0-9]*; do
  [ -f "$z/temp" ] || continue
  name=${z##*/}
  echo "$name.type=$(cat "$z/type" 2>/dev/null)"
  echo "$name.temp=$(cat "$z/temp" 2>/dev/null)"
done
echo "probe=done"
