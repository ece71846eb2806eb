#!/bin/sh
# The whole scenario, each step a separate process.
set -e
here=$(dirname "$0")
pin=${1:-/sys/fs/bpf/fds_example}
python3 "$here/fds_example.py" create "$pin"
python3 "$here/fds_example.py" read "$pin"
fifo=$(mktemp -u); mkfifo "$fifo"
python3 "$here/fds_example.py" hold "$pin" < "$fifo" &
exec 3>"$fifo"
sleep 1
python3 "$here/fds_example.py" unlink "$pin"
echo go >&3; exec 3>&-
wait
rm -f "$fifo"
