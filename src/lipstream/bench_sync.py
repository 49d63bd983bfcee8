"""``lipstream bench sync``: the browser console's A/V sync, per source, in headless Chromium.

The console plays speech from each source (say-text, an audio file, the microphone fed from a
speech file) through the running system, as a user would, and reports what its playback clock
recorded: per 40 ms frame time, whether its own mouth was painted on time, the previous mouth
held (its frame came late) or none; and the A/V offset of every paint (audio heard minus the
middle of the shown frame's 40 ms). Late frames are delivery (how fast the machine makes and
decodes them), the offset of on-time paints is the console's clock. Without ``--url`` it starts
``lipstream serve`` on free ports. Needs Playwright for Python and a Chromium (Debian's).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lipstream.audio.files import read_audio_file, write_wav
from lipstream.audio.pcm import AudioChunk
from lipstream.bench_serve import ServeProcess
from lipstream.errors import InvalidInput, LipstreamError

DEFAULT_SPEECH = Path(
    "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"
)
DEFAULT_TEXT = (
    "The quick brown fox jumps over the lazy dog, and then it runs away into the woods. "
    "It comes back the next morning, hungry and tired, and sleeps until noon."
)
SOURCES = ("text", "file", "mic")
# What Chromium needs here: no sandbox as root, no network of its own, media without prompts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
_READY_JS = "s => s.modelReady && s.drawn && s.connections.frameGenerator === 'open'"


def write_capture(speech: Path, folder: Path) -> Path:
    """The fake microphone's recording: ``speech`` at 48 kHz, then a second of silence."""
    audio = read_audio_file(speech, 48000)
    path = folder / "capture.wav"
    write_wav(path, AudioChunk(np.concatenate([audio.samples, np.zeros(48000, np.int16)]), 48000))
    return path


def _wait(page, condition: str, timeout_s: float) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            f"window.lipstream && ({condition})(window.lipstream.state())",
            timeout=timeout_s * 1000,
            polling=50,
        )
    except PlaywrightTimeout:
        state = page.evaluate("window.lipstream ? window.lipstream.state() : null")
        raise LipstreamError(
            f"the console did not reach {condition!r} within {timeout_s:.0f} s; its state: {state}"
        ) from None


def play(page, source: str, capture: Path, text: str, seconds: float) -> None:
    """Play ``source`` once in the loaded console and wait until it has been heard."""
    if source == "text":
        page.click("#tab-text")
        page.fill("#say-text", text)
        page.click("#say")
        _wait(page, "s => s.sources.text.state === 'live'", 60)
        _wait(page, "s => s.sources.text.state !== 'live' && !s.playing", 120)
    elif source == "file":
        page.click("#tab-file")
        page.set_input_files("#file-input", str(capture))
        page.click("#file-play")
        _wait(page, "s => s.sources.file.state === 'live'", 60)
        _wait(page, "s => s.sources.file.state !== 'live' && !s.playing", 120)
    else:
        page.click("#tab-mic")
        page.click("#mic-start")
        _wait(page, "s => s.sources.mic.state === 'live'", 30)
        page.wait_for_timeout(seconds * 1000)
        page.click("#mic-stop")
        _wait(page, "s => !s.playing && !s.mouthVisible", 30)


def choose_model(page, model: str) -> None:
    """Pick ``model`` in the console's dropdown and wait until both sides use it."""
    names = page.eval_on_selector_all("#model-select option", "os => os.map(o => o.value)")
    if model not in names:
        raise InvalidInput(f"--model {model!r} is not served; the console offers {names}")
    page.select_option("#model-select", model)
    name = json.dumps(model)
    _wait(page, f"s => s.serverModel === {name} && s.model === {name}", 60)


def measure(
    browser,
    url: str,
    source: str,
    capture: Path,
    text: str,
    seconds: float,
    model: str | None = None,
) -> dict:
    """One fresh tab, one source played (on ``model``, or the console's first): the console's
    sync figures."""
    context = browser.new_context(viewport={"width": 1360, "height": 860})
    try:
        context.grant_permissions(["microphone"])
        page = context.new_page()
        page.goto(url)
        _wait(page, _READY_JS, 60)
        if model:
            choose_model(page, model)
        play(page, source, capture, text, seconds)
        stats = page.evaluate("window.lipstream.stats()")
    finally:
        context.close()
    sync = stats["sync"]
    slots = sync["slots"]
    server = stats.get("server") or {}
    return {
        "model": server.get("current_model"),
        "source": source,
        "frame_times": slots["total"],
        "on_time": slots["onTime"],
        "held": slots["held"],
        "no_mouth": slots["noMouth"],
        "late_share": sync["lateShare"],
        "on_time_offset": sync["offsets"]["onTime"],
        "held_offset": sync["offsets"]["held"],
        "playback_delay_ms": stats["playbackDelayMs"],
        "server_latency_p95_ms": (server.get("latency_ms") or {}).get("p95"),
    }


def _ms(value: Any) -> str:
    return "–" if value is None else f"{value:.0f}"


def format_table(rows: list[dict]) -> str:
    lines = [
        "| model | source | frame times | on time | held | no mouth "
        "| on-time offset p50 / p95 / max | held offset p95 | audio delay | server latency p95 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        n = max(r["frame_times"], 1)
        on, held = r["on_time_offset"], r["held_offset"]
        worst = None if on["min"] is None else max(abs(on["min"]), abs(on["max"]))
        lines.append(
            f"| {r['model']} | {r['source']} | {r['frame_times']} | "
            f"{100 * r['on_time'] / n:.1f}% | "
            f"{100 * r['held'] / n:.1f}% | {100 * r['no_mouth'] / n:.1f}% | "
            f"{_ms(on['p50'])} / {_ms(on['p95'])} / {_ms(worst)} ms | {_ms(held['p95'])} ms | "
            f"{_ms(r['playback_delay_ms'])} ms | {_ms(r['server_latency_p95_ms'])} ms |"
        )
    return "\n".join(lines)


def run_sync(args) -> list[dict]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise LipstreamError(
            "bench sync drives a browser with Playwright: pip install playwright "
            "(no browser download: it uses --chromium)"
        ) from None
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    bad = [s for s in sources if s not in SOURCES]
    if bad or not sources:
        raise InvalidInput(f"--sources takes {','.join(SOURCES)}, got {args.sources!r}")
    if not args.chromium.is_file():
        raise InvalidInput(f"Chromium not found at {args.chromium} (apt-get install chromium)")
    if not args.speech.is_file():
        raise InvalidInput(f"speech file {args.speech} not found (pocketsphinx-testdata ships one)")
    if args.repeat < 1:
        raise InvalidInput("--repeat needs at least 1")
    server = None if args.url else ServeProcess(args.models_dir)
    rows: list[dict] = []
    try:
        url = args.url or server.console_url  # type: ignore[union-attr]
        with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
            capture = write_capture(args.speech, Path(folder))
            seconds = read_audio_file(args.speech, 16000).duration
            browser = playwright.chromium.launch(
                executable_path=str(args.chromium),
                headless=True,
                args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={capture}"],
            )
            try:
                print(format_table([]), flush=True)
                for _ in range(args.repeat):
                    for source in sources:
                        row = measure(browser, url, source, capture, args.text, seconds, args.model)
                        rows.append(row)
                        print(format_table([row]).splitlines()[-1], flush=True)
            finally:
                browser.close()
    finally:
        if server:
            server.stop()
    return rows


def register_sync(sub) -> None:
    """Add ``bench sync`` to the ``bench`` command's subcommands."""
    p = sub.add_parser("sync", help="the console's A/V sync per audio source, in Chromium")
    p.add_argument("--url", help="the console of a running system (default: start one)")
    p.add_argument("--models-dir", type=Path, default=Path("models"), help="with no --url")
    p.add_argument("--sources", default=",".join(SOURCES), help="from text,file,mic (all)")
    p.add_argument("--model", help="the model every play uses (default: the console's first)")
    p.add_argument("--repeat", type=int, default=3, help="plays of each source (default 3)")
    p.add_argument("--speech", type=Path, default=DEFAULT_SPEECH, help="for file and mic")
    p.add_argument("--text", default=DEFAULT_TEXT, help="what say-text says")
    p.add_argument("--chromium", type=Path, default=Path("/usr/bin/chromium"))
    p.set_defaults(func=lambda args: run_sync(args) and 0)
