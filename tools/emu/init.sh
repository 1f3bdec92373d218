#!/bin/busybox sh
# /init of the board VM (tools/emu/): mounts the basics, loads the real drivers (vivid
# camera, virtio-sound card, ALSA loopback), runs the firmware as the box would, and copies
# its report, log and device listings to the host over the 9p share, then powers off.
# Parameters come from the kernel command line: ut.mode=music|play ut.duration=SECONDS
# ut.extra="..." (more `undertone run` flags, with ~ for spaces).
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin LD_LIBRARY_PATH=/lib HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mkdir -p /dev/pts /out
mode=music; duration=20; extra=""; bench=0
for a in $(cat /proc/cmdline); do
  case "$a" in
    ut.mode=*) mode=${a#ut.mode=} ;;
    ut.duration=*) duration=${a#ut.duration=} ;;
    ut.extra=*) extra=$(echo "${a#ut.extra=}" | tr '~' ' ') ;;
    ut.bench=*) bench=${a#ut.bench=} ;;
  esac
done
modprobe 9pnet_virtio && modprobe 9p && mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /out \
  || { echo "init: cannot mount the 9p share"; poweroff -f; }
log() { echo "init: $*" | tee -a /out/init.log; }
log "kernel $(uname -r), mode $mode, ${duration}s"
# vivid: one instance, a webcam-like capture node at /dev/video0.
modprobe vivid n_devs=1 node_types=0x1 input_types=0x0 || log "modprobe vivid failed"
modprobe snd-aloop || log "modprobe snd-aloop failed"
# virtio_snd fails a PCM call with EIO when the device has not answered a control message
# within msg_timeout_ms (1 s by default); QEMU's emulated device on a busy host can take
# longer, which a real codec never does. 10 s keeps that artefact out of the test.
modprobe virtio_snd msg_timeout_ms=10000 || log "modprobe virtio_snd failed"
i=0; while [ ! -e /dev/video0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
ls -l /dev/video* /dev/snd/ > /out/devices.txt 2>&1
cat /proc/asound/cards > /out/asound_cards.txt 2>&1
cat /proc/asound/pcm > /out/asound_pcm.txt 2>&1
ls /dev/gpiochip* >> /out/devices.txt 2>&1
card=$(sed -n 's/^ *[0-9]* \[\([^ ]*\) *\]: virtio-snd.*/\1/p' /proc/asound/cards | head -1)
log "virtio-snd card: ${card:-none}"
export UNDERTONE_DATA=/usr/share/undertone RUST_LOG=info
if [ "$bench" = 1 ]; then
  log "bench: compose and analyze"
  ( cd /tmp && /usr/bin/undertone compose --bars 32 --seed 1 -o /tmp/b.mid ) > /out/bench_compose.txt 2>&1
  ( cd /tmp && /usr/bin/undertone analyze /usr/share/undertone/bench.mp4 --json /tmp/a.json ) > /out/bench_analyze.txt 2>&1
fi
set -- run --source v4l2:/dev/video0 --audio-device "plughw:CARD=${card:-SoundCard},DEV=0" \
  --duration "$duration" --report /out/report.json --listen 127.0.0.1:0
[ "$mode" = play ] && set -- "$@" --play /usr/share/undertone/play.wav
log "undertone $* $extra"
start=$(cut -d' ' -f1 /proc/uptime)
/usr/bin/undertone "$@" $extra > /out/undertone.log 2>&1
echo $? > /out/rc
end=$(cut -d' ' -f1 /proc/uptime)
# The kernel's side of the run (virtio_snd's timeouts, ALSA's "DMA or IRQ trouble").
dmesg > /out/dmesg.txt 2>&1
log "undertone exited $(cat /out/rc) after $start..$end s uptime"
sync
umount /out
poweroff -f
