#!/usr/bin/env bash
# Boots the board VM once (tools/emu/work/vmlinuz + initramfs.cpio from build-initramfs.sh):
# QEMU's `virt` board with a Cortex-A53 (TCG), virtio-sound whose playback lands in
# OUT/music.wav on the host, and OUT shared over 9p for the report and logs.
#
#   tools/emu/run-vm.sh OUT [music|play] [SECONDS] [EXTRA_KERNEL_ARGS...]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$root/tools/emu/work
out=$(mkdir -p "$1" && cd "$1" && pwd)
mode=${2:-music}
secs=${3:-20}
shift $(( $# < 3 ? $# : 3 ))
# Boot (≈ 10–15 s under TCG), module loading and the firmware's start-up (model loading
# under emulation) come on top of the run; the guest powers itself off when done.
BOOT_ALLOWANCE_S=${BOOT_ALLOWANCE_S:-240}
# QEMU's audio timer drains virtio-sound's buffers into the WAV every AUDIO_TIMER_US. At the
# default 10 ms, a host too busy to run it on time drains a burst after the delay, and the
# guest's ALSA buffer runs dry: a guest underrun that a real codec, clocked by its own
# crystal, would not see. 2 ms keeps the drain smooth. (The buffer itself is the qemu-virt
# board profile's: 6 periods of 2048 frames, 256 ms.)
AUDIO_TIMER_US=${AUDIO_TIMER_US:-2000}
rm -f "$out"/{music.wav,report.json,undertone.log,rc,init.log,devices.txt,asound_*.txt,console.log,dmesg.txt,host_cpu.json}
set +e
timeout $((secs + BOOT_ALLOWANCE_S)) qemu-system-aarch64 \
  -M virt,acpi=off -cpu cortex-a53 -smp 2 -m 2048 -name undertone-vm,debug-threads=on \
  -nographic -no-reboot -nic none \
  -kernel "$work/vmlinuz" -initrd "$work/initramfs.cpio" \
  -append "console=ttyAMA0 panic=-1 quiet ut.mode=$mode ut.duration=$secs $*" \
  -device virtio-sound-pci,audiodev=snd0,streams=1 \
  -audiodev wav,id=snd0,path="$out/music.wav",timer-period=$AUDIO_TIMER_US,out.frequency=48000,out.channels=2,out.format=s16 \
  -virtfs local,path="$out",mount_tag=out,security_model=none,id=out \
  -monitor unix:"$out/monitor.sock",server,nowait \
  > "$out/console.log" 2>&1 &
vm=$!
# The vCPU threads ("CPU 0/TCG", "CPU 1/TCG" with debug-threads=on) exist once the
# machine is built, well before the guest kernel runs.
vcpus=()
qemu=""
for _ in $(seq 50); do
  qemu=$(pgrep -P "$vm" -x qemu-system-aar || true)
  if [ -n "$qemu" ]; then
    for t in /proc/"$qemu"/task/*; do
      case "$(cat "$t/comm" 2>/dev/null)" in
        "CPU "*"/TCG") vcpus+=("${t##*/}") ;;
      esac
    done
    [ ${#vcpus[@]} -gt 0 ] && break
  fi
  sleep 0.1
done
# How much host CPU the emulated CPUs got: each vCPU thread's time on a host core and its
# time runnable but waiting for one (/proc schedstat, ns), sampled until QEMU exits. A guest
# whose vCPUs wait a large share of the time runs slower than the board it emulates, in
# bursts; check.py prints the share next to the underruns.
stats=""
while [ -n "$qemu" ] && kill -0 "$qemu" 2>/dev/null; do
  s=""
  for tid in "${vcpus[@]}"; do s+="$(cat /proc/"$qemu"/task/"$tid"/schedstat 2>/dev/null | cut -d' ' -f1,2);"; done
  case "$s" in *[0-9]*) stats=$s ;; esac
  sleep 1
done
wait $vm
rc=$?
printf '{"vcpu_schedstat_ns": "%s", "host_cpus": %s, "loadavg": "%s"}\n' \
  "$stats" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" > "$out/host_cpu.json"
set -e
if [ $rc = 124 ]; then
  echo "emu: the VM did not power off within $((secs + BOOT_ALLOWANCE_S)) s; see $out/console.log" >&2
  exit 1
fi
echo "emu: VM exited ($rc); firmware exit status $(cat "$out/rc" 2>/dev/null || echo missing)"
