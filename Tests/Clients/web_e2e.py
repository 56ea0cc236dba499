"""The web app end to end in a real browser: headless Chromium driven by selenium against a real
`gomodel serve` (built-in store and queue), a real `gomodel worker` and the stand-in trainer.

Usage: python web_e2e.py path/to/gomodel
Journey: sign up → create a dataset → upload a generated folder of pairs through the file input →
the pair grid with thumbnails and the findings of two broken pairs (a target without its control,
one without a caption) → fix them (upload the missing control, write the caption) → the XSS
caption shows as text → train with the form (its estimate from GET /api/estimate, assumed before
any run, follows the profile) → the step counter and the loss chart change without reloading (no
Delete job button while it runs) → the reproducibility record (its link and JSON) → download the
LoRA (a safetensors header) → the form again: the estimate is learned from the completed run (the
stand-in worker's "no GPU") → a second job cancelled, then deleted from its page (confirm dialog;
gone from /jobs, its API 404) → webhooks on the account page (the server
runs with GOMODEL_WEBHOOKS_ALLOW_PRIVATE=1; a receiver here answers 204): add one for some events,
its whsec_ secret shown once, "Send test event" delivered (204, signature checked here), one to a
port where nothing listens stays pending with its errored tries refreshed in place, deleting them
(confirm dialog) → a second user gets 404 on the first user's pages. Every page is checked with axe-core (serious or critical violations fail the test) and
screenshotted at desktop (1280×800) and phone (390×844) widths into test-output/screenshots/.
"""
import base64
import hashlib
import hmac
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from support import check, free_port, gomodel_cli, own_environment, wait_serving

GOMODEL = os.path.abspath(sys.argv[1])
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAND_IN = os.path.join(ROOT, "Tests", "Fixtures", "stand-in-trainer.py")
sys.path.insert(0, os.path.join(ROOT, "Tests", "Fixtures"))
from fake_openai import FakeOpenAI  # noqa: E402  (instruction drafts through an OpenAI-compatible endpoint)
SHOTS = os.path.join(ROOT, "test-output", "screenshots")
# The issue's caption, plus an element that would appear if any of it were parsed as HTML (a
# <script> added through innerHTML never runs, and the CSP blocks inline ones anyway).
XSS = '<script>alert(1)</script><img id="pwned" src="x">'

LONG_NAME = "Watercolour pairs for the spring catalogue, " + "very long name " * 3 + "end"
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


def real_png(width, height, rgb):
    """A small but complete PNG of one colour, so the browser really draws the thumbnails."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height, 9)) + chunk(b"IEND", b""))


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


class HookReceiver:
    """A webhook endpoint here: answers every POST 204 and keeps (headers, body) of each."""

    def __init__(self):
        self.requests = []
        got = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/gomodel"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def signed_with(secret, headers, body):
    """Whether a webhook request carries a Standard Webhooks signature made with this secret."""
    signed = f"{headers.get('webhook-id')}.{headers.get('webhook-timestamp')}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(base64.b64decode(secret[len("whsec_"):]), signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, given) for given in headers.get("webhook-signature", "").split(" "))


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800", "--lang=en-US"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_script_timeout(30)
    return driver


class Journey:
    def __init__(self, driver, base):
        self.driver = driver
        self.base = base
        self.axe_script = None
        self.findings = []

    def wait(self, what, condition, timeout=30):
        try:
            # The pages re-render parts of themselves: a node gone stale is simply looked up again.
            return WebDriverWait(self.driver, timeout, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)).until(lambda d: condition())
        except Exception as error:
            self.shot("failure-" + what.replace(" ", "-")[:40])
            raise AssertionError(f"timed out waiting for {what} on {self.driver.current_url}: {error}") from None

    def open(self, path):
        self.driver.get(self.base + path)
        self.wait("the page to load", lambda: self.driver.execute_script("return document.readyState") == "complete")

    def find(self, selector):
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def finds(self, selector):
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def shot(self, name):
        os.makedirs(SHOTS, exist_ok=True)
        self.driver.save_screenshot(os.path.join(SHOTS, name + ".png"))

    def rendered(self):
        """Returns once the page has laid out and painted at the window's new size: two animation
        frames (the first runs before the resize's layout, the second after its paint)."""
        self.driver.execute_async_script("const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done()))")

    def page_checks(self, name):
        """Screenshots at both widths and the accessibility check (serious or critical fail)."""
        for label, (width, height) in SIZES.items():
            self.driver.set_window_size(width, height)
            self.rendered()
            overflow = self.driver.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            check(overflow <= 1, f"{name} at {label} width has no horizontal scrolling ({overflow}px)")
            # The whole page in one picture: the window as tall as the document (capped).
            full = self.driver.execute_script("return document.documentElement.scrollHeight")
            self.driver.set_window_size(width, min(max(full, height), 6000))
            self.rendered()
            self.shot(f"{name}-{label}")
        self.driver.set_window_size(*SIZES["desktop"])
        if self.axe_script is None:
            import axe_selenium_python
            path = os.path.join(os.path.dirname(axe_selenium_python.__file__), "node_modules", "axe-core", "axe.min.js")
            with open(path, encoding="utf8") as f:
                self.axe_script = f.read()
        self.driver.execute_script(self.axe_script)
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa', 'best-practice']}})"
            ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3)}))))"
            ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]))")
        bad = [v for v in result if v["impact"] in ("serious", "critical")]
        for violation in result:
            self.findings.append((name, violation))
            print(f"  axe {name}: {violation['impact']} {violation['id']}: {violation['help']} {violation['nodes']}")
        check(not bad, f"{name} has no serious or critical accessibility violations")

    def no_alert(self, where):
        try:
            alert = self.driver.switch_to.alert
            text = alert.text
            alert.dismiss()
            raise AssertionError(f"an alert fired on {where}: {text}")
        except NoAlertPresentException:
            check(True, f"no alert fired on {where}")

    def api_status(self, method, path, body):
        """The status of an API call with the page's session and CSRF token (made here, not in the
        page, so that an expected refusal is not a console error)."""
        token = self.driver.execute_script("return document.querySelector('meta[name=\"csrf-token\"]').content")
        request = urllib.request.Request(self.base + path, method=method, data=json.dumps(body).encode(),
                                         headers={"Cookie": self.cookie_header(), "X-CSRF-Token": token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def get_json(self, path):
        """A GET with the page's session, its JSON body."""
        request = urllib.request.Request(self.base + path, headers={"Cookie": self.cookie_header()})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def estimate(self, ready=lambda text: True, other_than=None):
        """The new-training form's estimate once it shows one (and, after a change, a new one)."""
        def shown():
            text = self.find("#estimate").text
            return text if "GPU time" in text and text != other_than and ready(text) else None
        return self.wait("the estimate", shown)

    def cookie_header(self):
        return "; ".join(f"{c['name']}={c['value']}" for c in self.driver.get_cookies())

    def status_of(self, path):
        request = urllib.request.Request(self.base + path, headers={"Cookie": self.cookie_header()})
        try:
            return urllib.request.urlopen(request, timeout=10).status
        except urllib.error.HTTPError as error:
            return error.code

    def sign_up(self, email):
        self.open("/signup")
        self.find("#email").send_keys(email)
        self.find("#password").send_keys("correct horse battery")
        self.find("#auth-form button[type=submit]").click()
        self.wait("the dataset list after sign-up", lambda: self.driver.current_url.endswith("/datasets"))

    def pairs(self):
        return {item.get_attribute("data-stem"): item for item in self.finds("#pair-list > li.pair")}

    def findings_of(self, stem):
        item = self.pairs().get(stem)
        return [node.text for node in item.find_elements(By.CSS_SELECTOR, ".finding")] if item else None

    def upload_folder(self, folder, expect_files):
        self.find("#pick-folder").send_keys(folder)
        self.wait("the uploads to finish", lambda: self.find("#total-label").text == "All files uploaded"
                  and self.find("#total-text").text.startswith(f"{expect_files} of {expect_files} files"), timeout=60)

    def set_caption(self, stem, text):
        item = self.pairs()[stem]
        area = item.find_element(By.CSS_SELECTOR, "textarea")
        area.clear()
        area.send_keys(text)
        item.find_element(By.CSS_SELECTOR, "button").click()
        self.wait(f"the caption of {stem} to be saved", lambda: self.pairs().get(stem) is not None
                  and self.pairs()[stem].find_element(By.CSS_SELECTOR, "textarea").get_attribute("value") == text
                  and self.pairs()[stem].find_element(By.CSS_SELECTOR, ".save-status").text in ("", "Saved."))


def main():
    started = time.time()
    shutil.rmtree(SHOTS, ignore_errors=True)
    with tempfile.TemporaryDirectory() as work:
        env = own_environment()
        env.update(GOMODEL_DATA_DIR=os.path.join(work, "data"), XDG_CONFIG_HOME=os.path.join(work, "config"), GOMODEL_GPU_PRICE_PER_SECOND="0.0005")
        captioner = FakeOpenAI(key="sk-web")
        captioner.reply = lambda body, images: "Instruction: \"Turn the fox into a watercolour painting.\""
        captioner.start()
        hooks = HookReceiver()
        # GOMODEL_WEBHOOKS_ALLOW_PRIVATE: webhooks may go to this machine's receiver.
        server = subprocess.Popen([GOMODEL, "serve", "--port", "0"], env=dict(env, GOMODEL_CAPTION_URL=captioner.base_url, GOMODEL_CAPTION_API_KEY="sk-web",
                                                                        GOMODEL_CAPTION_MODEL="gpt-4o-mini", GOMODEL_WEBHOOKS_ALLOW_PRIVATE="1"),
                                  stdout=open(os.path.join(work, "serve.log"), "w"), stderr=subprocess.STDOUT)
        worker = None
        driver = None
        try:
            base = wait_serving(env["GOMODEL_DATA_DIR"])

            cli = gomodel_cli(GOMODEL, env, timeout=120)

            key = cli("workers", "create-key", "--name", "web-e2e").strip()
            store = json.loads(cli("storage", "credentials", "--json"))
            worker_env = dict(env, R2_BUCKET=store["bucket"], R2_ENDPOINT=store["endpoint"], R2_ACCESS_KEY_ID=store["accessKeyId"],
                              R2_SECRET_ACCESS_KEY=store["secretAccessKey"], GOMODEL_TRAINER_COMMAND=f"python3 {STAND_IN}",
                              GOMODEL_WORKDIR=os.path.join(work, "worker"), STAND_IN_STEP_SECONDS="0.1")
            worker_env.pop("GOMODEL_DATA_DIR")
            worker = subprocess.Popen([GOMODEL, "worker", "--server", base, "--key", key, "--name", "web-e2e"], env=worker_env,
                                      stdout=open(os.path.join(work, "worker.log"), "w"), stderr=subprocess.STDOUT)

            # The folder: cat and dog are complete; fox lacks its caption, owl its control image.
            folder = os.path.join(work, "pairs")
            colours = {"cat": (200, 80, 60), "dog": (60, 140, 200), "fox": (230, 140, 20), "owl": (90, 160, 90)}
            for stem, rgb in colours.items():
                if stem != "owl":
                    write(os.path.join(folder, "control", stem + ".png"), real_png(320, 320, rgb))
                write(os.path.join(folder, "target", stem + ".png"), real_png(320, 320, tuple(255 - c for c in rgb)))
                if stem != "fox":
                    write(os.path.join(folder, "target", stem + ".txt"), f"make the {stem} a watercolour")
            write(os.path.join(folder, "target", "zebra.png"), real_png(320, 320, (20, 20, 20)))  # a stray, to be removed
            fix = os.path.join(work, "fix")
            write(os.path.join(fix, "control", "owl.png"), real_png(320, 320, colours["owl"]))
            # dog gets a second and a third control image: a dataset whose samples have 1 and 3.
            write(os.path.join(fix, "control_2", "dog.png"), real_png(320, 320, (10, 200, 200)))
            write(os.path.join(fix, "control_3", "dog.png"), real_png(320, 320, (200, 200, 10)))

            driver = browser()
            journey = Journey(driver, base)

            print("signed out: pages send visitors to log in")
            journey.open("/datasets")
            check("/login?next=/datasets" in driver.current_url, "a signed-out visitor is sent to the login page")
            journey.page_checks("login")
            journey.open("/signup")
            journey.page_checks("signup")

            print("sign up and create a dataset")
            journey.sign_up("ann@example.com")
            journey.page_checks("datasets-empty")
            journey.find("#dataset-name").send_keys(LONG_NAME)
            journey.find("#new-dataset button[type=submit]").click()
            journey.wait("the dataset page", lambda: "/datasets/" in driver.current_url and journey.finds("#dataset-title"))
            dataset_path = driver.current_url[len(base):]
            dataset_id = dataset_path.split("/")[-1]
            check(journey.find("#dataset-title").text == LONG_NAME, "the dataset page shows the long name")

            print("upload the folder through the file input")
            journey.upload_folder(folder, 11)
            check(len(journey.finds("#upload-list li.done")) == 11, "each file shows its own progress row, all done")
            journey.wait("the pair grid", lambda: set(journey.pairs()) == set(colours) | {"zebra"})
            journey.wait("the thumbnails to load", lambda: driver.execute_script(
                "window.scrollTo(0, document.body.scrollHeight);"  # thumbnails load lazily, near the viewport
                "const images = [...document.querySelectorAll('#pair-list img')];"
                "return images.length === 8 && images.every(i => i.complete && i.naturalWidth === 320)"))
            check(True, "the grid shows control and target thumbnails (8 images, drawn)")
            check(any("caption" in text.lower() or "instruction" in text.lower() for text in journey.findings_of("fox")), "fox shows its missing-caption finding")
            check(any("control" in text.lower() for text in journey.findings_of("owl")), "owl shows its missing-control finding")
            check(not journey.findings_of("cat"), "cat has no findings")
            check("to fix" in journey.find("#dataset-summary").text, "the summary says the dataset needs fixing")
            journey.page_checks("dataset-broken")

            print("fix both: upload the missing control; draft the missing instruction, review it")
            journey.upload_folder(fix, 14)
            journey.wait("owl's finding to go", lambda: journey.findings_of("owl") == [])
            journey.find("#draft-instructions").click()
            journey.wait("fox's drafted instruction", lambda: "has-draft" in (journey.pairs()["fox"].get_attribute("class") or ""))
            fox = journey.pairs()["fox"]
            check(fox.find_element(By.CSS_SELECTOR, ".draft-badge").text == "Draft", "the drafted instruction is marked as a draft")
            check(fox.find_element(By.CSS_SELECTOR, "textarea").get_attribute("value") == "Turn the fox into a watercolour painting.",
                  "the model's reply, read as the instruction, waits for review in the grid")
            check(len([p for p in journey.pairs().values() if "has-draft" in (p.get_attribute("class") or "")]) == 1, "only the sample without an instruction got a draft")
            check(any("waiting for review" in text for text in journey.findings_of("fox")), "the sample says its draft waits for review")
            journey.shot("dataset-draft")
            journey.page_checks("dataset-draft")
            refused = journey.api_status("POST", "/api/jobs", {"datasetId": dataset_id})
            check(refused == 422, f"a job refuses to start while the draft is unaccepted ({refused})")
            area = fox.find_element(By.CSS_SELECTOR, "textarea")
            area.send_keys(" Keep the background.")
            accept = fox.find_element(By.CSS_SELECTOR, "button.primary")
            check(accept.text == "Accept edited", "editing the draft turns the button into 'Accept edited'")
            accept.click()
            journey.wait("fox's finding to go", lambda: journey.findings_of("fox") == [] and "has-draft" not in (journey.pairs()["fox"].get_attribute("class") or ""))
            check(journey.pairs()["fox"].find_element(By.CSS_SELECTOR, "textarea").get_attribute("value")
                  == "Turn the fox into a watercolour painting. Keep the background.", "the edited draft is fox's instruction now")
            check(len([r for r in captioner.requests if r["status"] == 200]) == 1, "one request reached the endpoint")
            journey.pairs()["zebra"].find_element(By.CSS_SELECTOR, "button.danger").click()
            driver.switch_to.alert.accept()
            journey.wait("the stray sample to be removed", lambda: set(journey.pairs()) == set(colours))
            check("ready to train" in journey.find("#dataset-summary").text, "the dataset is ready to train")

            print("an XSS caption is shown as text")
            journey.set_caption("dog", XSS)
            driver.refresh()
            journey.wait("the grid after reload", lambda: "dog" in journey.pairs())
            journey.no_alert("the dataset page")
            check(journey.pairs()["dog"].find_element(By.CSS_SELECTOR, "textarea").get_attribute("value") == XSS, "the caption is the literal text")
            check(not driver.execute_script("return document.querySelectorAll('#pair-list script, #pair-picker script').length"), "no script element was made from it")
            check(not driver.execute_script("return document.getElementById('pwned')"), "nor any other element")
            journey.page_checks("dataset")

            print("train with the form")
            journey.open(f"/jobs/new?dataset={dataset_id}")
            button = journey.find("#train-button")
            check(button.text == "Train Qwen Image Edit 2509", "the button says 'Train Qwen Image Edit 2509'")
            journey.wait("the sample pairs", lambda: len(journey.finds("#pair-picker input[type=checkbox]")) == 4)
            picked = [box.get_attribute("value") for box in journey.finds("#pair-picker input[type=checkbox]") if box.is_selected()]
            check(picked == ["cat", "dog"], "the first two samples are picked by default")
            check(any(node.text == XSS for node in journey.finds("#pair-picker .caption-preview")), "the XSS caption is text in the picker too")
            journey.no_alert("the new-training page")
            check(not driver.execute_script("return document.getElementById('pwned')"), "the caption made no element on the new-training page")
            # The form asks for it 200 ms after it loads (debounced like its other changes).
            estimate = journey.estimate()
            check(estimate.startswith("Rough estimate: ") and " of GPU time, about " in estimate
                  and estimate.endswith(" at this server's GPU price (assumed: no completed run of this preset and profile yet)."),
                  f"the form shows the server's time and cost estimate, assumed before any run: {estimate!r}")
            profile = journey.find("input[name=profile]:checked").get_attribute("value")
            other_profile = next(box for box in journey.finds("input[name=profile]") if box.get_attribute("value") != profile).get_attribute("value")
            journey.find(f"input[name=profile][value='{other_profile}']").click()
            changed = journey.estimate(other_than=estimate)
            check(changed.startswith("Rough estimate: ") and "(assumed: " in changed, f"choosing the {other_profile} profile asks again: {changed!r}")
            journey.find(f"input[name=profile][value='{profile}']").click()
            check(journey.estimate(other_than=changed) == estimate, f"and back to {profile}, the first estimate again")
            journey.page_checks("job-new")
            steps = journey.find("#steps")
            steps.clear()
            steps.send_keys("150")
            button.click()
            journey.wait("the job page", lambda: "/jobs/" in driver.current_url and journey.finds("#job-page"))
            job_path = driver.current_url[len(base):]

            print("watch it live")
            driver.execute_script("window.stillTheSamePage = true")
            seen_steps, seen_points, delete_shown_while_running = set(), set(), set()

            def progressed():
                if journey.find("#job-status").text in ("queued", "running"):
                    delete_shown_while_running.add(journey.find("#delete-job").is_displayed())
                text = journey.find("#job-step").text
                if "/" in text:
                    seen_steps.add(text)
                points = driver.execute_script("const s = document.querySelector('#loss-chart svg'); return s ? s.getAttribute('data-points') : null")
                if points:
                    seen_points.add(points)
                return len(seen_steps) >= 3 and len(seen_points) >= 2
            journey.wait("the step counter and the loss chart to move", progressed, timeout=90)
            journey.shot("job-running-desktop")
            check(driver.execute_script("return window.stillTheSamePage === true"), "without reloading the page")
            check(True, f"steps seen {sorted(seen_steps)}; chart points seen {sorted(seen_points, key=int)}")
            check(delete_shown_while_running == {False}, "the Delete job button is hidden while the job runs")
            journey.wait("the job to complete", lambda: journey.find("#job-status").text == "completed", timeout=90)
            journey.wait("the Delete job button once it has ended", lambda: journey.find("#delete-job").is_displayed())
            check(driver.execute_script("return window.stillTheSamePage === true"), "still the same page at the end")
            journey.wait("the samples by step", lambda: len(journey.finds("#job-samples .sample-step")) >= 2)
            check(len(journey.finds("#job-samples .sample-pair img")) >= 4, "samples are shown beside their control images")
            controls_shown = {figure.find_element(By.CSS_SELECTOR, "figcaption").text.split(":")[0]: len(figure.find_elements(By.CSS_SELECTOR, "img.sample-control"))
                              for figure in journey.finds("#job-samples .sample-step:first-of-type .sample-pair")}
            check(controls_shown == {"cat": 1, "dog": 3}, f"each sample beside its own controls: cat 1, dog 3 ({controls_shown})")
            sample_url = journey.find("#job-samples .sample-pair img:last-child").get_attribute("src")
            sample = urllib.request.urlopen(urllib.request.Request(sample_url, headers={"Cookie": journey.cookie_header()}), timeout=10).read()
            check(sample.startswith(b"\xff\xd8"), "a sample image's address leads to its JPEG")
            drawn = journey.wait("the sample images to be drawn", lambda: driver.execute_script(
                "const imgs = [...document.querySelectorAll('#job-samples .sample-pair img:last-child')];"
                "return imgs.length > 0 && imgs.every((img) => img.complete && img.naturalWidth > 0) && imgs.length;"))
            check(drawn >= 2, f"the browser decodes and draws every sample ({drawn}; real JPEGs, as ai-toolkit writes them)")
            check(len([a for a in journey.finds("#job-files a") if "Checkpoint" in a.text]) >= 1, "checkpoints are listed with downloads")
            check(journey.find("#job-runpod").text not in ("", "—"), "the job id at the runner (RunPod's, or the built-in queue's) is shown")
            check("completed" in journey.find("#job-log").text, "the log tail shows the job's events")

            print("the reproducibility record")
            job_id = job_path.split("/")[-1]
            link = journey.find("#record-download")
            href = link.get_attribute("href")
            check(link.is_displayed() and link.text == "Reproducibility record", "the job page links its reproducibility record")
            check(urllib.parse.urlsplit(href).path.lower() == f"/api/jobs/{job_id}/record".lower()
                  and (link.get_attribute("download") or "").endswith(".json"), f"the link downloads /api/jobs/{{id}}/record as a .json file ({href})")
            record = journey.get_json(urllib.parse.urlsplit(href).path)
            check(record["job"]["id"].lower() == job_id.lower(), f"the record is this job's ({record['job']['id']})")
            digest = record["dataset"]["sha256"] or ""
            check(len(digest) == 64 and all(c in "0123456789abcdef" for c in digest.lower()), f"with its dataset's SHA-256 ({digest})")
            gpu = record["attempts"][0]["environment"]["gpu_name"] if record["attempts"] and record["attempts"][0].get("environment") else None
            check(gpu == "no GPU", f"and the worker's environment: the stand-in reports gpu_name 'no GPU' ({gpu!r})")
            seed = record["job"]["parameters"].get("seed")
            check(isinstance(seed, int) and not isinstance(seed, bool), f"every parameter, the seed filled in ({seed!r})")
            journey.page_checks("job")

            print("download the LoRA")
            download = journey.find("#lora-download")
            check(download.is_displayed(), "the LoRA download button is shown")
            request = urllib.request.Request(download.get_attribute("href"), headers={"Cookie": journey.cookie_header()})
            data = urllib.request.urlopen(request, timeout=30).read()
            length = struct.unpack("<Q", data[:8])[0]
            header = json.loads(data[8:8 + length])
            check('"step": 150' in header["__metadata__"]["training_info"], "the downloaded LoRA is a safetensors file of step 150")

            print("promote a checkpoint: the download follows")
            promote = journey.find("#job-samples .sample-step button.promote")
            step = int(promote.get_attribute("aria-label").split("step ")[1].split(" ")[0])
            promote.click()
            journey.wait("the promoted step's badge", lambda: journey.finds("#job-samples .result-badge"))
            check(journey.find("#lora-download").text == f"Download LoRA (step {step})", f"the download button names step {step}")
            request = urllib.request.Request(journey.find("#lora-download").get_attribute("href"), headers={"Cookie": journey.cookie_header()})
            data = urllib.request.urlopen(request, timeout=30).read()
            header = json.loads(data[8:8 + struct.unpack("<Q", data[:8])[0]])
            check(f'"step": {step}' in header["__metadata__"]["training_info"], f"the download is now step {step}'s checkpoint")
            journey.page_checks("job-promoted")

            print("the estimate, learned from the completed run")
            journey.open(f"/jobs/new?dataset={dataset_id}")
            check(journey.find("input[name=profile]:checked").get_attribute("value") == profile, f"the form offers the completed job's profile ({profile})")
            learned = journey.estimate(lambda text: text.startswith("Estimate: "))
            check(" of GPU time, about " in learned and learned.endswith(" at this server's GPU price (the median of the last 1 completed run on no GPU)."),
                  f"the estimate is learned from the one completed run: {learned!r}")
            served = journey.get_json(f"/api/estimate?steps={journey.find('#steps').get_attribute('value')}&profile={profile}")
            check(served["source"] == "learned" and served["runs"] == 1 and served["gpuName"] == "no GPU", f"as the server says ({served['basis']})")
            journey.find(f"input[name=profile][value='{other_profile}']").click()
            assumed = journey.estimate(other_than=learned)
            check(assumed.startswith("Rough estimate: ") and assumed.endswith("(assumed: no completed run of this preset and profile yet)."),
                  f"another profile has no completed run: assumed again ({assumed!r})")
            journey.find(f"input[name=profile][value='{profile}']").click()
            check(journey.estimate(other_than=assumed) == learned, "and back: learned again")
            journey.page_checks("job-new-learned")

            print("a second job, cancelled, then deleted from its page")
            journey.find("#train-button").click()  # the default 3000 steps: minutes for the stand-in, plenty of time to cancel
            journey.wait("the second job's page", lambda: "/jobs/" in driver.current_url and driver.current_url[len(base):] != job_path and journey.finds("#job-page"))
            second_path = driver.current_url[len(base):]
            second_id = second_path.split("/")[-1]
            journey.wait("the second job to run", lambda: journey.find("#job-status").text == "running" and "/" in journey.find("#job-step").text, timeout=60)
            check(not journey.find("#delete-job").is_displayed() and journey.find("#cancel-job").is_displayed(), "while it runs: Cancel, and no Delete job")
            journey.find("#cancel-job").click()
            driver.switch_to.alert.accept()
            journey.wait("the second job cancelled", lambda: journey.find("#job-status").text == "cancelled", timeout=60)
            journey.wait("the Delete job button on the cancelled job", lambda: journey.find("#delete-job").is_displayed())
            check(not journey.find("#cancel-job").is_displayed(), "an ended job has no Cancel button")
            journey.page_checks("job-cancelled")
            journey.find("#delete-job").click()
            alert = driver.switch_to.alert
            check("cannot be undone" in alert.text, f"deleting asks first ({alert.text})")
            alert.accept()
            journey.wait("the job list after deleting", lambda: urllib.parse.urlsplit(driver.current_url).path == "/jobs" and journey.finds("#job-table"))
            listed = [row.get_attribute("data-job-id").lower() for row in journey.finds("#job-table tbody tr")]
            check(second_id.lower() not in listed and job_id.lower() in listed, f"the deleted job is no longer listed, the first one still is ({len(listed)} listed)")
            check(journey.status_of(f"/api/jobs/{second_id}") == 404, "the deleted job is gone (404)")
            check(journey.status_of(second_path) == 404, "and so is its page")

            journey.open("/jobs")
            check(journey.find("#job-table [data-field=status]").text == "completed", "the job list shows the job completed")
            journey.page_checks("jobs")
            journey.open("/datasets")
            journey.page_checks("datasets")
            journey.open("/account")
            journey.find("#token-name").send_keys("laptop")
            journey.find("#token-form button[type=submit]").click()
            journey.wait("the new token", lambda: journey.find("#new-token-value").get_attribute("value").startswith("gm_"))
            check(len(journey.finds("#token-rows tr")) == 1, "the token is listed")
            # The first account administers the worker keys: the worker's own key, used and active.
            journey.wait("the worker keys", lambda: len(journey.finds("#worker-key-rows tr")) == 1)
            cells = [cell.text for cell in journey.finds("#worker-key-rows tr td")]
            check(cells[0] == "web-e2e" and cells[2] != "never" and cells[4] == "active", f"the worker's key is listed as used and active: {cells}")
            journey.find("#worker-key-name").send_keys("spare")
            journey.find("#worker-key-form button[type=submit]").click()
            journey.wait("the new worker key", lambda: journey.find("#new-worker-key-value").get_attribute("value").startswith("gmw_"))
            journey.wait("two worker keys", lambda: len(journey.finds("#worker-key-rows tr")) == 2)
            journey.find("#worker-key-rows button[aria-label='Revoke spare']").click()
            driver.switch_to.alert.accept()
            journey.wait("the spare key revoked", lambda: any("spare" in row.text and "revoked" in row.text for row in journey.finds("#worker-key-rows tr")))
            check(not journey.finds("#worker-key-rows button[aria-label='Revoke spare']"), "a revoked key has no revoke button")
            journey.page_checks("account")

            print("webhooks on the account page: add, send a test event, watch deliveries, delete")
            check(journey.find("#no-webhooks").is_displayed() and not journey.finds("#webhook-rows tr"), "no webhooks yet, and the page says so")
            journey.find("#webhook-url").send_keys(hooks.url)
            chosen = ["job.completed", "job.failed"]
            for box in journey.finds("#webhook-form input[name=events]"):
                if box.is_selected() != (box.get_attribute("value") in chosen):
                    box.click()
            journey.find("#webhook-description").send_keys("CI pipeline")
            journey.find("#webhook-form button[type=submit]").click()
            secret = journey.wait("the signing secret", lambda: (lambda v: v if v.startswith("whsec_") else None)(journey.find("#new-webhook-secret").get_attribute("value")))
            check(journey.find("#new-webhook").is_displayed() and len(base64.b64decode(secret[6:])) == 32, "the new webhook's whsec_ secret is shown, with a Copy button")
            check(journey.find("#copy-webhook-secret").is_displayed(), "and a Copy button beside it")
            journey.wait("the webhook listed", lambda: len(journey.finds("#webhook-rows tr")) == 1)
            row = journey.find("#webhook-rows tr")
            hook_id = row.get_attribute("data-webhook-id")
            cells = [cell.text for cell in row.find_elements(By.CSS_SELECTOR, "td")]
            check(cells[0].startswith(hooks.url) and "CI pipeline" in cells[0] and cells[1] == ", ".join(chosen),
                  f"it is listed with its URL, note and only the chosen events ({cells[:2]})")
            check(not journey.find("#no-webhooks").is_displayed(), "the empty note is gone")
            driver.execute_script("window.stillTheSamePage = true")
            journey.find(f"#webhook-rows button[aria-label='Send a test event to {hooks.url}']").click()

            def delivery_cells(state=None):
                rows = journey.finds("#delivery-rows tr")
                cells = [cell.text for cell in rows[0].find_elements(By.CSS_SELECTOR, "td")] if len(rows) == 1 else None
                return cells if cells and (state is None or cells[2] == state) else None
            cells = journey.wait("the test event delivered", lambda: delivery_cells("delivered"))
            check(journey.find("#webhook-deliveries").is_displayed() and journey.find("#deliveries-url").text == hooks.url,
                  "the deliveries of this webhook are shown")
            check(cells[0] == "webhook.test" and cells[3] == "204" and cells[4] == "—", f"the test event: delivered, one try answered 204, no next try ({cells})")
            check(driver.execute_script("return window.stillTheSamePage === true"), "without reloading the page")
            check(len(hooks.requests) == 1, f"the receiver got one request ({len(hooks.requests)})")
            headers, body = hooks.requests[0]
            payload = json.loads(body)
            check(signed_with(secret, headers, body) and payload["type"] == "webhook.test" and payload["data"]["webhookId"] == hook_id,
                  "a webhook.test signed with the secret the page showed, naming the webhook by its id")
            journey.page_checks("account-webhooks")
            driver.refresh()
            journey.wait("the webhooks after reload", lambda: len(journey.finds("#webhook-rows tr")) == 1)
            check(not journey.find("#new-webhook").is_displayed() and secret not in driver.page_source, "after a reload the secret is not shown again")

            print("a webhook to where nothing listens: its delivery stays pending, the page follows it")
            gone_url = f"http://127.0.0.1:{free_port()}/nobody"
            journey.find("#webhook-url").send_keys(gone_url)
            journey.find("#webhook-form button[type=submit]").click()
            journey.wait("the second webhook listed", lambda: len(journey.finds("#webhook-rows tr")) == 2)
            events = journey.finds("#webhook-rows tr")[1].find_elements(By.CSS_SELECTOR, "td")[1].text
            check(sorted(events.split(", ")) == sorted(["job.started", "job.completed", "job.failed", "job.cancelled", "checkpoint.saved"]),
                  f"all events by default ({events})")
            driver.execute_script("window.stillTheSamePage = true")
            journey.find(f"#webhook-rows button[aria-label='Send a test event to {gone_url}']").click()
            cells = journey.wait("the test event tried", lambda: (lambda c: c if c and c[3].startswith("error (") else None)(delivery_cells("pending")))
            check(journey.find("#deliveries-url").text == gone_url and cells[3].startswith("error (Could not connect") and cells[4] not in ("", "—"),
                  f"pending, its try an error, a next try at a time ({cells})")
            cells = journey.wait("the retry, about 5 s later, to show", lambda: (lambda c: c if c and c[3].count("error (") >= 2 else None)(delivery_cells("pending")), timeout=20)
            check(driver.execute_script("return window.stillTheSamePage === true"), f"the table refreshes itself while it is pending ({cells[3]})")
            journey.page_checks("account-webhooks-pending")
            journey.find(f"#webhook-rows button[aria-label='Delete the webhook to {gone_url}']").click()
            alert = driver.switch_to.alert
            check(gone_url in alert.text, f"deleting asks first ({alert.text})")
            alert.accept()
            journey.wait("the webhook gone", lambda: len(journey.finds("#webhook-rows tr")) == 1)
            time.sleep(2.5)  # longer than the deliveries table's refresh
            toast = driver.execute_script("return document.getElementById('toast').textContent")
            shown = journey.find("#webhook-deliveries").is_displayed()
            check(not shown and toast == "Webhook deleted.",
                  f"its deliveries are no longer shown, nor followed: the refresh stopped with it (deliveries shown: {shown}; toast: {toast!r})")

            journey.find(f"#webhook-rows button[aria-label='Delete the webhook to {hooks.url}']").click()
            driver.switch_to.alert.accept()
            journey.wait("no webhooks left", lambda: not journey.finds("#webhook-rows tr") and journey.find("#no-webhooks").is_displayed())
            check(journey.status_of(f"/api/webhooks/{hook_id}") == 404, "the webhook is gone (404)")

            print("many samples: 60 flat-named pairs through the plain file picker; the grid pages")
            flat = os.path.join(work, "flat")
            paths = []
            for index in range(60):
                stem = f"sample-{index:03d}"
                for suffix, rgb in (("_start.png", (index * 4, 90, 120)), ("_end.png", (120, index * 4, 90))):
                    write(os.path.join(flat, stem + suffix), real_png(300, 300, rgb))
                    paths.append(os.path.join(flat, stem + suffix))
                write(os.path.join(flat, stem + ".txt"), f"edit number {index}")
                paths.append(os.path.join(flat, stem + ".txt"))
            journey.open("/datasets")
            journey.find("#dataset-name").send_keys("many")
            journey.find("#new-dataset button[type=submit]").click()
            journey.wait("the second dataset's page", lambda: journey.finds("#dataset-title") and journey.find("#dataset-title").text == "many")
            journey.find("#pick-files").send_keys("\n".join(paths))
            journey.wait("180 files to upload", lambda: journey.find("#total-label").text == "All files uploaded"
                         and journey.find("#total-text").text.startswith("180 of 180 files"), timeout=120)
            journey.wait("the first page of the grid", lambda: len(journey.pairs()) == 24)
            check(journey.find("#page-text").text == "Page 1 of 3 (60 samples)", "the grid shows 24 of 60 samples a page")
            journey.find("#page-next").click()
            journey.wait("the second page", lambda: "sample-024" in journey.pairs())
            check("ready to train" in journey.find("#dataset-summary").text, "60 flat-named pairs make a sound dataset")
            journey.page_checks("dataset-many")

            print("a second user cannot open the first user's pages")
            journey.find("#log-out").click()
            journey.wait("the login page", lambda: driver.current_url.endswith("/login"))
            journey.sign_up("bob@example.com")
            for path in (dataset_path, job_path):
                journey.open(path)
                check(journey.find("h1").text == "Not found" and LONG_NAME not in driver.page_source, f"bob sees Not found at {path}")
                check(journey.status_of(path) == 404, f"{path} answers 404 to bob")
            check(journey.status_of(f"/api/datasets/{dataset_id}/samples/cat/target") == 404, "bob cannot see ann's images")
            journey.page_checks("not-found")
            journey.no_alert("every page")

            errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE" and "404" not in entry["message"]]
            for entry in errors:
                print("  console:", entry["message"])
            check(not errors, "no script errors or CSP violations in the browser console")
            print(f"web_e2e passed in {time.time() - started:.0f} s; screenshots in {SHOTS}")
        except Exception:
            for name in ("serve.log", "worker.log"):
                path = os.path.join(work, name)
                if os.path.exists(path):
                    print(f"--- {name} (tail)")
                    print(open(path).read()[-3000:])
            raise
        finally:
            if driver:
                driver.quit()
            captioner.stop()
            hooks.server.shutdown()
            for process in (worker, server):
                if process:
                    process.terminate()
                    try:
                        process.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        process.kill()


if __name__ == "__main__":
    main()
