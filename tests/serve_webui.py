#!/usr/bin/env python3
"""Drives lmforge serve's chat page (GET /) in headless Chromium through Selenium.

It loads the page, waits for the model's name (GET /v1/models), sends a message with Enter and waits for the
streamed reply: non-empty, in more than one SSE chunk, and seen in the page at more than one length while it grew.
A second turn (typed with Shift+Enter, with HTML-looking text) must carry the whole conversation and be shown as
text. Then the screenshot. Then a long generation is stopped with the Stop button: the reply is marked stopped and
does not grow afterwards, and the server still answers the next message. With --api-key the server is expected to
require that key: the page must first show the server's error, then work once the key is typed in.

Usage: serve_webui.py URL SCREENSHOT.png [--api-key KEY] [--timeout SECONDS]
Needs the Debian packages chromium, chromium-driver and python3-selenium. Exits 0 on success, 1 on a failure.
"""
import argparse
import os
import shutil
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

SYSTEM = "You are a helpful assistant. Answer briefly."
TURN1 = "What is the capital of France?"
TURN2 = ("Name a famous museum there.", "Keep it short.")  # joined by Shift+Enter: a newline
LONG = "Write a very long story about a dragon who learns to bake bread."
LAST = "Thanks! <b>That</b> & <i>more"  # must show as typed, not as HTML

# Records the text length of the newest assistant message at every batch of DOM changes the page makes.
RECORD_LENGTHS = """
window.__lens = [];
new MutationObserver(() => {
  const m = [...document.querySelectorAll('#messages .msg.assistant')].pop();
  if (m) window.__lens.push(m.querySelector('.text').textContent.length);
}).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
"""
LAST_ASSISTANT = "return [...document.querySelectorAll('#messages .msg.assistant')].pop() || null;"


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def find_binary(*names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    raise Failure("none of %s found (apt-get install chromium chromium-driver)" % ", ".join(names))


def start_browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = find_binary("chromium", "chromium-browser")
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1000,700", "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(find_binary("chromedriver")), options=opts)
    # --window-size counts the window's frame: grow it so that the page itself (and the screenshot) is 1000x700
    w, h = driver.execute_script("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]")
    driver.set_window_size(1000 + w, 700 + h)
    return driver


class Page:
    def __init__(self, driver, timeout):
        self.d = driver
        self.timeout = timeout

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def el(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def wait(self, cond, what, timeout=None):
        try:
            return WebDriverWait(self.d, timeout or self.timeout, poll_frequency=0.05).until(lambda d: cond())
        except TimeoutException:
            raise Failure("timed out waiting for " + what) from None

    def set_field(self, css, value):
        """Types into a settings field and fires its change event (which the page saves to localStorage)."""
        f = self.el(css)
        f.clear()
        f.send_keys(value)
        self.js("arguments[0].dispatchEvent(new Event('change'))", f)

    def model_text(self):
        return self.el("#model").text

    def wait_model(self):
        return self.wait(lambda: self.model_text() != "model: …" and self.model_text(), "GET /v1/models")

    def n_assistant(self):
        return self.js("return document.querySelectorAll('#messages .msg.assistant').length")

    def last(self):
        return self.js(LAST_ASSISTANT)

    def reply(self):
        """(text, meta line, data attributes) of the newest assistant message."""
        return self.js("""const m = [...document.querySelectorAll('#messages .msg.assistant')].pop();
            return [m.querySelector('.text').textContent, (m.querySelector('.meta') || {}).textContent || '',
                    Object.assign({}, m.dataset)];""")

    def send(self, text, key_enter=True):
        """Types a message (a tuple: lines joined by Shift+Enter) and sends it with Enter or the Send button."""
        n = self.n_assistant()
        box = self.el("#input")
        lines = text if isinstance(text, tuple) else (text,)
        for i, line in enumerate(lines):
            if i:
                box.send_keys(Keys.SHIFT, Keys.ENTER)  # selenium releases the modifier at the end of the call
            box.send_keys(line)
        if key_enter:
            box.send_keys(Keys.ENTER)
        else:
            self.el("#send").click()
        self.wait(lambda: self.n_assistant() == n + 1, "the assistant message to appear", 5)

    def wait_done(self):
        t0 = time.monotonic()
        self.wait(lambda: self.js(LAST_ASSISTANT + "").get_attribute("data-done") == "1", "the reply to finish")
        return time.monotonic() - t0


def server_gauge(url, api_key, name):
    """A gauge's value from the server's Prometheus /metrics, None when there is no such endpoint or gauge."""
    req = urllib.request.Request(url.rstrip("/") + "/metrics")
    if api_key:
        req.add_header("Authorization", "Bearer " + api_key)
    try:
        with urllib.request.urlopen(req, timeout=5) as res:
            for line in res.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except (urllib.error.URLError, OSError, ValueError):
        pass
    return None


def run(url, shot, api_key, timeout):
    t_start = time.monotonic()
    driver = start_browser()
    p = Page(driver, timeout)
    try:
        driver.get(url.rstrip("/") + "/")
        check(driver.title == "lmforge chat", "page title %r" % driver.title)
        p.wait_model()

        if api_key:
            # without the key: the model's name is unavailable and a message gets the server's error
            check("unavailable" in p.model_text(), "/v1/models answered without the API key: %r" % p.model_text())
            p.send("hello")
            p.wait_done()
            text, meta, data = p.reply()
            check(data.get("error") == "1" and meta.startswith("error: "), "no error shown without the key: %r" % meta)
            check("HTTP" not in meta or "401" in meta, "error line %r" % meta)
            check(p.el("#input").get_attribute("value") == "hello", "the failed message is not back in the input box")
            print("without the API key the page shows: %s" % meta)
            p.set_field("#api-key", api_key)
            p.wait(lambda: "unavailable" not in p.model_text(), "GET /v1/models with the key")
            # the key survives a reload (localStorage), the conversation does not
            driver.get(url.rstrip("/") + "/")
            p.wait_model()
            check(p.el("#api-key").get_attribute("value") == api_key, "API key not kept across a reload")
        check(p.model_text().startswith("model: ") and "unavailable" not in p.model_text(),
              "model name: %r" % p.model_text())
        print(p.model_text())

        p.set_field("#system", SYSTEM)
        p.set_field("#temperature", "0")
        p.set_field("#max-tokens", "48")

        # turn 1: Enter sends; the reply streams in pieces
        p.js(RECORD_LENGTHS)
        p.send(TURN1)
        check(p.el("#stop").is_enabled() or p.last().get_attribute("data-done") == "1", "Stop not enabled")
        secs = p.wait_done()
        text, meta, data = p.reply()
        lens = sorted(set(l for l in p.js("return window.__lens") if l > 0))
        print("turn 1: %d chars, %s SSE chunks, %d lengths seen while streaming, %.2f s: %r | %s"
              % (len(text), data.get("chunks"), len(lens), secs, text[:80], meta))
        check("error" not in data, "turn 1 failed: " + meta)
        check(text.strip(), "empty reply")
        check(int(data.get("chunks", 0)) > 1, "reply came in %s chunk(s), not streamed" % data.get("chunks"))
        check(len(lens) > 1, "the page showed the reply at one length only: %r" % lens)
        check("tokens" in meta, "no token count under the reply: %r" % meta)
        check(p.el("#send").is_enabled() and not p.el("#stop").is_enabled(), "buttons after the reply")

        # turn 2: Shift+Enter makes a newline, the Send button sends, the whole conversation goes along
        p.send(TURN2, key_enter=False)
        user = p.js("return [...document.querySelectorAll('#messages .msg.user .text')].pop().textContent")
        check(user == "\n".join(TURN2), "user message shown as %r" % user)
        req = p.js("return window.lmfChat.lastRequest")
        roles = [m["role"] for m in req["messages"]]
        check(roles == ["system", "user", "assistant", "user"], "turn 2 sent roles %r" % roles)
        check(req["messages"][0]["content"] == SYSTEM and req["messages"][2]["content"] == text,
              "turn 2 did not carry the system prompt and the first reply")
        check(req["stream"] is True and req["stream_options"] == {"include_usage": True}, "stream flags %r" % req)
        check(req["temperature"] == 0 and req["max_tokens"] == 48, "settings not sent: %r" % req)
        secs = p.wait_done()
        text2, meta2, data2 = p.reply()
        print("turn 2: %d chars, %s chunks, %.2f s: %r | %s" % (len(text2), data2.get("chunks"), secs, text2[:80], meta2))
        check("error" not in data2 and text2.strip(), "turn 2 failed: " + meta2)

        p.js("document.activeElement.blur()")  # no text cursor in the screenshot
        os.makedirs(os.path.dirname(os.path.abspath(shot)), exist_ok=True)
        check(driver.save_screenshot(shot), "screenshot")
        print("screenshot: %s (%d bytes)" % (shot, os.path.getsize(shot)))

        # Stop: a long generation, stopped after a few chunks, ends at once and grows no more
        p.el("#clear").click()
        check(p.n_assistant() == 0, "New chat left messages")
        p.set_field("#temperature", "0.8")
        p.set_field("#max-tokens", "1000")
        p.send(LONG)
        p.wait(lambda: int(p.last().get_attribute("data-chunks") or 0) >= 3, "the long reply to start")
        check(p.last().get_attribute("data-done") is None, "the long reply ended before Stop could be clicked")
        t0 = time.monotonic()
        p.el("#stop").click()
        p.wait(lambda: p.last().get_attribute("data-done") == "1", "the stopped reply to end", 5)
        stop_s = time.monotonic() - t0
        text3, meta3, data3 = p.reply()
        check(data3.get("stopped") == "1" and "stopped" in meta3, "reply not marked stopped: %r %r" % (data3, meta3))
        time.sleep(0.5)
        check(p.reply()[0] == text3, "the reply grew after Stop")
        check(p.el("#send").is_enabled() and not p.el("#stop").is_enabled(), "buttons after Stop")
        print("stop: ended %.2f s after the click, at %s chunks: %r" % (stop_s, data3.get("chunks"), text3[:60]))
        # the server's side of Stop: the closed connection cancels the generation (when /metrics tells)
        running = lambda: server_gauge(url, api_key, "lmforge_requests_running")
        if running() is None:
            print("stop: the server has no lmforge_requests_running gauge at /metrics; its side not checked")
        else:
            p.wait(lambda: running() == 0, "the server to cancel the stopped request (lmforge_requests_running 0)", 3)

        # the server still answers after the client went away mid-reply; the stopped text is part of the history;
        # text that looks like HTML stays text
        p.set_field("#max-tokens", "16")
        p.send(LAST)
        user = p.js("return [...document.querySelectorAll('#messages .msg.user .text')].pop().textContent")
        check(user == LAST, "user message shown as %r" % user)
        check(not p.js("return document.querySelector('#messages b, #messages i')"), "message text parsed as HTML")
        secs = p.wait_done()
        text4, meta4, data4 = p.reply()
        req = p.js("return window.lmfChat.lastRequest")
        check([m["role"] for m in req["messages"]] == ["system", "user", "assistant", "user"]
              and req["messages"][2]["content"] == text3, "the stopped reply is not in the conversation")
        check("error" not in data4 and text4.strip(), "no answer after Stop: " + meta4)
        print("after stop: %.2f s: %r | %s" % (secs, text4[:60], meta4))

        # no script errors (failed loads, e.g. the 401s of the key check, are the server's answers, not errors)
        errors = [e["message"] for e in driver.get_log("browser")
                  if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]]
        check(not errors, "console errors: %r" % errors)
    finally:
        driver.quit()
    print("serve_webui: ok (%.1f s)" % (time.monotonic() - t_start))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url")
    ap.add_argument("screenshot")
    ap.add_argument("--api-key", default="")
    ap.add_argument("--timeout", type=float, default=120, help="seconds to wait for one reply")
    a = ap.parse_args()
    try:
        run(a.url, a.screenshot, a.api_key, a.timeout)
    except Failure as e:
        print("FAIL: %s" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
