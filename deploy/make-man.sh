#!/usr/bin/env bash
# Writes why502(8) from the CLI's own help (`why502 --help` and each subcommand's), so the man page
# never drifts from the options. Usage: deploy/make-man.sh WHY502_BINARY OUT_FILE
set -euo pipefail
bin=${1:?usage: make-man.sh WHY502_BINARY OUT}
out=${2:?usage: make-man.sh WHY502_BINARY OUT}
version=$("$bin" --version | awk '{ print $NF }')
esc() { sed -e 's/\\/\\e/g' -e 's/^\./\\\&./' -e "s/^'/\\\\\\&'/"; }
{
  echo ".TH WHY502 8 \"\" \"why502 $version\" \"System Administration\""
  echo ".SH NAME"
  echo "why502 \\- name the root cause of each nginx 502/504, from the kernel and nginx's logs"
  echo ".SH SYNOPSIS"
  echo ".B why502"
  echo "[\\fISUBCOMMAND\\fR] [\\fIOPTIONS\\fR]"
  echo ".SH DESCRIPTION"
  echo "why502 attaches BPF programs to kernel tracepoints, follows every upstream connection each nginx"
  echo "worker opens, joins that with nginx's error.log and access.log, and names one root cause per failed"
  echo "request with its evidence. Without a subcommand it runs \\fBwatch\\fR. It needs root to attach, and"
  echo "keeps only the capabilities it still needs afterwards."
  echo ".SH OPTIONS"
  echo ".nf"
  "$bin" --help | esc
  echo ".fi"
  for sub in watch analyze events record doctor demo; do
    echo ".SH \"$(echo "$sub" | tr a-z A-Z)\""
    echo ".nf"
    "$bin" "$sub" --help | esc
    echo ".fi"
  done
  echo ".SH FILES"
  echo ".TP"
  echo ".I /lib/systemd/system/why502.service"
  echo "runs \\fBwhy502 watch --json -o /var/log/why502/verdicts.jsonl\\fR; installed, not enabled."
  echo ".SH SEE ALSO"
  echo ".BR nginx (8),"
  echo ".BR bpftool (8)"
} >"$out"
