# Shared set-up of the live-engine scripts in this folder (soak.sh, coldstart.sh, reaction.sh):
# sourced, not run. Each script sets `root` and `BIN`, then calls
#   soak_workdir NAME     a private work folder ($work) removed on exit, with a copy of $BIN in it
#                         ($work/undertone: a rebuild during the run cannot touch it)
#   soak_pulse PCM        a private PulseAudio with a 48 kHz null sink ($pa_pid) and an ALSA PCM
#                         named PCM that plays into it, in $work/cfg/alsa/asoundrc (run undertone
#                         with XDG_CONFIG_HOME=$work/cfg)
# The exit trap stops $ut_pid (the script's undertone, when it sets one) and PulseAudio.
# Needs: pulseaudio, libasound2-plugins (tools/setup.sh installs them).

soak_cleanup() {
  [ -n "${ut_pid:-}" ] && kill "$ut_pid" 2>/dev/null || true
  [ -n "${pa_pid:-}" ] && kill "$pa_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "${work:-}" ] && rm -rf "$work"
}

soak_workdir() {
  [ -x "$BIN" ] || (cd "$root" && cargo build --release -p undertone)
  work=$(mktemp -d "/tmp/undertone-$1.XXXXXX")
  trap soak_cleanup EXIT
  cp "$BIN" "$work/undertone"
}

soak_pulse() {
  local pcm=$1
  mkdir -p "$work/run" "$work/cfg/alsa"
  chmod 700 "$work/run"
  # norewinds=1: see ../shared/RECIPES.md.
  cat > "$work/pa.conf" <<PA
load-module module-null-sink sink_name=nullsink rate=48000 channels=2 norewinds=1
load-module module-native-protocol-unix auth-anonymous=1 socket=$work/native
PA
  # --realtime/--high-priority: on a shared, loaded machine a starved PulseAudio catches up in
  # bursts and drains its clients' buffers faster than real time (an underrun that is the test
  # rig's, not ours); a sound card's DMA has no such problem. Ignored where not allowed.
  XDG_RUNTIME_DIR=$work/run HOME=$work pulseaudio -n -F "$work/pa.conf" --exit-idle-time=-1 \
    --daemonize=no --log-target=stderr --realtime=yes --high-priority=yes 2>"$work/pa.log" &
  pa_pid=$!
  for _ in $(seq 200); do [ -S "$work/native" ] && break; sleep 0.05; done
  # PulseAudio forwards client audio from its main thread, which --realtime leaves at normal
  # priority; under other load it then falls behind by more than the device buffer. Make all
  # its threads real-time too (a sound card needs none of this).
  chrt -a -f -p 30 "$pa_pid" >/dev/null 2>&1 ||
    echo "$(basename "$0"): cannot make PulseAudio real-time; underruns may be the rig's" >&2
  echo "pcm.$pcm { type pulse device \"nullsink\" server \"unix:$work/native\" handle_underrun true }" \
    > "$work/cfg/alsa/asoundrc"
}
