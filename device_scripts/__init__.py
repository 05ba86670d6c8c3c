"""The POSIX shell scripts that run on the phone (`*.sh` beside this file): package data, pushed over ADB by
`latency.adb`, which finds them with `importlib.resources` in a checkout and in an installed wheel alike."""
