//! The ALSA sink through real alsa-lib, without a sound card:
//! - ALSA's `file` PCM (consumes instantly) checks that exactly the samples pushed come out;
//! - a *paced* PCM, PulseAudio's null sink through the ALSA `pulse` plugin, checks real-time
//!   behaviour: pacing, an underrun counted and recovered, a server that dies and returns.
//!
//! Each paced test starts its own PulseAudio (`live_pulse.rs`) and stops it. Timing is asserted only where timing is
//! the behaviour under test, with bounds generous enough for a loaded 2-core machine.

mod live_pulse;

use std::path::Path;
use std::time::{Duration, Instant};

use live_pulse::{setup, Pulse};

use undertone::live::device::DeviceState;
use undertone::sink::alsa::{AlsaOptions, HwBuffer, BUFFER_PERIODS, PERIOD_FRAMES};
use undertone::sink::{AlsaSink, Sink};

const RATE: usize = 48_000;

/// Frames whose samples encode their index (exact in 16 bits): left = k, right = -k.
fn ramp(start: usize, frames: usize) -> Vec<f32> {
    (start..start + frames)
        .flat_map(|i| {
            let k = (i % 20_000) as f32 - 10_000.0;
            [k / 32767.0, -k / 32767.0]
        })
        .collect()
}

fn to_i16(v: &[f32]) -> Vec<i16> {
    v.iter().map(|&x| (x * 32767.0).round() as i16).collect()
}

fn read_wav(path: &Path) -> Vec<i16> {
    let mut r = hound::WavReader::open(path).unwrap();
    assert_eq!(r.spec().sample_rate, 48_000);
    assert_eq!(r.spec().channels, 2);
    assert_eq!(r.spec().bits_per_sample, 16);
    r.samples::<i16>().map(|s| s.unwrap()).collect()
}

fn opts() -> AlsaOptions {
    AlsaOptions {
        ring_frames: RATE,
        // Tests run unprivileged in CI; the warning path is what they exercise.
        realtime: true,
    }
}

#[test]
fn file_pcm_gets_exactly_the_samples_pushed() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.wav");
    let mut sink =
        AlsaSink::start(&format!("file:FILE={},FORMAT=wav", out.display()), opts()).unwrap();
    let status = sink.status();
    // 3 s through a 1 s ring, in uneven chunks that do not align with periods.
    let total = 3 * RATE + 123;
    let all = ramp(0, total);
    for chunk in all.chunks(2 * 7_777) {
        sink.write(chunk).unwrap();
    }
    sink.stop().unwrap();
    let st = status.snapshot();
    assert_eq!(st.ring_frames, total as u64);
    assert_eq!(
        st.position, total as u64,
        "the clock counts every frame played"
    );
    assert_eq!(st.underruns, 0);
    assert_eq!(st.reopens, 0);
    assert!(status.is_finished());
    assert_eq!(
        read_wav(&out),
        to_i16(&all),
        "exactly the samples pushed, in order"
    );
    assert!(
        sink.write(&[0.0, 0.0]).is_err(),
        "a stopped sink refuses audio"
    );
}

/// The board VM's profile (`qemu-virt`): 6 periods of 2048 frames.
const VM_BUFFER: HwBuffer = HwBuffer {
    period_frames: 2048,
    periods: 6,
};

#[test]
fn file_pcm_with_a_board_buffer_gets_exactly_the_samples_pushed() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.wav");
    let mut sink = AlsaSink::start_with_buffer(
        &format!("file:FILE={},FORMAT=wav", out.display()),
        opts(),
        VM_BUFFER,
    )
    .unwrap();
    let status = sink.status();
    let total = 2 * RATE + 321;
    let all = ramp(0, total);
    for chunk in all.chunks(2 * 5_000) {
        sink.write(chunk).unwrap();
    }
    sink.stop().unwrap();
    let st = status.snapshot();
    // The file PCM (over ALSA's null PCM) takes any size: it gave what the board asked.
    assert_eq!(
        (st.period_frames, st.buffer_frames),
        (2048, 12_288),
        "{st:?}"
    );
    assert_eq!(st.position, total as u64);
    assert_eq!((st.underruns, st.stalls, st.reopens), (0, 0, 0), "{st:?}");
    assert_eq!(read_wav(&out), to_i16(&all), "exactly the samples pushed");
}

#[test]
fn a_buffer_that_cannot_play_names_the_profile_keys() {
    setup();
    let e = AlsaSink::start_with_buffer(
        "null",
        opts(),
        HwBuffer {
            period_frames: 1024,
            periods: 1,
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("1 periods of 1024 frames") && e.contains("`audio_periods`"),
        "{e}"
    );
}

#[test]
fn unknown_pcm_is_a_clear_error() {
    setup();
    let e = AlsaSink::start("no_such_pcm_anywhere", opts())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("no_such_pcm_anywhere") && e.contains("aplay -L"),
        "{e}"
    );
}

#[test]
fn paced_pcm_plays_in_real_time_without_underruns() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let pulse = Pulse::start(dir.path());
    let rec = dir.path().join("rec.wav");
    let mut sink = AlsaSink::start(&pulse.paced(&rec), opts()).unwrap();
    let status = sink.status();
    let seconds = 2.0;
    let total = (seconds * RATE as f64) as usize;
    let all = ramp(0, total);
    let t0 = Instant::now();
    // Pushed in 20 ms pieces, like an engine rendering ahead; write blocks while the ring is full.
    for chunk in all.chunks(2 * 960) {
        sink.write(chunk).unwrap();
    }
    let mut max_headroom = 0u64;
    // The ring (1 s) holds the last second; watch the clock advance while it plays out.
    while !status.is_finished() && t0.elapsed() < Duration::from_secs(10) {
        max_headroom = max_headroom.max(sink.headroom_frames());
        if sink.queued_samples() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(status.state(), DeviceState::Running);
    sink.stop().unwrap();
    let wall = t0.elapsed().as_secs_f64();
    let st = status.snapshot();
    // Real time: 2 s of audio takes about 2 s (never much less: it is paced; a loaded
    // machine may add a little, never seconds).
    assert!(
        wall >= seconds * 0.9 && wall <= seconds + 2.0,
        "2 s of audio took {wall:.2} s"
    );
    assert_eq!(st.underruns, 0, "{st:?}");
    assert_eq!(st.ring_frames, total as u64);
    assert!(
        max_headroom > PERIOD_FRAMES as u64,
        "headroom {max_headroom} frames"
    );
    assert_eq!(read_wav(&rec), to_i16(&all));
}

#[test]
fn paced_pcm_queues_the_board_buffer_without_underruns() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let pulse = Pulse::start(dir.path());
    let rec = dir.path().join("rec.wav");
    let mut sink = AlsaSink::start_with_buffer(&pulse.paced(&rec), opts(), VM_BUFFER).unwrap();
    let status = sink.status();
    let total = 2 * RATE;
    let all = ramp(0, total);
    let mut max_delay = 0u64;
    for chunk in all.chunks(2 * 960) {
        sink.write(chunk).unwrap();
        max_delay = max_delay.max(status.snapshot().delay_frames);
    }
    let t0 = Instant::now();
    while sink.queued_samples() > 0 && t0.elapsed() < Duration::from_secs(10) {
        max_delay = max_delay.max(status.snapshot().delay_frames);
        std::thread::sleep(Duration::from_millis(5));
    }
    sink.stop().unwrap();
    let st = status.snapshot();
    let default_buffer = (PERIOD_FRAMES * BUFFER_PERIODS) as u64;
    // The pulse plugin may round the sizes; what matters is that the device holds more
    // than the default buffer, and the thread keeps it that full.
    assert!(st.buffer_frames > default_buffer, "{st:?}");
    assert!(
        max_delay > default_buffer,
        "at most {max_delay} frames queued in a {}-frame buffer",
        st.buffer_frames
    );
    assert_eq!((st.underruns, st.stalls, st.reopens), (0, 0, 0), "{st:?}");
    assert_eq!(read_wav(&rec), to_i16(&all));
}

#[test]
fn starved_ring_counts_the_underrun_and_playback_recovers() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let pulse = Pulse::start(dir.path());
    let rec = dir.path().join("rec.wav");
    let mut sink = AlsaSink::start(&pulse.paced(&rec), opts()).unwrap();
    let status = sink.status();
    let first = ramp(0, RATE / 2);
    sink.write(&first).unwrap();
    // Starve: push nothing until the device has played everything and then some.
    let t0 = Instant::now();
    while status.snapshot().starved == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "never starved: {:?}",
            status.snapshot()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    let second = ramp(RATE / 2, RATE / 2);
    sink.write(&second).unwrap();
    let t1 = Instant::now();
    while status.snapshot().ring_frames < RATE as u64 {
        assert!(
            t1.elapsed() < Duration::from_secs(10),
            "did not resume: {:?}",
            status.snapshot()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mid = status.snapshot();
    sink.stop().unwrap();
    let st = status.snapshot();
    assert!(st.starved >= 1, "{st:?}");
    assert!(st.underruns >= 1, "the device ran dry: counted ({st:?})");
    assert_eq!(
        mid.state,
        DeviceState::Running,
        "recovered, still running: {mid:?}"
    );
    assert_eq!(
        st.reopens, 0,
        "an underrun is recovered in place, not by reopening"
    );
    // Everything pushed was played, in order (the gap is silence the device made, not ours).
    let mut want = first.clone();
    want.extend_from_slice(&second);
    assert_eq!(read_wav(&rec), to_i16(&want));
}

#[test]
fn lost_audio_server_is_reopened_and_the_engine_never_blocks() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let mut pulse = Pulse::start(dir.path());
    let mut sink = AlsaSink::start(&pulse.pcm(), opts()).unwrap();
    let status = sink.status();
    let chunk = ramp(0, RATE / 50);
    let t0 = Instant::now();
    let mut phase = 0;
    let mut saw_missing = false;
    let mut pos_at_kill = 0;
    // Play 20 ms chunks for a while; kill the server at 1 s, restart it at 2.5 s.
    while t0.elapsed() < Duration::from_secs(12) {
        let w = Instant::now();
        sink.write(&chunk)
            .expect("write must not fail while the device is away");
        assert!(
            w.elapsed() < Duration::from_secs(3),
            "write blocked {:?}",
            w.elapsed()
        );
        let t = t0.elapsed().as_secs_f64();
        if phase == 0 && t > 1.0 {
            pos_at_kill = status.position();
            pulse.kill();
            phase = 1;
        } else if phase == 1 && t > 2.5 {
            saw_missing = status.state() == DeviceState::Missing;
            assert!(
                status.position() > pos_at_kill,
                "the clock runs on while the device is away"
            );
            pulse.restart();
            phase = 2;
        } else if phase == 2
            && status.snapshot().reopens >= 1
            && status.state() == DeviceState::Running
        {
            break;
        }
    }
    let st = status.snapshot();
    sink.stop().unwrap();
    assert!(saw_missing, "state while the server was gone: {st:?}");
    assert!(st.reopens >= 1, "{st:?}");
    assert_eq!(st.state, DeviceState::Running, "{st:?}");
    assert!(st.discarded_frames > 0, "{st:?}");
    assert_ne!(st.last_errno, 0);
}
