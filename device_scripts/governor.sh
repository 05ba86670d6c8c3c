#!/system/bin/sh
# Root only: pin a core's cpufreq governor to `performance` for measuring, and restore it afterwards.
# usage: sh governor.sh set CORE STATE_FILE [SYSFS_ROOT]
#        sh governor.sh restore CORE STATE_FILE [SYSFS_ROOT]
action=$1; core=$2; state=$3; root=${4:-/sys}
gov="$root/devices/system/cpu/cpu$core/cpufreq/scaling_governor"
if [ "$(id -u)" != 0 ]; then
  echo "governor: root is needed to change $gov (run 'adb root' on a userdebug build, or skip --performance)" >&2
  exit 1
fi
[ -f "$gov" ] || { echo "governor: $gov does not exist" >&2; exit 1; }
case $action in
  set)
    [ -f "$state" ] || cat "$gov" > "$state"
    echo performance > "$gov" || exit 1
    echo "governor=$(cat "$gov") saved=$(cat "$state")"
    ;;
  restore)
    [ -f "$state" ] || { echo "governor: nothing saved in $state" >&2; exit 1; }
    cat "$state" > "$gov" && rm -f "$state" || exit 1
    echo "governor=$(cat "$gov")"
    ;;
  *)
    echo "usage: governor.sh set|restore CORE STATE_FILE [SYSFS_ROOT]" >&2
    exit 2
    ;;
esac
