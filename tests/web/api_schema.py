"""Schemathesis against the box's /api/openapi.json, on a real `undertone run`.

* Without a session, every documented operation answers 401, whatever the input.
* With a session (and its CSRF token), no generated input makes a 5xx.

Two operations are left out of the session run, on purpose: `/api/events` is an endless
event stream (tested in the Rust tests), and `/api/system/restart` ends the process by
design. Both are in the 401 run.

Run: `.venv/bin/python tests/web/api_schema.py` after `cargo build -p undertone`
(UNDERTONE_BIN overrides the binary). A plain script over schemathesis's strategies (one
Hypothesis run per operation): its pytest plugin does not load under pytest 9.
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import contextlib
import sys

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("UNDERTONE_BIN", Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug/undertone"))
# Examples per operation: enough to reach every branch of a small handler, small enough for CI.
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "40"))
# Bounds for starting external processes on a loaded machine; the waits end as soon as ready.
START_TIMEOUT_S = 60
SKIP_WITH_SESSION = {"/api/events", "/api/system/restart"}
PASSWORD = "schema-pass-2024"


@schemathesis.serializer("application/toml")
def toml_text(ctx, value):
    # The restore body is config text: send generated strings as they are.
    return value if isinstance(value, bytes) else str(value).encode()


def wait_for(cond, what, timeout=START_TIMEOUT_S):
    t0 = time.monotonic()
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def box():
    tmp = Path(tempfile.mkdtemp(prefix="undertone-schema-"))
    procs = []
    try:
        pulse_dir = tmp / "pulse"
        (pulse_dir / "run").mkdir(parents=True)
        sock = pulse_dir / "native"
        conf = pulse_dir / "pa.conf"
        conf.write_text(
            "load-module module-null-sink sink_name=nullsink rate=48000 channels=2 norewinds=1\n"
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={sock}\n"
        )
        env = dict(os.environ, XDG_RUNTIME_DIR=str(pulse_dir / "run"), HOME=str(pulse_dir))
        procs.append(subprocess.Popen(
            ["pulseaudio", "-n", "-F", str(conf), "--exit-idle-time=-1", "--daemonize=no"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(sock.exists, "pulseaudio")
        xdg = tmp / "xdg"
        (xdg / "alsa").mkdir(parents=True)
        (xdg / "alsa/asoundrc").write_text(
            'pcm.utpulse {\n @args [ SERVER ]\n @args.SERVER { type string }\n type pulse\n'
            ' device "nullsink"\n server $SERVER\n handle_underrun true\n}\n')
        clip = tmp / "trailer3.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-stream_loop", "5", "-i",
                        str(ROOT / "testdata/clips/trailer_bbb.mp4"), "-c", "copy", "-y", str(clip)],
                       check=True)
        data = tmp / "data"
        cfg = tmp / "config.toml"
        cfg.write_text(
            f"source = 'file:{clip}'\nrealtime = true\n"
            f"audio_device = 'utpulse:SERVER=\"unix:{sock}\"'\nlisten = \"127.0.0.1:0\"\n"
            f"[web]\ndata_dir = '{data}'\n")
        log = tmp / "undertone.log"
        with open(log, "wb") as out:
            p = subprocess.Popen([str(BIN), "run", "--config", str(cfg)],
                                 env=dict(os.environ, XDG_CONFIG_HOME=str(xdg), RUST_LOG="info"),
                                 stdout=subprocess.DEVNULL, stderr=out)
        procs.append(p)

        def url():
            assert p.poll() is None, log.read_text()
            m = re.search(r"on http://([0-9.:]+)/metrics", log.read_text())
            return m and f"http://{m.group(1)}"

        base = wait_for(url, "the web server")
        code = (data / "setup-code.txt").read_text().strip()
        r = requests.post(f"{base}/auth/setup", json={"code": code, "password": PASSWORD}, timeout=30)
        r.raise_for_status()
        token = r.cookies["ut_session"]
        yield {"url": base, "cookie": f"ut_session={token}", "csrf": r.json()["csrf"], "proc": p, "log": log}
        assert p.poll() is None, "undertone died during the run:\n" + log.read_text()[-4000:]
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
        if not os.environ.get("KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    failures = []
    with box() as b:
        schema = schemathesis.openapi.from_url(f"{b['url']}/api/openapi.json")
        ops = [r.ok() for r in schema.get_all_operations()]
        for op in ops:
            label = f"{op.method.upper()} {op.path}"

            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy())
            def without_session(case):
                # No cookie, whatever else is generated: the gate answers before the handler.
                headers = {k: v for k, v in (case.headers or {}).items()
                           if k.lower() not in ("cookie", "x-csrf-token")}
                case.headers = headers
                case.cookies = {}
                r = case.call(timeout=30)
                assert r.status_code == 401, f"{label}: {r.status_code}"

            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy())
            def with_session(case):
                headers = dict(case.headers or {})
                headers["Cookie"] = b["cookie"]
                headers["X-CSRF-Token"] = b["csrf"]
                r = case.call(headers=headers, timeout=60)
                assert r.status_code < 500, f"{label}: {r.status_code} {r.text[:500]}"

            for name, fn in [("no session → 401", without_session), ("session → no 5xx", with_session)]:
                if fn is with_session and op.path in SKIP_WITH_SESSION:
                    print(f"skip  {label}: {name} (endless stream / ends the process by design)")
                    continue
                try:
                    fn()
                    print(f"ok    {label}: {name}")
                except AssertionError as e:
                    failures.append(f"{label}: {name}: {e}")
                    print(f"FAIL  {label}: {name}: {e}")
        print(f"{len(ops)} operations, {EXAMPLES} examples each, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
