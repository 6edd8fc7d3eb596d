#!/usr/bin/env bash
# worker-wrapper.sh: runs one worker of the claude-copilot stream orchestrator
# under the contract pidwatch (and the original monitor-workers.py) relies on.
#
#   worker-wrapper.sh <stream-id> <pid-file> <log-dir> <work-dir> <initiative-id> <prompt> [-- CMD ARGS...]
#
# - writes its own PID to <pid-file> atomically (a temp file, then mv);
# - archives older logs of this stream, matched by exact name only:
#   <log-dir>/<stream-id>.log and <log-dir>/<stream-id>_<8 chars>.log of other
#   initiatives go to <log-dir>/archive/<name>_<mtime>.log;
# - appends a header to <log-dir>/<stream-id>_<first 8 of initiative-id>.log;
# - runs the worker (CMD ARGS..., by default the claude CLI with the prompt)
#   in <work-dir>, as a child in its own process group, output to the log;
# - forwards TERM, INT and HUP to the worker's process group at once;
# - appends a footer, writes the exit file (below), removes the PID file only
#   if it still holds its own PID, and exits with the worker's status (128+N
#   when killed by signal N).
#
# The worker sees PIDWATCH_STREAM_ID, PIDWATCH_INITIATIVE_ID, PIDWATCH_PROMPT,
# PIDWATCH_WORK_DIR, PIDWATCH_LOG_FILE and PIDWATCH_INVOCATION_ID in its
# environment.
#
# PIDWATCH_INVOCATION_ID names this incarnation (this one start of the
# worker): 32 lowercase hex digits, like systemd's INVOCATION_ID. pidwatch
# passes it when it spawns the wrapper; when it is missing or malformed (a
# start by the orchestrator), the wrapper makes one from
# /proc/sys/kernel/random/uuid and re-executes itself with it, same PID, so
# that /proc/<wrapper pid>/environ carries it too. Every process of the
# incarnation inherits it; the log header shows it (`Incarnation:`).
#
# The exit file, <dir>/<name>.exit beside <dir>/<name>.pid (<pid-file>.exit
# when the name does not end in .pid), is written atomically just before the
# PID file is removed, one key=value a line:
#   incarnation=<32 hex>   pid=<wrapper PID>   exit_status=<0..255>
#   signal=<TERM, INT, HUP received and forwarded; else the signal that
#          killed the worker (status > 128), KILL, SEGV, ...; else empty>
#   ended=<ISO 8601 time, as in the footer>
# A wrapper that is SIGKILLed writes none: an exit file of another
# incarnation, or none, means the wrapper did not end on its own.

# The whole script is one function, called on the last line: bash reads a
# script as it runs it, so a running wrapper whose file is rewritten under it
# (an install over it) would read the new text from the old offset. Read
# whole first, it never reads the file again.
main() {
  set -u

  # The incarnation id, before anything with a side effect. An id is kept
  # only when it was given for this very worker (PIDWATCH_INVOCATION_WORKER,
  # which pidwatch sets): one inherited from another worker's environment
  # (its agent started this one) would make this wrapper a member of that
  # incarnation. The other PIDWATCH_ variables of such an environment are
  # dropped from this process's own too. A new id comes from the kernel's
  # UUID source (a version 4 UUID, 122 random bits, as systemd's), read
  # without a fork, dashes stripped.
  if [[ ! ${PIDWATCH_INVOCATION_ID-} =~ ^[0-9a-f]{32}$ ]] ||
    [ "${PIDWATCH_INVOCATION_WORKER-}" != "${1-}" ]; then
    unset PIDWATCH_STREAM_ID PIDWATCH_INITIATIVE_ID PIDWATCH_PROMPT \
      PIDWATCH_WORK_DIR PIDWATCH_LOG_FILE
    export PIDWATCH_INVOCATION_WORKER=${1-}
    uuid=
    read -r uuid 2>/dev/null </proc/sys/kernel/random/uuid
    uuid=${uuid//-/}
    if [[ ! $uuid =~ ^[0-9a-f]{32}$ ]]; then
      # No /proc: bash's own generator ($SRANDOM, from getrandom(2), in bash
      # 5.1 and later; $RANDOM, 15 bits a call, before).
      printf -v uuid '%08x%08x%08x%08x' "${SRANDOM-$RANDOM$RANDOM}" \
        "${SRANDOM-$RANDOM$RANDOM}" "${SRANDOM-$RANDOM$RANDOM}" "${SRANDOM-$RANDOM$RANDOM}"
      uuid=${uuid:0:32}
    fi
    export PIDWATCH_INVOCATION_ID=$uuid
    # Re-execute once (the guard holds this PID, which exec keeps), and only
    # a script read from a file: $0 still resolves, no directory was changed.
    # When the exec fails, go on without the id in this process's environ.
    if [ "${PIDWATCH_WRAPPER_REEXEC-}" != "$$" ] && [ -n "${BASH_SOURCE[0]-}" ]; then
      export PIDWATCH_WRAPPER_REEXEC=$$
      shopt -s execfail
      # shellcheck disable=SC2093  # with execfail, a failed exec goes on here
      exec "$BASH" -- "$0" "$@"
      shopt -u execfail
    fi
  fi
  unset PIDWATCH_WRAPPER_REEXEC uuid

  usage() {
    echo "usage: $0 <stream-id> <pid-file> <log-dir> <work-dir> <initiative-id> <prompt> [-- CMD ARGS...]" >&2
    exit 2
  }

  [ $# -ge 6 ] || usage
  stream_id=$1
  pid_file=$2
  log_dir=$3
  work_dir=$4
  initiative_id=$5
  prompt=$6
  shift 6
  if [ $# -gt 0 ]; then
    [ "$1" = "--" ] || usage
    shift
    [ $# -gt 0 ] || usage
    cmd=("$@")
  else
    cmd=(claude --dangerously-skip-permissions -p "$prompt")
  fi
  case $stream_id in
    "" | . | .. | -* | */*) echo "$0: bad stream id: $stream_id" >&2; exit 2 ;;
  esac

  # Where the original looked for the claude CLI, first: a service's PATH
  # (systemd's default lacks them) still finds it.
  export PATH="/opt/homebrew/bin:/usr/local/bin:${HOME:+$HOME/.local/bin:}$PATH"

  # Signals are caught from the start: one that arrives before the worker is
  # started is kept, and the worker is then not started at all.
  child=
  pending=
  interrupted=
  # The last signal received before the worker ended (for the exit file).
  stop_signal=
  worker_ended=
  # shellcheck disable=SC2317  # called from the traps below
  forward() {
    interrupted=yes
    [ -n "$worker_ended" ] || stop_signal=$1
    if [ -n "$child" ]; then
      # The worker leads its own process group: signal the whole group at once.
      kill -s "$1" -- "-$child" 2>/dev/null
    else
      pending=$1
    fi
  }
  trap 'forward TERM' TERM
  trap 'forward INT' INT
  trap 'forward HUP' HUP

  short_id=${initiative_id:0:8}
  log_file="$log_dir/${stream_id}_${short_id}.log"
  rule="========================================"

  # The start is on the path of every restart, so it forks as little as it
  # can: builtins and parameter expansion instead of dirname, basename, date,
  # mktemp and a scan of logs/ (one process per file made a restart take
  # seconds with a thousand logs).
  pid_dir=${pid_file%/*}
  [ "$pid_dir" = "$pid_file" ] && pid_dir=.
  case $pid_file in
    *.pid) exit_file=${pid_file%.pid}.exit ;;
    *) exit_file=$pid_file.exit ;;
  esac
  # Written after the cd into the work dir: relative to here, made absolute.
  [[ $exit_file = /* ]] || exit_file=$PWD/$exit_file
  if [ ! -d "$log_dir" ] || [ ! -d "$pid_dir" ]; then
    mkdir -p -- "$log_dir" "$pid_dir" || exit 1
  fi

  # Commits what a worker that finished (exit 0) changed in its work dir, as
  # the original wrapper did, so that the orchestrator finds it to merge. Never
  # after a failure or a stop. Never interactive: no editor, no prompt, no
  # signing, no hooks of the user's (a hook or a pinentry could hang the
  # wrapper, and a restart after it); an identity only where git has none.
  commit_work() {
    local git=(git -C "$work_dir" -c commit.gpgsign=false -c core.hooksPath=/dev/null)
    "${git[@]}" rev-parse --is-inside-work-tree >/dev/null 2>&1 || return 0
    if [ -z "$("${git[@]}" status --porcelain 2>/dev/null)" ]; then
      echo "No changes to commit"
      return 0
    fi
    if ! "${git[@]}" config user.email >/dev/null 2>&1; then
      git+=(-c user.name="pidwatch worker" -c user.email="pidwatch@localhost")
    fi
    if "${git[@]}" add -A && GIT_EDITOR=true GIT_TERMINAL_PROMPT=0 \
      "${git[@]}" commit --no-verify -q -m "feat($stream_id): Complete stream tasks" \
      -m "Initiative: $initiative_id"$'\n'"Stream: $stream_id" \
      -m "Automated commit from orchestration worker" </dev/null; then
      echo "Committed changes: $("${git[@]}" rev-parse --short HEAD)"
    else
      echo "Warning: could not commit the worker's changes in $work_dir"
    fi
  }

  # Sets $stamp to now in ISO 8601 with a colon in the offset, as
  # `date -Iseconds` writes it (a builtin, where $(date) would fork).
  stamp=
  set_stamp() {
    local t
    printf -v t '%(%Y-%m-%dT%H:%M:%S%z)T' -1
    stamp="${t:0:22}:${t:22}"
  }

  # Archive this stream's logs of other initiatives, and its old-format log.
  # Exact names only: archiving Stream-A must never touch Stream-AB_*.log.
  # Only the candidate names are looked at, never the whole folder.
  shopt -s nullglob
  for old in "$log_dir/$stream_id.log" "$log_dir/${stream_id}_"????????.log; do
    [ -f "$old" ] || continue
    base=${old##*/}
    base=${base%.log}
    if [ "$base" != "$stream_id" ]; then
      rest=${base#"${stream_id}_"}
      if ! [[ $rest =~ ^[A-Za-z0-9-]{8}$ ]] || [ "$rest" = "$short_id" ]; then
        continue
      fi
    fi
    mkdir -p -- "$log_dir/archive" || continue
    mtime=$(stat -c %Y -- "$old")
    target="$log_dir/archive/${base}_${mtime}.log"
    [ -e "$target" ] && target="$log_dir/archive/${base}_${mtime}_$$.log"
    mv -f -- "$old" "$target"
  done
  shopt -u nullglob

  set_stamp
  {
    echo "$rule"
    echo "Started: $stamp"
    echo "Stream: $stream_id"
    echo "Initiative: $initiative_id"
    echo "PID: $$"
    echo "Incarnation: $PIDWATCH_INVOCATION_ID"
    echo "Working dir: $work_dir"
    echo "Log file: $log_file"
    echo "$rule"
  } >>"$log_file"

  # Debug lines of the original, then the worker command looked up: one that
  # cannot be found ends the wrapper here, with 127 and no PID file, so that
  # the restart fails with that reason instead of counting as a start.
  {
    echo "Prompt length: ${#prompt} chars"
    echo "Claude path: $(command -v claude 2>/dev/null || echo 'not found')"
    echo "PATH: $PATH"
  } >>"$log_file"
  if ! command -v -- "${cmd[0]}" >/dev/null 2>&1; then
    echo "Worker command not found: ${cmd[0]} (exit 127)" >>"$log_file"
    exit 127
  fi

  # Atomic PID file: a reader sees the old file or the whole new one. It is
  # created under the inherited umask, as the original's `echo >` was.
  tmp="$pid_file.$$.tmp"
  rm -f -- "$tmp"
  # noclobber: never written through a file or symlink already there.
  set -o noclobber
  echo "$$" >"$tmp" || exit 1
  set +o noclobber
  mv -f -- "$tmp" "$pid_file" || { rm -f -- "$tmp"; exit 1; }

  export PIDWATCH_STREAM_ID=$stream_id PIDWATCH_INITIATIVE_ID=$initiative_id \
    PIDWATCH_PROMPT=$prompt PIDWATCH_WORK_DIR=$work_dir PIDWATCH_LOG_FILE=$log_file

  status=0
  if [ -n "$pending" ]; then
    # Told to stop before the worker started: do not start it.
    status=$((128 + $(kill -l "$pending")))
  elif cd -- "$work_dir"; then
    # Job control puts the background child in a process group of its own,
    # inside this session, so that one kill reaches everything it started.
    set -m
    "${cmd[@]}" >>"$log_file" 2>&1 </dev/null &
    child=$!
    set +m
    # A signal may have come between the check above and the start.
    [ -n "$pending" ] && forward "$pending"
    # `wait` returns early when a trapped signal arrives; then wait again, to
    # get the child's own status.
    while :; do
      interrupted=
      wait "$child"
      status=$?
      [ -n "$interrupted" ] || break
    done
    worker_ended=yes
    # The worker is gone; what it left in its process group goes with it, so
    # that "no PID file" means "nothing left" and a restart never runs beside
    # leftovers. (The group id stays the worker's while members live.)
    if kill -0 -- "-$child" 2>/dev/null; then
      kill -TERM -- "-$child" 2>/dev/null
      for ((i = 0; i < 50; i++)); do
        kill -0 -- "-$child" 2>/dev/null || break
        sleep 0.1
      done
      # Only while members remain: an emptied group's id may be reused.
      kill -0 -- "-$child" 2>/dev/null && kill -KILL -- "-$child" 2>/dev/null
    fi
  else
    echo "cannot enter work dir $work_dir" >>"$log_file"
    status=1
  fi

  worker_ended=yes
  if [ "$status" -eq 0 ] && [ -z "$stop_signal" ]; then
    commit_work >>"$log_file" 2>&1
  fi
  set_stamp

  # The exit file: how the worker ended, for pidwatch to tell a deliberate
  # stop from a crash once the wrapper is gone. The temp file is made afresh
  # (noclobber: never written through a file or symlink already there), then
  # renamed over the exit file (-T: never into a folder a symlink names).
  ended_by=$stop_signal
  if [ -z "$ended_by" ] && [ "$status" -gt 128 ]; then
    ended_by=$(kill -l "$((status - 128))" 2>/dev/null) || ended_by=
  fi
  exit_tmp="$exit_file.$$.tmp"
  rm -f -- "$exit_tmp"
  set -o noclobber
  if printf 'incarnation=%s\npid=%s\nexit_status=%s\nsignal=%s\nended=%s\n' \
    "$PIDWATCH_INVOCATION_ID" "$$" "$status" "$ended_by" "$stamp" 2>/dev/null >"$exit_tmp" &&
    mv -fT -- "$exit_tmp" "$exit_file"; then
    :
  else
    rm -f -- "$exit_tmp"
    echo "cannot write the exit file $exit_file" >>"$log_file"
  fi
  set +o noclobber

  {
    echo "$rule"
    echo "Worker exited: $stamp"
    echo "Exit code: $status"
    echo "$rule"
  } >>"$log_file"

  holder=
  read -r holder 2>/dev/null <"$pid_file"
  if [ "$holder" = "$$" ]; then
    rm -f -- "$pid_file"
  fi
  exit "$status"
}

# main exits; the exit only guards the file's end, on the same line, so that
# nothing after it is ever read.
# shellcheck disable=SC2317
{ main "$@"; exit; }
